//! The reverse process: samplers that turn noise into data with a denoising model.
//!
//! A model is anything that implements [`Denoiser`]: it maps (x_t, t) to a prediction of the
//! noise, the clean data or the velocity ([`Prediction`]). A sampler is configured with
//! diffusers' vocabulary, laid over a [`NoiseSchedule`](kiln_schedule::NoiseSchedule) for a
//! number of steps, and driven from initial noise to x_0 by [`sample`]:
//!
//! | sampler | update | paper |
//! | --- | --- | --- |
//! | [`Ddpm`] | ancestral sampling from the posterior q(x_{t−1} \| x_t, x̂_0) | Ho et al. 2020, Algorithm 2 |
//! | [`Ddim`] | x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z | Song et al. 2021, eq. 12 |
//! | [`Pndm`] | Runge–Kutta warm-up, then 4th-order linear multistep on the noise estimates | Liu et al. 2022 |
//! | [`Euler`] | x ← x + (x − x̂_0)/σ · (σ' − σ), optionally ancestral | Karras et al. 2022, Algorithm 1 |
//! | [`Lms`] | linear multistep in σ: the Lagrange polynomial through the last 4 slopes (x − x̂_0)/σ, integrated | k-diffusion's `sample_lms` |
//! | [`Heun`] | Euler predictor, trapezoidal corrector (2 model calls a step); with churn, EDM's stochastic sampler | Karras et al. 2022, Algorithms 1 and 2 |
//! | [`Dpm2`] | Euler to the geometric mean of σ and σ', then the step with the slope found there (2 model calls a step), optionally ancestral | Lu et al. 2022a (DPM-Solver-2); k-diffusion's `sample_dpm_2` and `sample_dpm_2_ancestral` |
//! | [`DpmSolverSde`] | DPM-Solver++(2S) through the middle of each step in log σ, with the reverse SDE's noise at both stages, one Brownian motion per step (2 model calls a step) | Lu et al. 2022b; k-diffusion's `sample_dpmpp_sde` |
//! | [`DpmSolverSinglestep`] | DPM-Solver's updates over blocks of 1–3 grid steps from one start, the model evaluated inside each block | Lu et al. 2022a, 2022b (singlestep) |
//! | [`Deis`] | multistep: the Lagrange polynomial in log ρ through the latest ε̂ (ρ = σ/α), integrated exactly over ρ; order 1 is DDIM | Zhang & Chen 2023 (ρAB-DEIS) |
//! | [`UniPc`] | multistep predictor UniP-p with a free corrector UniC-p of order p + 1 | Zhao et al. 2023 |
//! | [`SaSolver`] | stochastic Adams: a multistep predictor and a corrector (reusing the next call) for the reverse SDE with noise scaled by τ(t), exact in λ over x̂_0 or ε̂, orders 1–4 | Xue et al. 2023 |
//! | [`DpmSolver`] | exponential-integrator multistep in λ = log(α/σ), orders 1–3, ODE or SDE, over x̂_0 or ε̂ | Lu et al. 2022a (DPM-Solver), 2022b (DPM-Solver++) |
//! | [`Lcm`] | a consistency model's answer f(x_t, t), noised afresh to the next timestep (1 step: one call) | Song et al. 2023, Algorithm 1; Luo et al. 2023 |
//! | [`Tcd`] | a consistency model's trajectory point at ⌊(1 − γ) t'⌋, noised forward to the next timestep t' | Zheng et al. 2024 |
//!
//! Rectified-flow models ([`VelocityModel`]: x_σ = (1 − σ) x_0 + σ ε to the velocity ε − x_0)
//! have their own samplers over a [`FlowSchedule`](kiln_schedule::FlowSchedule), driven by
//! [`sample_flow`]:
//!
//! | sampler | update | reference |
//! | --- | --- | --- |
//! | [`FlowEuler`] | x ← x + (σ' − σ) u, or renoised from x̂_0 = x − σu | diffusers' `FlowMatchEulerDiscreteScheduler` (SD3, Flux) |
//! | [`FlowHeun`] | Euler predictor, trapezoidal corrector (2 model calls a step) | diffusers' `FlowMatchHeunDiscreteScheduler` |
//!
//! Every coefficient is computed on the host in `f64`; the loop never reads a tensor back.
//! Randomness comes from a caller's RNG, drawn on the host (see
//! [`standard_normal`](kiln_forward::standard_normal)), so a seed gives the same samples on
//! every backend.
//!
//! Real images are edited with any sampler: [`image_to_image`] (SDEdit), [`inpaint`]
//! (RePaint) and [`slerp`] between inverted noises.
//!
//! DDIM inversion ([`invert`]) finds the noise that deterministic DDIM takes to a given
//! sample, plainly or exactly (fixed-point iteration); [`DpmSolver::inverse`] runs DPM-Solver
//! from the sample up, one model call a step, to the noise that [`DpmSolver::new`] takes back.
//!
//! Classifier-free guidance ([`Guided`]) wraps any [`ClassConditional`] model into a
//! [`Denoiser`], so every sampler samples a chosen class, and [`ProjectedGuided`] guides with
//! adaptive projected guidance's update instead; autoguidance ([`AutoGuided`]) guides any model
//! with a weaker version of itself; epsilon scaling ([`EpsilonScaled`])
//! wraps any model, so every sampler can shrink its noise prediction against exposure bias.
//!
//! [`GaussianMixture`] is an exact denoiser for data from a Gaussian mixture: a test oracle for
//! samplers, Kiln's and yours.

