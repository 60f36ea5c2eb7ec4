//! Generating images with a trained UNet: the [`Denoiser`] adapter (class-conditional and
//! guided where the model has classes) and samplers chosen by name.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_kernels::on_worker_thread;
use kiln_sampler::{
    ClassConditional, Ddim, DdimConfig, Ddpm, DdpmConfig, Denoiser, DpmSolver, DpmSolverConfig,
    DynamicThresholding, Euler, EulerConfig, GuidanceConfig, Guided, Heun, HeunConfig, Pndm,
    PndmConfig, SampleClipping, Sampler, SamplerError, StepEvent, UniPc, UniPcConfig, sample,
};
use kiln_schedule::NoiseSchedule;
use kiln_unet::UNet;
use rand::{SeedableRng, rngs::StdRng};

/// A [`UNet`] seen as a [`Denoiser`]: the timestep is broadcast over the batch; class-conditional
/// models get the null label (unconditional generation). As a [`ClassConditional`] model it
/// takes a label per sample, for guidance ([`Guided`]). On burn's Flex backend each model call
/// runs on one of rayon's worker threads ([`on_worker_thread`]), where the CPU kernels start
/// fastest.
#[derive(Debug, Clone)]
pub struct UNetDenoiser<'a, B: Backend> {
    model: &'a UNet<B>,
    prediction: Prediction,
}

impl<'a, B: Backend> UNetDenoiser<'a, B> {
    /// `model`, trained to predict `prediction`.
    pub fn new(model: &'a UNet<B>, prediction: Prediction) -> Self {
        Self { model, prediction }
    }
}

impl<B: Backend> Denoiser<B, 4> for UNetDenoiser<'_, B> {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// # Panics
    /// If the sample's shape does not suit the model (checked before sampling starts by
    /// [`generate`]).
    fn denoise(&self, sample: Tensor<B, 4>, timestep: f64) -> Tensor<B, 4> {
        let [batch, ..] = sample.dims();
        let timesteps = Tensor::full([batch], timestep, &sample.device());
        on_worker_thread::<B, _>(|| self.model.forward(sample, timesteps, None))
            .expect("input shape checked by generate()")
    }
}

impl<B: Backend> ClassConditional<B, 4> for UNetDenoiser<'_, B> {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn classes(&self) -> usize {
        self.model.null_label().unwrap_or(0)
    }

    /// # Panics
    /// If the sample's shape does not suit the model, or the labels are not one per sample
    /// below [`Self::classes`] (checked before sampling starts by [`generate`]).
    fn denoise_labelled(
        &self,
        sample: Tensor<B, 4>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Tensor<B, 4> {
        let [batch, ..] = sample.dims();
        let device = sample.device();
        let timesteps = Tensor::full([batch], timestep, &device);
        let null = self.classes();
        let labels: Vec<i64> = labels.iter().map(|l| l.unwrap_or(null) as i64).collect();
        let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [batch]), &device);
        on_worker_thread::<B, _>(|| self.model.forward(sample, timesteps, Some(labels)))
            .expect("input shape and labels checked by generate()")
    }
}

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

/// The samplers a user can pick by name, with diffusers' default settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerName {
    /// `ddpm`: ancestral sampling of Ho et al. 2020.
    Ddpm,
    /// `ddim`: deterministic DDIM (η = 0).
    Ddim,
    /// `pndm`: pseudo-numerical (PRK warm-up, then PLMS).
    Pndm,
    /// `euler`: Euler on the probability-flow ODE in σ.
    Euler,
    /// `euler_a`: Euler ancestral.
    EulerAncestral,
    /// `heun`: Heun's second-order method (Karras et al. 2022).
    Heun,
    /// `dpm++`: DPM-Solver++ (2M).
    DpmSolver,
    /// `unipc`: UniPC (bh2, order 2).
    UniPc,
}

impl SamplerName {
    /// Every sampler, in the order of the names in [`SamplerName::NAMES`].
    pub const ALL: [SamplerName; 8] = [
        Self::Ddpm,
        Self::Ddim,
        Self::Pndm,
        Self::Euler,
        Self::EulerAncestral,
        Self::Heun,
        Self::DpmSolver,
        Self::UniPc,
    ];
    /// The names accepted by [`FromStr`].
    pub const NAMES: [&'static str; 8] = [
        "ddpm", "ddim", "pndm", "euler", "euler_a", "heun", "dpm++", "unipc",
    ];
}

impl FromStr for SamplerName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|known| *known == name)
            .map(|index| Self::ALL[index])
            .ok_or_else(|| {
                format!(
                    "unknown sampler {name:?}; expected one of {}",
                    Self::NAMES.join(", ")
                )
            })
    }
}

