use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::error::check_range;
use crate::multistep::{History, check_order, exp_lagrange_integral, integrated_output};
use crate::sampler::{Step, linear, timestep_at};
use crate::sigma_grid::{FinalSigmas, SigmaSpacing, alpha_sigma, discrete_sigma_grid, lambda};
use crate::{DynamicThresholding, SampleClipping, Sampler, SamplerError};

/// SA-Solver's τ(t): how much of the reverse SDE's noise the step from training timestep t
/// takes, `tau` for t in [`min_timestep`, `max_timestep`] and 0 outside (diffusers'
/// `tau_func`). τ = 0 solves the probability-flow ODE; τ = 1 the reverse SDE.
///
/// [`min_timestep`]: SaSolverTau::min_timestep
/// [`max_timestep`]: SaSolverTau::max_timestep
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaSolverTau {
    /// τ inside the window, ≥ 0.
    pub tau: f64,
    /// The first training timestep of the window.
    pub min_timestep: f64,
    /// The last training timestep of the window.
    pub max_timestep: f64,
}

impl SaSolverTau {
    /// τ = 0 everywhere: a deterministic solver of the probability-flow ODE.
    pub const ODE: Self = Self::constant(0.0);

    /// `tau` at every timestep.
    pub const fn constant(tau: f64) -> Self {
        Self {
            tau,
            min_timestep: f64::NEG_INFINITY,
            max_timestep: f64::INFINITY,
        }
    }

    /// τ(t).
    pub fn at(&self, timestep: f64) -> f64 {
        if (self.min_timestep..=self.max_timestep).contains(&timestep) {
            self.tau
        } else {
            0.0
        }
    }
}

impl Default for SaSolverTau {
    /// diffusers' default: τ = 1 for 200 ≤ t ≤ 800, else 0 (noise in the middle of the
    /// trajectory, none at its ends).
    fn default() -> Self {
        Self {
            tau: 1.0,
            min_timestep: 200.0,
            max_timestep: 800.0,
        }
    }
}

/// What SA-Solver integrates (diffusers' `algorithm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaSolverAlgorithm {
    /// `data_prediction`: x̂_0, recommended.
    #[default]
    DataPrediction,
    /// `noise_prediction`: ε̂.
    NoisePrediction,
}

/// Settings of [`SaSolver`], with diffusers' `SASolverScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaSolverConfig {
    /// The order of the predictor (SA-Predictor), 1–4: 2 for guided sampling, 3 for
    /// unconditional, as the paper recommends.
    pub predictor_order: usize,
    /// The order of the corrector (SA-Corrector), 1–4.
    pub corrector_order: usize,
    /// τ(t), the stochasticity.
    pub tau: SaSolverTau,
    /// x̂_0 or ε̂.
    pub algorithm_type: SaSolverAlgorithm,
    /// Lower the orders over the last steps (predictor ≤ steps left, corrector ≤ steps left
    /// + 1).
    pub lower_order_final: bool,
    /// Karras et al.'s ρ = 7 spacing of σ between the schedule's smallest and largest σ.
    pub use_karras_sigmas: bool,
    /// Dynamic thresholding of x̂_0 (before ε̂ is recomputed from it, for
    /// [`SaSolverAlgorithm::NoisePrediction`]).
    pub thresholding: Option<DynamicThresholding>,
    /// The inference timesteps (`linspace` over N + 1 points without the last, by default).
    pub grid: TimestepGrid,
}

impl Default for SaSolverConfig {
    fn default() -> Self {
        Self {
            predictor_order: 2,
            corrector_order: 2,
            tau: SaSolverTau::default(),
            algorithm_type: SaSolverAlgorithm::DataPrediction,
            lower_order_final: true,
            use_karras_sigmas: false,
            thresholding: None,
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::BeforeZero),
        }
    }
}

