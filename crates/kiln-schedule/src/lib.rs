//! Noise schedules for diffusion models: β, α, ᾱ and every table derived from them.
//!
//! A discrete diffusion model with `T` training timesteps is defined by its variances
//! β_0, …, β_{T-1} ∈ (0, 1]. Everything a trainer or a sampler needs follows from them
//! (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", §2):
//!
//! ```text
//! α_t = 1 − β_t              ᾱ_t = ∏_{s=0..t} α_s
//! q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
//! ```
//!
//! Timesteps are **0-based**, as in diffusers: index `t` is Ho et al.'s step `t + 1`, so
//! ᾱ at index 0 already includes one step of noise and there is no entry for the clean data.
//!
//! The crate has three parts, all on the host in `f64`:
//! - [`BetaSchedule`]: the named β schedules with diffusers' names and defaults;
//! - [`NoiseSchedule`]: the β table and every derived table (α, ᾱ, √ᾱ, √(1−ᾱ), SNR, log-SNR,
//!   σ, posterior variance and mean coefficients), computed once;
//! - [`TimestepGrid`], [`karras_sigmas`], [`uniform_lambda_sigmas`] and [`beta_sigmas`]: the
//!   timesteps and noise levels a sampler visits.
//!
//! Rectified-flow models (x_σ = (1 − σ) x_0 + σ ε, Lipman et al. 2023; Esser et al. 2024) have
//! no β: [`FlowSchedule`] gives their training and sampling σ, shifted as SD3 and Flux shift
//! them.
//!
//! ```
//! use kiln_schedule::{BetaSchedule, NoiseSchedule};
//!
//! let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000)?;
//! assert!((schedule.alphas_cumprod()[999] - 4.0358e-5).abs() < 1e-8);
//! # Ok::<(), kiln_schedule::ScheduleError>(())
//! ```

#![warn(missing_docs)]

mod beta;
mod error;
mod flow;
mod incomplete_beta;
mod numbers;
mod schedule;
mod sigma_spacing;
mod timesteps;

pub use beta::BetaSchedule;
pub use error::ScheduleError;
pub use flow::{FlowGrid, FlowSchedule, FlowShift, FlowSpacing, ResolutionShift, TimeShift};
pub use schedule::NoiseSchedule;
pub use sigma_spacing::{beta_sigmas, karras_sigmas, uniform_lambda_sigmas};
pub use timesteps::{GridEnd, TimestepGrid, TimestepSpacing};
