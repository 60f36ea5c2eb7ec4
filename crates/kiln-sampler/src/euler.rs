use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::sampler::{Step, linear, timestep_at};
use crate::sigma_grid::{SigmaGrid, ancestral_split, denoised};
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
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::AtLastStep),
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
/// σ_up = √(σ_{i+1}² (σ_i² − σ_{i+1}²)/σ_i²) and σ_down = √(σ_{i+1}² − σ_up²)
/// (k-diffusion's `get_ancestral_step`), computed as σ_{i+1}²/σ_i, which does not cancel.
#[derive(Debug, Clone)]
pub struct Euler {
    config: EulerConfig,
    grid: SigmaGrid,
}

impl Euler {
    /// Euler over `schedule` in `steps` steps.
    pub fn new(
        config: EulerConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let grid = SigmaGrid::new(config.grid, config.use_karras_sigmas, schedule, steps)?;
        Ok(Self { config, grid })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.grid.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.grid.init_noise_sigma()
    }

    fn model_input_scale(&self, index: usize) -> f64 {
        self.grid.model_input_scale(index)
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.grid.timesteps, index)?;
        let (sigma, sigma_next) = (self.grid.sigmas[index], self.grid.sigmas[index + 1]);
        let x0 = denoised("Euler", output, prediction, &sample, sigma, timestep)?;
        let (target, sigma_up) = if self.config.ancestral {
            ancestral_split(sigma, sigma_next)
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