/// SA-Solver (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast Sampling of
/// Diffusion Models", Algorithms 1–2; diffusers' `SASolverScheduler`): a stochastic Adams
/// predictor, and a corrector that reuses the model call the next step makes anyway, for the
/// reverse SDE whose noise is scaled by τ(t) ([`SaSolverTau`]).
///
/// In λ = log(α/s) (VP signal and noise scales α, s), with h = λ_t − λ_s, c = 1 + τ² and the
/// Lagrange basis polynomials ℓ_k through the λ of the model outputs x̂_0(k) used, a step
/// from s to t is, over x̂_0 (eq. 13):
///
/// ```text
/// x_t = e^{−τ²h} (s_t/s_s) x_s + α_t Σ_k w_k x̂_0(k) + s_t √(1 − e^{−2τ²h}) z,
/// w_k = c ∫_{λ_s}^{λ_t} e^{−c(λ_t − λ)} ℓ_k(λ) dλ,
/// ```
///
/// and over ε̂ (eq. 12): x_t = (α_t/α_s) x_s − s_t Σ_k w_k ε̂(k) + τ s_t √(e^{2h} − 1) z with
/// w_k = c ∫ e^{λ_t − λ} ℓ_k(λ) dλ. The predictor interpolates the latest p outputs, this
/// step's and the ones before; the corrector, at the next step, interpolates the new output
/// too and redoes the update from x_s with the same z. With τ = 0 and order 1 both are
/// DPM-Solver++(1) (DDIM). Order 2 over x̂_0 adds diffusers' O(h³) term to w_0 and w_1, as
/// UniPC does ([`crate::UniPc`]).
///
/// The grid is diffusers' multistep one and ends at σ of the first training timestep, not 0
/// (the last x̂_0 is not taken); with Karras σ the last step stays at the last σ, as in
/// diffusers. Noise is drawn only in steps whose noise term is not zero (τ(t) > 0 and σ'
/// ≠ σ).
///
/// A step that does not follow the last one starts a new trajectory: a run from index 0, or
/// one that starts part-way (image-to-image), whose first steps are then of lower order.
#[derive(Debug, Clone)]
pub struct SaSolver<B: Backend, const D: usize> {
    config: SaSolverConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final σ.
    sigmas: Vec<f64>,
    /// The integrated outputs (x̂_0 or ε̂) of recent steps with their step index.
    history: History<(usize, Tensor<B, D>)>,
    /// The last predictor, which the next step corrects.
    last: Option<Predictor<B, D>>,
}

/// What the corrector needs of the last predictor step.
#[derive(Debug, Clone)]
struct Predictor<B: Backend, const D: usize> {
    /// The sample the step started from.
    sample: Tensor<B, D>,
    /// Its noise (`None` when it took none).
    noise: Option<Tensor<B, D>>,
    /// Its τ.
    tau: f64,
    /// The corrector's order.
    corrector_order: usize,
}

impl<B: Backend, const D: usize> SaSolver<B, D> {
    /// SA-Solver over `schedule` in `steps` steps.
    ///
    /// Fails on an order other than 1–4, a negative or non-finite τ, invalid thresholding,
    /// or when the grid cannot be laid out.
    pub fn new(
        config: SaSolverConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        for order in [config.predictor_order, config.corrector_order] {
            check_order("SA-Solver", order, 4, "1, 2, 3 or 4")?;
        }
        check_range("tau", config.tau.tau, 0.0..=f64::MAX, "τ ≥ 0")?;
        SampleClipping::thresholding_only(config.thresholding).validate()?;
        let spacing = SigmaSpacing::karras_if(config.use_karras_sigmas);
        let (timesteps, mut sigmas) =
            discrete_sigma_grid(config.grid, spacing, FinalSigmas::SigmaMin, schedule, steps)?;
        if config.use_karras_sigmas {
            sigmas[steps] = sigmas[steps - 1];
        }
        let kept = config.predictor_order.max(config.corrector_order - 1);
        Ok(Self {
            config,
            timesteps,
            sigmas,
            history: History::new(kept),
            last: None,
        })
    }

    /// Forgets the trajectory: the next step starts a new one.
    fn forget(&mut self) {
        self.history.clear();
        self.last = None;
    }

    /// The factor of z in the update from step `from` to the next with `tau` (zero when the
    /// step adds no noise).
    fn noise_scale(&self, from: usize, tau: f64) -> f64 {
        let (sigma_s, sigma_t) = (self.sigmas[from], self.sigmas[from + 1]);
        let h = lambda(sigma_t) - lambda(sigma_s);
        let (_, noise_t) = alpha_sigma(sigma_t);
        let variance = match self.config.algorithm_type {
            SaSolverAlgorithm::DataPrediction => -(-2.0 * tau * tau * h).exp_m1(),
            SaSolverAlgorithm::NoisePrediction => tau * tau * (2.0 * h).exp_m1(),
        };
        noise_t * variance.max(0.0).sqrt()
    }

