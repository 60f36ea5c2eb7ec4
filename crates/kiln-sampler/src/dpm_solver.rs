use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::brownian::{BrownianNoise, NoisePath};
use crate::multistep::{History, check_order, integrated_output, multistep_order};
use crate::sampler::{Step, linear, timestep_at};
use crate::sigma_grid::{
    FinalSigmas, SigmaSpacing, alpha_sigma, discrete_sigma_grid, lambda, sigma_at,
};
use crate::{DynamicThresholding, SampleClipping, Sampler, SamplerError};

/// Which equation DPM-Solver integrates, and over which model output (diffusers'
/// `algorithm_type`).
///
/// The `++` solvers (Lu et al. 2022b) integrate the data prediction x̂_0; the others (Lu et al.
/// 2022a, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in Around
/// 10 Steps") the noise prediction ε̂, which cannot step to σ = 0: they need
/// [`FinalSigmas::SigmaMin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlgorithmType {
    /// `dpmsolver++`: the probability-flow ODE over x̂_0 (deterministic).
    #[default]
    DpmSolverPlusPlus,
    /// `sde-dpmsolver++`: the reverse SDE over x̂_0 (Lu et al. 2022b, §4; orders 1 and 2, the
    /// paper's. diffusers' third-order SDE update weighs D2 by
    /// α_t((1 − e^{−2h} − 2h)/(2h)² − ½), where the exponential integrator's
    /// ∫₀^h u² e^{−2(h−u)} du / h² gives + ½, so Kiln does not offer it).
    SdeDpmSolverPlusPlus,
    /// `dpmsolver`: the probability-flow ODE over ε̂ (orders 1–3; order 1 is DDIM).
    DpmSolver,
    /// `sde-dpmsolver`: the reverse SDE over ε̂ (orders 1 and 2).
    SdeDpmSolver,
}

