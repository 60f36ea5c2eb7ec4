use std::str::FromStr;

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{
    NoiseSchedule, ScheduleError, TimestepGrid, TimestepSpacing, beta_sigmas, karras_sigmas,
    uniform_lambda_sigmas,
};

use crate::sampler::{clean_and_noise, linear, whole_timesteps};
use crate::{SampleClipping, SamplerError};

/// The noise levels of a σ-space sampler (Euler, Heun): the state is x = x_0 + σ ε, which is
/// the VP sample times √(σ² + 1) (Karras et al. 2022, Table 1, "VP" column).
#[derive(Debug, Clone)]
pub(crate) struct SigmaGrid {
    /// The timestep of each grid point (fractional for `linspace` or Karras σ).
    pub timesteps: Vec<f64>,
    /// σ at each grid point, then the final 0.
    pub sigmas: Vec<f64>,
    spacing: TimestepSpacing,
}

impl SigmaGrid {
    /// σ interpolated at the grid's timesteps (diffusers' `interpolation_type = "linear"`), or
    /// `spacing` between the first and last of them with the timesteps found by log-σ
    /// interpolation.
    pub fn new(
        grid: TimestepGrid,
        spacing: SigmaSpacing,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let timesteps = grid.timesteps(schedule.num_timesteps(), steps)?;
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| sigma_at(schedule, t)).collect();
        let timesteps = match spacing.between(sigmas[steps - 1], sigmas[0], steps)? {
            Some(spaced) => {
                sigmas = spaced;
                sigmas
                    .iter()
                    .map(|&sigma| timestep_of(schedule, sigma))
                    .collect()
            }
            None => timesteps,
        };
        sigmas.push(0.0);
        Ok(Self {
            timesteps,
            sigmas,
            spacing: grid.spacing,
        })
    }

    /// 1/√(σ_i² + 1), the scale of step `index`'s model input (the last grid σ past the end).
    pub fn model_input_scale(&self, index: usize) -> f64 {
        vp_scale(self.sigmas[index.min(self.sigmas.len() - 1)])
    }

    /// σ_max for `linspace` and `trailing` grids, √(σ_max² + 1) for `leading`, as diffusers.
    pub fn init_noise_sigma(&self) -> f64 {
        let sigma_max = self.sigmas[0];
        match self.spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => sigma_max,
            TimestepSpacing::Leading => (sigma_max * sigma_max + 1.0).sqrt(),
        }
    }
}

/// The σ a sampler takes in place of a zero-terminal-SNR schedule's last, infinite one
/// (ᾱ = 0): that of ᾱ = 2⁻²⁴, √(2²⁴ − 1) ≈ 4096, as diffusers' Euler, DPM-Solver and UniPC
/// schedulers do under `rescale_betas_zero_snr`. At that σ the VP sample a model sees is the
/// noise plus x_0/4096.
const ZERO_SNR_SIGMA: f64 = 4095.9998779296857;

/// The start of the last interval of a zero-terminal-SNR σ table, whose infinite end is
/// taken as [`ZERO_SNR_SIGMA`]: (T − 2, σ_{T−2}), or `None` for a table that ends finite.
fn zero_snr_interval(schedule: &NoiseSchedule) -> Option<(f64, f64)> {
    let table = schedule.sigmas();
    let last = table.len() - 1;
    (last > 0 && table[last].is_infinite()).then(|| ((last - 1) as f64, table[last - 1]))
}

/// σ at fractional timestep `t` ([`NoiseSchedule::sigma_at`], linear in σ), over the table
/// with [`ZERO_SNR_SIGMA`] for an infinite last σ, as diffusers' table with ᾱ = 2⁻²⁴.
pub(crate) fn sigma_at(schedule: &NoiseSchedule, t: f64) -> f64 {
    match zero_snr_interval(schedule) {
        Some((start, low)) if t > start => {
            let weight = (t - start).min(1.0);
            (1.0 - weight) * low + weight * ZERO_SNR_SIGMA
        }
        // A schedule with ᾱ = 0 before its last timestep (β = 1 there) has more infinite σ.
        _ => match schedule.sigma_at(t) {
            sigma if sigma.is_infinite() => ZERO_SNR_SIGMA,
            sigma => sigma,
        },
    }
}

