//! The samplers by name: the one table of the names users type (`--sampler dpm++`), with
//! diffusers' default settings for each, run over any [`Denoiser`].

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Tensor, backend::Backend};
use kiln_sampler::{
    AlgorithmType, Churn, Ddim, DdimConfig, Ddpm, DdpmConfig, Deis, DeisConfig, Denoiser, Dpm2,
    Dpm2Config, DpmSolver, DpmSolverConfig, DpmSolverSde, DpmSolverSdeConfig, DpmSolverSinglestep,
    DpmSolverSinglestepConfig, DynamicThresholding, Euler, EulerConfig, Heun, HeunConfig, Lcm,
    LcmConfig, Lms, LmsConfig, NoisePath, Pndm, PndmConfig, SaSolver, SaSolverConfig, SaSolverTau,
    SampleClipping, Sampler, SamplerError, SigmaSpacing, StepEvent, Tcd, TcdConfig, UniPc,
    UniPcConfig, VarianceType, sample,
};
use kiln_schedule::{NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::rngs::StdRng;

/// The samplers a user can pick by name, each with diffusers' default settings. The list
/// grows as samplers are added, so matches on it need a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamplerName {
    /// `ddpm`: ancestral sampling of Ho et al. 2020.
    Ddpm,
    /// `ddim`: deterministic DDIM (η = 0).
    Ddim,
    /// `pndm`: pseudo-numerical (PRK warm-up, then PLMS).
    Pndm,
    /// `euler`: Euler on the probability-flow ODE in σ.
    Euler,
    /// `euler_a`: Euler ancestral.
    EulerAncestral,
    /// `lms`: the linear multistep method of order 4 in σ (k-diffusion's `sample_lms`).
    Lms,
    /// `heun`: Heun's second-order method (Karras et al. 2022, Algorithm 1).
    Heun,
    /// `dpm2`: DPM-Solver-2, the midpoint method in σ (k-diffusion's `sample_dpm_2`).
    Dpm2,
    /// `dpm2_a`: DPM-Solver-2 ancestral (k-diffusion's `sample_dpm_2_ancestral`).
    Dpm2Ancestral,
    /// `edm`: Heun with Karras σ and churn (Karras et al. 2022, Algorithm 2; S_churn 40,
    /// S_tmin 0.05, S_tmax 50, S_noise 1.003).
    Edm,
    /// `dpm++` (also `dpm++2m`): DPM-Solver++ (2M).
    DpmSolver,
    /// `dpm++3m`: DPM-Solver++ (3M).
    DpmSolver3,
    /// `dpm++2m_sde`: SDE-DPM-Solver++ (2M), [`DpmSolver`] with
    /// [`AlgorithmType::SdeDpmSolverPlusPlus`] (not [`DpmSolverSde`], which is `dpm++sde`).
    DpmSolverSde,
    /// `dpm++2s`: DPM-Solver++ (2S), singlestep.
    DpmSolverSinglestep,
    /// `dpm++sde`: DPM-Solver++ (2S) with SDE noise, [`DpmSolverSde`] (k-diffusion's
    /// `sample_dpmpp_sde`, diffusers' `DPMSolverSDEScheduler`).
    DpmSolverSinglestepSde,
    /// `unipc`: UniPC (bh2, order 2).
    UniPc,
    /// `deis`: DEIS (ρAB, order 2).
    Deis,
    /// `sa_solver`: SA-Solver (stochastic Adams, predictor and corrector of order 2, τ = 1 for
    /// 200 ≤ t ≤ 800).
    SaSolver,
    /// `lcm`: multistep consistency sampling, for consistency models (diffusers'
    /// `LCMScheduler` defaults; [`NamedRun::original_steps`] sets the distillation grid).
    Lcm,
    /// `tcd`: trajectory consistency distillation's strategic stochastic sampling, for
    /// consistency models (diffusers' `TCDScheduler` defaults, γ = 0.3; [`NamedRun::gamma`]
    /// and [`NamedRun::original_steps`] set γ and the distillation grid).
    Tcd,
}

