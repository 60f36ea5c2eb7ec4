use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing, karras_sigmas};
use rand::Rng;

use crate::sampler::{Step, clean_and_noise, linear, timestep_at};
use crate::{Sampler, SamplerError};

/// Settings of [`Euler`], with diffusers' `EulerDiscreteScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EulerConfig {
    /// Add fresh noise at every step (diffusers' `EulerAncestralDiscreteScheduler`,
    /// k-diffusion's `sample_euler_ancestral`).
    pub ancestral: bool,
    /// Replace the grid's σ by Karras et al.'s ρ = 7 spacing between its first and last σ.
    pub use_karras_sigmas: bool,
    /// The inference timesteps (`linspace` by default; fractional timesteps are interpolated).
    pub grid: TimestepGrid,
}

impl Default for EulerConfig {
    fn default() -> Self {
        Self {
            ancestral: false,
            use_karras_sigmas: false,
            grid: TimestepGrid {
                spacing: TimestepSpacing::Linspace,
                steps_offset: 0,
                end: GridEnd::AtLastStep,
            },
        }
    }
}

/// Euler's method on the probability-flow ODE in σ-space (Karras et al. 2022, Algorithm 1
/// without churn; k-diffusion's `sample_euler`). The state is x = x_0 + σ ε (the VP sample
/// times √(σ² + 1)); with x̂_0 the model's estimate,
///
/// ```text
/// x ← x + (x − x̂_0)/σ_i · (σ_{i+1} − σ_i),        σ_N = 0.
/// ```
///
/// The ancestral variant steps down to σ_down and adds noise of σ_up, where
/// σ_up = √(σ_{i+1}² (σ_i² − σ_{i+1}²)/σ_i²) and σ_down = √(σ_{i+1}² − σ_up²).
#[derive(Debug, Clone)]
pub struct Euler {
    config: EulerConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final 0.
    sigmas: Vec<f64>,
}

impl Euler {
    /// Euler over `schedule` in `steps` steps.
    pub fn new(
        config: EulerConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let grid = config.grid.timesteps(schedule.num_timesteps(), steps)?;
        let mut sigmas: Vec<f64> = grid.iter().map(|&t| schedule.sigma_at(t)).collect();
        let sigma_max = sigmas[0];
        if !sigma_max.is_finite() {
            return Err(SamplerError::OutOfRange {
                name: "sigma_max",
                value: sigma_max,
                expected: "a finite σ; Euler cannot start from a zero-terminal-SNR timestep",
            });
        }
        let timesteps = if config.use_karras_sigmas {
            sigmas = karras_sigmas(sigmas[steps - 1], sigma_max, steps, 7.0)?;
            sigmas
                .iter()
                .map(|&sigma| schedule.sigma_to_timestep(sigma))
                .collect()
        } else {
            grid
        };
        sigmas.push(0.0);
        Ok(Self {
            config,
            timesteps,
            sigmas,
        })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// σ_max for `linspace` and `trailing` grids, √(σ_max² + 1) for `leading`, as diffusers.
    fn init_noise_sigma(&self) -> f64 {
        let sigma_max = self.sigmas[0];
        match self.config.grid.spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => sigma_max,
            TimestepSpacing::Leading => (sigma_max * sigma_max + 1.0).sqrt(),
        }
    }

    /// 1/√(σ² + 1): from x_0 + σ ε to the VP sample the model was trained on.
    fn model_input_scale(&self, index: usize) -> f64 {
        let sigma = self.sigmas[index.min(self.sigmas.len() - 1)];
        1.0 / (sigma * sigma + 1.0).sqrt()
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
        let (sigma, sigma_next) = (self.sigmas[index], self.sigmas[index + 1]);
        let scale = <Self as Sampler<B, D>>::model_input_scale(self, index);
        let alpha_cumprod = scale * scale;
        let vp_sample = sample.clone().mul_scalar(scale);
        let (x0, _) = clean_and_noise(
            "Euler",
            output,
            prediction,
            vp_sample,
            alpha_cumprod,
            timestep,
        )?;
        let (target, sigma_up) = if self.config.ancestral {
            let up = (sigma_next.powi(2) * (sigma.powi(2) - sigma_next.powi(2)) / sigma.powi(2))
                .max(0.0)
                .sqrt();
            ((sigma_next.powi(2) - up * up).max(0.0).sqrt(), up)
        } else {
            (sigma_next, 0.0)
        };
        // x + (x − x̂_0)/σ · (σ' − σ) = (σ'/σ) x + (1 − σ'/σ) x̂_0
        let ratio = target / sigma;
        let mut next = linear(&sample, ratio, &x0, 1.0 - ratio);
        if sigma_up > 0.0 {
            let noise = standard_normal::<B, D>(x0.dims(), rng, &x0.device());
            next = next + noise.mul_scalar(sigma_up);
        }
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
