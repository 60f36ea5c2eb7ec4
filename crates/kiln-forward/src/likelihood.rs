//! The terms of the variational bound on −log p(x_0) (Ho et al. 2020, eq. 5; Nichol &
//! Dhariwal 2021, eq. 4–7), for models that learn the variance of their reverse steps. In the
//! papers' 1-based timesteps, with x_0 the data:
//!
//! ```text
//! L_vlb   = L_0 + L_1 + … + L_{T−1} + L_T
//! L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))      2 ≤ t ≤ T
//! L_0     = −log p_θ(x_0 | x_1)                                  the discretised decoder
//! ```
//!
//! Kiln's timesteps are 0-based (timestep t is the papers' t + 1), so the model's call at
//! timestep t is scored by the KL for t ≥ 1 and by the decoder at t = 0. The reverse step is
//! p_θ = N(μ_θ, σ²_θ I): μ_θ the posterior mean at the model's x̂_0, and log σ²_θ =
//! (v + 1)/2 · log β_t + (1 − v)/2 · log β̃_t for the model's v, nominally in [−1, 1] (eq. 15's
//! interpolation, with v mapped from [−1, 1] as in the paper's code and diffusers'
//! `learned_range`; not clamped).

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};

use crate::process::check_same_shape;
use crate::{ForwardError, ForwardProcess};

/// KL(N(μ₁, e^{ℓ₁}) ‖ N(μ₂, e^{ℓ₂})) in nats, element by element, for Gaussians given by
/// their means μ and log variances ℓ (any shapes that broadcast together):
///
/// ```text
/// ½ (ℓ₂ − ℓ₁ + e^{ℓ₁ − ℓ₂} + (μ₁ − μ₂)² e^{−ℓ₂} − 1)
/// ```
pub fn normal_kl<B: Backend, const D: usize>(
    mean1: Tensor<B, D>,
    log_variance1: Tensor<B, D>,
    mean2: Tensor<B, D>,
    log_variance2: Tensor<B, D>,
) -> Tensor<B, D> {
    let ratio = (log_variance1.clone() - log_variance2.clone()).exp();
    let distance = (mean1 - mean2).powi_scalar(2) * log_variance2.clone().neg().exp();
    (log_variance2 - log_variance1 + ratio + distance)
        .sub_scalar(1.0)
        .mul_scalar(0.5)
}

/// log p(x) in nats, element by element, of 8-bit data x ∈ [−1, 1] (256 levels 2/255 apart)
/// under N(`mean`, e^{`log_variance`}) discretised to those levels (Ho et al. 2020, eq. 13):
/// the Gaussian's mass over x ± 1/255, with the lowest level taking everything below it and
/// the highest everything above, so the 256 probabilities add up to 1. Probabilities are
/// floored at 10⁻¹², as in Nichol & Dhariwal 2021's reference code; Φ is the exact normal
/// CDF (through erf) where that code uses a tanh approximation, so the values differ from its
/// slightly.
pub fn discretized_gaussian_log_likelihood<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    mean: Tensor<B, D>,
    log_variance: Tensor<B, D>,
) -> Tensor<B, D> {
    const HALF_BIN: f64 = 1.0 / 255.0;
    const EDGE: f64 = 0.999;
    let inverse_std = log_variance.mul_scalar(-0.5).exp();
    let centred = x.clone() - mean;
    let upper = (centred.clone().add_scalar(HALF_BIN)) * inverse_std.clone();
    let lower = (centred.sub_scalar(HALF_BIN)) * inverse_std;
    let floor = |p: Tensor<B, D>| p.clamp_min(1e-12).log();
    // Φ(upper) for the lowest level, 1 − Φ(lower) = Φ(−lower) for the highest.
    let below = floor(standard_normal_cdf(upper.clone()));
    let above = floor(standard_normal_cdf(lower.clone().neg()));
    let inside = floor(standard_normal_cdf(upper) - standard_normal_cdf(lower));
    let lowest = x.clone().lower_elem(-EDGE);
    let highest = x.greater_elem(EDGE);
    inside.mask_where(lowest, below).mask_where(highest, above)
}

/// Φ(z) = (1 + erf(z/√2))/2.
fn standard_normal_cdf<B: Backend, const D: usize>(z: Tensor<B, D>) -> Tensor<B, D> {
    z.mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5)
}

impl<B: Backend> ForwardProcess<B> {
    /// log σ²_θ of a reverse step whose variance the model learns as v, nominally in [−1, 1],
    /// per value (Nichol & Dhariwal 2021, eq. 15, v mapped as diffusers' `learned_range`):
    /// log σ² = (v + 1)/2 · log β_t + (1 − v)/2 · log β̃_t, with β̃_0 (which is 0) taken as
    /// β̃_1, as in [`crate::Posterior::log_variance_clipped`].
    pub fn learned_log_variance<const D: usize>(
        &self,
        v: Tensor<B, D>,
        timesteps: &[usize],
    ) -> Result<Tensor<B, D>, ForwardError> {
        let schedule = self.schedule();
        let (betas, posterior) = (schedule.betas(), schedule.posterior_log_variance_clipped());
        let low = self.per_sample_with(timesteps, &v, |t| posterior[t])?;
        let span = self.per_sample_with(timesteps, &v, |t| betas[t].ln() - posterior[t])?;
        Ok(v.add_scalar(1.0).mul_scalar(0.5) * span + low)
    }

    /// The variational bound's term at each batch element's (0-based) timestep t, in bits per
    /// dimension (the mean over a sample's values, divided by ln 2), shape `[batch]`: for the
    /// reverse step N(μ_θ, e^{`log_variance`}) from x_t, whose mean μ_θ is the posterior mean
    /// at `predicted_x0` (the model's x̂_0), the KL from the posterior q at `x0` where t ≥ 1,
    /// and the discretised decoder's −log p_θ(`x0` | x_t) where t = 0
    /// ([`discretized_gaussian_log_likelihood`]; `x0` holds 8-bit data in [−1, 1]). This is
    /// the papers' L_t (see the module's notes on the numbering); T times its mean over
    /// uniform timesteps estimates L_vlb − L_T.
    pub fn vlb_terms<const D: usize>(
        &self,
        x0: Tensor<B, D>,
        x_t: Tensor<B, D>,
        timesteps: &[usize],
        predicted_x0: Tensor<B, D>,
        log_variance: Tensor<B, D>,
    ) -> Result<Tensor<B, 1>, ForwardError> {
        check_same_shape("predicted x_0", &x0, &predicted_x0)?;
        check_same_shape("log variance", &x0, &log_variance)?;
        let device = x0.device();
        let truth = self.q_posterior(x0.clone(), x_t.clone(), timesteps)?;
        let model_mean = self.q_posterior(predicted_x0, x_t, timesteps)?.mean;
        let kl = normal_kl(
            truth.mean,
            truth.log_variance_clipped,
            model_mean.clone(),
            log_variance.clone(),
        );
        let decoder = discretized_gaussian_log_likelihood(x0, model_mean, log_variance).neg();
        let bits = |nats: Tensor<B, D>| -> Tensor<B, 1> {
            let batch = nats.dims()[0];
            nats.reshape([batch as i32, -1])
                .mean_dim(1)
                .squeeze_dim::<1>(1)
                .div_scalar(std::f64::consts::LN_2)
        };
        let at_zero: Vec<bool> = timesteps.iter().map(|&t| t == 0).collect();
        let at_zero =
            Tensor::<B, 1, Bool>::from_data(TensorData::new(at_zero, [timesteps.len()]), &device);
        Ok(bits(kl).mask_where(at_zero, bits(decoder)))
    }
}
