//! Few-step students of a trained diffusion model, on burn tensors.
//!
//! - [`ProgressiveDistillation`]: one round of Salimans & Ho 2022 — the grids of a teacher of
//!   2N DDIM steps and its student of N, the noisy inputs, the student's target from two
//!   teacher steps, and the truncated-SNR loss;
//! - [`ConsistencyDistillation`]: consistency distillation (Song et al. 2023; Luo et al. 2023)
//!   — the teacher's DDIM step between neighbours of a grid of M timesteps, the consistency
//!   function f = c_skip x + c_out x̂ of any model, and the weighted squared error between the
//!   student's answers at the two ends; and trajectory consistency distillation (Zheng et al.
//!   2024), whose answers land at a point of the trajectory drawn at or below the lower end;
//! - [`Teacher`]: a model evaluated at a timestep per sample ([`PerTimestep`] makes one of any
//!   sampler `Denoiser`);
//! - [`IdealStudent`], [`IdealConsistency`]: what a perfect distillation would learn, to check
//!   the distillations against.
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
//! &schedule, n)`. A step of consistency distillation, with `cd =
//! ConsistencyDistillation::new(&schedule, m, ConsistencyScalings::default())?` and grid
//! indices drawn uniformly from 0..m:
//!
//! ```text
//! z        = cd.noisy(x0, noise, &indices)?;
//! previous = cd.teacher_step(&teacher, z.clone(), &indices)?;     // no gradient needed
//! target   = cd.consistency("the target", &student_without_gradient, previous,
//!                           &cd.previous_timesteps_of(&indices)?)?;
//! loss     = cd.loss(cd.consistency("the student", &student, z, &cd.timesteps_of(&indices)?)?,
//!                    target)?;
//! ```
//!
//! and the student samples with `Lcm::new(cd.sampler_config(), &schedule, n)` in any n ≤ m
//! steps. Trajectory consistency distillation draws a landing s per sample from
//! `cd.landings_below(index)?` and compares `cd.trajectory(…, &timesteps, &landings)` of the
//! student at z with the target's at `previous`; its student samples with
//! [`kiln_sampler::Tcd`] on the same grid.

#![warn(missing_docs)]

mod batch;
mod consistency;
mod ddim;
mod error;
mod progressive;
mod teacher;

pub use consistency::{ConsistencyDistillation, IdealConsistency};
pub use error::DistillError;
pub use progressive::{IdealStudent, ProgressiveDistillation};
pub use teacher::{PerTimestep, Teacher};