impl SamplerName {
    /// Every sampler, in the order of the names in [`SamplerName::NAMES`].
    pub const ALL: [SamplerName; 20] = [
        Self::Ddpm,
        Self::Ddim,
        Self::Pndm,
        Self::Euler,
        Self::EulerAncestral,
        Self::Lms,
        Self::Heun,
        Self::Dpm2,
        Self::Dpm2Ancestral,
        Self::Edm,
        Self::DpmSolver,
        Self::DpmSolver3,
        Self::DpmSolverSde,
        Self::DpmSolverSinglestep,
        Self::DpmSolverSinglestepSde,
        Self::UniPc,
        Self::Deis,
        Self::SaSolver,
        Self::Lcm,
        Self::Tcd,
    ];
    /// The names accepted by [`FromStr`] and written by [`fmt::Display`].
    pub const NAMES: [&'static str; 20] = [
        "ddpm",
        "ddim",
        "pndm",
        "euler",
        "euler_a",
        "lms",
        "heun",
        "dpm2",
        "dpm2_a",
        "edm",
        "dpm++",
        "dpm++3m",
        "dpm++2m_sde",
        "dpm++2s",
        "dpm++sde",
        "unipc",
        "deis",
        "sa_solver",
        "lcm",
        "tcd",
    ];
    /// Other names [`FromStr`] accepts, with the sampler each stands for.
    pub const ALIASES: [(&'static str, SamplerName); 1] = [("dpm++2m", Self::DpmSolver)];

    /// Whether [`NamedRun::noise_path`] applies: the samplers whose noise is Brownian
    /// increments in σ, `dpm++2m_sde`, `dpm++sde`, `euler_a` and `dpm2_a`.
    pub fn takes_noise_path(self) -> bool {
        matches!(
            self,
            Self::DpmSolverSde
                | Self::DpmSolverSinglestepSde
                | Self::EulerAncestral
                | Self::Dpm2Ancestral
        )
    }

    /// Whether [`NamedRun::sigma_spacing`] applies: the samplers that step through noise
    /// levels σ, all but `ddpm`, `ddim`, `pndm`, `edm` (Karras σ always), `lcm` and `tcd`.
    pub fn takes_sigma_spacing(self) -> bool {
        !matches!(
            self,
            Self::Ddpm | Self::Ddim | Self::Pndm | Self::Edm | Self::Lcm | Self::Tcd
        )
    }

    /// The sampler's name, as [`FromStr`] reads it.
    pub fn name(self) -> &'static str {
        let index = Self::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or_default();
        Self::NAMES[index]
    }

    /// Whether the sampler is for consistency models, laid over a consistency distillation's
    /// grid ([`NamedRun::original_steps`]): `lcm` and `tcd`.
    pub fn samples_consistency_models(self) -> bool {
        matches!(self, Self::Lcm | Self::Tcd)
    }
}

impl FromStr for SamplerName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .zip(Self::ALL)
            .chain(
                Self::ALIASES
                    .iter()
                    .map(|(alias, sampler)| (alias, *sampler)),
            )
            .find(|(known, _)| **known == name)
            .map(|(_, sampler)| sampler)
            .ok_or_else(|| {
                format!(
                    "unknown sampler {name:?}; expected one of {}",
                    Self::NAMES.join(", ")
                )
            })
    }
}

