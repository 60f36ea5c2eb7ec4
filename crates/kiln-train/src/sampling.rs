//! Drawing from the EMA model during a run: what the sample grids and the evaluations share.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kiln_forward::Prediction;
use kiln_pipeline::{Condition, Generation, generate};
use kiln_sampler::GuidanceConfig;
use kiln_schedule::NoiseSchedule;
use kiln_unet::UNet;

use crate::{TrainConfig, TrainError};

/// A model to sample from: the EMA weights, what they predict, and the run's schedule.
pub(crate) struct Sampled<'m, B: Backend> {
    pub model: &'m UNet<B>,
    pub prediction: Prediction,
    pub schedule: &'m NoiseSchedule,
    pub device: &'m B::Device,
}

impl<B: Backend> Sampled<'_, B> {
    /// Draws `generation`'s images, `[count, channels, size, size]` in [−1, 1].
    pub(crate) fn generate(&self, generation: Generation) -> Result<Tensor<B, 4>, TrainError> {
        let images = generate(
            self.model,
            self.prediction,
            self.schedule,
            generation,
            self.device,
            |_| {},
        )?;
        Ok(images)
    }
}

/// The condition of images `indices` of a run's samples: none for an unconditional run; a
/// class-conditional run shows its classes in turn (image i of class i mod classes), sampled
/// conditionally and unguided (w = 1).
pub(crate) fn sample_condition(config: &TrainConfig, indices: std::ops::Range<usize>) -> Condition {
    match &config.classes {
        None => Condition::Unconditional,
        Some(classes) => Condition::Classes {
            labels: indices.map(|i| i % classes.names.len()).collect(),
            guidance: GuidanceConfig::new(1.0),
            projection: None,
        },
    }
}
