use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::NoiseSchedule;
use rand::Rng;

use crate::error::check_range;
use crate::lcm::consistency_timesteps;
use crate::sampler::{Step, clean_and_noise, linear, timestep_at};
use crate::{SampleClipping, Sampler, SamplerError};

/// Settings of [`Tcd`], with diffusers' `TCDScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcdConfig {
    /// M, the steps of the grid the consistency model was distilled on:
    /// k·⌊T/M⌋ − 1 for k = 1, …, M (diffusers' `original_inference_steps`).
    pub original_inference_steps: usize,
    /// γ ∈ [0, 1], the stochasticity of every step: 0 is deterministic, 1 noises afresh from
    /// t = 0 as [`crate::Lcm`] does (the paper's γ, the `eta` of diffusers'
    /// `TCDScheduler.step`, default 0.3).
    pub gamma: f64,
    /// Clipping of x̂_0 (none by default: diffusers' `TCDScheduler.step` has none).
    pub clipping: SampleClipping,
}

impl Default for TcdConfig {
    fn default() -> Self {
        Self {
            original_inference_steps: 50,
            gamma: 0.3,
            clipping: SampleClipping::thresholding_only(None),
        }
    }
}

/// Strategic stochastic sampling of trajectory consistency distillation (Zheng et al. 2024,
/// "Trajectory Consistency Distillation"; diffusers' `TCDScheduler`): multistep sampling of a
/// consistency model that, unlike [`crate::Lcm`], does not throw the trajectory away between
/// steps. At each of N timesteps t, taken evenly from the distillation grid of M as LCM's
/// are, the model's x̂_0 and ε̂ give the point of the trajectory at s = ⌊(1 − γ) t'⌋ below
/// the next timestep t' (t' = 0 after the last), which is then noised forward to t':
///
/// ```text
/// x_s  = √ᾱ_s x̂_0 + √(1 − ᾱ_s) ε̂,
/// x_t' = √(ᾱ_t'/ᾱ_s) x_s + √(1 − ᾱ_t'/ᾱ_s) z,      z ~ N(0, I),
/// ```
///
/// with no noise after the last step (nor at γ = 0), which ends at x_s with s = 0: the sample
/// at t = 0, √ᾱ_0 x̂_0 + √(1 − ᾱ_0) ε̂, as diffusers returns it. γ = 0 is DDIM (η = 0) on the
/// consistency grid; γ = 1 jumps to t = 0 and noises afresh, as LCM does. x̂_0 is the model's
/// own, without the consistency scalings ([`crate::ConsistencyScalings`]; at the grid's
/// timesteps, t ≥ ⌊T/M⌋ − 1, diffusers' c_skip and c_out are within 10⁻⁴ of 0 and 1 for
/// M ≤ 100).
#[derive(Debug, Clone)]
pub struct Tcd {
    config: TcdConfig,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<f64>,
}

impl Tcd {
    /// The sampler over `schedule` in `steps` steps.
    ///
    /// Fails when γ is outside [0, 1], M exceeds the schedule's timesteps, or N is 0 or
    /// exceeds M.
    pub fn new(
        config: TcdConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        check_range("gamma", config.gamma, 0.0..=1.0, "from 0 to 1")?;
        let timesteps = consistency_timesteps(schedule, config.original_inference_steps, steps)?;
        config.clipping.validate()?;
        Ok(Self {
            config,
            alphas_cumprod: schedule.alphas_cumprod().to_vec(),
            timesteps,
        })
    }

    /// s = ⌊(1 − γ) t'⌋, the timestep a step lands on before it is noised to t'. Computed in
    /// `f32`, as diffusers computes it (a Python float times a `long` tensor), so that both
    /// land on the same whole timestep.
    fn landing(&self, next: f64) -> usize {
        ((1.0 - self.config.gamma) as f32 * next as f32).floor() as usize
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Tcd {
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
        let (x0, eps) = clean_and_noise("TCD", output, prediction, sample, alpha, timestep)?;
        let x0 = self.config.clipping.apply(x0);
        let following = self.timesteps.get(index + 1).copied();
        let next = following.unwrap_or(0.0);
        let alpha_s = self.alphas_cumprod[self.landing(next)];
        let landed = linear(&x0, alpha_s.sqrt(), &eps, (1.0 - alpha_s).sqrt());
        let sample = if following.is_some() && self.config.gamma > 0.0 {
            let kept = self.alphas_cumprod[next as usize] / alpha_s;
            let noise = standard_normal::<B, D>(landed.dims(), rng, &landed.device());
            linear(&landed, kept.sqrt(), &noise, (1.0 - kept).sqrt())
        } else {
            landed
        };
        Ok(Step {
            sample,
            denoised: x0,
        })
    }
}
