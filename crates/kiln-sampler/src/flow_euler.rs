use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::standard_normal;
use kiln_schedule::{FlowGrid, FlowSchedule};
use rand::Rng;

use crate::SamplerError;
use crate::flow::FlowSampler;
use crate::sampler::{Step, check_output_shape, linear, timestep_at};

/// Settings of [`FlowEuler`], with diffusers' `FlowMatchEulerDiscreteScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowEulerConfig {
    /// Renoise each step from x̂_0 with fresh noise instead of following the velocity
    /// (diffusers' `stochastic_sampling`).
    pub stochastic: bool,
}

/// Euler's method on rectified flow's ODE dx/dσ = u(x, σ) (diffusers'
/// `FlowMatchEulerDiscreteScheduler`; SD3, Flux), one model call a step from σ_i to σ_{i+1}:
///
/// ```text
/// x_{i+1} = x_i + (σ_{i+1} − σ_i) u(x_i, σ_i)
/// ```
///
/// — the same update as deterministic DDIM, written for the straight path: with
/// x̂_0 = x_i − σ_i u and ε̂ = x_i + (1 − σ_i) u it is x_{i+1} = (1 − σ_{i+1}) x̂_0 + σ_{i+1} ε̂.
/// Stochastic sampling draws a fresh ε instead: x_{i+1} = (1 − σ_{i+1}) x̂_0 + σ_{i+1} z (the
/// last step, to σ = 0, returns x̂_0 and draws nothing, where diffusers draws and discards).
///
/// Steps may be taken from any index: the sampler keeps no history.
#[derive(Debug, Clone)]
pub struct FlowEuler {
    grid: FlowGrid,
    stochastic: bool,
}

impl FlowEuler {
    /// Euler over `schedule`'s grid of `steps` steps.
    pub fn new(
        config: FlowEulerConfig,
        schedule: &FlowSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        Ok(Self {
            grid: schedule.grid(steps)?,
            stochastic: config.stochastic,
        })
    }

    /// σ of each step's start and, last, the final σ = 0.
    pub fn sigmas(&self) -> &[f64] {
        self.grid.sigmas()
    }
}

impl<B: Backend, const D: usize> FlowSampler<B, D> for FlowEuler {
    fn timesteps(&self) -> &[f64] {
        self.grid.timesteps()
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        velocity: Tensor<B, D>,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        timestep_at(self.grid.timesteps(), index)?;
        check_output_shape(&velocity, &sample)?;
        let (sigma, next) = (self.grid.sigmas()[index], self.grid.sigmas()[index + 1]);
        let denoised = linear(&sample, 1.0, &velocity, -sigma);
        let sample = if !self.stochastic {
            linear(&sample, 1.0, &velocity, next - sigma)
        } else if next > 0.0 {
            let noise = standard_normal::<B, D>(sample.dims(), rng, &sample.device());
            linear(&denoised, 1.0 - next, &noise, next)
        } else {
            denoised.clone()
        };
        Ok(Step { sample, denoised })
    }
}
