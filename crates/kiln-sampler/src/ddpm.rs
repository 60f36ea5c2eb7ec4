use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::{Prediction, standard_normal};
use kiln_schedule::{NoiseSchedule, TimestepGrid};
use rand::Rng;

use crate::sampler::{
    Step, clean_and_noise, linear, split_learned_variance, timestep_at, whole_timesteps,
};
use crate::{SampleClipping, Sampler, SamplerError};

/// The variance of DDPM's reverse steps (diffusers' `variance_type`; Ho et al. 2020, §3.2).
/// More may come, so matches on it need a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum VarianceType {
    /// `fixed_small`: the posterior variance β̃_t, optimal for deterministic x_0.
    #[default]
    FixedSmall,
    /// `fixed_large`: β_t, optimal for x_0 ~ N(0, I).
    FixedLarge,
    /// `learned_range`: the model's own, between the two (Nichol & Dhariwal 2021, eq. 15, v
    /// mapped from [−1, 1] as in their code and diffusers): log σ² = (v + 1)/2 · log β_t +
    /// (1 − v)/2 · log β̃_t for the model's v, nominally in [−1, 1] (not clamped), one per
    /// value. The model gives v beside its prediction
    /// ([`Denoiser::denoise_with_variance`](crate::Denoiser::denoise_with_variance)).
    LearnedRange,
}

impl VarianceType {
    /// Looks the variance up by its diffusers name (`fixed_small`, `fixed_large`,
    /// `learned_range`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fixed_small" => Some(Self::FixedSmall),
            "fixed_large" => Some(Self::FixedLarge),
            "learned_range" => Some(Self::LearnedRange),
            _ => None,
        }
    }

    /// DDPM's variance for a model that `learns_variance` or not: its own (`learned_range`),
    /// else diffusers' default, `fixed_small`.
    pub fn default_for(learns_variance: bool) -> Self {
        if learns_variance {
            Self::LearnedRange
        } else {
            Self::FixedSmall
        }
    }

    /// The diffusers name of the variance.
    pub fn name(self) -> &'static str {
        match self {
            Self::FixedSmall => "fixed_small",
            Self::FixedLarge => "fixed_large",
            Self::LearnedRange => "learned_range",
        }
    }
}

/// Settings of [`Ddpm`], with diffusers' `DDPMScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpmConfig {
    /// The variance of each step.
    pub variance_type: VarianceType,
    /// Clipping of x̂_0 (diffusers clips to [−1, 1] by default).
    pub clipping: SampleClipping,
    /// The inference timesteps (`leading`, `steps_offset = 0` by default).
    pub grid: TimestepGrid,
}

impl Default for DdpmConfig {
    fn default() -> Self {
        Self {
            variance_type: VarianceType::FixedSmall,
            clipping: SampleClipping {
                clip_sample: true,
                ..SampleClipping::default()
            },
            grid: TimestepGrid::default(),
        }
    }
}

/// Ancestral sampling (Ho et al. 2020, Algorithm 2, generalised to skipped steps as in
/// diffusers): from timestep t to the next inference timestep t' (the clean data after the
/// last; see [`Ddim`](crate::Ddim) on diffusers' t − ⌊T/N⌋) with α = ᾱ_t/ᾱ_{t'} and β = 1 − α,
///
/// ```text
/// x_{t'} = √ᾱ_{t'} β/(1 − ᾱ_t) · x̂_0 + √α (1 − ᾱ_{t'})/(1 − ᾱ_t) · x_t + σ z,   z ~ N(0, I)
/// ```
///
/// (the posterior mean of eq. 7 at the clipped x̂_0) with σ² = β̃ = (1 − ᾱ_{t'})/(1 − ᾱ_t)·β
/// (`fixed_small`), β (`fixed_large`) or the model's interpolation between them in the log
/// domain (`learned_range`; β̃ floored at 10⁻²⁰, as diffusers does), and no noise at t = 0.
///
/// With `learned_range` the model output given to [`Sampler::step`] holds the prediction
/// and v along dimension 1 (twice the sample's channels), as in diffusers' `DDPMScheduler`.
#[derive(Debug, Clone)]
pub struct Ddpm {
    config: DdpmConfig,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<f64>,
}

impl Ddpm {
    /// DDPM over `schedule` in `steps` steps (T steps reproduce the paper's sampler).
    pub fn new(
        config: DdpmConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        config.clipping.validate()?;
        let timesteps = whole_timesteps(config.grid, schedule.num_timesteps(), steps)?;
        Ok(Self {
            config,
            alphas_cumprod: schedule.alphas_cumprod().to_vec(),
            timesteps,
        })
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Ddpm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn reads_learned_variance(&self) -> bool {
        self.config.variance_type == VarianceType::LearnedRange
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)?;
        let t = timestep as usize;
        let alpha_cumprod = self.alphas_cumprod[t];
        let alpha_cumprod_prev = self
            .timesteps
            .get(index + 1)
            .map_or(1.0, |&prev| self.alphas_cumprod[prev as usize]);
        let alpha = alpha_cumprod / alpha_cumprod_prev;
        let beta = 1.0 - alpha;
        let (output, learned) = match self.config.variance_type {
            VarianceType::LearnedRange => {
                let (output, learned) = split_learned_variance("DDPM", output, &sample)?;
                (output, Some(learned))
            }
            VarianceType::FixedSmall | VarianceType::FixedLarge => (output, None),
        };
        let (x0, _) = clean_and_noise(
            "DDPM",
            output,
            prediction,
            sample.clone(),
            alpha_cumprod,
            timestep,
        )?;
        let x0 = self.config.clipping.apply(x0);
        let on_clean = alpha_cumprod_prev.sqrt() * beta / (1.0 - alpha_cumprod);
        let on_sample = alpha.sqrt() * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod);
        let mut next = linear(&x0, on_clean, &sample, on_sample);
        if t > 0 {
            let posterior = ((1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod) * beta).max(1e-20);
            let noise = standard_normal::<B, D>(x0.dims(), rng, &x0.device());
            next = next
                + match learned {
                    Some(v) => {
                        // σ = exp(½ log σ²), log σ² = log β̃ + (v + 1)/2 · (log β − log β̃).
                        let (low, high) = (posterior.ln(), beta.ln());
                        let log_variance = v
                            .add_scalar(1.0)
                            .mul_scalar((high - low) / 2.0)
                            .add_scalar(low);
                        noise * log_variance.mul_scalar(0.5).exp()
                    }
                    None if self.config.variance_type == VarianceType::FixedLarge => {
                        noise.mul_scalar(beta.sqrt())
                    }
                    None => noise.mul_scalar(posterior.sqrt()),
                };
        }
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
