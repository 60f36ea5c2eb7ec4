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
    /// Lay the grid over the timesteps before the first whose λ_t = log(α_t/s_t) is below
    /// this, dropping the noisiest (diffusers' `lambda_min_clipped`, "critical for the cosine
    /// schedule"; σ spacings other than the timesteps ignore it, as there). −∞, the default,
    /// keeps every timestep. A `trailing` grid lays its N points over the kept timesteps,
    /// where diffusers' steps from the last kept one by T/N and lays fewer.
    pub lambda_min_clipped: f64,
    /// The noise levels: σ at the grid's timesteps, or spaced between the schedule's smallest
    /// and largest σ with their timesteps rounded (diffusers' `use_karras_sigmas`,
    /// `use_exponential_sigmas`, `use_beta_sigmas`).
    pub sigma_spacing: SigmaSpacing,
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
            lambda_min_clipped: f64::NEG_INFINITY,
            sigma_spacing: SigmaSpacing::Timesteps,
            thresholding: None,
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::BeforeZero),
        }
    }
}

/// SA-Solver (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast Sampling of
/// Diffusion Models", NeurIPS 2023; diffusers' `SASolverScheduler`): a stochastic Adams
/// predictor (SA-Predictor, diffusers' `stochastic_adams_bashforth_update`), and a corrector
/// (SA-Corrector, `stochastic_adams_moulton_update`) that reuses the model call the next step
/// makes anyway, for the variance-controlled reverse SDE whose noise is scaled by τ(t)
/// ([`SaSolverTau`]).
///
/// In λ = log(α/s) (VP signal and noise scales α, s), with h = λ_t − λ_s, c = 1 + τ² and the
/// Lagrange basis polynomials ℓ_k through the λ of the model outputs x̂_0(k) used, a step
/// from s to t is, over x̂_0:
///
/// ```text
/// x_t = e^{−τ²h} (s_t/s_s) x_s + α_t Σ_k w_k x̂_0(k) + s_t √(1 − e^{−2τ²h}) z,
/// w_k = c ∫_{λ_s}^{λ_t} e^{−c(λ_t − λ)} ℓ_k(λ) dλ,
/// ```
///
/// and over ε̂: x_t = (α_t/α_s) x_s − s_t Σ_k w_k ε̂(k) + τ s_t √(e^{2h} − 1) z with
/// w_k = c ∫ e^{λ_t − λ} ℓ_k(λ) dλ. The predictor interpolates the latest p outputs, this
/// step's and the ones before; the corrector, at the next step, interpolates the new output
/// too and redoes the update from x_s with the same z. With τ = 0 the order-1 predictor is
/// DDIM (DPM-Solver++(1) over x̂_0, DPM-Solver(1) over ε̂); the order-1 corrector takes
/// that step with the new output. Order 2 over x̂_0 adds diffusers' O(h³) term to w_0 and
/// w_1, as UniPC does ([`crate::UniPc`]). The weights are integrated in closed form in
/// u = λ − λ_t ≤ 0, so that no exponential overflows however large τ is.
///
/// The grid is diffusers' multistep one and ends at σ of the first training timestep, not 0
/// (the last x̂_0 is not taken); with Karras σ the last step stays at the last σ, as in
/// diffusers, except in a one-step run, which steps to σ_min (diffusers' returns the noise).
/// Noise is drawn only in steps whose noise term is not zero (τ(t) > 0 and σ' ≠ σ).
///
/// A step that does not follow the last one starts a new trajectory: a run from index 0, or
/// one that starts part-way (image-to-image), whose first steps are then of lower order.
/// Within a trajectory the corrector replaces the sample a step is given with the corrected
/// one, as diffusers' does (and UniPC's): a change the caller made to it between steps
/// (inpainting's blend of the known region) reaches the next step only through the model
/// output at it.
#[derive(Debug, Clone)]
pub struct SaSolver<B: Backend, const D: usize> {
    config: SaSolverConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final σ.
    sigmas: Vec<f64>,
    /// The integrated outputs (x̂_0 or ε̂) of recent steps with their step index.
    history: History<(usize, Tensor<B, D>)>,
    /// The last predictor, which the next step corrects.
    pending: Option<PendingCorrection<B, D>>,
}

