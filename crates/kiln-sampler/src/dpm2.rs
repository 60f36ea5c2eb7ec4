use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::brownian::{BrownianNoise, NoisePath};
use crate::midpoint_calls::MidpointCalls;
use crate::sampler::{Step, linear};
use crate::sigma_grid::{SigmaGrid, SigmaSpacing, ancestral_split};
use crate::{SampleClipping, Sampler, SamplerError};

/// Settings of [`Dpm2`], with diffusers' `KDPM2DiscreteScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dpm2Config {
    /// Step down to σ_down and add fresh noise of σ_up at every step but the last (diffusers'
    /// `KDPM2AncestralDiscreteScheduler`, k-diffusion's `sample_dpm_2_ancestral`).
    pub ancestral: bool,
    /// The noise levels: σ at the grid's timesteps, or spaced between its first and last σ
    /// (diffusers' `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas`). Karras
    /// σ are called at whole timesteps, rounded, as diffusers rounds them for this sampler.
    pub sigma_spacing: SigmaSpacing,
    /// Clamping or dynamic thresholding of x̂_0 (off by default: Kiln's own, diffusers'
    /// scheduler has none). Kept in range, x̂_0 turns the slope (x − x̂_0)/σ towards data in
    /// range.
    pub clipping: SampleClipping,
    /// The inference timesteps (`linspace` by default).
    pub grid: TimestepGrid,
    /// Where the ancestral variant's noise comes from: drawn step by step (the default, as
    /// diffusers) or read off one Brownian tree per trajectory, as k-diffusion's
    /// `sample_dpm_2_ancestral` does when given a `BrownianTreeNoiseSampler`, so that one seed
    /// keeps one noise path across step counts. The deterministic variant refuses a tree.
    pub noise_path: NoisePath,
}

impl Default for Dpm2Config {
    fn default() -> Self {
        Self {
            ancestral: false,
            sigma_spacing: SigmaSpacing::Timesteps,
            clipping: SampleClipping::default(),
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::AtLastStep),
            noise_path: NoisePath::Sequential,
        }
    }
}

/// DPM-Solver-2 in σ-space (Lu et al. 2022, "DPM-Solver", Algorithm 1 with r = ½; as
/// k-diffusion's `sample_dpm_2` and diffusers' `KDPM2DiscreteScheduler` take it): a midpoint
/// method on the probability-flow ODE dx/dσ = (x − x̂_0(x, σ))/σ whose midpoint is the
/// geometric mean of the step's two noise levels, the middle of the step in log σ. Each step
/// from σ_i to σ_{i+1} > 0 takes two model calls:
///
/// ```text
/// σ_m = √(σ_i σ_{i+1}),      x_m = x_i + (σ_m − σ_i) (x_i − x̂_0(x_i, σ_i))/σ_i        (Euler)
/// x_{i+1} = x_i + (σ_{i+1} − σ_i) (x_m − x̂_0(x_m, σ_m))/σ_m
/// ```
///
/// and the last step, to σ = 0, is a plain Euler step to x̂_0: 2N − 1 model calls for N steps,
/// at t_0, t(σ_m,0), t_1, t(σ_m,1), …, t_{N−1}, where t(σ) is the schedule's timestep of σ
/// ([`NoiseSchedule::sigma_to_timestep`]). Unlike [`crate::Heun`], which averages the slopes
/// at both ends, it takes the slope at the midpoint alone, so the second call is made at a
/// noise level between the grid's.
///
/// The ancestral variant splits each step's σ_{i+1} into σ_down and σ_up
/// (σ_down² + σ_up² = σ_{i+1}², as [`crate::Euler`]'s ancestral variant): its midpoint is
/// √(σ_i σ_down), its second call takes the step to σ_down, and it then adds σ_up z with fresh
/// noise z ~ N(0, I). As σ_down = σ_{i+1}²/σ_i, that midpoint is σ_{i+1} itself: the second
/// call is made at the next grid point's noise level, on the Euler estimate x_m. The last step
/// is the same Euler step to x̂_0 in both.
///
/// Calls must come in order; one at index 0 starts a new trajectory.
#[derive(Debug, Clone)]
pub struct Dpm2<B: Backend, const D: usize> {
    /// The grid, each step's midpoint √(σ_i σ_down) and the calls.
    calls: MidpointCalls,
    /// (σ_down, σ_up) of each step: (σ_{i+1}, 0) unless ancestral.
    targets: Vec<(f64, f64)>,
    clipping: SampleClipping,
    /// After a predictor call: the sample its step started from.
    pending: Option<Tensor<B, D>>,
    /// The ancestral variant's noise: w(σ_i → σ_{i+1}) of step i.
    noise: BrownianNoise,
}

