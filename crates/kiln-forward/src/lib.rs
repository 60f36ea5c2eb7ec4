//! The forward (noising) process of a discrete diffusion model, on burn tensors.
//!
//! Given a [`NoiseSchedule`](kiln_schedule::NoiseSchedule), [`ForwardProcess`] noises data
//! (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"):
//!
//! ```text
//! q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I)                 one Markov step   (eq. 2)
//! q(x_t | x_0)     = N(√ᾱ_t x_0, (1 − ᾱ_t) I)               the O(1) jump     (eq. 4)
//! q(x_{t−1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)           the posterior     (eq. 6–7)
//! ```
//!
//! and builds what a trainer needs from it: the target of each [`Prediction`] kind, conversions
//! between them, per-timestep [`LossWeighting`] (min-SNR-γ, Hang et al. 2023), and for models
//! that learn their reverse steps' variance the terms of the variational bound
//! ([`ForwardProcess::vlb_terms`], Nichol & Dhariwal 2021).
//!
//! Rectified flow (x_σ = (1 − σ) x_0 + σ ε, Liu et al. 2023) has its own process,
//! [`FlowProcess`]: the noised sample, the velocity target ε − x_0, SD3's densities of the
//! training noise level ([`FlowTimeDensity`]) and its loss weights ([`FlowWeighting`]).
//!
//! Timesteps are 0-based as in diffusers and given per batch element as host `usize`s: the
//! coefficients are looked up on the host (in `f64`) and uploaded as one small `[batch, 1, …]`
//! tensor per call, so no device-to-host read ever happens. Noise is drawn on the host from a
//! seeded RNG ([`standard_normal`]), so a seed gives the same tensors on every backend.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use kiln_forward::{ForwardProcess, standard_normal};
//! use kiln_schedule::{BetaSchedule, NoiseSchedule};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let device = Default::default();
//! let forward = ForwardProcess::<Flex>::new(NoiseSchedule::new(&BetaSchedule::linear(), 1000)?, &device);
//! let x0 = Tensor::<Flex, 4>::zeros([2, 3, 8, 8], &device);
//! let noise = standard_normal::<Flex, 4>([2, 3, 8, 8], &mut StdRng::seed_from_u64(0), &device);
//! let x_t = forward.q_sample(x0, &[10, 900], noise)?;
//! assert_eq!(x_t.dims(), [2, 3, 8, 8]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod error;
mod flow;
mod likelihood;
mod noise;
mod prediction;
mod process;
mod weighting;

pub use error::ForwardError;
pub use flow::{FlowProcess, FlowTimeDensity, FlowWeighting};
pub use likelihood::{discretized_gaussian_log_likelihood, normal_kl};
pub use noise::standard_normal;
pub use prediction::Prediction;
pub use process::{ForwardProcess, Posterior};
pub use weighting::LossWeighting;