/// The fractional timestep of noise level `sigma` ([`NoiseSchedule::sigma_to_timestep`],
/// linear in log σ), over the table with [`ZERO_SNR_SIGMA`] for an infinite last σ, as
/// diffusers' lookup over its table with ᾱ = 2⁻²⁴.
pub(crate) fn timestep_of(schedule: &NoiseSchedule, sigma: f64) -> f64 {
    match zero_snr_interval(schedule) {
        Some((start, low)) if sigma > low && ZERO_SNR_SIGMA > low => {
            let weight = (sigma / low).ln() / (ZERO_SNR_SIGMA / low).ln();
            start + weight.clamp(0.0, 1.0)
        }
        _ => schedule.sigma_to_timestep(sigma),
    }
}

/// 1/√(σ² + 1): from x_0 + σ ε to the VP sample a model was trained on.
pub(crate) fn vp_scale(sigma: f64) -> f64 {
    1.0 / (sigma * sigma + 1.0).sqrt()
}

/// An ancestral step's split of the way from σ to σ' < σ (DDIM's η = 1 noise in σ-space,
/// Song et al. 2021; k-diffusion's `get_ancestral_step`): the deterministic step lands on
/// σ_down and fresh noise of σ_up is added, where
///
/// ```text
/// σ_up = σ' √(σ² − σ'²)/σ,      σ_down = √(σ'² − σ_up²) = σ'²/σ,
/// ```
///
/// so that σ_down² + σ_up² = σ'². Returns (σ_down, σ_up); (σ', 0) when σ' ≥ σ.
///
/// σ_down is taken as σ'²/σ: k-diffusion's and diffusers' √(σ'² − σ_up²) cancels when
/// σ' ≪ σ, and in diffusers' f32 it comes out NaN (`KDPM2AncestralDiscreteScheduler` in 2
/// steps from σ_max ≈ 157 to σ_min ≈ 0.01: σ'²/σ² ≈ 4e-9, below f32's ε).
pub(crate) fn ancestral_split(sigma: f64, sigma_next: f64) -> (f64, f64) {
    if sigma_next >= sigma {
        return (sigma_next, 0.0);
    }
    let up = sigma_next * (sigma * sigma - sigma_next * sigma_next).sqrt() / sigma;
    (sigma_next * sigma_next / sigma, up)
}

/// The step in σ-space from `sample` at σ = `sigma` to σ_down with x̂_0 = `x0`, plus σ_up
/// times `noise()` when σ_up > 0 (`noise` is not called otherwise), where
/// (σ_down, σ_up) = `split` ([`ancestral_split`], or (σ', 0) for a plain step):
///
/// ```text
/// x' = x + (x − x̂_0)/σ · (σ_down − σ) + σ_up z = (σ_down/σ) x + (1 − σ_down/σ) x̂_0 + σ_up z,
/// ```
///
/// Euler's step, which with λ = −log σ is also DPM-Solver++'s first-order update (x̂_0
/// weighted by 1 − e^{−h}).
pub(crate) fn euler_step<B: Backend, const D: usize>(
    sample: &Tensor<B, D>,
    x0: &Tensor<B, D>,
    sigma: f64,
    (down, up): (f64, f64),
    noise: impl FnOnce() -> Tensor<B, D>,
) -> Tensor<B, D> {
    let ratio = down / sigma;
    let next = linear(sample, ratio, x0, 1.0 - ratio);
    if up > 0.0 {
        next + noise().mul_scalar(up)
    } else {
        next
    }
}

/// x̂_0 from a model output made at the σ-space sample x = `sample` with noise level `sigma`,
/// kept in range by `clipping`.
pub(crate) fn denoised<B: Backend, const D: usize>(
    sampler: &'static str,
    output: Tensor<B, D>,
    prediction: Prediction,
    sample: &Tensor<B, D>,
    (sigma, timestep): (f64, f64),
    clipping: SampleClipping,
) -> Result<Tensor<B, D>, SamplerError> {
    let scale = vp_scale(sigma);
    let vp_sample = sample.clone().mul_scalar(scale);
    let (x0, _) = clean_and_noise(
        sampler,
        output,
        prediction,
        vp_sample,
        scale * scale,
        timestep,
    )?;
    Ok(clipping.apply(x0))
}