impl fmt::Display for SamplerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = Self::ALL.iter().position(|s| s == self).expect("listed");
        f.write_str(Self::NAMES[index])
    }
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
}

/// Generates images in [−1, 1] (approximately; see [`crate::pixels`] for display) with
/// `model`, calling `on_step` after every sampler step.
pub fn generate<B: Backend>(
    model: &UNet<B>,
    prediction: Prediction,
    schedule: &NoiseSchedule,
    generation: Generation,
    device: &B::Device,
    on_step: impl FnMut(StepEvent<'_, B, 4>),
) -> Result<Tensor<B, 4>, crate::TrainError> {
    let shape = [
        generation.count,
        model.in_channels(),
        generation.image_size,
        generation.image_size,
    ];
    let mut rng = StdRng::seed_from_u64(generation.seed);
    let noise = standard_normal::<B, 4>(shape, &mut rng, device);
    model.check_input_shape(&noise)?;
    let denoiser = UNetDenoiser::new(model, prediction);
    let run = NamedRun {
        sampler: generation.sampler,
        steps: generation.steps,
        clip: generation.clip,
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

/// A sampler picked by name for [`sample_by_name`]: diffusers' default settings for
/// `sampler`, laid out for `steps` steps, with x_0 kept in [−1, 1] when `clip` is set (see
/// [`Generation::clip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedRun {
    /// The sampler.
    pub sampler: SamplerName,
    /// Sampler steps.
    pub steps: usize,
    /// Keep each step's prediction of x_0 within [−1, 1] where the sampler supports it.
    pub clip: bool,
}

/// Runs the sampler `run` names with any [`Denoiser`] (a UNet, or the Gaussian-mixture
/// oracle of tests) from `noise` (x_T, unscaled), drawing the noise of stochastic samplers
/// from `rng` and calling `on_step` after every step.
pub fn sample_by_name<B: Backend, const D: usize, M: Denoiser<B, D>>(
    run: NamedRun,
    schedule: &NoiseSchedule,
    denoiser: &M,
    noise: Tensor<B, D>,
    rng: &mut StdRng,
    mut on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError> {
    let steps = run.steps;
    let mut go = |sampler: &mut dyn SamplerRun<B, D, M>| {
        sampler.run(denoiser, noise.clone(), rng, &mut on_step)
    };
    let clipping = SampleClipping {
        clip_sample: run.clip,
        ..SampleClipping::default()
    };
    let thresholding = run.clip.then(DynamicThresholding::default);
    match run.sampler {
        SamplerName::Ddpm => {
            let config = DdpmConfig {
                clipping,
                ..DdpmConfig::default()
            };
            go(&mut Ddpm::new(config, schedule, steps)?)
        }
        SamplerName::Ddim => {
            let config = DdimConfig {
                clipping,
                ..DdimConfig::default()
            };
            go(&mut Ddim::new(config, schedule, steps)?)
        }
        SamplerName::Pndm => go(&mut Pndm::new(PndmConfig::default(), schedule, steps)?),
        SamplerName::Euler => go(&mut Euler::new(EulerConfig::default(), schedule, steps)?),
        SamplerName::EulerAncestral => {
            let config = EulerConfig {
                ancestral: true,
                ..EulerConfig::default()
            };
            go(&mut Euler::new(config, schedule, steps)?)
        }
        SamplerName::Heun => {
            let config = HeunConfig {
                clipping,
                ..HeunConfig::default()
            };
            go(&mut Heun::new(config, schedule, steps)?)
        }
        SamplerName::DpmSolver => {
            let config = DpmSolverConfig {
                thresholding,
                ..DpmSolverConfig::default()
            };
            go(&mut DpmSolver::new(config, schedule, steps)?)
        }
        SamplerName::UniPc => {
            let config = UniPcConfig {
                thresholding,
                ..UniPcConfig::default()
            };
            go(&mut UniPc::new(config, schedule, steps)?)
        }
    }
}

/// [`sample`] behind a trait object, so [`sample_by_name`] can pick the sampler at run time.
trait SamplerRun<B: Backend, const D: usize, M> {
    fn run(
        &mut self,
        denoiser: &M,
        noise: Tensor<B, D>,
        rng: &mut StdRng,
        on_step: &mut dyn FnMut(StepEvent<'_, B, D>),
    ) -> Result<Tensor<B, D>, SamplerError>;
}

impl<B: Backend, const D: usize, M: Denoiser<B, D>, S: Sampler<B, D>> SamplerRun<B, D, M> for S {
    fn run(
        &mut self,
        denoiser: &M,
        noise: Tensor<B, D>,
        rng: &mut StdRng,
        on_step: &mut dyn FnMut(StepEvent<'_, B, D>),
    ) -> Result<Tensor<B, D>, SamplerError> {
        sample(self, denoiser, noise, rng, on_step)
    }
}