/// What the corrector needs of the last predictor step.
#[derive(Debug, Clone)]
struct PendingCorrection<B: Backend, const D: usize> {
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
        for bound in [config.tau.min_timestep, config.tau.max_timestep] {
            if bound.is_nan() {
                return Err(SamplerError::OutOfRange {
                    name: "tau window",
                    value: bound,
                    expected: "timesteps (or ±∞), not NaN",
                });
            }
        }
        SampleClipping::thresholding_only(config.thresholding).validate()?;
        let (timesteps, mut sigmas) = discrete_sigma_grid(
            config.grid,
            config.sigma_spacing,
            FinalSigmas::SigmaMin,
            config.lambda_min_clipped,
            schedule,
            steps,
        )?;
        // diffusers repeats the last spaced σ, so the last step only carries the corrector;
        // in one step that would return the noise, so Kiln steps to σ_min there (as DEIS).
        if config.sigma_spacing.is_spaced() && steps > 1 {
            sigmas[steps] = sigmas[steps - 1];
        }
        let kept = config.predictor_order.max(config.corrector_order - 1);
        Ok(Self {
            config,
            timesteps,
            sigmas,
            history: History::new(kept),
            pending: None,
        })
    }

    /// Forgets the trajectory: the next step starts a new one.
    fn forget(&mut self) {
        self.history.clear();
        self.pending = None;
    }

    /// The step from grid point `from` to the next.
    fn span(&self, from: usize) -> Span {
        let (sigma_s, sigma_t) = (self.sigmas[from], self.sigmas[from + 1]);
        let ((alpha_s, noise_s), (alpha_t, noise_t)) = (alpha_sigma(sigma_s), alpha_sigma(sigma_t));
        Span {
            alpha_s,
            noise_s,
            alpha_t,
            noise_t,
            lambda_s: lambda(sigma_s),
            h: lambda(sigma_t) - lambda(sigma_s),
            algorithm: self.config.algorithm_type,
        }
    }

    /// The update over `span` (from a grid point to the next), starting at `sample`, of order
    /// `order` with `tau` and `noise`: the predictor, or with `corrected` (the new step's
    /// integrated output) the corrector. The newest history entry is the output at the span's
    /// start.
    fn update(
        &self,
        sample: &Tensor<B, D>,
        span: Span,
        (order, tau): (usize, f64),
        corrected: Option<&Tensor<B, D>>,
        noise: Option<&Tensor<B, D>>,
    ) -> Tensor<B, D> {
        // The outputs interpolated, newest first, with their λ − λ_s.
        let outputs: Vec<(f64, &Tensor<B, D>)> = corrected
            .map(|output| (span.h, output))
            .into_iter()
            .chain((0..).map(|back| {
                let (index, output) = self.history.back(back);
                (lambda(self.sigmas[*index]) - span.lambda_s, output)
            }))
            .take(order)
            .collect();
        let nodes: Vec<f64> = outputs.iter().map(|(node, _)| *node).collect();
        let (carry, scale) = span.coefficients(tau);
        let mut x = sample.clone().mul_scalar(carry);
        for ((_, output), weight) in
            outputs
                .iter()
                .zip(span.weights(&nodes, tau, corrected.is_some()))
        {
            x = x + (*output).clone().mul_scalar(scale * weight);
        }
        match noise {
            Some(noise) => linear(&x, 1.0, noise, span.noise_scale(tau)),
            None => x,
        }
    }
}

/// One step of the grid, from s to t, in VP terms.
#[derive(Debug, Clone, Copy)]
struct Span {
    alpha_s: f64,
    noise_s: f64,
    alpha_t: f64,
    noise_t: f64,
    lambda_s: f64,
    /// λ_t − λ_s.
    h: f64,
    algorithm: SaSolverAlgorithm,
}

impl Span {
    /// The factor of x_s and the factor of Σ_k w_k times the outputs: e^{−τ²h} s_t/s_s and
    /// α_t over x̂_0, α_t/α_s and −s_t over ε̂.
    fn coefficients(&self, tau: f64) -> (f64, f64) {
        match self.algorithm {
            SaSolverAlgorithm::DataPrediction => (
                (-tau * tau * self.h).exp() * self.noise_t / self.noise_s,
                self.alpha_t,
            ),
            SaSolverAlgorithm::NoisePrediction => (self.alpha_t / self.alpha_s, -self.noise_t),
        }
    }

    /// The factor of z: s_t √(1 − e^{−2τ²h}) over x̂_0, τ s_t √(e^{2h} − 1) over ε̂ (zero
    /// when the step adds no noise).
    fn noise_scale(&self, tau: f64) -> f64 {
        let variance = match self.algorithm {
            SaSolverAlgorithm::DataPrediction => -(-2.0 * tau * tau * self.h).exp_m1(),
            SaSolverAlgorithm::NoisePrediction => tau * tau * (2.0 * self.h).exp_m1(),
        };
        self.noise_t * variance.max(0.0).sqrt()
    }

    /// The weights w_k of the outputs at `nodes` (λ − λ_s, newest first):
    /// c ∫_0^h e^{r(u − h)} ℓ_k(u) du with rate r = c over x̂_0 and −1 over ε̂; over x̂_0 at
    /// order 2, with diffusers' extra term (its corrector's for a `corrector`).
    fn weights(&self, nodes: &[f64], tau: f64, corrector: bool) -> Vec<f64> {
        let (c, h) = (1.0 + tau * tau, self.h);
        let data = self.algorithm == SaSolverAlgorithm::DataPrediction;
        let rate = if data { c } else { -1.0 };
        // With v = r(u − h): −(1/r) ∫_0^{−rh} e^v ℓ_k(v/r + h) dv, the basis through r·(nodes − h);
        // over x̂_0 the exponent stays ≤ 0.
        let scaled: Vec<f64> = nodes.iter().map(|node| rate * (node - h)).collect();
        let mut weights: Vec<f64> = (0..nodes.len())
            .map(|k| -c / rate * exp_lagrange_integral(&scaled, k, -rate * h))
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
        let sample = match self.pending.take() {
            Some(pending) => self.update(
                &pending.sample,
                self.span(index - 1),
                (pending.corrector_order, pending.tau),
                Some(&integrated),
                pending.noise.as_ref(),
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
        let span = self.span(index);
        let noise = (span.noise_scale(tau) > 0.0)
            .then(|| standard_normal::<B, D>(sample.dims(), rng, &sample.device()));
        let next = self.update(
            &sample,
            span,
            (predictor_order.min(before + 1), tau),
            None,
            noise.as_ref(),
        );
        self.pending = Some(PendingCorrection {
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
