use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::sampler::{Step, linear, timestep_at};
use crate::sigma_grid::{SigmaGrid, denoised, vp_scale};
use crate::{Sampler, SamplerError};

/// Settings of [`Heun`], with diffusers' `HeunDiscreteScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeunConfig {
    /// Karras et al.'s ρ = 7 spacing between the grid's first and last σ.
    pub use_karras_sigmas: bool,
    /// The inference timesteps (`linspace` by default).
    pub grid: TimestepGrid,
}

impl Default for HeunConfig {
    fn default() -> Self {
        Self {
            use_karras_sigmas: false,
            grid: TimestepGrid {
                spacing: TimestepSpacing::Linspace,
                steps_offset: 0,
                end: GridEnd::AtLastStep,
            },
        }
    }
}

/// Heun's second-order method on the probability-flow ODE in σ-space (Karras et al. 2022,
/// Algorithm 1 without churn). Each step from σ_i to σ_{i+1} > 0 takes two model calls:
///
/// ```text
/// d_i = (x_i − x̂_0(x_i, σ_i))/σ_i,        x̃ = x_i + (σ_{i+1} − σ_i) d_i            (Euler)
/// d' = (x̃ − x̂_0(x̃, σ_{i+1}))/σ_{i+1},     x_{i+1} = x_i + (σ_{i+1} − σ_i)(d_i + d')/2
/// ```
///
/// and the last step, to σ = 0, is a plain Euler step: 2N − 1 model calls for N steps. The
/// model-call timesteps repeat each interior timestep, as diffusers' do.
#[derive(Debug, Clone)]
pub struct Heun<B: Backend, const D: usize> {
    grid: SigmaGrid,
    /// The timestep and σ of each model call.
    call_timesteps: Vec<f64>,
    call_sigmas: Vec<f64>,
    /// After a predictor call: the sample it started from and its slope d_i.
    pending: Option<(Tensor<B, D>, Tensor<B, D>)>,
}

impl<B: Backend, const D: usize> Heun<B, D> {
    /// Heun over `schedule` in `steps` steps (2·`steps` − 1 model calls).
    pub fn new(
        config: HeunConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let grid = SigmaGrid::new(config.grid, config.use_karras_sigmas, schedule, steps)?;
        let call = |k: usize| (grid.timesteps[k], grid.sigmas[k]);
        let calls: Vec<(f64, f64)> = std::iter::once(call(0))
            .chain((1..steps).flat_map(|k| [call(k), call(k)]))
            .collect();
        Ok(Self {
            call_timesteps: calls.iter().map(|c| c.0).collect(),
            call_sigmas: calls.iter().map(|c| c.1).collect(),
            grid,
            pending: None,
        })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Heun<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.call_timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.grid.init_noise_sigma()
    }

    fn model_input_scale(&self, index: usize) -> f64 {
        vp_scale(self.call_sigmas[index.min(self.call_sigmas.len() - 1)])
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        _rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.call_timesteps, index)?;
        let sigma = self.call_sigmas[index];
        let x0 = denoised("Heun", output, prediction, &sample, sigma, timestep)?;
        let corrector = index % 2 == 1;
        if corrector != self.pending.is_some() {
            return Err(SamplerError::OutOfOrder {
                sampler: "Heun",
                index,
                expected: if corrector { index - 1 } else { index + 1 },
            });
        }
        // Grid point k is where this call's step starts (predictor) or ends (corrector).
        let k = index.div_ceil(2);
        let next = match self.pending.take() {
            None => {
                let sigma_next = self.grid.sigmas[k + 1];
                let slope = (sample.clone() - x0.clone()).div_scalar(sigma);
                let next = sample.clone() + slope.clone().mul_scalar(sigma_next - sigma);
                if sigma_next > 0.0 {
                    self.pending = Some((sample, slope));
                }
                next
            }
            Some((start, first_slope)) => {
                let sigma_start = self.grid.sigmas[k - 1];
                let slope = (sample - x0.clone()).div_scalar(sigma);
                let dt = sigma - sigma_start;
                linear(&start, 1.0, &(first_slope + slope), 0.5 * dt)
            }
        };
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