impl<B: Backend, const D: usize> Dpm2<B, D> {
    /// DPM-Solver-2 over `schedule` in `steps` steps (2·`steps` − 1 model calls).
    pub fn new(
        config: Dpm2Config,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        config.clipping.validate()?;
        let mut grid = SigmaGrid::new(config.grid, config.sigma_spacing, schedule, steps)?;
        if config.sigma_spacing == SigmaSpacing::Karras {
            for timestep in &mut grid.timesteps {
                *timestep = timestep.round_ties_even();
            }
        }
        let targets: Vec<(f64, f64)> = grid
            .sigmas
            .windows(2)
            .map(|pair| match config.ancestral {
                true => ancestral_split(pair[0], pair[1]),
                false => (pair[1], 0.0),
            })
            .collect();
        let midpoints: Vec<f64> = grid
            .sigmas
            .iter()
            .zip(&targets)
            .map(|(sigma, (down, _))| (sigma * down).sqrt())
            .collect();
        if config.noise_path != NoisePath::Sequential && !config.ancestral {
            return Err(SamplerError::Incompatible {
                sampler: "DPM-Solver-2",
                reason: "deterministic DPM-Solver-2 adds no noise; a noise path needs the \
                         ancestral variant",
            });
        }
        let noise = BrownianNoise::new("DPM-Solver-2", config.noise_path, &grid.sigmas, schedule)?;
        Ok(Self {
            calls: MidpointCalls::new("DPM-Solver-2", grid, midpoints, schedule),
            targets,
            clipping: config.clipping,
            pending: None,
            noise,
        })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Dpm2<B, D> {
    fn timesteps(&self) -> &[f64] {
        self.calls.timesteps()
    }

    /// A trajectory starts at a predictor call: an even index.
    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        self.calls.restart(index)?;
        self.pending = None;
        self.noise.restart();
        Ok(())
    }

    fn init_noise_sigma(&self) -> f64 {
        self.calls.grid.init_noise_sigma()
    }

    fn model_input_scale(&self, index: usize) -> f64 {
        self.calls.model_input_scale(index)
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let (sigma, x0) = self
            .calls
            .take(index, output, prediction, &sample, self.clipping)?;
        if index == 0 {
            self.pending = None;
            self.noise.restart();
        }
        // Step k starts at this call (predictor) or at the one before it (corrector).
        let k = index / 2;
        let slope = (sample.clone() - x0.clone()).div_scalar(sigma);
        let next = match self.pending.take() {
            None => {
                let midpoint = self.calls.midpoints[k];
                let next = linear(&sample, 1.0, &slope, midpoint - sigma);
                if midpoint > 0.0 {
                    self.pending = Some(sample);
                }
                next
            }
            Some(start) => {
                let (down, up) = self.targets[k];
                let next = linear(&start, 1.0, &slope, down - self.calls.grid.sigmas[k]);
                if up > 0.0 {
                    let sigmas = (self.calls.grid.sigmas[k], self.calls.grid.sigmas[k + 1]);
                    let (shape, device) = (next.dims(), next.device());
                    let noise = self.noise.increment(sigmas, shape, &device, rng);
                    next + noise.mul_scalar(up)
                } else {
                    next
                }
            }
        };
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
