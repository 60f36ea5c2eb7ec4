//! DDIM inversion: from real data x_0 up to the noise x_T that deterministic DDIM (η = 0)
//! samples back to it (Song et al. 2021, §4.3; Dhariwal & Nichol 2021, App. F).
//!
//! A DDIM step from level t (ᾱ_t) down to the next level s (ᾱ_s) is, with ε̂ = ε̂(x_t, t),
//!
//! ```text
//! x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s) ε̂,     x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t
//! ```
//!
//! Inverting it means solving for x_t given x_s:
//!
//! ```text
//! x_t = √(ᾱ_t/ᾱ_s) x_s − (√(ᾱ_t/ᾱ_s) √(1 − ᾱ_s) − √(1 − ᾱ_t)) · ε̂(x_t, t)
//! ```
//!
//! which is implicit: ε̂ is evaluated at the unknown x_t.
//!
//! - [`InversionMethod::Plain`] evaluates ε̂ at the known x_s instead (with timestep t), as
//!   diffusers' `DDIMInverseScheduler` does. Each step is then off by the change of ε̂ over
//!   the step, so sampling from its x_T does not give x_0 back exactly: the error shrinks only
//!   as the steps do.
//! - [`InversionMethod::Exact`] solves the implicit equation by fixed-point iteration,
//!   x ← √(ᾱ_t/ᾱ_s) x_s − c ε̂(x, t), starting from the plain step. It converges where the map
//!   is contractive, |c| · Lip(ε̂) < 1: with enough steps c is small. With too few steps the
//!   iteration stalls or moves away from the solution: once the RMS change between iterates
//!   fails to shrink by a tenth (above f32 rounding), inversion stops with
//!   [`SamplerError::InversionDiverged`] rather than return a worse answer.
//!
//! The model output may be ε, x_0 or v: each is converted to ε̂ at the point it was evaluated.

use burn::tensor::{ElementConversion, Tensor, backend::Backend};

use crate::sampler::{clean_and_noise, linear};
use crate::{Ddim, Denoiser, SamplerError};

/// How to solve each inverted step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InversionMethod {
    /// ε̂ at the start of each step (one model call per step): diffusers' inversion.
    Plain,
    /// The implicit step solved by `iterations` fixed-point iterations after a plain step (one
    /// model call more per iteration).
    Exact {
        /// Fixed-point iterations per step.
        iterations: usize,
    },
}

/// What a progress callback of [`invert`] sees after each inverted step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InversionStep {
    /// Inverted steps done, 1 to `steps`.
    pub done: usize,
    /// The number of steps.
    pub steps: usize,
    /// The timestep whose level the sample has reached.
    pub timestep: f64,
    /// For exact inversion, the RMS change of the last fixed-point iteration.
    pub residual: Option<f64>,
}

/// Runs `ddim`'s steps backwards from `data` (x_0) to the noise x_T that `ddim`, sampling with
/// `denoiser`, takes back to `data`; `on_step` is called after each step.
///
/// `ddim` must be deterministic and leave x̂_0 unclipped (η = 0, no clipping or thresholding):
/// otherwise sampling is not the map being inverted.
pub fn invert<B, const D: usize, M>(
    ddim: &Ddim,
    denoiser: &M,
    data: Tensor<B, D>,
    method: InversionMethod,
    mut on_step: impl FnMut(InversionStep),
) -> Result<Tensor<B, D>, SamplerError>
where
    B: Backend,
    M: Denoiser<B, D>,
{
    ddim.check_invertible()?;
    let timesteps = ddim.inference_timesteps();
    let steps = timesteps.len();
    let mut x = data;
    for index in (0..steps).rev() {
        let timestep = timesteps[index];
        let (alpha_t, alpha_s) = ddim.step_alphas(index);
        // ε̂ as the model sees `sample`, treated as being at level t.
        let epsilon = |sample: &Tensor<B, D>| -> Result<Tensor<B, D>, SamplerError> {
            let output = denoiser.denoise(sample.clone(), timestep)?;
            let prediction = denoiser.prediction();
            let (_, epsilon) = clean_and_noise(
                "DDIM inversion",
                output,
                prediction,
                sample.clone(),
                alpha_t,
                timestep,
            )?;
            Ok(epsilon)
        };
        // x_t = a x_s − c ε̂
        let a = (alpha_t / alpha_s).sqrt();
        let c = a * (1.0 - alpha_s).sqrt() - (1.0 - alpha_t).sqrt();
        let mut next = linear(&x, a, &epsilon(&x)?, -c);
        let mut residual = None;
        if let InversionMethod::Exact { iterations } = method {
            let scale = rms(&x).max(f64::MIN_POSITIVE);
            for _ in 0..iterations {
                let better = linear(&x, a, &epsilon(&next)?, -c);
                let change = rms(&(better.clone() - next));
                next = better;
                // Above what f32 rounding alone makes, each change must be clearly smaller
                // than the last: a contraction. One that is not has stopped converging.
                let stalled = residual.is_some_and(|previous| change > STALL * previous);
                if stalled && change > 1e-6 * scale {
                    return Err(SamplerError::InversionDiverged {
                        timestep,
                        residual: change,
                    });
                }
                residual = Some(change);
            }
        }
        x = next;
        on_step(InversionStep {
            done: steps - index,
            steps,
            timestep,
            residual,
        });
    }
    Ok(x)
}

/// The largest ratio of successive fixed-point changes that still counts as converging.
const STALL: f64 = 0.9;

/// The root mean square of a tensor's elements.
fn rms<B: Backend, const D: usize>(x: &Tensor<B, D>) -> f64 {
    x.clone().powi_scalar(2).mean().sqrt().into_scalar().elem()
}
