use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::brownian::{BrownianNoise, NoisePath};
use crate::midpoint_calls::MidpointCalls;
use crate::sampler::{Step, linear};
use crate::sigma_grid::{SigmaGrid, SigmaSpacing, ancestral_split, euler_step};
use crate::{SampleClipping, Sampler, SamplerError};

/// Settings of [`DpmSolverSde`], with diffusers' `DPMSolverSDEScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmSolverSdeConfig {
    /// The noise levels: σ at the grid's timesteps, or spaced between its first and last σ
    /// (diffusers' `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas`).
    pub sigma_spacing: SigmaSpacing,
    /// Clamping or dynamic thresholding of x̂_0 (off by default: Kiln's own, diffusers'
    /// scheduler has none). Kept in range, x̂_0 turns the slope (x − x̂_0)/σ towards data in
    /// range.
    pub clipping: SampleClipping,
    /// The inference timesteps (`linspace` by default).
    pub grid: TimestepGrid,
    /// Where the Brownian increments come from: drawn step by step (the default), or read off
    /// one Brownian tree per trajectory, as diffusers' scheduler and k-diffusion do, so that
    /// one seed keeps one noise path across step counts.
    pub noise_path: NoisePath,
}

impl Default for DpmSolverSdeConfig {
    fn default() -> Self {
        Self {
            sigma_spacing: SigmaSpacing::Timesteps,
            clipping: SampleClipping::default(),
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::AtLastStep),
            noise_path: NoisePath::Sequential,
        }
    }
}

/// DPM-Solver++ SDE: the second-order singlestep solver DPM-Solver++(2S) (Lu et al. 2022b,
/// "DPM-Solver++", Algorithm 1 with r = ½) with the noise of the reverse SDE added at both of
/// its stages, as k-diffusion's `sample_dpmpp_sde` (η = 1) and diffusers'
/// `DPMSolverSDEScheduler` take it. In σ-space (x = x_0 + σ ε, λ = −log σ), a step from σ_i to
/// σ_{i+1} > 0 goes through the middle of the step in λ, σ_s = √(σ_i σ_{i+1}):
///
/// ```text
/// x_s     = (σ_d/σ_i) x_i + (1 − σ_d/σ_i) x̂_0(x_i, σ_i)   + σ_u  w(σ_i → σ_s)
/// x_{i+1} = (σ_d'/σ_i) x_i + (1 − σ_d'/σ_i) x̂_0(x_s, σ_s) + σ_u' w(σ_i → σ_{i+1})
/// ```
///
/// where (σ_d, σ_u) and (σ_d', σ_u') are the ancestral splits of σ_i → σ_s and σ_i → σ_{i+1}
/// (σ_d² + σ_u² = σ_s², σ_d = σ_s²/σ_i = σ_{i+1}; see [`crate::Euler`]), and
/// w(σ → σ') = (W(σ') − W(σ))/√(σ − σ') are normalised increments of one Brownian motion W in σ:
/// the whole step's noise holds its first stage's, with correlation √((σ_i − σ_s)/(σ_i − σ_{i+1})).
/// The deterministic part of each stage is DPM-Solver++'s first-order update in λ
/// (x̂_0 weighted by 1 − e^{−h}), which in σ-space is also Euler's step. The last step, to
/// σ = 0, is the Euler step to x̂_0: 2N − 1 model calls for N steps, at t_0, t(σ_s,0), t_1, …,
/// t_{N−1} (t(σ) by log-σ interpolation, as diffusers).
///
/// With z_1 = w(σ_i → σ_s) and z_2 = w(σ_s → σ_{i+1}), the whole step's increment is
/// w(σ_i → σ_{i+1}) = (√(σ_i − σ_s) z_1 + √(σ_s − σ_{i+1}) z_2)/√(σ_i − σ_{i+1}). By default
/// ([`NoisePath::Sequential`]) each step draws z_1 and z_2 ~ N(0, I) from the caller's RNG:
/// the joint law of a Brownian motion's increments, but one seed does not give one path
/// across step counts. k-diffusion and diffusers read them off a Brownian tree seeded once
/// per run (torchsde's), so that runs of different step counts from one seed share their
/// noise path; [`NoisePath::BrownianTree`] does that with Kiln's own tree.
///
/// Calls must come in order; one at index 0 starts a new trajectory.
#[derive(Debug, Clone)]
pub struct DpmSolverSde<B: Backend, const D: usize> {
    /// The grid, each step's midpoint σ_s and the calls.
    calls: MidpointCalls,
    clipping: SampleClipping,
    /// Between a step's two calls: its start sample and first-stage noise z_1.
    pending: Option<FirstStage<B, D>>,
    /// The trajectory's Brownian increments.
    noise: BrownianNoise,
}

/// What the second stage of a step needs from its first.
#[derive(Debug, Clone)]
struct FirstStage<B: Backend, const D: usize> {
    start: Tensor<B, D>,
    noise: Tensor<B, D>,
}

impl<B: Backend, const D: usize> DpmSolverSde<B, D> {
    /// DPM-Solver++ SDE over `schedule` in `steps` steps (2·`steps` − 1 model calls).
    pub fn new(
        config: DpmSolverSdeConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        config.clipping.validate()?;
        let grid = SigmaGrid::new(config.grid, config.sigma_spacing, schedule, steps)?;
        let midpoints: Vec<f64> = grid
            .sigmas
            .windows(2)
            .map(|pair| (pair[0] * pair[1]).sqrt())
            .collect();
        let noise = BrownianNoise::new(
            "DPM-Solver++ SDE",
            config.noise_path,
            &grid.sigmas,
            schedule,
        )?;
        Ok(Self {
            calls: MidpointCalls::new("DPM-Solver++ SDE", grid, midpoints, schedule),
            clipping: config.clipping,
            pending: None,
            noise,
        })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for DpmSolverSde<B, D> {
    fn timesteps(&self) -> &[f64] {
        self.calls.timesteps()
    }

    /// A trajectory starts at a grid point's call: an even index.
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
        let (_, x0) = self
            .calls
            .take(index, output, prediction, &sample, self.clipping)?;
        if index == 0 {
            self.pending = None;
            self.noise.restart();
        }
        // Step k starts at this call (first stage) or at the one before it (second stage).
        let k = index / 2;
        let grid = &self.calls.grid.sigmas;
        let (sigma, midpoint, sigma_next) = (grid[k], self.calls.midpoints[k], grid[k + 1]);
        let next = match self.pending.take() {
            None if sigma_next == 0.0 => x0.clone(),
            None => {
                let noise =
                    self.noise
                        .increment((sigma, midpoint), sample.dims(), &sample.device(), rng);
                let split = ancestral_split(sigma, midpoint);
                let next = euler_step(&sample, &x0, sigma, split, || noise.clone());
                self.pending = Some(FirstStage {
                    start: sample,
                    noise,
                });
                next
            }
            Some(first) => {
                let split = ancestral_split(sigma, sigma_next);
                euler_step(&first.start, &x0, sigma, split, || {
                    let second = self.noise.increment(
                        (midpoint, sigma_next),
                        sample.dims(),
                        &sample.device(),
                        rng,
                    );
                    // W(σ') − W(σ) = (W(σ_s) − W(σ)) + (W(σ') − W(σ_s)), normalised by √(σ − σ').
                    let span = (sigma - sigma_next).sqrt();
                    linear(
                        &first.noise,
                        (sigma - midpoint).sqrt() / span,
                        &second,
                        (midpoint - sigma_next).sqrt() / span,
                    )
                })
            }
        };
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
