use crate::{ForwardError, Prediction};

/// How the per-timestep training losses are weighted.
///
/// The squared errors of the targets differ by SNR-dependent factors
/// (‖ε − ε̂‖² = SNR·‖x_0 − x̂_0‖², ‖v − v̂‖² = (SNR + 1)·‖x_0 − x̂_0‖² and, for rectified
/// flow's velocity u = ε − x_0, ‖u − û‖² = (√SNR + 1)²·‖x_0 − x̂_0‖²), so a weighting defined
/// on x_0 has a different form for each target.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LossWeighting {
    /// Every timestep weighs 1 (Ho et al. 2020's "simple" loss for the chosen target).
    #[default]
    Uniform,
    /// Min-SNR-γ (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
    /// Strategy", eq. 10): the x_0 loss weighted by min(SNR_t, γ), i.e.
    ///
    /// ```text
    /// x_0 target: min(SNR, γ)        ε target: min(SNR, γ)/SNR        v target: min(SNR, γ)/(SNR + 1)
    /// flow target (u = ε − x_0): min(SNR, γ)/(√SNR + 1)²
    /// ```
    ///
    /// evaluated in forms that stay finite at SNR = 0 (zero-terminal-SNR schedules) and
    /// SNR = ∞. The paper uses γ = 5.
    MinSnr {
        /// The clamp γ > 0.
        gamma: f64,
    },
}

impl LossWeighting {
    /// The weight of the loss on a `target` at a timestep whose signal-to-noise ratio is `snr`.
    pub fn weight(self, snr: f64, target: Prediction) -> Result<f64, ForwardError> {
        let Self::MinSnr { gamma } = self else {
            return Ok(1.0);
        };
        if !(gamma.is_finite() && gamma > 0.0) {
            return Err(ForwardError::InvalidGamma(gamma));
        }
        let clamped = snr.min(gamma);
        Ok(match target {
            Prediction::Sample => clamped,
            // min(SNR, γ)/SNR is 1 up to γ and γ/SNR beyond: finite at SNR = 0.
            Prediction::Epsilon if snr <= gamma => 1.0,
            Prediction::Epsilon => gamma / snr,
            Prediction::V => clamped / (snr + 1.0),
            Prediction::Flow => clamped / (snr.sqrt() + 1.0).powi(2),
        })
    }
}
