use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::multistep::{History, integrated_output};
use crate::sampler::{Step, linear, timestep_at};
use crate::sigma_grid::{FinalSigmas, SigmaSpacing, alpha_sigma, discrete_sigma_grid, lambda};
use crate::{
    AlgorithmType, DynamicThresholding, SampleClipping, Sampler, SamplerError, SolverType,
};

/// Settings of [`DpmSolverSinglestep`], with diffusers' `DPMSolverSinglestepScheduler`
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmSolverSinglestepConfig {
    /// The order, 1–3: how many grid steps one solver step spans ("DPM-Solver-2S" at 2).
    pub solver_order: usize,
    /// `dpmsolver++`, its SDE `sde-dpmsolver++` (orders 1 and 2: diffusers' third-order SDE
    /// weight is the one [`AlgorithmType`] does not offer) or `dpmsolver` (with
    /// [`FinalSigmas::SigmaMin`]); diffusers' singlestep solver has no `sde-dpmsolver`.
    pub algorithm_type: AlgorithmType,
    /// The second-order formula.
    pub solver_type: SolverType,
    /// End on lower orders ([`DpmSolverSinglestep`] says how). diffusers turns it on
    /// whenever the order does not divide the step count or the last step lands on σ = 0,
    /// and so does Kiln.
    pub lower_order_final: bool,
    /// Lay the grid over the timesteps before the first whose λ_t = log(α_t/s_t) is below
    /// this, dropping the noisiest (diffusers' `lambda_min_clipped`, "critical for the cosine
    /// schedule"; σ spacings other than the timesteps ignore it, as there). −∞, the default,
    /// keeps every timestep. A `trailing` grid lays its N points over the kept timesteps,
    /// where diffusers' steps from the last kept one by T/N and lays fewer.
    pub lambda_min_clipped: f64,
    /// Where the last step lands.
    pub final_sigmas_type: FinalSigmas,
    /// The noise levels: σ at the grid's timesteps, or spaced between the schedule's smallest
    /// and largest σ with their timesteps rounded (diffusers' `use_karras_sigmas`,
    /// `use_exponential_sigmas`, `use_beta_sigmas`).
    pub sigma_spacing: SigmaSpacing,
    /// Dynamic thresholding of x̂_0 (diffusers' `thresholding`).
    pub thresholding: Option<DynamicThresholding>,
    /// The inference timesteps (`linspace` over N + 1 points without the last, by default;
    /// diffusers' singlestep solver has no other).
    pub grid: TimestepGrid,
}

impl Default for DpmSolverSinglestepConfig {
    fn default() -> Self {
        Self {
            solver_order: 2,
            algorithm_type: AlgorithmType::DpmSolverPlusPlus,
            solver_type: SolverType::Midpoint,
            lower_order_final: false,
            lambda_min_clipped: f64::NEG_INFINITY,
            final_sigmas_type: FinalSigmas::Zero,
            sigma_spacing: SigmaSpacing::Timesteps,
            thresholding: None,
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::BeforeZero),
        }
    }
}

