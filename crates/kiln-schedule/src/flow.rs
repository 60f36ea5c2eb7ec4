//! Noise levels of rectified flow: x_σ = (1 − σ) x_0 + σ ε for σ ∈ [0, 1].
//!
//! Flow matching (Lipman et al. 2023, "Flow Matching for Generative Modeling"; Liu et al. 2023,
//! "Flow Straight and Fast") joins data and noise by the straight line x_σ above, so the model
//! learns the constant velocity dx_σ/dσ = ε − x_0. Its schedule is just the list of σ a model
//! is trained and sampled at; timesteps are σ·T. Stable Diffusion 3 (Esser et al. 2024,
//! "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis", §3.1 and §5.3.2)
//! shifts the σ toward noise, more so for larger images; Flux picks the shift from the image's
//! size ([`ResolutionShift`]).
//!
//! [`FlowSchedule`] builds the tables exactly as diffusers' `FlowMatchEulerDiscreteScheduler`.

use crate::ScheduleError;
use crate::numbers::{check_finite, check_positive, linspace, out_of_range};
use crate::sigma_spacing::{beta_sigmas, karras_sigmas, uniform_lambda_sigmas};

/// How σ is moved toward noise (diffusers' `shift`, `use_dynamic_shifting` and
/// `time_shift_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlowShift {
    /// σ ↦ sσ / (1 + (s − 1)σ) (Esser et al. 2024, eq. 23), applied to the training σ and
    /// again to the sampling grid laid between them, as diffusers does. s = 1 leaves σ as it
    /// is; SD3 samples with s = 3.
    Static(f64),
    /// σ ↦ e^μ / (e^μ + 1/σ − 1) (exponential) or μ / (μ + 1/σ − 1) (linear), applied to the
    /// sampling grid only, with μ chosen per image size ([`ResolutionShift`]; diffusers'
    /// `use_dynamic_shifting`, the `mu` of `set_timesteps`). The exponential form with μ = ln s
    /// is the static shift by s, but laid over the unshifted training σ, so its grid is laid
    /// down to 1/T before the shift (and ends at shift(1/T)) where the static one is laid
    /// down to the shifted 1/T (and ends at shift(shift(1/T))).
    Dynamic {
        /// μ: the shift's strength.
        mu: f64,
        /// Which form of the shift.
        time_shift: TimeShift,
    },
}

impl Default for FlowShift {
    /// No shift: `Static(1.0)`.
    fn default() -> Self {
        Self::Static(1.0)
    }
}

/// The form of a [`FlowShift::Dynamic`] shift (diffusers' `time_shift_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeShift {
    /// e^μ / (e^μ + 1/σ − 1) (Flux).
    #[default]
    Exponential,
    /// μ / (μ + 1/σ − 1).
    Linear,
}

/// How the sampling σ are spread once shifted (diffusers' `use_karras_sigmas`,
/// `use_exponential_sigmas`, `use_beta_sigmas`): each respaces the grid between its first and
/// last σ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowSpacing {
    /// The shifted grid as it is.
    #[default]
    Shifted,
    /// Karras et al. 2022's ρ = 7 spacing ([`karras_sigmas`]).
    Karras,
    /// Even in log σ ([`uniform_lambda_sigmas`]).
    Exponential,
    /// Beta(0.6, 0.6) quantiles ([`beta_sigmas`]).
    Beta,
}

/// Flux's choice of μ from the image's size (diffusers' `calculate_shift`): linear in the
/// number of latent tokens L, from `base_shift` at `base_seq_len` tokens to `max_shift` at
/// `max_seq_len`,
///
/// ```text
/// μ(L) = base_shift + (L − base_seq_len) · (max_shift − base_shift) / (max_seq_len − base_seq_len)
/// ```
///
/// and extrapolated beyond them. The defaults are Flux's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolutionShift {
    /// The sequence length that gets `base_shift`.
    pub base_seq_len: f64,
    /// The sequence length that gets `max_shift`.
    pub max_seq_len: f64,
    /// μ at `base_seq_len`.
    pub base_shift: f64,
    /// μ at `max_seq_len`.
    pub max_shift: f64,
}

impl Default for ResolutionShift {
    fn default() -> Self {
        Self {
            base_seq_len: 256.0,
            max_seq_len: 4096.0,
            base_shift: 0.5,
            max_shift: 1.15,
        }
    }
}

