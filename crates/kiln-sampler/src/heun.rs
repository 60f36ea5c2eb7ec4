use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::error::check_range;
use crate::sampler::{CallOrder, Step, check_two_call_start, linear, timestep_at};
use crate::sigma_grid::{SigmaGrid, SigmaSpacing, denoised, timestep_of, vp_scale};
use crate::{SampleClipping, Sampler, SamplerError};

/// The stochastic "churn" of Karras et al. 2022, Algorithm 2: before step i, noise raises σ_i
/// to σ̂_i = (1 + γ_i) σ_i with γ_i = min(S_churn/N, √2 − 1) where σ_i ∈ [S_tmin, S_tmax], and
/// 0 elsewhere. The paper's ImageNet settings are S_churn = 40–80, S_tmin = 0.05, S_tmax = 50,
/// S_noise = 1.003.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    /// S_churn: the total amount of churn over the N steps.
    pub s_churn: f64,
    /// S_tmin: the smallest σ that is churned.
    pub s_tmin: f64,
    /// S_tmax: the largest σ that is churned.
    pub s_tmax: f64,
    /// S_noise: the standard deviation of the added noise relative to N(0, I).
    pub s_noise: f64,
}

/// Settings of [`Heun`], with diffusers' `HeunDiscreteScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeunConfig {
    /// The noise levels: σ at the grid's timesteps, or spaced between its first and last σ
    /// (diffusers' `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas`).
    pub sigma_spacing: SigmaSpacing,
    /// Stochastic churn (EDM's stochastic sampler); `None` is the deterministic Algorithm 1.
    pub churn: Option<Churn>,
    /// Clipping of x̂_0 (diffusers' `clip_sample`, off by default).
    pub clipping: SampleClipping,
    /// The inference timesteps (`linspace` by default).
    pub grid: TimestepGrid,
}

impl Default for HeunConfig {
    fn default() -> Self {
        Self {
            sigma_spacing: SigmaSpacing::Timesteps,
            churn: None,
            clipping: SampleClipping::thresholding_only(None),
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::AtLastStep),
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
///
/// With [`Churn`] this is EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): each step
/// starts from x̂_i = x_i + S_noise √(σ̂_i² − σ_i²) z at σ̂_i instead of x_i at σ_i. The churn
/// noise for step i + 1 is added at the end of step i (so [`Step::sample`] is the churned
/// x̂_{i+1}), and the first step's is folded into the initial noise level.
///
/// Calls must come in order; one at index 0 starts a new trajectory.
#[derive(Debug, Clone)]
pub struct Heun<B: Backend, const D: usize> {
    grid: SigmaGrid,
    clipping: SampleClipping,
    /// σ̂_i, the churned σ each step starts from (σ_i without churn).
    start_sigmas: Vec<f64>,
    s_noise: f64,
    /// The timestep and σ of each model call.
    call_timesteps: Vec<f64>,
    call_sigmas: Vec<f64>,
    /// After a predictor call: the sample it started from and its slope d_i.
    pending: Option<(Tensor<B, D>, Tensor<B, D>)>,
    calls: CallOrder,
}

impl<B: Backend, const D: usize> Heun<B, D> {
    /// Heun over `schedule` in `steps` steps (2·`steps` − 1 model calls).
    pub fn new(
        config: HeunConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        config.clipping.validate()?;
        let grid = SigmaGrid::new(config.grid, config.sigma_spacing, schedule, steps)?;
        let gamma = |sigma: f64| match config.churn {
            Some(c) if (c.s_tmin..=c.s_tmax).contains(&sigma) => {
                (c.s_churn / steps as f64).min(std::f64::consts::SQRT_2 - 1.0)
            }
            _ => 0.0,
        };
        if let Some(churn) = config.churn {
            check_range("s_churn", churn.s_churn, 0.0..=f64::MAX, "S_churn >= 0")?;
            check_range("s_noise", churn.s_noise, 0.0..=f64::MAX, "S_noise >= 0")?;
        }
        let start_sigmas: Vec<f64> = grid.sigmas[..steps]
            .iter()
            .map(|&sigma| sigma * (1.0 + gamma(sigma)))
            .collect();
        // The predictor of step k runs at σ̂_k, the corrector at σ_{k+1}.
        let start = |k: usize| {
            let churned = start_sigmas[k] != grid.sigmas[k];
            let timestep = if churned {
                timestep_of(schedule, start_sigmas[k])
            } else {
                grid.timesteps[k]
            };
            (timestep, start_sigmas[k])
        };
        let end = |k: usize| (grid.timesteps[k], grid.sigmas[k]);
        let calls: Vec<(f64, f64)> = std::iter::once(start(0))
            .chain((1..steps).flat_map(|k| [end(k), start(k)]))
            .collect();
        Ok(Self {
            call_timesteps: calls.iter().map(|c| c.0).collect(),
            call_sigmas: calls.iter().map(|c| c.1).collect(),
            s_noise: config.churn.map_or(1.0, |c| c.s_noise),
            start_sigmas,
            grid,
            clipping: config.clipping,
            pending: None,
            calls: CallOrder::default(),
        })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Heun<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.call_timesteps
    }

    /// A trajectory starts at a predictor call: an even index.
    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        check_two_call_start("Heun", &self.call_timesteps, index)?;
        self.pending = None;
        self.calls.restart_at(index);
        Ok(())
    }

    /// diffusers' initial noise level, raised by the first step's churn.
    fn init_noise_sigma(&self) -> f64 {
        let churn = self.start_sigmas[0].powi(2) - self.grid.sigmas[0].powi(2);
        (self.grid.init_noise_sigma().powi(2) + self.s_noise.powi(2) * churn).sqrt()
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
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.call_timesteps, index)?;
        let sigma = self.call_sigmas[index];
        let x0 = denoised(
            "Heun",
            output,
            prediction,
            &sample,
            (sigma, timestep),
            self.clipping,
        )?;
        if index == 0 {
            Sampler::<B, D>::restart(self, 0)?;
        }
        self.calls.advance("Heun", index)?;
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
                let sigma_start = self.start_sigmas[k - 1];
                let slope = (sample - x0.clone()).div_scalar(sigma);
                let dt = sigma - sigma_start;
                let next = linear(&start, 1.0, &(first_slope + slope), 0.5 * dt);
                // Churn for the step that starts here.
                let added = (self.start_sigmas[k].powi(2) - sigma * sigma)
                    .max(0.0)
                    .sqrt();
                if added > 0.0 {
                    let noise = standard_normal::<B, D>(next.dims(), rng, &next.device());
                    next + noise.mul_scalar(self.s_noise * added)
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
