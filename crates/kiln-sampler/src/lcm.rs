use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::NoiseSchedule;
use rand::Rng;

use crate::error::check_range;
use crate::sampler::{Step, clean_and_noise, linear, timestep_at};
use crate::{SampleClipping, Sampler, SamplerError};

/// The boundary scalings of a consistency model over a discrete-time diffusion model, as the
/// latent consistency models define them (Luo et al. 2023, "Latent Consistency Models", eq. 9,
/// after Song et al. 2023, "Consistency Models", Appendix C): with the clean estimate x̂ of
/// the model's output,
///
/// ```text
/// f(x_t, t) = c_skip(t) x_t + c_out(t) x̂(x_t, t),
/// c_skip(t) = σ_d² / ((s t)² + σ_d²),   c_out(t) = s t / √((s t)² + σ_d²)
/// ```
///
/// with σ_d = 0.5 and s the timestep scaling (10), so that f(x, 0) = x: the consistency
/// function's boundary condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsistencyScalings {
    /// s (diffusers' `timestep_scaling`).
    pub timestep_scaling: f64,
    /// σ_d, the data's standard deviation the scalings assume.
    pub sigma_data: f64,
}

impl Default for ConsistencyScalings {
    fn default() -> Self {
        Self {
            timestep_scaling: 10.0,
            sigma_data: 0.5,
        }
    }
}

impl ConsistencyScalings {
    /// Fails unless σ_d is finite and positive and the timestep scaling finite and not
    /// negative (σ_d = 0 makes c_skip 0/0 at t = 0).
    pub fn validate(&self) -> Result<(), SamplerError> {
        check_range(
            "sigma_data",
            self.sigma_data,
            f64::MIN_POSITIVE..=f64::MAX,
            "a finite σ_d > 0",
        )?;
        check_range(
            "timestep_scaling",
            self.timestep_scaling,
            0.0..=f64::MAX,
            "a finite scaling ≥ 0",
        )
    }

    /// (c_skip, c_out) at `timestep`.
    pub fn at(&self, timestep: f64) -> (f64, f64) {
        let scaled = timestep * self.timestep_scaling;
        let denominator = scaled * scaled + self.sigma_data * self.sigma_data;
        (
            self.sigma_data * self.sigma_data / denominator,
            scaled / denominator.sqrt(),
        )
    }
}

/// Settings of [`Lcm`], with diffusers' `LCMScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LcmConfig {
    /// M, the steps of the grid the consistency model was distilled on:
    /// k·⌊T/M⌋ − 1 for k = 1, …, M (diffusers' `original_inference_steps`).
    pub original_inference_steps: usize,
    /// The boundary scalings.
    pub scalings: ConsistencyScalings,
    /// Clipping of x̂ before the scalings (none by default, as diffusers).
    pub clipping: SampleClipping,
}

impl Default for LcmConfig {
    fn default() -> Self {
        Self {
            original_inference_steps: 50,
            scalings: ConsistencyScalings::default(),
            clipping: SampleClipping::thresholding_only(None),
        }
    }
}

impl LcmConfig {
    /// The grid of M the consistency model was distilled on, noisiest first:
    /// k·⌊T/M⌋ − 1 for k = M, …, 1.
    ///
    /// Fails when M is 0 or exceeds the schedule's timesteps.
    pub fn original_timesteps(&self, schedule: &NoiseSchedule) -> Result<Vec<f64>, SamplerError> {
        distillation_grid(schedule, self.original_inference_steps)
    }
}

/// The grid of `original` = M timesteps a consistency model was distilled on, noisiest first:
/// k·⌊T/M⌋ − 1 for k = M, …, 1 (diffusers' `original_inference_steps`).
fn distillation_grid(schedule: &NoiseSchedule, original: usize) -> Result<Vec<f64>, SamplerError> {
    let train = schedule.num_timesteps();
    check_range(
        "original_inference_steps",
        original as f64,
        1.0..=train as f64,
        "from 1 to the schedule's timesteps",
    )?;
    let stride = train / original;
    Ok((1..=original)
        .rev()
        .map(|k| (k * stride - 1) as f64)
        .collect())
}

/// The N = `steps` timesteps a consistency sampler visits: the points ⌊i·M/N⌋, i = 0, …, N − 1,
/// of the distillation grid of `original` = M (diffusers' `LCMScheduler` and `TCDScheduler`).
///
/// Fails when M exceeds the schedule's timesteps, or N is 0 or exceeds M.
pub(crate) fn consistency_timesteps(
    schedule: &NoiseSchedule,
    original: usize,
    steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    let grid = distillation_grid(schedule, original)?;
    check_range(
        "num_inference_steps",
        steps as f64,
        1.0..=original as f64,
        "from 1 to original_inference_steps",
    )?;
    Ok((0..steps).map(|i| grid[i * original / steps]).collect())
}

/// Multistep consistency sampling (Song et al. 2023, Algorithm 1; diffusers'
/// `LCMScheduler`): at each of N timesteps, taken evenly from the distillation grid of M,
/// the consistency function's answer f(x_t, t) ([`ConsistencyScalings`]) is the sample, and
/// before every step but the last it is noised afresh to the next timestep t',
///
/// ```text
/// x_{t'} = √ᾱ_{t'} f(x_t, t) + √(1 − ᾱ_{t'}) z,   z ~ N(0, I);
/// ```
///
/// one step is a one-step generator. With a diffusion model in place of a consistency model
/// the answers are posterior means and the samples too smooth: the sampler is for
/// consistency models (latent consistency models, consistency distillation's students).
#[derive(Debug, Clone)]
pub struct Lcm {
    config: LcmConfig,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<f64>,
}

impl Lcm {
    /// The sampler over `schedule` in `steps` steps.
    ///
    /// Fails when M exceeds the schedule's timesteps, N is 0 or exceeds M, or the scalings are
    /// not valid ([`ConsistencyScalings::validate`]).
    pub fn new(
        config: LcmConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let timesteps = consistency_timesteps(schedule, config.original_inference_steps, steps)?;
        config.clipping.validate()?;
        config.scalings.validate()?;
        Ok(Self {
            config,
            alphas_cumprod: schedule.alphas_cumprod().to_vec(),
            timesteps,
        })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)?;
        let alpha = self.alphas_cumprod[timestep as usize];
        let (x0, _) = clean_and_noise("LCM", output, prediction, sample.clone(), alpha, timestep)?;
        let x0 = self.config.clipping.apply(x0);
        let (c_skip, c_out) = self.config.scalings.at(timestep);
        let denoised = linear(&x0, c_out, &sample, c_skip);
        let next = match self.timesteps.get(index + 1) {
            Some(&next) => {
                let alpha = self.alphas_cumprod[next as usize];
                let noise = standard_normal::<B, D>(denoised.dims(), rng, &denoised.device());
                linear(&denoised, alpha.sqrt(), &noise, (1.0 - alpha).sqrt())
            }
            None => denoised.clone(),
        };
        Ok(Step {
            sample: next,
            denoised,
        })
    }
}