#![warn(missing_docs)]

mod autoguidance;
mod brownian;
mod ddim;
mod ddpm;
mod deis;
mod denoiser;
mod dpm2;
mod dpm_solver;
mod dpm_solver_sde;
mod dpm_solver_singlestep;
mod editing;
mod epsilon_scaling;
mod error;
mod euler;
mod flow;
mod flow_euler;
mod flow_heun;
mod guidance;
mod heun;
mod inversion;
mod lcm;
mod lms;
mod midpoint_calls;
mod mixture;
mod multistep;
mod pndm;
mod projected_guidance;
mod sa_solver;
mod sampler;
mod sigma_grid;
mod tcd;
mod thresholding;
mod unipc;

pub use autoguidance::AutoGuided;
pub use brownian::NoisePath;
pub use ddim::{Ddim, DdimConfig};
pub use ddpm::{Ddpm, DdpmConfig, VarianceType};
pub use deis::{Deis, DeisConfig};
pub use denoiser::{Denoiser, FnDenoiser};
pub use dpm_solver::{AlgorithmType, DpmSolver, DpmSolverConfig, SolverType};
pub use dpm_solver_sde::{DpmSolverSde, DpmSolverSdeConfig};
pub use dpm_solver_singlestep::{DpmSolverSinglestep, DpmSolverSinglestepConfig};
pub use dpm2::{Dpm2, Dpm2Config};
pub use editing::{Resampling, image_to_image, inpaint, slerp};
pub use epsilon_scaling::EpsilonScaled;
pub use error::{ModelError, SamplerError};
pub use euler::{Euler, EulerConfig};
pub use flow::{FlowSampler, FnVelocity, VelocityModel, sample_flow};
pub use flow_euler::{FlowEuler, FlowEulerConfig};
pub use flow_heun::FlowHeun;
pub use guidance::{ClassConditional, GuidanceConfig, Guided};
pub use heun::{Churn, Heun, HeunConfig};
pub use inversion::{InversionMethod, InversionStep, invert};
pub use kiln_forward::Prediction;
pub use lcm::{ConsistencyScalings, Lcm, LcmConfig};
pub use lms::{Lms, LmsConfig};
pub use mixture::{GaussianMixture, sliced_wasserstein_2};
pub use pndm::{Pndm, PndmConfig};
pub use projected_guidance::{ProjectedGuidance, ProjectedGuided};
pub use sa_solver::{SaSolver, SaSolverAlgorithm, SaSolverConfig, SaSolverTau};
pub use sampler::{Sampler, Step, StepEvent, sample, sample_from};
pub use sigma_grid::{FinalSigmas, SigmaSpacing};
pub use tcd::{Tcd, TcdConfig};
pub use thresholding::{DynamicThresholding, SampleClipping};
pub use unipc::{UniPc, UniPcConfig, UniPcSolverType};
