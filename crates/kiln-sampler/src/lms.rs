use std::collections::VecDeque;

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::error::check_range;
use crate::sampler::{Step, timestep_at};
use crate::sigma_grid::{SigmaGrid, SigmaSpacing, denoised};
use crate::{SampleClipping, Sampler, SamplerError};

/// Settings of [`Lms`], with diffusers' `LMSDiscreteScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmsConfig {
    /// The method's order: how many of the latest slopes it interpolates, 1 to 4 (the `order`
    /// of diffusers' `LMSDiscreteScheduler.step`, default 4; 1 is Euler).
    pub order: usize,
    /// The noise levels: σ at the grid's timesteps, or spaced between its first and last σ
    /// (diffusers' `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas`).
    pub sigma_spacing: SigmaSpacing,
    /// Clamping or dynamic thresholding of x̂_0 (off by default: Kiln's own, diffusers'
    /// scheduler has none). Kept in range, x̂_0 turns the slope (x − x̂_0)/σ towards data in
    /// range.
    pub clipping: SampleClipping,
    /// The inference timesteps (`linspace` by default; fractional timesteps are interpolated).
    pub grid: TimestepGrid,
}

impl Default for LmsConfig {
    fn default() -> Self {
        Self {
            order: 4,
            sigma_spacing: SigmaSpacing::Timesteps,
            clipping: SampleClipping::default(),
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::AtLastStep),
        }
    }
}

/// The linear multistep method on the probability-flow ODE in σ-space (k-diffusion's
/// `sample_lms`, diffusers' `LMSDiscreteScheduler`), on the same grid as [`crate::Euler`]. The
/// state is x = x_0 + σ ε; each step's slope is d_i = (x − x̂_0)/σ_i, and the step integrates
/// the Lagrange polynomial through the latest p = min(i + 1, order) slopes over [σ_i, σ_{i+1}]:
///
/// ```text
/// x ← x + Σ_{j<p} c_j d_{i−j},     c_j = ∫_{σ_i}^{σ_{i+1}} Π_{k<p, k≠j} (τ − σ_{i−k})/(σ_{i−j} − σ_{i−k}) dτ.
/// ```
///
/// The integrands are polynomials of degree p − 1 ≤ 3, so four-point Gauss–Legendre
/// quadrature gives each c_j exactly (diffusers calls SciPy's adaptive `quad`).
#[derive(Debug, Clone)]
pub struct Lms<B: Backend, const D: usize> {
    config: LmsConfig,
    grid: SigmaGrid,
    /// The latest slopes, newest first.
    slopes: VecDeque<Tensor<B, D>>,
    /// The step that continues from them; any other starts afresh (a new run, or one that
    /// starts part-way, as image-to-image does).
    next_index: usize,
}

impl<B: Backend, const D: usize> Lms<B, D> {
    /// LMS over `schedule` in `steps` steps.
    ///
    /// Fails when the order is not 1 to 4 or the grid cannot be laid out.
    pub fn new(
        config: LmsConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        check_range("order", config.order as f64, 1.0..=4.0, "from 1 to 4")?;
        config.clipping.validate()?;
        let grid = SigmaGrid::new(config.grid, config.sigma_spacing, schedule, steps)?;
        Ok(Self {
            config,
            grid,
            slopes: VecDeque::new(),
            next_index: 0,
        })
    }

    /// c_j of step `index` with the latest `order` slopes.
    fn coefficient(&self, index: usize, order: usize, j: usize) -> f64 {
        let sigmas = &self.grid.sigmas;
        let lagrange = |tau: f64| {
            (0..order)
                .filter(|&k| k != j)
                .map(|k| (tau - sigmas[index - k]) / (sigmas[index - j] - sigmas[index - k]))
                .product::<f64>()
        };
        gauss_legendre(lagrange, sigmas[index], sigmas[index + 1])
    }
}

/// ∫_a^b f by four-point Gauss–Legendre quadrature: exact for polynomials of degree ≤ 7.
fn gauss_legendre(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    const NODES: [(f64, f64); 4] = [
        (-0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
        (-0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
    ];
    let (middle, half) = ((a + b) / 2.0, (b - a) / 2.0);
    half * NODES
        .iter()
        .map(|&(node, weight)| weight * f(middle + half * node))
        .sum::<f64>()
}

impl<B: Backend, const D: usize> Sampler<B, D> for Lms<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.grid.timesteps
    }

    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(&self.grid.timesteps, index)?;
        self.slopes.clear();
        self.next_index = index;
        Ok(())
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
        _rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.grid.timesteps, index)?;
        if index != self.next_index {
            self.slopes.clear();
        }
        self.next_index = index + 1;
        let sigma = self.grid.sigmas[index];
        let x0 = denoised(
            "LMS",
            output,
            prediction,
            &sample,
            (sigma, timestep),
            self.config.clipping,
        )?;
        self.slopes
            .push_front((sample.clone() - x0.clone()).div_scalar(sigma));
        self.slopes.truncate(self.config.order);
        let order = self.slopes.len();
        let next = self
            .slopes
            .iter()
            .enumerate()
            .fold(sample, |x, (j, slope)| {
                x + slope.clone().mul_scalar(self.coefficient(index, order, j))
            });
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
