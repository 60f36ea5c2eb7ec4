//! Noise levels spaced for few-step sampling, between a schedule's smallest and largest σ.

use crate::ScheduleError;
use crate::incomplete_beta::beta_quantile;
use crate::numbers::{check_positive, linspace, out_of_range};

/// The noise levels of Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based
/// Generative Models", eq. 5), from `sigma_max` down to `sigma_min` in `steps` points:
///
/// ```text
/// σ_i = (σ_max^{1/ρ} + i/(N−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,   i = 0, …, N−1
/// ```
///
/// ρ = 7 is the paper's choice (and diffusers' `use_karras_sigmas`). The final σ = 0 that a
/// sampler steps to is not included. When `sigma_min` equals the last σ of a grid a sampler
/// already visits, appending it again repeats that σ and wastes a step; samplers must take
/// `sigma_min` from the schedule, not append it.
///
/// Fails on N = 0, on non-finite values, on σ_min ≤ 0, σ_min > σ_max or ρ ≤ 0.
pub fn karras_sigmas(
    sigma_min: f64,
    sigma_max: f64,
    steps: usize,
    rho: f64,
) -> Result<Vec<f64>, ScheduleError> {
    check_sigma_range(sigma_min, sigma_max, steps)?;
    check_positive("rho", rho)?;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    Ok(linspace(0.0, 1.0, steps)
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect())
}

/// The noise levels of DPM-Solver's time steps uniform in λ (Lu et al. 2022, "DPM-Solver: A
/// Fast ODE Solver for Diffusion Probabilistic Model Sampling in Around 10 Steps", §3.4 and
/// Appendix D.1; diffusers' `use_lu_lambdas` and `use_exponential_sigmas`), from `sigma_max`
/// down to `sigma_min` in `steps` points. λ = log(α/s) = −log σ is half the log-SNR, so the
/// points are even in log σ:
///
/// ```text
/// σ_i = exp(log σ_max + i/(N−1) · (log σ_min − log σ_max)),   i = 0, …, N−1
/// ```
///
/// — Karras et al.'s spacing in the limit ρ → ∞. As there, the final σ = 0 is not included.
///
/// Fails on N = 0, on non-finite values, on σ_min ≤ 0 or σ_min > σ_max.
pub fn uniform_lambda_sigmas(
    sigma_min: f64,
    sigma_max: f64,
    steps: usize,
) -> Result<Vec<f64>, ScheduleError> {
    check_sigma_range(sigma_min, sigma_max, steps)?;
    let (log_min, log_max) = (sigma_min.ln(), sigma_max.ln());
    Ok(linspace(log_max, log_min, steps).map(f64::exp).collect())
}

/// The noise levels of Lee et al. 2024 ("Beta Sampling is All You Need: Efficient Image
/// Generation Strategy for Diffusion Models using Stepwise Spectral Analysis"; diffusers'
/// `use_beta_sigmas`), from `sigma_max` down to `sigma_min` in `steps` points placed at the
/// quantiles of a Beta(a, b) distribution:
///
/// ```text
/// σ_i = σ_min + F⁻¹(1 − i/(N−1); a, b) · (σ_max − σ_min),   i = 0, …, N−1
/// ```
///
/// F⁻¹ is the quantile function of Beta(a, b) (the inverse of the regularized incomplete beta
/// function I_x(a, b)). With a, b < 1 (diffusers' a = b = 0.6) the density is U-shaped, so
/// the points crowd at both ends, the high noise levels that lay out the image's coarse
/// structure and the low ones that finish its detail; a = b = 1 spaces σ evenly. As there,
/// the final σ = 0 is not included.
///
/// Fails on N = 0, on non-finite values, on σ_min ≤ 0, σ_min > σ_max, a ≤ 0 or b ≤ 0.
pub fn beta_sigmas(
    sigma_min: f64,
    sigma_max: f64,
    steps: usize,
    a: f64,
    b: f64,
) -> Result<Vec<f64>, ScheduleError> {
    check_sigma_range(sigma_min, sigma_max, steps)?;
    check_positive("alpha", a)?;
    check_positive("beta", b)?;
    Ok(linspace(0.0, 1.0, steps)
        .map(|ramp| sigma_min + beta_quantile(1.0 - ramp, a, b) * (sigma_max - sigma_min))
        .collect())
}

/// At least one step, and 0 < σ_min ≤ σ_max, both finite.
fn check_sigma_range(sigma_min: f64, sigma_max: f64, steps: usize) -> Result<(), ScheduleError> {
    if steps == 0 {
        return Err(ScheduleError::ZeroSteps);
    }
    check_positive("sigma_min", sigma_min)?;
    check_positive("sigma_max", sigma_max)?;
    if sigma_min > sigma_max {
        return Err(out_of_range("sigma_min", sigma_min, "at most sigma_max"));
    }
    Ok(())
}