/// Singlestep DPM-Solver (Lu et al. 2022a, "DPM-Solver", Algorithms 1 and 2, and 2022b,
/// "DPM-Solver++", Algorithm 1; diffusers' `DPMSolverSinglestepScheduler`): where the multistep
/// [`crate::DpmSolver`] reuses the model outputs of earlier steps, each solver step here spans
/// k = 1, 2 or 3 grid steps from one start s and evaluates the model at the grid points inside
/// them, reached by lower-order steps from s.
///
/// With the grid's σ_i, λ = −log σ and a block from s = i − k + 1 to t = i + 1, the step at
/// grid point i is of order k: it takes the block's start sample x_s and the outputs
/// m_s, …, m_i of the model (x̂_0 for the `++` algorithms, ε̂ for `dpmsolver`), with
/// h = λ_t − λ_s and r_j = (λ_{s+j} − λ_s)/h, and applies [`AlgorithmType`]'s weights
///
/// ```text
/// k = 1:  x_t = c x_s + w0 m_s                                                   (DDIM)
/// k = 2:  x_t = c x_s + w0 m_s + w D1,             D1 = (m_{s+1} − m_s)/r_1
/// k = 3:  x_t = c x_s + w0 m_s + w1 D1 + w2 D2     (heun)
///         x_t = c x_s + w0 m_s + w1 (m_{s+2} − m_s)/r_2                          (midpoint)
/// ```
///
/// where w is ½ w0 (midpoint) or w1 (heun) and, for k = 3, D1 = (r_2 D1' − r_1 D1'')/(r_2 − r_1),
/// D2 = 2 (D1'' − D1')/(r_2 − r_1), D1' = (m_{s+1} − m_s)/r_1, D1'' = (m_{s+2} − m_s)/r_2. The
/// SDE variant adds fresh noise at every step.
///
/// The orders cycle 1, 2(, 3) through the grid (diffusers' `get_order_list`): with
/// `lower_order_final` a step count the order does not divide ends on a shorter block, an even
/// count at order 2 ends 1, 1, and a count divisible by 3 at order 3 ends 1, 2, 1; a last step
/// to σ = 0 is first order.
///
/// A step that does not follow the last one starts a new trajectory: a run from index 0, or
/// one that starts part-way (image-to-image), whose first steps are then of lower order.
#[derive(Debug, Clone)]
pub struct DpmSolverSinglestep<B: Backend, const D: usize> {
    config: DpmSolverSinglestepConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final σ.
    sigmas: Vec<f64>,
    /// The order of each step.
    orders: Vec<usize>,
    /// The model outputs the algorithm integrates, each with the sample it was made at (a
    /// block reads its start's, found by position like the outputs it combines).
    history: History<(Tensor<B, D>, Tensor<B, D>)>,
}

impl<B: Backend, const D: usize> DpmSolverSinglestep<B, D> {
    /// Singlestep DPM-Solver over `schedule` in `steps` steps.
    ///
    /// Fails on an order the algorithm does not have, on `sde-dpmsolver`, on an ε̂ algorithm
    /// with [`FinalSigmas::Zero`], on invalid thresholding, or when the grid cannot be laid
    /// out.
    pub fn new(
        config: DpmSolverSinglestepConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        const SAMPLER: &str = "DPM-Solver singlestep";
        let algorithm = config.algorithm_type;
        if algorithm == AlgorithmType::SdeDpmSolver {
            return Err(SamplerError::Incompatible {
                sampler: SAMPLER,
                reason: "diffusers' singlestep solver has no sde-dpmsolver; use sde-dpmsolver++",
            });
        }
        algorithm.check(SAMPLER, config.solver_order, config.final_sigmas_type)?;
        SampleClipping::thresholding_only(config.thresholding).validate()?;
        let (timesteps, sigmas) = discrete_sigma_grid(
            config.grid,
            config.sigma_spacing,
            config.final_sigmas_type,
            config.lambda_min_clipped,
            schedule,
            steps,
        )?;
        let lower_order_final = config.lower_order_final
            || !steps.is_multiple_of(config.solver_order)
            || config.final_sigmas_type == FinalSigmas::Zero;
        let mut orders = singlestep_orders(config.solver_order, steps, lower_order_final);
        if config.final_sigmas_type == FinalSigmas::Zero {
            orders[steps - 1] = 1;
        }
        Ok(Self {
            config,
            timesteps,
            sigmas,
            orders,
            history: History::new(config.solver_order),
        })
    }
}

/// diffusers' `get_order_list`: the order of each of `steps` steps, cycling 1, …, `order`, and
/// with `lower_order_final` ending as [`DpmSolverSinglestep`] describes.
fn singlestep_orders(order: usize, steps: usize, lower_order_final: bool) -> Vec<usize> {
    let cycle: Vec<usize> = (1..=order).collect();
    let repeat = |times: usize| cycle.iter().copied().cycle().take(times * order);
    let (full, tail): (usize, &[usize]) = match (lower_order_final, order, steps % order) {
        (false, ..) | (true, 1, _) => (steps / order, &[]),
        (true, 2, 0) => (steps / 2 - 1, &[1, 1]),
        (true, 2, _) => (steps / 2, &[1]),
        (true, _, 0) => (steps / 3 - 1, &[1, 2, 1]),
        (true, _, 1) => (steps / 3, &[1]),
        (true, ..) => (steps / 3, &[1, 2]),
    };
    repeat(full).chain(tail.iter().copied()).collect()
}