/// The σ the last step lands on (diffusers' `final_sigmas_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalSigmas {
    /// `zero`: the clean data; the last step is then always first order.
    #[default]
    Zero,
    /// `sigma_min`: σ of the first training timestep.
    SigmaMin,
}

/// Where a sampler places its noise levels: σ at its timesteps, or a spacing of σ between a
/// largest and a smallest one, with the timesteps of the model calls then found from σ. One
/// field for diffusers' `use_karras_sigmas`, `use_exponential_sigmas` and `use_beta_sigmas`
/// (and DPM-Solver's `use_lu_lambdas`), flags of which at most one may be set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum SigmaSpacing {
    /// σ from the schedule at the grid's timesteps (diffusers' default).
    #[default]
    Timesteps,
    /// Karras et al. 2022's ρ = 7 spacing, even in σ^{1/7} ([`karras_sigmas`]; diffusers'
    /// `use_karras_sigmas`).
    Karras,
    /// Even in log σ, so in λ = −log σ ([`uniform_lambda_sigmas`]; diffusers'
    /// `use_exponential_sigmas`, and DPM-Solver's `use_lu_lambdas`, which place the same σ).
    Exponential,
    /// At the quantiles of a Beta(`alpha`, `beta`) distribution, crowded at both ends for
    /// parameters below 1 (Lee et al. 2024; [`beta_sigmas`]; diffusers' `use_beta_sigmas` is
    /// [`SigmaSpacing::BETA`]).
    Beta {
        /// The Beta distribution's first shape parameter, a > 0.
        alpha: f64,
        /// Its second shape parameter, b > 0.
        beta: f64,
    },
}

impl SigmaSpacing {
    /// diffusers' `use_beta_sigmas`: Beta(0.6, 0.6), the paper's choice.
    pub const BETA: Self = Self::Beta {
        alpha: 0.6,
        beta: 0.6,
    };

