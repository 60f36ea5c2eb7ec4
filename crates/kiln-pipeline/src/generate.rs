//! Generating images with a UNet: what to generate ([`Generation`]), unconditionally or
//! guided towards classes ([`Condition`]).

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_sampler::{
    ClassConditional, Denoiser, EpsilonScaled, GuidanceConfig, Guided, ProjectedGuidance,
    ProjectedGuided, StepEvent,
};
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
        /// Adaptive projected guidance's update in place of classifier-free guidance's
        /// ([`ProjectedGuided`]; `None`: classifier-free guidance).
        projection: Option<ProjectedGuidance>,
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
/// A count of 0, a size the model cannot take, labels that do not fit, guidance settings out
/// of range or an epsilon scaling that is not finite and positive are errors before the first
/// step.
pub fn generate<B: Backend>(
    model: &UNet<B>,
    prediction: Prediction,
    schedule: &NoiseSchedule,
    generation: Generation,
    device: &B::Device,
    on_step: impl FnMut(StepEvent<'_, B, 4>),
) -> Result<Tensor<B, 4>, PipelineError> {
    let shape = image_shape(model, &generation)?;
    let denoiser = UNetDenoiser::new(model, prediction);
    generate_with(denoiser, schedule, shape, generation, device, on_step)
}

/// The shape of `generation`'s images for `model`, checked against what it can take.
pub(crate) fn image_shape<B: Backend>(
    model: &UNet<B>,
    generation: &Generation,
) -> Result<[usize; 4], PipelineError> {
    let shape = [
        generation.count,
        model.in_channels(),
        generation.image_size,
        generation.image_size,
    ];
    model.check_shape(shape)?;
    Ok(shape)
}

/// [`generate`] with any model of images of `shape`.
pub(crate) fn generate_with<B, M>(
    denoiser: M,
    schedule: &NoiseSchedule,
    shape: [usize; 4],
    generation: Generation,
    device: &B::Device,
    on_step: impl FnMut(StepEvent<'_, B, 4>),
) -> Result<Tensor<B, 4>, PipelineError>
where
    B: Backend,
    M: Denoiser<B, 4> + ClassConditional<B, 4>,
{
    let mut rng = StdRng::seed_from_u64(generation.seed);
    let noise = standard_normal::<B, 4>(shape, &mut rng, device);
    let scaled_run = ScaledRun {
        run: generation.run,
        schedule,
        lambda: generation.epsilon_scaling,
        rng,
    };
    match &generation.condition {
        Condition::Unconditional => scaled_run.sample(denoiser, noise, on_step),
        Condition::Classes {
            labels,
            guidance,
            projection,
        } => {
            let guided = Guided::new(denoiser, labels.clone(), guidance.clone())?;
            guided.check_batch(generation.count)?;
            match projection {
                None => scaled_run.sample(guided, noise, on_step),
                Some(projection) => {
                    let projected = ProjectedGuided::new(guided, schedule, *projection)?;
                    scaled_run.sample(projected, noise, on_step)
                }
            }
        }
    }
}

/// A named run over `schedule` with epsilon scaling λ, whose stochastic steps draw from `rng`.
struct ScaledRun<'s> {
    run: NamedRun,
    schedule: &'s NoiseSchedule,
    lambda: f64,
    rng: StdRng,
}

impl ScaledRun<'_> {
    /// `model` with its noise prediction divided by λ, sampled from `noise`.
    fn sample<B: Backend, M: Denoiser<B, 4>>(
        mut self,
        model: M,
        noise: Tensor<B, 4>,
        on_step: impl FnMut(StepEvent<'_, B, 4>),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        let scaled = EpsilonScaled::new(model, self.schedule, self.lambda)?;
        Ok(sample_by_name(
            self.run,
            self.schedule,
            &scaled,
            noise,
            &mut self.rng,
            on_step,
        )?)
    }
}
