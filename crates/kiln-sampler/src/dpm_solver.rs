use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::sampler::{Step, clean_and_noise, linear, timestep_at};
use crate::sigma_grid::{FinalSigmas, alpha_sigma, discrete_sigma_grid, lambda};
use crate::{DynamicThresholding, SampleClipping, Sampler, SamplerError};

/// Which equation DPM-Solver++ integrates (diffusers' `algorithm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlgorithmType {
    /// `dpmsolver++`: the probability-flow ODE (deterministic).
    #[default]
    DpmSolverPlusPlus,
    /// `sde-dpmsolver++`: the reverse SDE (Lu et al. 2022b, §4; orders 1 and 2).
    SdeDpmSolverPlusPlus,
}

/// How the second-order correction is formed (diffusers' `solver_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SolverType {
    /// `midpoint`: D1 weighted by ½(e^{−h} − 1)·(−α_t).
    #[default]
    Midpoint,
    /// `heun`: D1 weighted by α_t((e^{−h} − 1)/h + 1).
    Heun,
}

/// Settings of [`DpmSolver`], with diffusers' `DPMSolverMultistepScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmSolverConfig {
    /// The multistep order, 1–3 (2 is "DPM-Solver++(2M)").
    pub solver_order: usize,
    /// ODE or SDE.
    pub algorithm_type: AlgorithmType,
    /// The second-order formula.
    pub solver_type: SolverType,
    /// Use lower orders for the last steps when there are fewer than 15 (more stable).
    pub lower_order_final: bool,
    /// Where the last step lands.
    pub final_sigmas_type: FinalSigmas,
    /// Karras et al.'s ρ = 7 spacing of σ between the schedule's smallest and largest σ.
    pub use_karras_sigmas: bool,
    /// Dynamic thresholding of x̂_0 (diffusers' `thresholding`).
    pub thresholding: Option<DynamicThresholding>,
    /// The inference timesteps (`linspace` over N + 1 points without the last, by default).
    pub grid: TimestepGrid,
}

impl Default for DpmSolverConfig {
    fn default() -> Self {
        Self {
            solver_order: 2,
            algorithm_type: AlgorithmType::DpmSolverPlusPlus,
            solver_type: SolverType::Midpoint,
            lower_order_final: true,
            final_sigmas_type: FinalSigmas::Zero,
            use_karras_sigmas: false,
            thresholding: None,
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::BeforeZero),
        }
    }
}

/// DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
/// Diffusion Probabilistic Models", Algorithm 2), an exponential integrator in
/// λ = log(α/σ) that extrapolates the data prediction x̂_0 from the last 1–3 steps.
///
/// With α_t = 1/√(σ_t² + 1), s_t = σ_t α_t (the VP noise scale), h = λ_t − λ_s, and
/// D0 = x̂_0 of this step, D1 = (D0 − x̂_0 of the previous step)/r with r = h_prev/h:
///
/// ```text
/// order 1:  x_t = (s_t/s_s) x_s − α_t (e^{−h} − 1) D0                (= DDIM)
/// order 2:  … − ½ α_t (e^{−h} − 1) D1                                  (midpoint)
///           … + α_t ((e^{−h} − 1)/h + 1) D1                            (heun)
/// ```
///
/// and a third-order term with D2 from three steps. The SDE variant multiplies the first term
/// by e^{−h}, uses (1 − e^{−2h}) in place of −(e^{−h} − 1) and adds s_t √(1 − e^{−2h}) z.
///
/// A step at index 0 starts a new trajectory, so one value can sample again and again. A run
/// may also start at a later index (image-to-image from a partly noised input) on a sampler
/// that has not stepped yet; its first steps are then of lower order.
#[derive(Debug, Clone)]
pub struct DpmSolver<B: Backend, const D: usize> {
    config: DpmSolverConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final σ.
    sigmas: Vec<f64>,
    /// The x̂_0 of the last `solver_order` steps, newest last.
    history: Vec<Tensor<B, D>>,
    /// How many steps have fed the history, up to `solver_order`.
    lower_order_nums: usize,
}

impl<B: Backend, const D: usize> DpmSolver<B, D> {
    /// Forgets the trajectory's history: the next step starts a new one.
    fn forget(&mut self) {
        self.history.clear();
        self.lower_order_nums = 0;
    }

    /// DPM-Solver++ over `schedule` in `steps` steps.
    pub fn new(
        config: DpmSolverConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let max_order = match config.algorithm_type {
            AlgorithmType::DpmSolverPlusPlus => 3,
            AlgorithmType::SdeDpmSolverPlusPlus => 2,
        };
        if !(1..=max_order).contains(&config.solver_order) {
            return Err(SamplerError::UnsupportedOrder {
                sampler: "DPM-Solver++",
                order: config.solver_order,
                expected: if max_order == 3 {
                    "1, 2 or 3"
                } else {
                    "1 or 2 for the SDE variant"
                },
            });
        }
        SampleClipping::thresholding_only(config.thresholding).validate()?;
        let (timesteps, sigmas) = discrete_sigma_grid(
            config.grid,
            config.use_karras_sigmas,
            config.final_sigmas_type,
            schedule,
            steps,
        )?;
        Ok(Self {
            config,
            timesteps,
            sigmas,
            history: Vec::with_capacity(config.solver_order),
            lower_order_nums: 0,
        })
    }