    /// The names [`FromStr`] accepts, one per variant (`beta` is [`SigmaSpacing::BETA`]).
    pub const NAMES: [&'static str; 4] = ["timesteps", "karras", "exponential", "beta"];

    /// Whether σ are spaced by a formula rather than taken at the grid's timesteps.
    pub fn is_spaced(self) -> bool {
        self != Self::Timesteps
    }

    /// `steps` σ in this spacing from `sigma_max` down to `sigma_min`; `None` for
    /// [`SigmaSpacing::Timesteps`], which takes σ from the grid instead.
    fn between(
        self,
        sigma_min: f64,
        sigma_max: f64,
        steps: usize,
    ) -> Result<Option<Vec<f64>>, ScheduleError> {
        match self {
            Self::Timesteps => Ok(None),
            Self::Karras => karras_sigmas(sigma_min, sigma_max, steps, 7.0).map(Some),
            Self::Exponential => uniform_lambda_sigmas(sigma_min, sigma_max, steps).map(Some),
            Self::Beta { alpha, beta } => {
                beta_sigmas(sigma_min, sigma_max, steps, alpha, beta).map(Some)
            }
        }
    }
}

impl FromStr for SigmaSpacing {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "timesteps" => Ok(Self::Timesteps),
            "karras" => Ok(Self::Karras),
            "exponential" => Ok(Self::Exponential),
            "beta" => Ok(Self::BETA),
            _ => Err(format!(
                "unknown σ spacing {name:?}; expected one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// The grid of diffusers' multistep solvers (DPM-Solver, UniPC): whole timesteps from the
/// grid and σ from the table at them, or `spacing`'s σ between the table's smallest and
/// largest σ (the grid unused) with their timesteps rounded to whole numbers; then the
/// final σ. The grid is laid over the timesteps kept by `lambda_min_clipped`
/// ([`kept_train_timesteps`]; −∞ keeps them all).
pub(crate) fn discrete_sigma_grid(
    grid: TimestepGrid,
    spacing: SigmaSpacing,
    final_sigmas: FinalSigmas,
    lambda_min_clipped: f64,
    schedule: &NoiseSchedule,
    steps: usize,
) -> Result<(Vec<f64>, Vec<f64>), SamplerError> {
    let last = (schedule.num_timesteps() - 1) as f64;
    let (sigma_min, sigma_max) = (schedule.sigmas()[0], sigma_at(schedule, last));
    let kept = kept_train_timesteps(schedule, lambda_min_clipped)?;
    let Some(spaced) = spacing.between(sigma_min, sigma_max, steps)? else {
        let timesteps = clipped_timesteps(grid, kept, schedule.num_timesteps(), steps)?;
        let sigmas = timesteps.iter().map(|&t| sigma_at(schedule, t)).collect();
        return Ok((timesteps, with_final(sigmas, final_sigmas, sigma_min)));
    };
    let timesteps = spaced
        .iter()
        .map(|&sigma| timestep_of(schedule, sigma).round_ties_even())
        .collect();
    Ok((timesteps, with_final(spaced, final_sigmas, sigma_min)))
}

/// T′, the training timesteps a grid is laid over under diffusers' `lambda_min_clipped`
/// (DPM-Solver, SA-Solver): those before the first t with λ_t = −log σ_t < λ_min. λ falls
/// with t, so the noisiest T − T′ are dropped and a `linspace` grid starts at t = T′ − 1
/// (diffusers' docs call the clipping critical for the cosine schedule, whose last σ are
/// huge). Where λ does not fall at the very end (the linear zero-terminal-SNR schedule, with
/// σ = 4096 at t = T − 1), everything from the first crossing on is dropped, as diffusers'
/// sorted search of the flipped λ drops it. Fails on a NaN λ_min and on one above λ_0.
fn kept_train_timesteps(schedule: &NoiseSchedule, lambda_min: f64) -> Result<usize, SamplerError> {
    let kept = (0..schedule.num_timesteps())
        .position(|t| lambda(sigma_at(schedule, t as f64)) < lambda_min)
        .unwrap_or(schedule.num_timesteps());
    if lambda_min.is_nan() || kept == 0 {
        return Err(SamplerError::OutOfRange {
            name: "lambda_min_clipped",
            value: lambda_min,
            expected: "at most λ of the first timestep (−∞: no clipping)",
        });
    }
    Ok(kept)
}

/// `grid`'s whole timesteps laid over the first `kept` of `train_timesteps`: as over `kept`
/// timesteps, but with `leading`'s `steps_offset` allowed up to t = T − 1, as diffusers
/// allows it.
fn clipped_timesteps(
    grid: TimestepGrid,
    kept: usize,
    train_timesteps: usize,
    steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    let unshifted = TimestepGrid {
        steps_offset: 0,
        ..grid
    };
    let offset = match grid.spacing {
        TimestepSpacing::Leading => grid.steps_offset as f64,
        _ => 0.0,
    };
    let timesteps: Vec<f64> = whole_timesteps(unshifted, kept, steps)?
        .into_iter()
        .map(|t| t + offset)
        .collect();
    match timesteps
        .iter()
        .find(|&&t| t > (train_timesteps - 1) as f64)
    {
        Some(&timestep) => Err(ScheduleError::OffsetPastEnd {
            steps_offset: grid.steps_offset,
            timestep,
            last: train_timesteps - 1,
        }
        .into()),
        None => Ok(timesteps),
    }
}

/// `sigmas` with the σ the last step lands on appended.
fn with_final(mut sigmas: Vec<f64>, final_sigmas: FinalSigmas, sigma_min: f64) -> Vec<f64> {
    sigmas.push(match final_sigmas {
        FinalSigmas::Zero => 0.0,
        FinalSigmas::SigmaMin => sigma_min,
    });
    sigmas
}

/// λ = log(α/s) = −log σ for a VE noise level σ (Lu et al. 2022's half log-SNR).
pub(crate) fn lambda(sigma: f64) -> f64 {
    -sigma.ln()
}

/// (α, s) = (1/√(σ² + 1), σ/√(σ² + 1)): the VP signal and noise scales at VE level σ.
pub(crate) fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = vp_scale(sigma);
    (alpha, sigma * alpha)
}