impl ResolutionShift {
    /// μ for an image of `seq_len` tokens (a 1024² image in Flux's 8× smaller latents, packed
    /// 2 × 2, has 64² = 4096). Fails on non-finite settings or equal sequence lengths.
    pub fn mu(&self, seq_len: f64) -> Result<f64, ScheduleError> {
        for (name, value) in [
            ("seq_len", seq_len),
            ("base_seq_len", self.base_seq_len),
            ("max_seq_len", self.max_seq_len),
            ("base_shift", self.base_shift),
            ("max_shift", self.max_shift),
        ] {
            check_finite(name, value)?;
        }
        if self.max_seq_len == self.base_seq_len {
            return Err(out_of_range(
                "max_seq_len",
                self.max_seq_len,
                "a length other than base_seq_len",
            ));
        }
        let slope = (self.max_shift - self.base_shift) / (self.max_seq_len - self.base_seq_len);
        Ok(self.base_shift + (seq_len - self.base_seq_len) * slope)
    }
}

/// The noise levels of a rectified-flow model, for training and for sampling (diffusers'
/// `FlowMatchEulerDiscreteScheduler` configuration).
///
/// Training uses T levels σ_t = shift((t + 1)/T), t = 0, …, T − 1 (unshifted for a dynamic
/// shift), at timesteps σ_t·T. Sampling in N steps lays N timesteps evenly from σ_max·T down to
/// σ_min·T (the training extremes), divides them by T, shifts them, optionally stretches them to
/// end at `shift_terminal` and respaces them; the model is called at σ·T and the grid ends at
/// σ = 0.
///
/// ```
/// use kiln_schedule::{FlowSchedule, FlowShift};
///
/// let sd3 = FlowSchedule { shift: FlowShift::Static(3.0), ..FlowSchedule::default() };
/// let grid = sd3.grid(4)?;
/// assert_eq!(grid.sigmas().len(), 5);
/// assert_eq!((grid.sigmas()[0], grid.sigmas()[4]), (1.0, 0.0));
/// assert_eq!(grid.timesteps()[0], 1000.0);
/// # Ok::<(), kiln_schedule::ScheduleError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowSchedule {
    /// T, the number of training timesteps (`num_train_timesteps`).
    pub train_timesteps: usize,
    /// The shift toward noise.
    pub shift: FlowShift,
    /// Where the shifted grid is stretched to end (diffusers' `shift_terminal`, LTX-Video's
    /// 0.1): each 1 − σ is divided by (1 − σ_last)/(1 − terminal). `None` leaves it.
    pub shift_terminal: Option<f64>,
    /// The respacing of the sampling grid.
    pub spacing: FlowSpacing,
}

impl Default for FlowSchedule {
    /// diffusers' defaults: 1,000 timesteps, no shift, no terminal stretch, no respacing.
    fn default() -> Self {
        Self {
            train_timesteps: 1000,
            shift: FlowShift::default(),
            shift_terminal: None,
            spacing: FlowSpacing::default(),
        }
    }
}

/// The σ and model-call timesteps of one sampling run: N timesteps and N + 1 σ, the last 0.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowGrid {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
}

impl FlowGrid {
    /// The timestep σ_i·T of each model call, from the noisiest.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// σ_0 > … > σ_{N−1} and the final σ_N = 0.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }
}

impl FlowSchedule {
    /// The T training noise levels, from the noisiest (σ = 1) down.
    pub fn training_sigmas(&self) -> Result<Vec<f64>, ScheduleError> {
        self.validate()?;
        let count = self.train_timesteps as f64;
        Ok((1..=self.train_timesteps)
            .rev()
            .map(|t| self.training_sigma(t as f64 / count))
            .collect())
    }

    /// The training σ at fraction τ = (t + 1)/T: shifted by a static shift, as it is by a
    /// dynamic one only when sampling.
    fn training_sigma(&self, fraction: f64) -> f64 {
        match self.shift {
            FlowShift::Static(shift) => static_shift(shift, fraction),
            FlowShift::Dynamic { .. } => fraction,
        }
    }