impl fmt::Display for SamplerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A sampler picked by name for [`sample_by_name`]: diffusers' default settings for
/// `sampler`, laid out for `steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NamedRun {
    /// The sampler.
    pub sampler: SamplerName,
    /// Sampler steps (Heun, EDM, both DPM2 and DPM-Solver++ SDE evaluate the model about twice
    /// per step).
    pub steps: usize,
    /// Keep each step's prediction of x_0 within [−1, 1] where the sampler supports it:
    /// `clip_sample` for DDPM, DDIM, Euler, LMS, Heun, both DPM2, DPM-Solver++ SDE, LCM and
    /// TCD, dynamic thresholding with a maximum of 1 for DPM-Solver++ (multistep and
    /// singlestep), DEIS, UniPC and SA-Solver (PNDM has no such option).
    pub clip: bool,
    /// Lay the timesteps out with this `timestep_spacing` instead of the sampler's default,
    /// keeping its end convention (`trailing` starts every sampler at t = T − 1).
    pub spacing: Option<TimestepSpacing>,
    /// For `lcm` and `tcd`: M, the steps of the grid the consistency model was distilled on
    /// (diffusers' `original_inference_steps`; `None`: its default, 50).
    pub original_steps: Option<usize>,
    /// For `tcd`: γ, the stochasticity of every step, from 0 (deterministic) to 1 (LCM's fresh
    /// noise) (`None`: diffusers' default, 0.3).
    pub gamma: Option<f64>,
    /// For `sa_solver`: τ, the stochasticity of the steps from timesteps 200 to 800 (diffusers'
    /// window), ≥ 0: 0 solves the ODE, 1 the reverse SDE (`None`: diffusers' default, 1).
    pub tau: Option<f64>,
    /// For the samplers that step through noise levels σ ([`SamplerName::takes_sigma_spacing`]):
    /// where they place them, Karras, exponential or beta σ between the grid's largest and
    /// smallest instead of σ at its timesteps (`None` or `Timesteps`: the timesteps,
    /// diffusers' default; a spaced σ for another sampler is an error). Exponential σ suit
    /// DPM-Solver++ and UniPC from 10 steps; SA-Solver's order-2 predictor swings on spaced σ
    /// below 20 steps, and beta σ suit only small σ_max (docs/samplers.md).
    pub sigma_spacing: Option<SigmaSpacing>,
    /// For the SDE and ancestral samplers ([`SamplerName::takes_noise_path`]): where their
    /// Brownian noise comes from, drawn step by step (the default) or read off one Brownian
    /// tree per trajectory, so that a seed keeps one noise path across step counts (another
    /// sampler refuses a tree).
    pub noise_path: NoisePath,
    /// For `ddpm`: the variance of its steps (`None`: `learned_range` for a model that learns
    /// its variance ([`Denoiser::learns_variance`]), else diffusers' default, `fixed_small`;
    /// another sampler refuses one).
    pub variance: Option<VarianceType>,
}

impl NamedRun {
    /// `sampler` in `steps` steps with its default timesteps, x_0 clipped if `clip`.
    pub fn new(sampler: SamplerName, steps: usize, clip: bool) -> Self {
        Self {
            sampler,
            steps,
            clip,
            spacing: None,
            original_steps: None,
            gamma: None,
            tau: None,
            sigma_spacing: None,
            noise_path: NoisePath::Sequential,
            variance: None,
        }
    }

    /// The sampler's `default` grid with this run's spacing.
    fn grid(&self, default: TimestepGrid) -> TimestepGrid {
        match self.spacing {
            Some(spacing) => TimestepGrid { spacing, ..default },
            None => default,
        }
    }

    /// This run's σ spacing, else the sampler's `default`.
    fn sigma_spacing_or(&self, default: SigmaSpacing) -> SigmaSpacing {
        self.sigma_spacing.unwrap_or(default)
    }
}

