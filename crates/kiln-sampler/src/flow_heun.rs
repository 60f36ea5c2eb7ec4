use burn::tensor::{Tensor, backend::Backend};
use kiln_schedule::{FlowGrid, FlowSchedule};
use rand::Rng;

use crate::SamplerError;
use crate::flow::FlowSampler;
use crate::sampler::{
    CallOrder, Step, check_output_shape, check_two_call_start, linear, timestep_at,
};

/// Heun's second-order method on rectified flow's ODE dx/dσ = u(x, σ) (diffusers'
/// `FlowMatchHeunDiscreteScheduler` without churn). Each step from σ_i to σ_{i+1} > 0 takes
/// two model calls:
///
/// ```text
/// x̃ = x_i + (σ_{i+1} − σ_i) u(x_i, σ_i)                                  (Euler)
/// x_{i+1} = x_i + (σ_{i+1} − σ_i) (u(x_i, σ_i) + u(x̃, σ_{i+1}))/2          (trapezoid)
/// ```
///
/// and the last step, to σ = 0, is a plain Euler step: 2N − 1 model calls for N steps, the
/// interior timesteps called twice, as diffusers lays them. It takes any [`FlowSchedule`]
/// (diffusers' Heun only a static shift, the grids it is checked against). diffusers' churn is
/// not taken: it adds noise as σ-space samplers do (x + √(σ̂² − σ²) z), which leaves
/// rectified flow's path.
///
/// Calls must come in order; one at index 0 starts a new trajectory.
#[derive(Debug, Clone)]
pub struct FlowHeun<B: Backend, const D: usize> {
    grid: FlowGrid,
    /// The timestep of each model call: call i is at grid point ⌈i/2⌉.
    call_timesteps: Vec<f64>,
    /// After a predictor call: the sample it started from and its velocity.
    pending: Option<(Tensor<B, D>, Tensor<B, D>)>,
    calls: CallOrder,
}

impl<B: Backend, const D: usize> FlowHeun<B, D> {
    /// Heun over `schedule`'s grid of `steps` steps (2·`steps` − 1 model calls).
    pub fn new(schedule: &FlowSchedule, steps: usize) -> Result<Self, SamplerError> {
        let grid = schedule.grid(steps)?;
        // Call 0 is step 0's predictor; then each grid point k ≥ 1 ends step k − 1
        // (corrector) and starts step k (predictor).
        let call_timesteps = (0..2 * steps - 1)
            .map(|call| grid.timesteps()[call.div_ceil(2)])
            .collect();
        Ok(Self {
            grid,
            call_timesteps,
            pending: None,
            calls: CallOrder::default(),
        })
    }

    /// σ of each step's start and, last, the final σ = 0.
    pub fn sigmas(&self) -> &[f64] {
        self.grid.sigmas()
    }
}

impl<B: Backend, const D: usize> FlowSampler<B, D> for FlowHeun<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.call_timesteps
    }

    /// A trajectory starts at a predictor call: an even index.
    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        check_two_call_start("FlowHeun", &self.call_timesteps, index)?;
        self.pending = None;
        self.calls.restart_at(index);
        Ok(())
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        velocity: Tensor<B, D>,
        sample: Tensor<B, D>,
        _rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        timestep_at(&self.call_timesteps, index)?;
        check_output_shape(&velocity, &sample)?;
        if index == 0 {
            FlowSampler::<B, D>::restart(self, 0)?;
        }
        self.calls.advance("FlowHeun", index)?;
        // Grid point k is where this call's step starts (predictor) or ends (corrector).
        let k = index.div_ceil(2);
        let sigmas = self.grid.sigmas();
        let sigma = sigmas[k];
        let denoised = linear(&sample, 1.0, &velocity, -sigma);
        let sample = match self.pending.take() {
            None => {
                let next = sigmas[k + 1];
                let predicted = linear(&sample, 1.0, &velocity, next - sigma);
                // The last step, to σ = 0, has no corrector.
                if k + 2 < sigmas.len() {
                    self.pending = Some((sample, velocity));
                }
                predicted
            }
            Some((start, first)) => {
                let dt = sigma - sigmas[k - 1];
                linear(&start, 1.0, &(first + velocity), 0.5 * dt)
            }
        };
        Ok(Step { sample, denoised })
    }
}
