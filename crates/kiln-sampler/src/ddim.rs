use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{NoiseSchedule, TimestepGrid};
use rand::Rng;

use crate::error::check_range;
use crate::sampler::{
    Step, clean_and_noise, final_alpha_cumprod, linear, timestep_at, whole_timesteps,
};
use crate::{SampleClipping, Sampler, SamplerError};

/// Settings of [`Ddim`], with diffusers' `DDIMScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimConfig {
    /// η: 0 is the deterministic DDIM ODE, 1 has DDPM's posterior variance.
    pub eta: f64,
    /// Clipping of x̂_0 (diffusers clips to [−1, 1] by default).
    pub clipping: SampleClipping,
    /// Whether the step after the last goes to ᾱ = 1 (the clean data) rather than to ᾱ_0.
    pub set_alpha_to_one: bool,
    /// The inference timesteps (`leading`, `steps_offset = 0` by default).
    pub grid: TimestepGrid,
}

impl Default for DdimConfig {
    fn default() -> Self {
        Self {
            eta: 0.0,
            clipping: SampleClipping {
                clip_sample: true,
                ..SampleClipping::default()
            },
            set_alpha_to_one: true,
            grid: TimestepGrid::default(),
        }
    }
}

/// Denoising diffusion implicit models (Song, Meng & Ermon 2021, eq. 12): from timestep t to
/// the next inference timestep t' (ᾱ_{t'} = 1, or ᾱ_0 without `set_alpha_to_one`, after the
/// last),
///
/// ```text
/// x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) ε̂ + σ_t z,
/// σ_t = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'}),      z ~ N(0, I)
/// ```
///
/// with x̂_0 clipped as configured. diffusers steps to t − ⌊T/N⌋ instead, which is the next
/// timestep for `leading` grids but not for `trailing` or `linspace` grids whose spacing is not
/// a whole number (there its sampler evaluates the model at one timestep and steps to
/// another); Kiln always steps to the next timestep of the grid. η = 0 gives a deterministic sampler (a first-order solver
/// of the probability-flow ODE); η = 1 matches DDPM's posterior variance.
#[derive(Debug, Clone)]
pub struct Ddim {
    config: DdimConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
}

impl Ddim {
    /// DDIM over `schedule` in `steps` steps.
    pub fn new(
        config: DdimConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        check_range("eta", config.eta, 0.0..=f64::MAX, "η >= 0")?;
        config.clipping.validate()?;
        let timesteps = whole_timesteps(config.grid, schedule.num_timesteps(), steps)?;
        Ok(Self {
            config,
            final_alpha_cumprod: final_alpha_cumprod(config.set_alpha_to_one, schedule),
            alphas_cumprod: schedule.alphas_cumprod().to_vec(),
            timesteps,
        })
    }

    /// The timestep of each step, in sampling order.
    pub fn inference_timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// ᾱ at step `index` and at the level it steps to (the next timestep's, or the final
    /// ᾱ after the last step); `index` is below the number of steps.
    pub(crate) fn step_alphas(&self, index: usize) -> (f64, f64) {
        let alpha = self.alphas_cumprod[self.timesteps[index] as usize];
        let alpha_next = self
            .timesteps
            .get(index + 1)
            .map_or(self.final_alpha_cumprod, |&next| {
                self.alphas_cumprod[next as usize]
            });
        (alpha, alpha_next)
    }

    /// Whether sampling is a deterministic, unclipped map that [`crate::invert`] can undo.
    pub(crate) fn check_invertible(&self) -> Result<(), SamplerError> {
        let reason = if self.config.eta != 0.0 {
            "η > 0 adds fresh noise at every step"
        } else if self.config.clipping.clip_sample || self.config.clipping.thresholding.is_some() {
            "x̂_0 is clipped; configure DDIM without clip_sample or thresholding"
        } else {
            return Ok(());
        };
        Err(SamplerError::NotInvertible { reason })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Ddim {
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
        let (alpha, alpha_prev) = self.step_alphas(index);
        let (x0, eps) = clean_and_noise("DDIM", output, prediction, sample, alpha, timestep)?;
        let x0 = self.config.clipping.apply(x0);
        let variance = (1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev);
        let std = self.config.eta * variance.sqrt();
        let direction = (1.0 - alpha_prev - std * std).max(0.0).sqrt();
        let mut next = linear(&x0, alpha_prev.sqrt(), &eps, direction);
        if std > 0.0 {
            let noise = standard_normal::<B, D>(x0.dims(), rng, &x0.device());
            next = next + noise.mul_scalar(std);
        }
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