    /// The update from step `from` to the next, starting at `sample`, of order `order` with
    /// `tau` and `noise`: the predictor, or with `corrected` (the new step's integrated output)
    /// the corrector. The newest history entry is the output at `from`.
    fn update(
        &self,
        sample: &Tensor<B, D>,
        from: usize,
        (order, tau): (usize, f64),
        corrected: Option<&Tensor<B, D>>,
        noise: Option<&Tensor<B, D>>,
    ) -> Tensor<B, D> {
        let (sigma_s, sigma_t) = (self.sigmas[from], self.sigmas[from + 1]);
        let ((alpha_s, noise_s), (alpha_t, noise_t)) = (alpha_sigma(sigma_s), alpha_sigma(sigma_t));
        let lambda_s = lambda(sigma_s);
        let h = lambda(sigma_t) - lambda_s;
        // The outputs interpolated, newest first, with their λ − λ_s.
        let outputs: Vec<(f64, &Tensor<B, D>)> = corrected
            .map(|output| (h, output))
            .into_iter()
            .chain((0..).map(|back| {
                let (index, output) = self.history.back(back);
                (lambda(self.sigmas[*index]) - lambda_s, output)
            }))
            .take(order)
            .collect();
        let nodes: Vec<f64> = outputs.iter().map(|(node, _)| *node).collect();
        let weights = self.weights(&nodes, h, tau, corrected.is_some());
        let (carry, scale) = match self.config.algorithm_type {
            SaSolverAlgorithm::DataPrediction => {
                ((-tau * tau * h).exp() * noise_t / noise_s, alpha_t)
            }
            SaSolverAlgorithm::NoisePrediction => (alpha_t / alpha_s, -noise_t),
        };
        let mut x = sample.clone().mul_scalar(carry);
        for ((_, output), weight) in outputs.iter().zip(weights) {
            x = x + (*output).clone().mul_scalar(scale * weight);
        }
        match noise {
            Some(noise) => linear(&x, 1.0, noise, self.noise_scale(from, tau)),
            None => x,
        }
    }

    /// The weights w_k of the outputs at `nodes` (λ − λ_s, newest first) in a step of
    /// length `h`: c ∫_0^h e^{r(u − h)} ℓ_k(u) du with rate r = c over x̂_0 and −1 over ε̂;
    /// over x̂_0 at order 2, with diffusers' extra term (`corrector`: its corrector's).
    fn weights(&self, nodes: &[f64], h: f64, tau: f64, corrector: bool) -> Vec<f64> {
        let c = 1.0 + tau * tau;
        let data = self.config.algorithm_type == SaSolverAlgorithm::DataPrediction;
        let rate = if data { c } else { -1.0 };
        // ∫_0^h e^{ru} ℓ_k(u) du = (1/r) ∫_0^{rh} e^v ℓ_k(v/r) dv, the basis through r·nodes.
        let scaled: Vec<f64> = nodes.iter().map(|node| rate * node).collect();
        let mut weights: Vec<f64> = (0..nodes.len())
            .map(|k| c * (-rate * h).exp() * exp_lagrange_integral(&scaled, k, rate * h) / rate)
            .collect();
        if data && nodes.len() == 2 {
            // c·(h²/2 − φ)/(λ_s − λ_{s−1}) (predictor) or c·(h/2 − φ/h) (corrector), with
            // φ = (ch − 1 + e^{−ch})/c², moved from the older output to the newer.
            let phi = (c * h + (-c * h).exp_m1()) / (c * c);
            let extra = if corrector {
                h / 2.0 - phi / h
            } else {
                (h * h / 2.0 - phi) / -nodes[1]
            };
            weights[0] += c * extra;
            weights[1] -= c * extra;
        }
        weights
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for SaSolver<B, D> {
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
        let (x0, integrated) = integrated_output(
            "SA-Solver",
            output,
            prediction,
            &sample,
            (self.sigmas[index], timestep),
            self.config.thresholding,
            self.config.algorithm_type == SaSolverAlgorithm::DataPrediction,
        )?;
        if !self.history.continues(index) {
            self.forget();
        }
        let sample = match self.last.take() {
            Some(last) => self.update(
                &last.sample,
                index - 1,
                (last.corrector_order, last.tau),
                Some(&integrated),
                last.noise.as_ref(),
            ),
            None => sample,
        };
        let before = self.history.record(index, (index, integrated));

        let (mut predictor_order, mut corrector_order) =
            (self.config.predictor_order, self.config.corrector_order);
        if self.config.lower_order_final {
            let left = self.timesteps.len() - index;
            predictor_order = predictor_order.min(left);
            corrector_order = corrector_order.min(left + 1);
        }
        let tau = self.config.tau.at(timestep);
        let noise = (self.noise_scale(index, tau) > 0.0)
            .then(|| standard_normal::<B, D>(sample.dims(), rng, &sample.device()));
        let next = self.update(
            &sample,
            index,
            (predictor_order.min(before + 1), tau),
            None,
            noise.as_ref(),
        );
        self.last = Some(Predictor {
            sample,
            noise,
            tau,
            corrector_order: corrector_order.min(before + 2),
        });
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