/// Runs the sampler `run` names with any [`Denoiser`] (a UNet, or the Gaussian-mixture
/// oracle of tests) from `noise` (x_T, unscaled), drawing the noise of stochastic samplers
/// from `rng` and calling `on_step` after every step.
pub fn sample_by_name<B: Backend, const D: usize, M: Denoiser<B, D>>(
    run: NamedRun,
    schedule: &NoiseSchedule,
    denoiser: &M,
    noise: Tensor<B, D>,
    rng: &mut StdRng,
    mut on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError> {
    let mut sampler = run.build::<B, D, M>(schedule, denoiser.learns_variance())?;
    sampler.run(denoiser, noise, rng, &mut on_step)
}

impl NamedRun {
    /// The sampler laid over `schedule` for a model that `learns_variance` or not, behind a
    /// trait object.
    fn build<B: Backend, const D: usize, M: Denoiser<B, D>>(
        &self,
        schedule: &NoiseSchedule,
        learns_variance: bool,
    ) -> Result<Box<dyn SamplerRun<B, D, M>>, SamplerError> {
        if self.sigma_spacing.is_some_and(SigmaSpacing::is_spaced)
            && !self.sampler.takes_sigma_spacing()
        {
            return Err(SamplerError::Incompatible {
                sampler: self.sampler.name(),
                reason: match self.sampler {
                    SamplerName::Edm => {
                        "edm is Heun with Karras σ and churn; take heun for another σ spacing"
                    }
                    _ => {
                        "this sampler steps between timesteps, not σ; a σ spacing is for the \
                          samplers that step through σ"
                    }
                },
            });
        }
        if self.noise_path != NoisePath::Sequential && !self.sampler.takes_noise_path() {
            return Err(SamplerError::Incompatible {
                sampler: self.sampler.name(),
                reason: "this sampler takes no noise path; a Brownian tree is for dpm++2m_sde, \
                         dpm++sde, euler_a and dpm2_a",
            });
        }
        if self.variance.is_some() && self.sampler != SamplerName::Ddpm {
            return Err(SamplerError::Incompatible {
                sampler: self.sampler.name(),
                reason: "only ddpm takes a variance; the other samplers' steps set their own",
            });
        }
        let steps = self.steps;
        Ok(match self.sampler {
            SamplerName::Ddpm => Box::new(Ddpm::new(self.ddpm(learns_variance), schedule, steps)?),
            SamplerName::Ddim => Box::new(Ddim::new(self.ddim(), schedule, steps)?),
            SamplerName::Pndm => Box::new(Pndm::new(self.pndm(), schedule, steps)?),
            SamplerName::Euler => Box::new(Euler::new(self.euler(false), schedule, steps)?),
            SamplerName::EulerAncestral => Box::new(Euler::new(self.euler(true), schedule, steps)?),
            SamplerName::Lms => Box::new(Lms::new(self.lms(), schedule, steps)?),
            SamplerName::Heun => Box::new(Heun::new(self.heun(None), schedule, steps)?),
            SamplerName::Dpm2 => Box::new(Dpm2::new(self.dpm2(false), schedule, steps)?),
            SamplerName::Dpm2Ancestral => Box::new(Dpm2::new(self.dpm2(true), schedule, steps)?),
            SamplerName::Edm => Box::new(Heun::new(self.heun(Some(EDM_CHURN)), schedule, steps)?),
            SamplerName::DpmSolver => {
                let config = self.dpm_solver(2, AlgorithmType::DpmSolverPlusPlus);
                Box::new(DpmSolver::new(config, schedule, steps)?)
            }
            SamplerName::DpmSolver3 => {
                let config = self.dpm_solver(3, AlgorithmType::DpmSolverPlusPlus);
                Box::new(DpmSolver::new(config, schedule, steps)?)
            }
            SamplerName::DpmSolverSde => {
                let config = self.dpm_solver(2, AlgorithmType::SdeDpmSolverPlusPlus);
                Box::new(DpmSolver::new(config, schedule, steps)?)
            }
            SamplerName::DpmSolverSinglestep => Box::new(DpmSolverSinglestep::new(
                self.dpm_solver_singlestep(),
                schedule,
                steps,
            )?),
            SamplerName::DpmSolverSinglestepSde => {
                Box::new(DpmSolverSde::new(self.dpm_solver_sde(), schedule, steps)?)
            }
            SamplerName::UniPc => Box::new(UniPc::new(self.unipc(), schedule, steps)?),
            SamplerName::Deis => Box::new(Deis::new(self.deis(), schedule, steps)?),
            SamplerName::SaSolver => Box::new(SaSolver::new(self.sa_solver(), schedule, steps)?),
            SamplerName::Lcm => Box::new(Lcm::new(self.lcm(), schedule, steps)?),
            SamplerName::Tcd => Box::new(Tcd::new(self.tcd(), schedule, steps)?),
        })
    }

    /// x̂_0 clamped to [−1, 1] when `clip` is set.
    fn clipping(&self) -> SampleClipping {
        SampleClipping {
            clip_sample: self.clip,
            ..SampleClipping::default()
        }
    }

    /// Dynamic thresholding with a maximum of 1 when `clip` is set (the multistep solvers).
    fn thresholding(&self) -> Option<DynamicThresholding> {
        self.clip.then(DynamicThresholding::default)
    }

    fn lcm(&self) -> LcmConfig {
        let default = LcmConfig::default();
        LcmConfig {
            clipping: self.clipping(),
            original_inference_steps: self
                .original_steps
                .unwrap_or(default.original_inference_steps),
            ..default
        }
    }

    fn tcd(&self) -> TcdConfig {
        let default = TcdConfig::default();
        TcdConfig {
            clipping: self.clipping(),
            original_inference_steps: self
                .original_steps
                .unwrap_or(default.original_inference_steps),
            gamma: self.gamma.unwrap_or(default.gamma),
        }
    }

    fn ddpm(&self, learns_variance: bool) -> DdpmConfig {
        let default = DdpmConfig::default();
        DdpmConfig {
            variance_type: self
                .variance
                .unwrap_or(VarianceType::default_for(learns_variance)),
            clipping: self.clipping(),
            grid: self.grid(default.grid),
        }
    }

    fn ddim(&self) -> DdimConfig {
        let default = DdimConfig::default();
        DdimConfig {
            clipping: self.clipping(),
            grid: self.grid(default.grid),
            ..default
        }
    }

    fn pndm(&self) -> PndmConfig {
        let default = PndmConfig::default();
        PndmConfig {
            grid: self.grid(default.grid),
            ..default
        }
    }

    fn euler(&self, ancestral: bool) -> EulerConfig {
        let default = EulerConfig::default();
        EulerConfig {
            ancestral,
            clipping: self.clipping(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            noise_path: self.noise_path,
        }
    }

    fn lms(&self) -> LmsConfig {
        let default = LmsConfig::default();
        LmsConfig {
            clipping: self.clipping(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            ..default
        }
    }

    fn dpm2(&self, ancestral: bool) -> Dpm2Config {
        let default = Dpm2Config::default();
        Dpm2Config {
            ancestral,
            clipping: self.clipping(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            noise_path: self.noise_path,
        }
    }

    /// Heun; with `churn` and Karras σ, EDM's stochastic sampler.
    fn heun(&self, churn: Option<Churn>) -> HeunConfig {
        HeunConfig {
            clipping: self.clipping(),
            sigma_spacing: match churn {
                Some(_) => SigmaSpacing::Karras,
                None => self.sigma_spacing_or(SigmaSpacing::Timesteps),
            },
            churn,
            grid: self.grid(HeunConfig::default().grid),
        }
    }

    fn dpm_solver_sde(&self) -> DpmSolverSdeConfig {
        let default = DpmSolverSdeConfig::default();
        DpmSolverSdeConfig {
            clipping: self.clipping(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            noise_path: self.noise_path,
        }
    }

    fn dpm_solver_singlestep(&self) -> DpmSolverSinglestepConfig {
        let default = DpmSolverSinglestepConfig::default();
        DpmSolverSinglestepConfig {
            thresholding: self.thresholding(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            ..default
        }
    }

    fn deis(&self) -> DeisConfig {
        let default = DeisConfig::default();
        DeisConfig {
            thresholding: self.thresholding(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            ..default
        }
    }

    fn dpm_solver(&self, solver_order: usize, algorithm_type: AlgorithmType) -> DpmSolverConfig {
        let default = DpmSolverConfig::default();
        DpmSolverConfig {
            solver_order,
            algorithm_type,
            thresholding: self.thresholding(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            noise_path: self.noise_path,
            ..default
        }
    }

    fn sa_solver(&self) -> SaSolverConfig {
        let default = SaSolverConfig::default();
        SaSolverConfig {
            tau: SaSolverTau {
                tau: self.tau.unwrap_or(default.tau.tau),
                ..default.tau
            },
            thresholding: self.thresholding(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            ..default
        }
    }

    fn unipc(&self) -> UniPcConfig {
        let default = UniPcConfig::default();
        UniPcConfig {
            thresholding: self.thresholding(),
            grid: self.grid(default.grid),
            sigma_spacing: self.sigma_spacing_or(default.sigma_spacing),
            ..default
        }
    }
}

/// The churn of `edm` (Karras et al. 2022, Algorithm 2): S_churn 40, S_tmin 0.05, S_tmax 50,
/// S_noise 1.003.
const EDM_CHURN: Churn = Churn {
    s_churn: 40.0,
    s_tmin: 0.05,
    s_tmax: 50.0,
    s_noise: 1.003,
};

/// [`sample`] behind a trait object, so [`sample_by_name`] can pick the sampler at run time.
trait SamplerRun<B: Backend, const D: usize, M> {
    fn run(
        &mut self,
        denoiser: &M,
        noise: Tensor<B, D>,
        rng: &mut StdRng,
        on_step: &mut dyn FnMut(StepEvent<'_, B, D>),
    ) -> Result<Tensor<B, D>, SamplerError>;
}

impl<B: Backend, const D: usize, M: Denoiser<B, D>, S: Sampler<B, D>> SamplerRun<B, D, M> for S {
    fn run(
        &mut self,
        denoiser: &M,
        noise: Tensor<B, D>,
        rng: &mut StdRng,
        on_step: &mut dyn FnMut(StepEvent<'_, B, D>),
    ) -> Result<Tensor<B, D>, SamplerError> {
        sample(self, denoiser, noise, rng, on_step)
    }
}