    /// The grid for sampling in `steps` steps.
    pub fn grid(&self, steps: usize) -> Result<FlowGrid, ScheduleError> {
        if steps == 0 {
            return Err(ScheduleError::ZeroSteps);
        }
        self.validate()?;
        let (sigma_max, sigma_min) = (
            self.training_sigma(1.0),
            self.training_sigma(1.0 / self.train_timesteps as f64),
        );
        let mut sigmas: Vec<f64> = linspace(sigma_max, sigma_min, steps)
            .map(|sigma| self.shifted(sigma))
            .collect();
        if let Some(terminal) = self.shift_terminal {
            stretch_to_terminal(&mut sigmas, terminal)?;
        }
        let (first, last) = (sigmas[0], sigmas[steps - 1]);
        sigmas = match self.spacing {
            FlowSpacing::Shifted => sigmas,
            FlowSpacing::Karras => karras_sigmas(last, first, steps, 7.0)?,
            FlowSpacing::Exponential => uniform_lambda_sigmas(last, first, steps)?,
            FlowSpacing::Beta => beta_sigmas(last, first, steps, 0.6, 0.6)?,
        };
        let count = self.train_timesteps as f64;
        let timesteps = sigmas.iter().map(|sigma| sigma * count).collect();
        sigmas.push(0.0);
        Ok(FlowGrid { timesteps, sigmas })
    }

    /// The shift of a noise level σ ∈ [0, 1] (0 and 1 stay where they are): what training
    /// applies to a σ drawn from its density (Esser et al. 2024, §5.3.2).
    pub fn shift(&self, sigma: f64) -> Result<f64, ScheduleError> {
        self.validate()?;
        check_finite("sigma", sigma)?;
        if !(0.0..=1.0).contains(&sigma) {
            return Err(out_of_range("sigma", sigma, "in [0, 1]"));
        }
        Ok(self.shifted(sigma))
    }

    /// The shift of one σ, the settings checked.
    fn shifted(&self, sigma: f64) -> f64 {
        match self.shift {
            FlowShift::Static(shift) => static_shift(shift, sigma),
            FlowShift::Dynamic { mu, time_shift } => {
                let strength = match time_shift {
                    TimeShift::Exponential => mu.exp(),
                    TimeShift::Linear => mu,
                };
                strength / (strength + (1.0 / sigma - 1.0))
            }
        }
    }

    fn validate(&self) -> Result<(), ScheduleError> {
        if self.train_timesteps == 0 {
            return Err(ScheduleError::ZeroTimesteps);
        }
        match self.shift {
            FlowShift::Static(shift) => check_positive("shift", shift)?,
            FlowShift::Dynamic {
                mu,
                time_shift: TimeShift::Exponential,
            } => {
                check_finite("mu", mu)?;
                // e^μ must stay a positive f64, or the shift is ∞/∞ or 0/0.
                if !(mu.exp().is_finite() && mu.exp() > 0.0) {
                    return Err(out_of_range(
                        "mu",
                        mu,
                        "within about ±709, where e^mu is finite and positive",
                    ));
                }
            }
            FlowShift::Dynamic {
                mu,
                time_shift: TimeShift::Linear,
            } => check_positive("mu", mu)?,
        }
        if let Some(terminal) = self.shift_terminal {
            check_finite("shift_terminal", terminal)?;
            if !(0.0 < terminal && terminal < 1.0) {
                return Err(out_of_range("shift_terminal", terminal, "in (0, 1)"));
            }
        }
        Ok(())
    }
}

/// sσ / (1 + (s − 1)σ), written as sσ / (sσ + 1 − σ) so that 0 and 1 map to themselves
/// exactly (the first form gives 1 + 2⁻⁵² at σ = 1 for some s).
fn static_shift(shift: f64, sigma: f64) -> f64 {
    let shifted = shift * sigma;
    shifted / (shifted + (1.0 - sigma))
}

/// Scales every 1 − σ so that the last σ becomes `terminal` (LTX-Video's `stretch_shift_to_terminal`).
fn stretch_to_terminal(sigmas: &mut [f64], terminal: f64) -> Result<(), ScheduleError> {
    let last = sigmas[sigmas.len() - 1];
    if last >= 1.0 {
        return Err(out_of_range(
            "shift_terminal",
            terminal,
            "a grid whose last sigma is below 1 (more than one step)",
        ));
    }
    let scale = (1.0 - last) / (1.0 - terminal);
    for sigma in sigmas {
        *sigma = 1.0 - (1.0 - *sigma) / scale;
    }
    Ok(())
}