impl<B: Backend, const D: usize> Sampler<B, D> for DpmSolverSinglestep<B, D> {
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
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)?;
        let algorithm = self.config.algorithm_type;
        let (x0, integrated) = integrated_output(
            "DPM-Solver singlestep",
            output,
            prediction,
            &sample,
            (self.sigmas[index], timestep),
            self.config.thresholding,
            algorithm.integrates_data(),
        )?;
        let before = self.history.record(index, (integrated, sample));
        // A trajectory that starts inside a block (image-to-image) starts it afresh.
        let order = self.orders[index].min(before + 1);
        let start = index + 1 - order;
        let (sigma_s, sigma_t) = (self.sigmas[start], self.sigmas[index + 1]);
        let h = lambda(sigma_t) - lambda(sigma_s);
        let (m_s, x_s) = self.history.back(order - 1);
        // A step that stays at its σ (Karras σ ending at σ_min, then σ_min) moves nothing.
        if h == 0.0 {
            return Ok(Step {
                sample: x_s.clone(),
                denoised: x0,
            });
        }
        let update = algorithm.update(alpha_sigma(sigma_s), alpha_sigma(sigma_t), h);
        let mut next = linear(x_s, update.sample, m_s, update.d0);
        // (λ_{s+j} − λ_s)/h and (m_{s+j} − m_s)/r_j for the block's later outputs.
        let difference = |j: usize| {
            let r = (lambda(self.sigmas[start + j]) - lambda(sigma_s)) / h;
            let m = &self.history.back(order - 1 - j).0;
            (r, (m.clone() - m_s.clone()).div_scalar(r))
        };
        match order {
            2 => {
                let (_, d1) = difference(1);
                next = next + d1.mul_scalar(update.second_order(self.config.solver_type));
            }
            3 => {
                let ((r1, d1_first), (r2, d1_second)) = (difference(1), difference(2));
                next = match self.config.solver_type {
                    SolverType::Midpoint => next + d1_second.mul_scalar(update.d1),
                    SolverType::Heun => {
                        let d1 = linear(&d1_first, r2 / (r2 - r1), &d1_second, -r1 / (r2 - r1));
                        let d2 = (d1_second - d1_first).mul_scalar(2.0 / (r2 - r1));
                        next + d1.mul_scalar(update.d1) + d2.mul_scalar(update.d2)
                    }
                };
            }
            _ => {}
        }
        let (shape, device) = (next.dims(), next.device());
        Ok(Step {
            sample: algorithm.add_noise(next, &update, sigma_t, || {
                standard_normal(shape, rng, &device)
            }),
            denoised: x0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::singlestep_orders;

    /// diffusers' `get_order_list`, case by case.
    #[test]
    fn orders_follow_diffusers() {
        assert_eq!(singlestep_orders(2, 6, true), [1, 2, 1, 2, 1, 1]);
        assert_eq!(singlestep_orders(2, 5, true), [1, 2, 1, 2, 1]);
        assert_eq!(singlestep_orders(2, 6, false), [1, 2, 1, 2, 1, 2]);
        assert_eq!(singlestep_orders(3, 6, true), [1, 2, 3, 1, 2, 1]);
        assert_eq!(singlestep_orders(3, 7, true), [1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(singlestep_orders(3, 8, true), [1, 2, 3, 1, 2, 3, 1, 2]);
        assert_eq!(singlestep_orders(3, 9, false), [1, 2, 3, 1, 2, 3, 1, 2, 3]);
        assert_eq!(singlestep_orders(1, 3, true), [1, 1, 1]);
        assert_eq!(singlestep_orders(2, 1, true), [1]);
        assert_eq!(singlestep_orders(3, 2, true), [1, 2]);
        assert_eq!(singlestep_orders(3, 3, true), [1, 2, 1]);
    }
}
