use crate::ScheduleError;
use crate::flow::{FlowSchedule, FlowShift};
use crate::numbers::{check_finite, linspace, out_of_range};

/// How the variances β_0, …, β_{T-1} of the forward process are laid out.
///
/// The names follow diffusers' `beta_schedule` setting, so a diffusers scheduler config maps
/// one to one. All values are computed in `f64` (diffusers computes in `f32`; the tables agree to
/// about 1e-7 relative).
#[derive(Debug, Clone, PartialEq)]
pub enum BetaSchedule {
    /// `linear`: β_t evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020, §4, with
    /// 1e-4 and 0.02 at T = 1000).
    Linear {
        /// β at the first timestep.
        beta_start: f64,
        /// β at the last timestep.
        beta_end: f64,
    },
    /// `scaled_linear`: √β_t evenly spaced from √`beta_start` to √`beta_end`, then squared
    /// (the latent-diffusion schedule; Stable Diffusion uses 0.00085 and 0.012).
    ScaledLinear {
        /// β at the first timestep.
        beta_start: f64,
        /// β at the last timestep.
        beta_end: f64,
    },
    /// `squaredcos_cap_v2`: the cosine schedule of Nichol & Dhariwal 2021 (eq. 17),
    /// ᾱ(τ) = cos²((τ + s)/(1 + s) · π/2) for τ ∈ [0, 1], with
    /// β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), `max_beta`).
    SquaredCosCapV2 {
        /// The offset `s` that keeps β_0 from being vanishingly small (0.008 in the paper).
        offset: f64,
        /// The cap on β that keeps the last steps from being singular (0.999 in the paper).
        max_beta: f64,
    },
    /// `sigmoid`: β_t = `beta_start` + (`beta_end` − `beta_start`) · sigmoid(u_t) with u_t evenly
    /// spaced on [−6, 6] (diffusers' `DDPMScheduler`, after Jabri et al. 2022).
    Sigmoid {
        /// The lower asymptote of β.
        beta_start: f64,
        /// The upper asymptote of β.
        beta_end: f64,
    },
    /// `rectified_flow` (Kiln's own name; diffusers has no β schedule for it): rectified
    /// flow's path x_σ = (1 − σ) x_0 + σ ε on the variance-preserving scale, with the σ that
    /// [`FlowSchedule`] trains at, σ_t = shift(τ) = s τ / (1 + (s − 1) τ) for τ = (t + 1)/T:
    ///
    /// ```text
    /// ᾱ_t = (1 − σ_t)² / ((1 − σ_t)² + σ_t²),   β_t = 1 − ᾱ_t / ᾱ_{t−1}
    /// ```
    ///
    /// so x_t = x_σ / √((1 − σ_t)² + σ_t²). The last timestep is pure noise (ᾱ = 0, zero
    /// terminal SNR). With `flow_prediction` and uniform timesteps this trains rectified flow
    /// (Liu et al. 2023), and deterministic DDIM samples as its Euler method does.
    RectifiedFlow {
        /// The shift s toward noise (1: none; SD3 samples with 3).
        shift: f64,
    },
    /// `trained_betas`: the betas given one per timestep; their count sets T.
    Custom(Vec<f64>),
}

impl BetaSchedule {
    /// diffusers' default β range for the interpolating schedules.
    const DEFAULT_RANGE: (f64, f64) = (1e-4, 0.02);

    /// `linear` from 1e-4 to 0.02, diffusers' default schedule.
    pub fn linear() -> Self {
        let (beta_start, beta_end) = Self::DEFAULT_RANGE;
        Self::Linear {
            beta_start,
            beta_end,
        }
    }

    /// `scaled_linear` with diffusers' default range 1e-4 to 0.02.
    pub fn scaled_linear() -> Self {
        let (beta_start, beta_end) = Self::DEFAULT_RANGE;
        Self::ScaledLinear {
            beta_start,
            beta_end,
        }
    }

    /// `squaredcos_cap_v2` with the paper's s = 0.008 and β capped at 0.999.
    pub fn cosine() -> Self {
        Self::SquaredCosCapV2 {
            offset: 0.008,
            max_beta: 0.999,
        }
    }

    /// `sigmoid` with diffusers' default range 1e-4 to 0.02.
    pub fn sigmoid() -> Self {
        let (beta_start, beta_end) = Self::DEFAULT_RANGE;
        Self::Sigmoid {
            beta_start,
            beta_end,
        }
    }

    /// `rectified_flow` without a shift.
    pub fn rectified_flow() -> Self {
        Self::RectifiedFlow { shift: 1.0 }
    }

