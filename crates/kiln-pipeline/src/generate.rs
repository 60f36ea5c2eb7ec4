//! Generating images with a UNet: what to generate ([`Generation`]), unconditionally or
//! guided towards classes ([`Condition`]).

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_sampler::{GuidanceConfig, Guided, StepEvent};
use kiln_schedule::{NoiseSchedule, TimestepSpacing};
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
/// standard-normal noise of `seed` (the same seed gives the same images), in `steps` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The sampler.
    pub sampler: SamplerName,
    /// Sampler steps (Heun evaluates the model about twice per step).
    pub steps: usize,
    /// How many images.
    pub count: usize,
    /// Height and width.
    pub image_size: usize,
    /// The seed of the initial noise and of stochastic samplers.
    pub seed: u64,
    /// Keep each step's prediction of x_0 within [−1, 1], the range of the training data,
    /// where the sampler supports it: `clip_sample` for DDPM, DDIM and Heun, dynamic
    /// thresholding with a maximum of 1 for DPM-Solver++ and UniPC (Euler and PNDM have no
    /// such option). A partly trained pixel-space model otherwise predicts x_0 far outside
    /// the data range at high noise, which multistep solvers amplify into speckle.
    pub clip: bool,
    /// Unconditional, or which classes with what guidance.
    pub condition: Condition,
    /// Lay the timesteps out with this `timestep_spacing` instead of the sampler's default
    /// ([`NamedRun::spacing`]): `trailing` for a progressive-distillation student, which was
    /// trained on that grid.
    pub spacing: Option<TimestepSpacing>,
    /// For `lcm`: the steps M of the grid the consistency model was distilled on
    /// ([`NamedRun::original_steps`]; `None`: diffusers' 50).
    pub original_steps: Option<usize>,
}

impl Generation {
    /// `count` unconditional images of `image_size` from `sampler` in `steps` steps, seed 0,
    /// x_0 clipped: change the other fields with struct update syntax.
    pub fn new(sampler: SamplerName, steps: usize, count: usize, image_size: usize) -> Self {
        Self {
            sampler,
            steps,
            count,
            image_size,
            seed: 0,
            clip: true,
            condition: Condition::Unconditional,
            spacing: None,
            original_steps: None,
        }
    }
}

/// Generates images in [−1, 1] (approximately; see [`crate::pixels`] for display) with
/// `model`, calling `on_step` after every sampler step.
///
/// A count of 0, a size the model cannot take or labels that do not fit are errors before
/// the first step.
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
    let run = NamedRun {
        spacing: generation.spacing,
        original_steps: generation.original_steps,
        ..NamedRun::new(generation.sampler, generation.steps, generation.clip)
    };
    Ok(match &generation.condition {
        Condition::Unconditional => {
            sample_by_name(run, schedule, &denoiser, noise, &mut rng, on_step)?
        }
        Condition::Classes { labels, guidance } => {
            let guided = Guided::new(denoiser, labels.clone(), guidance.clone())?;
            guided.check_batch(generation.count)?;
            sample_by_name(run, schedule, &guided, noise, &mut rng, on_step)?
        }
    })
}