impl AlgorithmType {
    /// diffusers' name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::DpmSolverPlusPlus => "dpmsolver++",
            Self::SdeDpmSolverPlusPlus => "sde-dpmsolver++",
            Self::DpmSolver => "dpmsolver",
            Self::SdeDpmSolver => "sde-dpmsolver",
        }
    }

    /// Fails on an order it does not have (1–3; 1 or 2 for the SDE variants) and on an ε̂
    /// algorithm with [`FinalSigmas::Zero`].
    pub(crate) fn check(
        self,
        sampler: &'static str,
        solver_order: usize,
        final_sigmas: FinalSigmas,
    ) -> Result<(), SamplerError> {
        let (max_order, expected) = if self.is_sde() {
            (2, "1 or 2 for the SDE variants")
        } else {
            (3, "1, 2 or 3")
        };
        check_order(sampler, solver_order, max_order, expected)?;
        if !self.integrates_data() && final_sigmas == FinalSigmas::Zero {
            return Err(SamplerError::Incompatible {
                sampler,
                reason: "the noise-prediction algorithms (dpmsolver, sde-dpmsolver) cannot step \
                         to σ = 0; use final_sigmas_type sigma_min",
            });
        }
        Ok(())
    }

    /// `next` with an SDE step's fresh noise n·z added (z ~ N(0, I) from `noise()`, n from
    /// `update`); unchanged for the ODE algorithms and on a step to σ = 0, where `noise` is
    /// not called.
    pub(crate) fn add_noise<B: Backend, const D: usize>(
        self,
        next: Tensor<B, D>,
        update: &Update,
        sigma_t: f64,
        noise: impl FnOnce() -> Tensor<B, D>,
    ) -> Tensor<B, D> {
        if !self.is_sde() || sigma_t == 0.0 {
            return next;
        }
        next + noise().mul_scalar(update.noise)
    }

    /// Whether it integrates x̂_0 (the `++` solvers) rather than ε̂.
    pub(crate) fn integrates_data(self) -> bool {
        matches!(self, Self::DpmSolverPlusPlus | Self::SdeDpmSolverPlusPlus)
    }

    /// Whether it adds fresh noise at every step.
    pub(crate) fn is_sde(self) -> bool {
        matches!(self, Self::SdeDpmSolverPlusPlus | Self::SdeDpmSolver)
    }

    /// The weights of one update from VP scales (α_s, s_s) to (α_t, s_t), h = λ_t − λ_s.
    ///
    /// ```text
    /// dpmsolver++      c = s_t/s_s          w0 = −α_t(e^{−h} − 1)   w1 = α_t φ₂(h)
    /// sde-dpmsolver++  c = s_t/s_s e^{−h}   w0 = −α_t(e^{−2h} − 1)  w1 = α_t φ₂(2h)   z: s_t √(1 − e^{−2h})
    /// dpmsolver        c = α_t/α_s          w0 = −s_t(e^h − 1)      w1 = −s_t ψ₂(h)
    /// sde-dpmsolver    c = α_t/α_s          w0 = −2 s_t(e^h − 1)    w1 = −2 s_t ψ₂(h)  z: s_t √(e^{2h} − 1)
    /// ```
    ///
    /// with φ₂(h) = (e^{−h} − 1)/h + 1 and ψ₂(h) = (e^h − 1)/h − 1; the third-order weights
    /// are w2 = −α_t φ₃(h) and −s_t ψ₃(h), φ₃(h) = (e^{−h} − 1 + h)/h² − ½,
    /// ψ₃(h) = (e^h − 1 − h)/h² − ½.
    pub(crate) fn update(
        self,
        (alpha_s, s_s): (f64, f64),
        (alpha_t, s_t): (f64, f64),
        h: f64,
    ) -> Update {
        match self {
            Self::DpmSolverPlusPlus => Update {
                sample: s_t / s_s,
                d0: -alpha_t * (-h).exp_m1(),
                d1: alpha_t * phi_2(h),
                d2: -alpha_t * phi_3(h),
                noise: 0.0,
            },
            Self::SdeDpmSolverPlusPlus => Update {
                sample: s_t / s_s * (-h).exp(),
                d0: -alpha_t * (-2.0 * h).exp_m1(),
                d1: alpha_t * phi_2(2.0 * h),
                d2: f64::NAN,
                noise: s_t * (-(-2.0 * h).exp_m1()).sqrt(),
            },
            Self::DpmSolver => Update {
                sample: alpha_t / alpha_s,
                d0: -s_t * h.exp_m1(),
                d1: -s_t * psi_2(h),
                d2: -s_t * psi_3(h),
                noise: 0.0,
            },
            Self::SdeDpmSolver => Update {
                sample: alpha_t / alpha_s,
                d0: -2.0 * s_t * h.exp_m1(),
                d1: -2.0 * s_t * psi_2(h),
                d2: f64::NAN,
                noise: s_t * (2.0 * h).exp_m1().sqrt(),
            },
        }
    }
}

/// One multistep update x_t = c·x_s + w0·D0 + w1·D1 + w2·D2 + n·z (see
/// [`AlgorithmType::update`]); the midpoint solver's D1 weight is ½·w0.
pub(crate) struct Update {
    pub sample: f64,
    pub d0: f64,
    pub d1: f64,
    pub d2: f64,
    pub noise: f64,
}

impl Update {
    /// The weight of D1 in a second-order update by `solver_type`: ½·w0 (midpoint) or w1
    /// (heun).
    pub(crate) fn second_order(&self, solver_type: SolverType) -> f64 {
        match solver_type {
            SolverType::Midpoint => 0.5 * self.d0,
            SolverType::Heun => self.d1,
        }
    }
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
    /// Take the last step at first order whatever the step count (diffusers' `euler_at_final`:
    /// steadier samples, at some cost in detail). It changes a run only where the last step
    /// would not be first order anyway: with `lower_order_final` off or from 15 steps on, and
    /// a final σ other than 0.
    pub euler_at_final: bool,
    /// Lay the grid over the timesteps before the first whose λ_t = log(α_t/s_t) is below
    /// this, dropping the noisiest (diffusers' `lambda_min_clipped`, "critical for the cosine
    /// schedule"; σ spacings other than the timesteps ignore it, as there). −∞, the default,
    /// keeps every timestep. A `trailing` grid lays its N points over the kept timesteps,
    /// where diffusers' steps from the last kept one by T/N and lays fewer.
    pub lambda_min_clipped: f64,
    /// The noise levels: σ at the grid's timesteps, or spaced between the schedule's smallest
    /// and largest σ with their timesteps rounded (diffusers' `use_karras_sigmas`,
    /// `use_exponential_sigmas`, `use_beta_sigmas`; `use_lu_lambdas`, Lu et al. 2022a's
    /// "logSNR" steps, is [`SigmaSpacing::Exponential`]).
    pub sigma_spacing: SigmaSpacing,
    /// Dynamic thresholding of x̂_0 (diffusers' `thresholding`).
    pub thresholding: Option<DynamicThresholding>,
    /// The inference timesteps (`linspace` over N + 1 points without the last, by default).
    pub grid: TimestepGrid,
    /// Where the SDE algorithms' noise comes from: drawn step by step (the default, as
    /// diffusers), or read off one Brownian tree per trajectory, as k-diffusion's
    /// `sample_dpmpp_2m_sde` does, so that one seed keeps one noise path across step counts.
    /// The ODE algorithms refuse a tree.
    pub noise_path: NoisePath,
}

