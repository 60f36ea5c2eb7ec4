use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::multistep::{
    History, check_order, exp_lagrange_integral, integrated_output, multistep_order,
};
use crate::sampler::{Step, timestep_at};
use crate::sigma_grid::{FinalSigmas, SigmaSpacing, alpha_sigma, discrete_sigma_grid};
use crate::{DynamicThresholding, SampleClipping, Sampler, SamplerError};

/// Settings of [`Deis`], with diffusers' `DEISMultistepScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeisConfig {
    /// The multistep order, 1–3 (1 is DDIM; 2 is "DEIS 2M").
    pub solver_order: usize,
    /// Use lower orders for the last two steps when there are fewer than 15 (more stable).
    pub lower_order_final: bool,
    /// The noise levels: σ at the grid's timesteps, or spaced between the schedule's smallest
    /// and largest σ with their timesteps rounded (diffusers' `use_karras_sigmas`,
    /// `use_exponential_sigmas`, `use_beta_sigmas`).
    pub sigma_spacing: SigmaSpacing,
    /// Dynamic thresholding of x̂_0, before ε̂ is recomputed from it (diffusers'
    /// `thresholding`).
    pub thresholding: Option<DynamicThresholding>,
    /// The inference timesteps (`linspace` over N + 1 points without the last, by default).
    pub grid: TimestepGrid,
}

impl Default for DeisConfig {
    fn default() -> Self {
        Self {
            solver_order: 2,
            lower_order_final: true,
            sigma_spacing: SigmaSpacing::Timesteps,
            thresholding: None,
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::BeforeZero),
        }
    }
}

/// DEIS, the diffusion exponential integrator sampler (Zhang & Chen 2023, "Fast Sampling of
/// Diffusion Models with Exponential Integrator", the multistep "ρAB-DEIS"; diffusers'
/// `DEISMultistepScheduler` with `solver_type = "logrho"`).
///
/// With ρ = σ/α (Kiln's σ-space noise level) the probability-flow ODE of the VP sample x is
/// d(x/α)/dρ = ε̂(x, ρ): DEIS extrapolates ε̂ from the latest p ≤ `solver_order` steps by the
/// Lagrange polynomial in log ρ through them, and integrates it over ρ exactly:
///
/// ```text
/// x_t = α_t (x_s/α_s + Σ_{j<p} c_j ε̂_{s_j}),
/// c_j = ∫_{ρ_s}^{ρ_t} Π_{k<p, k≠j} (log ρ − log ρ_{s_k})/(log ρ_{s_j} − log ρ_{s_k}) dρ,
/// ```
///
/// where s_0 = s is this step and s_1, s_2 the ones before. With p = 1 this is DDIM. In the
/// variable u = log ρ − log ρ_s each c_j is ρ_s ∫ ℓ_j(u) e^u du, an exponential times a
/// polynomial, in closed form (diffusers' `ind_fn` for p = 2 and 3).
///
/// The grid is diffusers' multistep one ([`crate::DpmSolver`]'s), ending at σ of the first
/// training timestep rather than 0 (ε̂ cannot step to σ = 0); with Karras σ the last step
/// stays at that σ, as diffusers' does (except in one step: there diffusers' step stays at
/// σ_max and returns the noise, and Kiln's goes to σ_min). The orders of the first and last steps follow
/// DPM-Solver's rules. A model that predicts x̂_0 or v is converted to ε̂ (after thresholding,
/// when set).
///
/// A step that does not follow the last one starts a new trajectory: a run from index 0, or
/// one that starts part-way (image-to-image), whose first steps are then of lower order.
#[derive(Debug, Clone)]
pub struct Deis<B: Backend, const D: usize> {
    config: DeisConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final σ.
    sigmas: Vec<f64>,
    /// ε̂ of the last `solver_order` steps.
    history: History<Tensor<B, D>>,
}

impl<B: Backend, const D: usize> Deis<B, D> {
    /// DEIS over `schedule` in `steps` steps.
    ///
    /// Fails on an order other than 1–3, on invalid thresholding, or when the grid cannot be
    /// laid out.
    pub fn new(
        config: DeisConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        check_order("DEIS", config.solver_order, 3, "1, 2 or 3")?;
        SampleClipping::thresholding_only(config.thresholding).validate()?;
        let (timesteps, sigmas) = discrete_sigma_grid(
            config.grid,
            config.sigma_spacing,
            FinalSigmas::SigmaMin,
            f64::NEG_INFINITY,
            schedule,
            steps,
        )?;
        Ok(Self {
            config,
            timesteps,
            sigmas,
            history: History::new(config.solver_order),
        })
    }

    /// c_0, …, c_{order−1} of step `index`: the weights of ε̂ at this step and the ones before.
    fn coefficients(&self, index: usize, order: usize) -> Vec<f64> {
        let log_sigma_s = self.sigmas[index].ln();
        let nodes: Vec<f64> = (0..order)
            .map(|j| self.sigmas[index - j].ln() - log_sigma_s)
            .collect();
        let h = self.sigmas[index + 1].ln() - log_sigma_s;
        (0..order)
            .map(|j| self.sigmas[index] * exp_lagrange_integral(&nodes, j, h))
            .collect()
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Deis<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(&self.timesteps, index)?;
        self.history.clear();
        Ok(())
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        _rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)?;
        let (sigma_s, sigma_t) = (self.sigmas[index], self.sigmas[index + 1]);
        let (x0, epsilon) = integrated_output(
            "DEIS",
            output,
            prediction,
            &sample,
            (sigma_s, timestep),
            self.config.thresholding,
            false,
        )?;
        let before = self.history.record(index, epsilon);
        let order = multistep_order(
            self.config.solver_order,
            before,
            (index, self.timesteps.len()),
            self.config.lower_order_final,
            false,
        );
        let ((alpha_s, _), (alpha_t, _)) = (alpha_sigma(sigma_s), alpha_sigma(sigma_t));
        let next = self
            .coefficients(index, order)
            .into_iter()
            .enumerate()
            .fold(sample.mul_scalar(alpha_t / alpha_s), |next, (j, c)| {
                next + self.history.back(j).clone().mul_scalar(alpha_t * c)
            });
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