    /// The order of the update at step `index`.
    fn order_at(&self, index: usize) -> usize {
        let steps = self.timesteps.len();
        let short = self.config.lower_order_final && steps < 15;
        let final_first_order =
            index + 1 == steps && (short || self.config.final_sigmas_type == FinalSigmas::Zero);
        let final_second_order = index + 2 == steps && short;
        let order = self.config.solver_order;
        if order == 1 || self.lower_order_nums < 1 || final_first_order {
            1
        } else if order == 2 || self.lower_order_nums < 2 || final_second_order {
            2
        } else {
            3
        }
    }
}

/// (e^{−h} − 1)/h + 1, with its limit 1 at h = ∞ (a step to σ = 0).
fn phi_2(h: f64) -> f64 {
    if h.is_infinite() {
        1.0
    } else {
        (-h).exp_m1() / h + 1.0
    }
}

/// (e^{−h} − 1 + h)/h² − ½, with its limit −½ at h = ∞.
fn phi_3(h: f64) -> f64 {
    if h.is_infinite() {
        -0.5
    } else {
        ((-h).exp_m1() + h) / (h * h) - 0.5
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for DpmSolver<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(&self.timesteps, index)?;
        self.forget();
        Ok(())
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)?;
        let sigma_s = self.sigmas[index];
        let sigma_t = self.sigmas[index + 1];
        let (alpha_s, noise_s) = alpha_sigma(sigma_s);
        let (alpha_t, noise_t) = alpha_sigma(sigma_t);
        let (x0, _) = clean_and_noise(
            "DPM-Solver++",
            output,
            prediction,
            sample.clone(),
            alpha_s * alpha_s,
            timestep,
        )?;
        let x0 = SampleClipping::thresholding_only(self.config.thresholding).apply(x0);
        if index == 0 {
            self.forget();
        }
        if self.history.len() == self.config.solver_order {
            self.history.remove(0);
        }
        self.history.push(x0.clone());
        // Never reach back past the start of the trajectory.
        let order = self.order_at(index).min(self.history.len()).min(index + 1);

        let h = lambda(sigma_t) - lambda(sigma_s);
        let sde = self.config.algorithm_type == AlgorithmType::SdeDpmSolverPlusPlus;
        // Both variants: x_t = c_x x_s + w0 D0 + w1 D1 + w2 D2 (+ noise).
        let (c_x, w0) = if sde {
            // (s_t/s_s) e^{−h} and α_t (1 − e^{−2h}).
            (
                noise_t / noise_s * (-h).exp(),
                -alpha_t * (-2.0 * h).exp_m1(),
            )
        } else {
            (noise_t / noise_s, -alpha_t * (-h).exp_m1())
        };
        let mut next = linear(&sample, c_x, &x0, w0);
        if order >= 2 {
            let n = self.history.len();
            let (m0, m1) = (&self.history[n - 1], &self.history[n - 2]);
            let sigma_s1 = self.sigmas[index - 1];
            let h0 = lambda(sigma_s) - lambda(sigma_s1);
            let r0 = h0 / h;
            let w1 = match (self.config.solver_type, sde) {
                (SolverType::Midpoint, _) => 0.5 * w0,
                (SolverType::Heun, false) => alpha_t * phi_2(h),
                (SolverType::Heun, true) => alpha_t * ((-2.0 * h).exp_m1() / (2.0 * h) + 1.0),
            };
            if order == 2 {
                // D1 = (m0 − m1)/r0
                next = next + (m0.clone() - m1.clone()).mul_scalar(w1 / r0);
            } else {
                let m2 = &self.history[n - 3];
                let sigma_s2 = self.sigmas[index - 2];
                let h1 = lambda(sigma_s1) - lambda(sigma_s2);
                let r1 = h1 / h;
                let d1_0 = (m0.clone() - m1.clone()).mul_scalar(1.0 / r0);
                let d1_1 = (m1.clone() - m2.clone()).mul_scalar(1.0 / r1);
                let d1 = d1_0.clone() + (d1_0.clone() - d1_1.clone()).mul_scalar(r0 / (r0 + r1));
                let d2 = (d1_0 - d1_1).mul_scalar(1.0 / (r0 + r1));
                let w1 = alpha_t * phi_2(h);
                let w2 = -alpha_t * phi_3(h);
                next = next + d1.mul_scalar(w1) + d2.mul_scalar(w2);
            }
        }
        if sde && sigma_t > 0.0 {
            let scale = noise_t * (-(-2.0 * h).exp_m1()).sqrt();
            let noise = standard_normal::<B, D>(x0.dims(), rng, &x0.device());
            next = next + noise.mul_scalar(scale);
        }
        if self.lower_order_nums < self.config.solver_order {
            self.lower_order_nums += 1;
        }
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
