//! Few-step students of a trained diffusion model, on burn tensors.
//!
//! - [`ProgressiveDistillation`]: one round of Salimans & Ho 2022 — the grids of a teacher of
//!   2N DDIM steps and its student of N, the noisy inputs, the student's target from two
//!   teacher steps, and the truncated-SNR loss;
//! - [`Teacher`]: a model evaluated at a timestep per sample ([`PerTimestep`] makes one of any
//!   sampler `Denoiser`);
//! - [`IdealStudent`]: what a perfect round would learn, to check rounds against.
//!
//! A round in a training loop, with `round = ProgressiveDistillation::new(&schedule, n)?`,
//! student steps `indices` drawn uniformly from 0..n, and the student predicting v:
//!
//! ```text
//! z      = round.noisy(x0, noise, &indices)?;
//! target = round.target(&teacher, z.clone(), &indices)?;          // no gradient needed
//! loss   = round.loss(student(z.clone(), round.timesteps_of(&indices)?), Prediction::V,
//!                     z, target, &indices)?;
//! ```
//!
//! and the student then samples with `Ddim::new(ProgressiveDistillation::sampler_config(),
//! &schedule, n)`.

#![warn(missing_docs)]

mod error;
mod progressive;
mod teacher;

pub use error::DistillError;
pub use progressive::{IdealStudent, ProgressiveDistillation};
pub use teacher::{PerTimestep, Teacher};
