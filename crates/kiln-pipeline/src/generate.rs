//! Generating images with a UNet: what to generate ([`Generation`]), unconditionally or
//! guided towards classes ([`Condition`]).

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_sampler::{EpsilonScaled, GuidanceConfig, Guided, StepEvent};
use kiln_schedule::NoiseSchedule;
use kiln_unet::UNet;
use rand::{SeedableRng, rngs::StdRng};

use crate::samplers::{NamedRun, SamplerName, sample_by_name};
use crate::{PipelineError, UNetDenoiser};

/// Which classes to generate, and how strongly to guide towards them.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Condition {
    /// Unconditional samples (the null label of a class-conditional model).
    #[default]
    Unconditional,
    /// Image i of class `labels[i]`, with classifier-free guidance.
    Classes {
        /// One label per image.
        labels: Vec<usize>,
        /// The guidance weight, rescale and interval.
        guidance: GuidanceConfig,
    },
}

/// What to generate: `count` images of the model's channels at `image_size`, from the
/// standard-normal noise of `seed` (the same seed gives the same images), with the sampler
/// `run` names.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The sampler, its steps and timesteps, and whether it clips x̂_0. Clipping keeps each
    /// step's prediction of x_0 within [−1, 1], the range of the training data: a partly
    /// trained pixel-space model otherwise predicts x_0 far outside it at high noise, which
    /// multistep solvers amplify into speckle. A distilled student samples with its own run:
    /// `trailing` DDIM for progressive distillation, TCD on its grid for consistency and
    /// trajectory consistency distillation.
    pub run: NamedRun,
    /// How many images.
    pub count: usize,
    /// Height and width.
    pub image_size: usize,
    /// The seed of the initial noise and of stochastic samplers.
    pub seed: u64,
    /// Unconditional, or which classes with what guidance.
    pub condition: Condition,
    /// Epsilon scaling's λ (Ning et al. 2024, [`EpsilonScaled`]): every step's noise
    /// prediction, guided or not, divided by λ; 1 (the default) leaves it as it is.
    pub epsilon_scaling: f64,
}

impl Generation {
    /// `count` unconditional images of `image_size` from `sampler` in `steps` steps with its
    /// default timesteps, seed 0, x_0 clipped: change the other fields with struct update
    /// syntax.
    pub fn new(sampler: SamplerName, steps: usize, count: usize, image_size: usize) -> Self {
        Self::with_run(NamedRun::new(sampler, steps, true), count, image_size)
    }

    /// `count` unconditional images of `image_size` from `run`, seed 0.
    pub fn with_run(run: NamedRun, count: usize, image_size: usize) -> Self {
        Self {
            run,
            count,
            image_size,
            seed: 0,
            condition: Condition::Unconditional,
            epsilon_scaling: 1.0,
        }
    }
}

/// Generates images in [−1, 1] (approximately; see [`crate::pixels`] for display) with
/// `model`, calling `on_step` after every sampler step.
///
/// A count of 0, a size the model cannot take, labels that do not fit or an epsilon scaling
/// that is not finite and positive are errors before the first step.
pub fn generate<B: Backend>(
    model: &UNet<B>,
    prediction: Prediction,
    schedule: &NoiseSchedule,
    generation: Generation,
    device: &B::Device,
    on_step: impl FnMut(StepEvent<'_, B, 4>),
) -> Result<Tensor<B, 4>, PipelineError> {
    let shape = [
        generation.count,
        model.in_channels(),
        generation.image_size,
        generation.image_size,
    ];
    model.check_shape(shape)?;
    let mut rng = StdRng::seed_from_u64(generation.seed);
    let noise = standard_normal::<B, 4>(shape, &mut rng, device);
    let denoiser = UNetDenoiser::new(model, prediction);
    let run = generation.run;
    let lambda = generation.epsilon_scaling;
    Ok(match &generation.condition {
        Condition::Unconditional => {
            let scaled = EpsilonScaled::new(denoiser, schedule, lambda)?;
            sample_by_name(run, schedule, &scaled, noise, &mut rng, on_step)?
        }
        Condition::Classes { labels, guidance } => {
            let guided = Guided::new(denoiser, labels.clone(), guidance.clone())?;
            guided.check_batch(generation.count)?;
            let scaled = EpsilonScaled::new(guided, schedule, lambda)?;
            sample_by_name(run, schedule, &scaled, noise, &mut rng, on_step)?
        }
    })
}