    /// Looks a schedule up by its diffusers name (`linear`, `scaled_linear`,
    /// `squaredcos_cap_v2` or its alias `cosine`, `sigmoid`), or Kiln's `rectified_flow`, with
    /// default parameters.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rectified_flow" => Some(Self::rectified_flow()),
            "linear" => Some(Self::linear()),
            "scaled_linear" => Some(Self::scaled_linear()),
            "squaredcos_cap_v2" | "cosine" => Some(Self::cosine()),
            "sigmoid" => Some(Self::sigmoid()),
            _ => None,
        }
    }

    /// The β of each of `timesteps` training timesteps.
    ///
    /// For [`BetaSchedule::Custom`], `timesteps` must equal the number of betas given.
    /// Fails on T = 0, on parameters that are not finite or out of range, on `beta_start` >
    /// `beta_end`, and on any resulting β outside (0, 1].
    pub fn betas(&self, timesteps: usize) -> Result<Vec<f64>, ScheduleError> {
        if timesteps == 0 {
            return Err(ScheduleError::ZeroTimesteps);
        }
        let betas = match self {
            Self::Linear {
                beta_start,
                beta_end,
            } => {
                check_range(*beta_start, *beta_end)?;
                linspace(*beta_start, *beta_end, timesteps).collect()
            }
            Self::ScaledLinear {
                beta_start,
                beta_end,
            } => {
                check_range(*beta_start, *beta_end)?;
                linspace(beta_start.sqrt(), beta_end.sqrt(), timesteps)
                    .map(|root| root * root)
                    .collect()
            }
            Self::SquaredCosCapV2 { offset, max_beta } => {
                check_finite("offset", *offset)?;
                check_finite("max_beta", *max_beta)?;
                if *offset < 0.0 {
                    return Err(out_of_range("offset", *offset, "s >= 0"));
                }
                if !(*max_beta > 0.0 && *max_beta <= 1.0) {
                    return Err(out_of_range("max_beta", *max_beta, "a value in (0, 1]"));
                }
                cosine_betas(*offset, *max_beta, timesteps)
            }
            Self::Sigmoid {
                beta_start,
                beta_end,
            } => {
                check_range(*beta_start, *beta_end)?;
                linspace(-6.0, 6.0, timesteps)
                    .map(|u| beta_start + (beta_end - beta_start) / (1.0 + (-u).exp()))
                    .collect()
            }
            Self::RectifiedFlow { shift } => rectified_flow_betas(*shift, timesteps)?,
            Self::Custom(betas) => {
                if betas.len() != timesteps {
                    return Err(out_of_range(
                        "num_train_timesteps",
                        timesteps as f64,
                        "the number of trained_betas given",
                    ));
                }
                betas.clone()
            }
        };
        validate_betas(&betas)?;
        Ok(betas)
    }
}

/// Checks that every β lies in (0, 1] (which also rules out NaN) and that 1 − β < 1: a β up
/// to 2⁻⁵⁴ ≈ 5.6e-17 rounds 1 − β to 1 and would leave ᾱ at 1 and σ at 0.
pub(crate) fn validate_betas(betas: &[f64]) -> Result<(), ScheduleError> {
    if betas.is_empty() {
        return Err(ScheduleError::ZeroTimesteps);
    }
    match betas
        .iter()
        .enumerate()
        .find(|(_, beta)| !(**beta > 0.0 && **beta <= 1.0 && 1.0 - **beta < 1.0))
    {
        Some((index, &value)) => Err(ScheduleError::BetaOutOfRange { index, value }),
        None => Ok(()),
    }
}

/// β of rectified flow's path on the variance-preserving scale: ᾱ_t = (1 − σ_t)²/((1 − σ_t)² +
/// σ_t²) over [`FlowSchedule::training_sigmas`] (which run from σ = 1 down).
fn rectified_flow_betas(shift: f64, timesteps: usize) -> Result<Vec<f64>, ScheduleError> {
    let flow = FlowSchedule {
        train_timesteps: timesteps,
        shift: FlowShift::Static(shift),
        ..FlowSchedule::default()
    };
    let mut previous = 1.0;
    Ok(flow
        .training_sigmas()?
        .iter()
        .rev()
        .map(|sigma| {
            let signal = (1.0 - sigma).powi(2);
            let alpha_cumprod = signal / (signal + sigma * sigma);
            let beta = 1.0 - alpha_cumprod / previous;
            previous = alpha_cumprod;
            beta
        })
        .collect())
}

/// The cosine schedule's betas (Nichol & Dhariwal 2021, eq. 17), as diffusers'
/// `betas_for_alpha_bar` builds them.
fn cosine_betas(offset: f64, max_beta: f64, timesteps: usize) -> Vec<f64> {
    let alpha_bar = |tau: f64| {
        let angle = (tau + offset) / (1.0 + offset) * std::f64::consts::FRAC_PI_2;
        angle.cos().powi(2)
    };
    let n = timesteps as f64;
    (0..timesteps)
        .map(|i| {
            let ratio = alpha_bar((i + 1) as f64 / n) / alpha_bar(i as f64 / n);
            (1.0 - ratio).min(max_beta)
        })
        .collect()
}

fn check_range(beta_start: f64, beta_end: f64) -> Result<(), ScheduleError> {
    for (name, value) in [("beta_start", beta_start), ("beta_end", beta_end)] {
        check_finite(name, value)?;
        if !(value > 0.0 && value <= 1.0) {
            return Err(out_of_range(name, value, "a value in (0, 1]"));
        }
    }
    if beta_start > beta_end {
        return Err(ScheduleError::DecreasingBetas {
            start: beta_start,
            end: beta_end,
        });
    }
    Ok(())
}