impl Default for DpmSolverConfig {
    fn default() -> Self {
        Self {
            solver_order: 2,
            algorithm_type: AlgorithmType::DpmSolverPlusPlus,
            solver_type: SolverType::Midpoint,
            lower_order_final: true,
            final_sigmas_type: FinalSigmas::Zero,
            euler_at_final: false,
            lambda_min_clipped: f64::NEG_INFINITY,
            sigma_spacing: SigmaSpacing::Timesteps,
            thresholding: None,
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::BeforeZero),
            noise_path: NoisePath::Sequential,
        }
    }
}

/// DPM-Solver++ multistep (Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of
/// Diffusion Probabilistic Models", Algorithm 2), an exponential integrator in
/// λ = log(α/σ) that extrapolates the data prediction x̂_0 from the last 1–3 steps; or, by
/// [`AlgorithmType`], its SDE variant or the original DPM-Solver over the noise prediction ε̂
/// (Lu et al. 2022a).
///
/// With α_t = 1/√(σ_t² + 1), s_t = σ_t α_t (the VP noise scale), h = λ_t − λ_s, and
/// D0 = the model output of this step (x̂_0 or ε̂), D1 = (D0 − the previous one)/r with
/// r = h_prev/h, the `++` ODE steps
///
/// ```text
/// order 1:  x_t = (s_t/s_s) x_s − α_t (e^{−h} − 1) D0                (= DDIM)
/// order 2:  … − ½ α_t (e^{−h} − 1) D1                                  (midpoint)
///           … + α_t ((e^{−h} − 1)/h + 1) D1                            (heun)
/// ```
///
/// and a third-order term with D2 from three steps; the other algorithms' weights are in
/// [`AlgorithmType`]'s table (diffusers' `DPMSolverMultistepScheduler`, term for term).
///
/// A step that does not follow the last one starts a new trajectory, so one value can sample
/// again and again: a run from index 0, or one that starts at a later index (image-to-image
/// from a partly noised input), whose first steps are then of lower order.
#[derive(Debug, Clone)]
pub struct DpmSolver<B: Backend, const D: usize> {
    config: DpmSolverConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final σ.
    sigmas: Vec<f64>,
    /// The model outputs the algorithm integrates (x̂_0 or ε̂) of the last `solver_order`
    /// steps.
    history: History<Tensor<B, D>>,
    /// The trajectory's Brownian increments (SDE algorithms).
    noise: BrownianNoise,
    /// Whether the last step is first order whatever the step count (`euler_at_final`, and a
    /// step to σ = 0).
    final_first_order: bool,
}

impl<B: Backend, const D: usize> DpmSolver<B, D> {
    /// DPM-Solver over `schedule` in `steps` steps.
    ///
    /// Fails on an order the algorithm does not have, on an ε̂ algorithm with
    /// [`FinalSigmas::Zero`] and on a spacing's bad parameters.
    pub fn new(
        config: DpmSolverConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        config
            .algorithm_type
            .check("DPM-Solver", config.solver_order, config.final_sigmas_type)?;
        SampleClipping::thresholding_only(config.thresholding).validate()?;
        let (timesteps, sigmas) = discrete_sigma_grid(
            config.grid,
            config.sigma_spacing,
            config.final_sigmas_type,
            config.lambda_min_clipped,
            schedule,
            steps,
        )?;
        if config.noise_path != NoisePath::Sequential && !config.algorithm_type.is_sde() {
            return Err(SamplerError::Incompatible {
                sampler: "DPM-Solver",
                reason: "the ODE algorithms add no noise; a noise path needs sde-dpmsolver++ or \
                         sde-dpmsolver",
            });
        }
        let noise = BrownianNoise::new("DPM-Solver", config.noise_path, &sigmas, schedule)?;
        Ok(Self {
            config,
            timesteps,
            sigmas,
            history: History::new(config.solver_order),
            noise,
            final_first_order: config.euler_at_final
                || config.final_sigmas_type == FinalSigmas::Zero,
        })
    }

