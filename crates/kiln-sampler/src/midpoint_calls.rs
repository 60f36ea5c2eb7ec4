use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::NoiseSchedule;

use crate::sampler::{CallOrder, check_two_call_start, timestep_at};
use crate::sigma_grid::{SigmaGrid, denoised, timestep_of, vp_scale};
use crate::{SampleClipping, SamplerError};

/// The model calls of a σ-space sampler that takes two a step through a midpoint
/// (DPM-Solver-2, DPM-Solver++ SDE): one at each grid point σ_k and one at each step's
/// midpoint σ_m,k but the last's (which steps to σ = 0 in one call), in the order
/// t_0, t(σ_m,0), t_1, t(σ_m,1), …, t_{N−1}, where t(σ) is the schedule's timestep of σ
/// ([`NoiseSchedule::sigma_to_timestep`]): 2N − 1 calls. Calls come in order, and a
/// trajectory starts at a grid point's call (an even index); one at index 0 starts afresh.
#[derive(Debug, Clone)]
pub(crate) struct MidpointCalls {
    /// The sampler's name, for its errors.
    sampler: &'static str,
    /// The grid points.
    pub grid: SigmaGrid,
    /// σ_m of each step, 0 for the last.
    pub midpoints: Vec<f64>,
    /// The timestep and σ of each call.
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    order: CallOrder,
}

impl MidpointCalls {
    /// The calls of `sampler` over `grid` with the steps' `midpoints`.
    pub fn new(
        sampler: &'static str,
        grid: SigmaGrid,
        midpoints: Vec<f64>,
        schedule: &NoiseSchedule,
    ) -> Self {
        let steps = grid.timesteps.len();
        let grid_point = |k: usize| (grid.timesteps[k], grid.sigmas[k]);
        let midpoint = |k: usize| (timestep_of(schedule, midpoints[k]), midpoints[k]);
        let (timesteps, sigmas) = std::iter::once(grid_point(0))
            .chain((1..steps).flat_map(|k| [midpoint(k - 1), grid_point(k)]))
            .unzip();
        Self {
            sampler,
            grid,
            midpoints,
            timesteps,
            sigmas,
            order: CallOrder::default(),
        }
    }

    /// The timestep of each call.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// Makes call `index`, a grid point's, the next one.
    pub fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        check_two_call_start(self.sampler, &self.timesteps, index)?;
        self.order.restart_at(index);
        Ok(())
    }

    /// 1/√(σ² + 1) of call `index` (of the last call past the end).
    pub fn model_input_scale(&self, index: usize) -> f64 {
        vp_scale(self.sigmas[index.min(self.sigmas.len() - 1)])
    }

    /// Takes call `index`, the model's `output` at `sample`: returns its σ and its x̂_0, kept
    /// in range by `clipping`. Call `index` belongs to step ⌊index/2⌋, whose first call it is
    /// when `index` is even.
    pub fn take<B: Backend, const D: usize>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: &Tensor<B, D>,
        clipping: SampleClipping,
    ) -> Result<(f64, Tensor<B, D>), SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)?;
        let sigma = self.sigmas[index];
        let x0 = denoised(
            self.sampler,
            output,
            prediction,
            sample,
            (sigma, timestep),
            clipping,
        )?;
        if index == 0 {
            self.order.restart_at(0);
        }
        self.order.advance(self.sampler, index)?;
        Ok((sigma, x0))
    }
}
