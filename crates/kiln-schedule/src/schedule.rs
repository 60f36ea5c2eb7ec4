use crate::ScheduleError;
use crate::beta::{BetaSchedule, validate_betas};

/// A discrete noise schedule with all of its derived tables, computed once in `f64`.
///
/// With 0-based timesteps t = 0, …, T−1 (index t is Ho et al. 2020's step t + 1):
///
/// ```text
/// α_t  = 1 − β_t                      ᾱ_t = ∏_{s≤t} α_s           (Ho et al. 2020, eq. 4)
/// SNR_t = ᾱ_t / (1 − ᾱ_t)             σ_t = √((1 − ᾱ_t) / ᾱ_t) = 1/√SNR_t   (Karras et al. 2022)
/// β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t                                    (Ho et al. 2020, eq. 7)
/// μ̃_t(x_t, x_0) = c1_t x_0 + c2_t x_t,   c1_t = β_t √ᾱ_{t−1} / (1 − ᾱ_t),
///                                         c2_t = (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t)
/// ```
///
/// with ᾱ_{−1} = 1 (the clean data), so β̃_0 = 0, c1_0 = 1 and c2_0 = 0.
///
/// Under a zero-terminal-SNR schedule ([`NoiseSchedule::rescale_zero_terminal_snr`]) the last
/// entries are the exact limits: ᾱ = 0, SNR = 0, log-SNR = −∞ and σ = +∞.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    sqrt_alphas_cumprod: Vec<f64>,
    sqrt_one_minus_alphas_cumprod: Vec<f64>,
    snr: Vec<f64>,
    log_snr: Vec<f64>,
    sigmas: Vec<f64>,
    log_sigmas: Vec<f64>,
    posterior_variance: Vec<f64>,
    posterior_log_variance_clipped: Vec<f64>,
    posterior_mean_coef1: Vec<f64>,
    posterior_mean_coef2: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds the schedule of `timesteps` training timesteps laid out by `schedule`.
    pub fn new(schedule: &BetaSchedule, timesteps: usize) -> Result<Self, ScheduleError> {
        Self::from_betas(schedule.betas(timesteps)?)
    }

    /// Builds the schedule from its betas, one per timestep; each must lie in (0, 1].
    pub fn from_betas(betas: Vec<f64>) -> Result<Self, ScheduleError> {
        validate_betas(&betas)?;
        let alphas: Vec<f64> = betas.iter().map(|beta| 1.0 - beta).collect();
        let alphas_cumprod: Vec<f64> = alphas
            .iter()
            .scan(1.0, |product, alpha| {
                *product *= alpha;
                Some(*product)
            })
            .collect();
        let map = |table: &[f64], f: fn(f64) -> f64| table.iter().map(|&v| f(v)).collect();
        let snr: Vec<f64> = map(&alphas_cumprod, |abar| abar / (1.0 - abar));
        let sigmas: Vec<f64> = map(&snr, |snr| 1.0 / snr.sqrt());

        let previous_alphas_cumprod = || std::iter::once(1.0).chain(alphas_cumprod.iter().copied());
        let posterior = |f: fn(f64, f64, f64, f64) -> f64| -> Vec<f64> {
            (0..betas.len())
                .zip(previous_alphas_cumprod())
                .map(|(t, abar_prev)| f(betas[t], alphas[t], alphas_cumprod[t], abar_prev))
                .collect()
        };
        let posterior_variance =
            posterior(|beta, _, abar, abar_prev| beta * (1.0 - abar_prev) / (1.0 - abar));
        let posterior_mean_coef1 =
            posterior(|beta, _, abar, abar_prev| beta * abar_prev.sqrt() / (1.0 - abar));
        let posterior_mean_coef2 =
            posterior(|_, alpha, abar, abar_prev| (1.0 - abar_prev) * alpha.sqrt() / (1.0 - abar));
        // β̃_0 = 0, so its log is clipped to the next entry (or to β_0 when T = 1), as in
        // Nichol & Dhariwal 2021's reference code.
        let first_clipped = posterior_variance.get(1).copied().unwrap_or(betas[0]);
        let posterior_log_variance_clipped = std::iter::once(first_clipped)
            .chain(posterior_variance.iter().skip(1).copied())
            .map(f64::ln)
            .collect();

        Ok(Self {
            sqrt_alphas_cumprod: map(&alphas_cumprod, f64::sqrt),
            sqrt_one_minus_alphas_cumprod: map(&alphas_cumprod, |abar| (1.0 - abar).sqrt()),
            log_snr: map(&snr, f64::ln),
            log_sigmas: map(&sigmas, f64::ln),
            betas,
            alphas,
            alphas_cumprod,
            snr,
            sigmas,
            posterior_variance,
            posterior_log_variance_clipped,
            posterior_mean_coef1,
            posterior_mean_coef2,
        })
    }

    /// Rescales the schedule so that the last timestep has exactly zero SNR (ᾱ_{T−1} = 0) while
    /// ᾱ_0 keeps its value (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps
    /// are Flawed", Algorithm 1): √ᾱ is shifted so its last entry is 0 and scaled so its first
    /// is unchanged, and the betas are recovered from the ratios of consecutive ᾱ.
    ///
    /// Needs T ≥ 2. The last β becomes exactly 1.
    pub fn rescale_zero_terminal_snr(&self) -> Result<Self, ScheduleError> {
        let timesteps = self.num_timesteps();
        if timesteps < 2 {
            return Err(ScheduleError::TooShortToRescale { timesteps });
        }
        let first = self.sqrt_alphas_cumprod[0];
        let last = self.sqrt_alphas_cumprod[timesteps - 1];
        let scale = first / (first - last);
        let alphas_cumprod: Vec<f64> = self
            .sqrt_alphas_cumprod
            .iter()
            .map(|root| ((root - last) * scale).powi(2))
            .collect();
        let betas = std::iter::once(1.0 - alphas_cumprod[0])
            .chain(
                alphas_cumprod
                    .windows(2)
                    .map(|pair| 1.0 - pair[1] / pair[0]),
            )
            .collect();
        Self::from_betas(betas)
    }

    /// Whether the last timestep is pure noise, ᾱ_{T−1} = 0 (zero terminal SNR, or rectified
    /// flow's path): sampling should then start there (`trailing` steps, Lin et al. 2023,
    /// §3.3), and an ε-prediction says nothing of x_0 at it.
    pub fn ends_in_pure_noise(&self) -> bool {
        self.alphas_cumprod.last() == Some(&0.0)
    }

    /// T, the number of training timesteps.
    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }

    /// β_t, the variance of the noise added at step t.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// α_t = 1 − β_t.
    pub fn alphas(&self) -> &[f64] {
        &self.alphas
    }

    /// ᾱ_t = ∏_{s≤t} α_s, the signal fraction of x_t (Ho et al. 2020, eq. 4).
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// √ᾱ_t, the coefficient of x_0 in x_t.
    pub fn sqrt_alphas_cumprod(&self) -> &[f64] {
        &self.sqrt_alphas_cumprod
    }

    /// √(1 − ᾱ_t), the coefficient of the noise in x_t.
    pub fn sqrt_one_minus_alphas_cumprod(&self) -> &[f64] {
        &self.sqrt_one_minus_alphas_cumprod
    }

    /// SNR_t = ᾱ_t / (1 − ᾱ_t), the signal-to-noise ratio of x_t (Kingma et al. 2021).
    pub fn snr(&self) -> &[f64] {
        &self.snr
    }

    /// log SNR_t, the λ_t of Kingma et al. 2021 and Lu et al. 2022 (DPM-Solver uses λ/2).
    pub fn log_snr(&self) -> &[f64] {
        &self.log_snr
    }

    /// σ_t = √((1 − ᾱ_t) / ᾱ_t), the noise level of x_t / √ᾱ_t in the variance-exploding
    /// parameterisation of Karras et al. 2022 (k-diffusion, diffusers' Euler and Heun).
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// β̃_t, the variance of the posterior q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eq. 7).
    pub fn posterior_variance(&self) -> &[f64] {
        &self.posterior_variance
    }

    /// log β̃_t with the t = 0 entry (where β̃_0 = 0) replaced by β̃_1 (or β_0 when T = 1),
    /// as used for the learned-range variance of Nichol & Dhariwal 2021.
    pub fn posterior_log_variance_clipped(&self) -> &[f64] {
        &self.posterior_log_variance_clipped
    }

    /// The coefficient of x_0 in the posterior mean μ̃_t (Ho et al. 2020, eq. 7).
    pub fn posterior_mean_coef1(&self) -> &[f64] {
        &self.posterior_mean_coef1
    }

    /// The coefficient of x_t in the posterior mean μ̃_t (Ho et al. 2020, eq. 7).
    pub fn posterior_mean_coef2(&self) -> &[f64] {
        &self.posterior_mean_coef2
    }

    /// σ at a fractional timestep `t`, interpolated linearly in σ between the two neighbouring
    /// timesteps and clamped to [σ_0, σ_{T−1}] (diffusers' Euler and Heun schedulers,
    /// `interpolation_type = "linear"`).
    pub fn sigma_at(&self, t: f64) -> f64 {
        let last = self.num_timesteps() - 1;
        let t = if t.is_nan() {
            0.0
        } else {
            t.clamp(0.0, last as f64)
        };
        let low = t.floor() as usize;
        let weight = t - low as f64;
        if weight == 0.0 {
            self.sigmas[low]
        } else {
            (1.0 - weight) * self.sigmas[low] + weight * self.sigmas[low + 1]
        }
    }

    /// The fractional timestep whose noise level is `sigma`: the inverse of the σ table,
    /// interpolated linearly in log σ and clamped to [0, T − 1] (diffusers' `_sigma_to_t`,
    /// used to feed Karras σ to a model trained on discrete timesteps).
    pub fn sigma_to_timestep(&self, sigma: f64) -> f64 {
        let log_sigma = sigma.max(1e-10).ln();
        let log_sigmas = &self.log_sigmas;
        let last = log_sigmas.len() - 1;
        // The last index whose log σ is at most the target; σ grows with t.
        let upper = log_sigmas.partition_point(|&ls| ls <= log_sigma);
        if upper == 0 {
            return 0.0;
        }
        if upper > last {
            return last as f64;
        }
        let low = upper - 1;
        let (low_log, high_log) = (log_sigmas[low], log_sigmas[upper]);
        let weight = ((log_sigma - low_log) / (high_log - low_log)).clamp(0.0, 1.0);
        low as f64 + weight
    }
}