    /// DPM-Solver run backwards, from data x_0 up to the noise x_T that [`DpmSolver::new`]
    /// with the same settings and step count samples back to it (diffusers'
    /// `DPMSolverMultistepInverseScheduler`; inversion as in DDIM's, Song et al. 2021, §4.3,
    /// with the higher-order multistep updates, which need fewer steps for the same error).
    /// [`crate::sample`] drives it, taking the data in place of the noise.
    ///
    /// The grid is the forward grid backwards: with the forward run's timesteps
    /// t_1 > … > t_N (σ_1 > … > σ_N), inversion calls the model at 0, t_N, …, t_2 and steps
    /// through σ(0) → σ_N → … → σ_2 → σ_1, so it ends where sampling starts. The data is taken
    /// as x at timestep 0 (σ(0), 0.01 on the linear schedule), the lowest level the model
    /// knows. Where the forward grid already ends at t_N = 0 (σ spaced down to σ(0): Karras,
    /// exponential, beta; or a grid laid to the last step, [`GridEnd::AtLastStep`]),
    /// inversion starts there and makes N − 1 calls. The same update formulas hold with h = λ_t − λ_s < 0; `lower_order_final`
    /// and `euler_at_final` apply to the last steps up to σ_1, and the final σ is unused.
    ///
    /// On `linspace` grids this is diffusers' grid, and with Karras, exponential and beta σ
    /// diffusers' without its last step, from σ_1 to itself, which moves nothing (but with
    /// `lower_order_final` it is the step diffusers takes at first order, where Kiln takes
    /// the step up to σ_1 at first order). diffusers lays its inverse `leading` grid up to the
    /// last kept timestep, past where its forward grid starts, and starts its `trailing` one
    /// at σ(T/N − 1) rather than at the data; Kiln mirrors the forward grid for every spacing.
    ///
    /// Fails on the SDE algorithms (their noise terms, s_t √(1 − e^{−2h}) and s_t √(e^{2h} − 1),
    /// have no real value for h < 0, and diffusers' inverse scheduler returns NaN there:
    /// inversion follows the probability-flow ODE), on a grid with no call left (one step on a
    /// grid that ends at timestep 0), and wherever [`DpmSolver::new`] fails.
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::tensor::Tensor;
    /// use kiln_sampler::{DpmSolver, DpmSolverConfig, FnDenoiser, Prediction, sample};
    /// use kiln_schedule::{BetaSchedule, NoiseSchedule};
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000)?;
    /// let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<Flex, 2>, _t| x.mul_scalar(0.5));
    /// let data = Tensor::<Flex, 2>::ones([4, 2], &Default::default());
    /// let config = DpmSolverConfig::default();
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let mut inverse = DpmSolver::inverse(config, &schedule, 20)?;
    /// let noise = sample(&mut inverse, &model, data, &mut rng, |_| {})?;
    /// let back = sample(&mut DpmSolver::new(config, &schedule, 20)?, &model, noise, &mut rng, |_| {})?;
    /// assert_eq!(back.dims(), [4, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn inverse(
        config: DpmSolverConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        if config.algorithm_type.is_sde() {
            return Err(SamplerError::Incompatible {
                sampler: "DPM-Solver inversion",
                reason: "inversion follows the probability-flow ODE; use dpmsolver++ or \
                         dpmsolver",
            });
        }
        let forward = Self::new(config, schedule, steps)?;
        // The data's own level (timestep 0), unless the grid already ends there, then the
        // forward run's levels from the least noisy up (its final σ left out).
        let levels = forward.timesteps.iter().zip(&forward.sigmas).rev();
        let data_level = (0.0, sigma_at(schedule, 0.0));
        let (mut timesteps, sigmas): (Vec<f64>, Vec<f64>) = std::iter::once(data_level)
            .filter(|_| forward.timesteps.last() != Some(&0.0))
            .chain(levels.map(|(&t, &sigma)| (t, sigma)))
            .unzip();
        // The noisiest level is where the run ends, not a model call.
        timesteps.pop();
        if timesteps.is_empty() {
            return Err(SamplerError::OutOfRange {
                name: "steps",
                value: steps as f64,
                expected: "at least 2 where the grid ends at timestep 0, which inversion starts \
                           from",
            });
        }
        Ok(Self {
            config,
            timesteps,
            sigmas,
            final_first_order: config.euler_at_final,
            ..forward
        })
    }

    /// x_t from x_s = `sample` by the `order`-th update over the history, h = λ_t − λ_s (> 0
    /// sampling, < 0 inverting).
    fn extrapolate<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        order: usize,
        sample: Tensor<B, D>,
        h: f64,
        rng: &mut R,
    ) -> Tensor<B, D> {
        let (sigma_s, sigma_t) = (self.sigmas[index], self.sigmas[index + 1]);
        let algorithm = self.config.algorithm_type;
        let update = algorithm.update(alpha_sigma(sigma_s), alpha_sigma(sigma_t), h);
        let m0 = self.history.back(0);
        let mut next = linear(&sample, update.sample, m0, update.d0);
        if order == 2 {
            let m1 = self.history.back(1);
            let r0 = (lambda(sigma_s) - lambda(self.sigmas[index - 1])) / h;
            let w1 = update.second_order(self.config.solver_type);
            // D1 = (m0 − m1)/r0
            next = next + (m0.clone() - m1.clone()).mul_scalar(w1 / r0);
        } else if order == 3 {
            let (m1, m2) = (self.history.back(1), self.history.back(2));
            let (sigma_s1, sigma_s2) = (self.sigmas[index - 1], self.sigmas[index - 2]);
            let r0 = (lambda(sigma_s) - lambda(sigma_s1)) / h;
            let r1 = (lambda(sigma_s1) - lambda(sigma_s2)) / h;
            let d1_0 = (m0.clone() - m1.clone()).mul_scalar(1.0 / r0);
            let d1_1 = (m1.clone() - m2.clone()).mul_scalar(1.0 / r1);
            let d1 = d1_0.clone() + (d1_0.clone() - d1_1.clone()).mul_scalar(r0 / (r0 + r1));
            let d2 = (d1_0 - d1_1).mul_scalar(1.0 / (r0 + r1));
            next = next + d1.mul_scalar(update.d1) + d2.mul_scalar(update.d2);
        }
        let (shape, device) = (next.dims(), next.device());
        algorithm.add_noise(next, &update, sigma_t, || {
            self.noise
                .increment((sigma_s, sigma_t), shape, &device, rng)
        })
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

/// (e^h − 1)/h − 1: φ₂ of the ε̂ algorithms, only ever at finite h (they stop at σ_min).
fn psi_2(h: f64) -> f64 {
    h.exp_m1() / h - 1.0
}

/// (e^h − 1 − h)/h² − ½.
fn psi_3(h: f64) -> f64 {
    (h.exp_m1() - h) / (h * h) - 0.5
}

impl<B: Backend, const D: usize> Sampler<B, D> for DpmSolver<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(&self.timesteps, index)?;
        self.history.clear();
        self.noise.restart();
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
        let (x0, integrated) = integrated_output(
            "DPM-Solver",
            output,
            prediction,
            &sample,
            (sigma_s, timestep),
            self.config.thresholding,
            self.config.algorithm_type.integrates_data(),
        )?;
        if !self.history.continues(index) {
            self.noise.restart();
        }
        let before = self.history.record(index, integrated);
        let order = multistep_order(
            self.config.solver_order,
            before,
            (index, self.timesteps.len()),
            self.config.lower_order_final,
            self.final_first_order,
        );

        let h = lambda(sigma_t) - lambda(sigma_s);
        // A step that stays at its σ (a grid that already ends at t = 0, then σ_min) moves
        // nothing; its weights would be 0/0.
        let next = if h == 0.0 {
            sample
        } else {
            self.extrapolate(index, order, sample, h, rng)
        };
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
