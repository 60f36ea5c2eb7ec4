//! Everything that defines a training run, stored with every checkpoint.

use burn::config::Config;
use burn::optim::{AdamWConfig, grad_clipping::GradientClippingConfig};
use kiln_distill::{ConsistencyDistillation, ProgressiveDistillation};
use kiln_forward::{FlowTimeDensity, LossWeighting, Prediction};
use kiln_pipeline::{NamedRun, SamplerName};
use kiln_sampler::{ConsistencyScalings, Tcd, TcdConfig};
use kiln_schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use kiln_unet::UNetConfig;
use rand::{Rng, RngExt};

use crate::ema::check_decay;
use crate::{Distiller, TrainError};

/// A training run: the model, the data size, the optimisation and the bookkeeping.
///
/// The defaults follow Ho et al. 2020 (T = 1000, linear β from 1e-4 to 0.02, ε-prediction,
/// uniform loss weighting, gradient clipping at norm 1, EMA) with a higher learning rate and a
/// shorter EMA horizon suited to small datasets and short runs.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// The UNet.
    pub unet: UNetConfig,
    /// Height and width of the training images.
    pub image_size: usize,
    /// Passes over the data.
    #[config(default = 50)]
    pub epochs: usize,
    /// Images per optimizer step (split over the devices and the accumulation steps).
    #[config(default = 16)]
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before each optimizer step.
    #[config(default = 1)]
    pub grad_accumulation: usize,
    /// Peak learning rate of AdamW.
    #[config(default = 2e-4)]
    pub learning_rate: f64,
    /// Optimizer steps of linear learning-rate warm-up from 0.
    #[config(default = 100)]
    pub warmup_steps: usize,
    /// The learning rate after the warm-up: `None` (or `constant`) keeps it, `cosine` brings it
    /// down to 0 at the end of the run along half a cosine, as diffusers'
    /// `get_cosine_schedule_with_warmup`; see [`TrainConfig::learning_rate_at`]. (An `Option`
    /// so that the checkpoints of runs from before it existed still load.)
    #[config(default = "None")]
    pub lr_schedule: Option<String>,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    #[config(default = "Some(1.0)")]
    pub max_grad_norm: Option<f64>,
    /// AdamW's decoupled weight decay.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// The EMA's decay cap (see [`crate::Ema`]).
    #[config(default = 0.999)]
    pub ema_decay: f64,
    /// Diffusion timesteps T.
    #[config(default = 1000)]
    pub num_train_timesteps: usize,
    /// The β schedule, by its diffusers name (`linear`, `scaled_linear`, `squaredcos_cap_v2`,
    /// `sigmoid`) or `rectified_flow` (rectified flow's path, with `flow_prediction`).
    #[config(default = "String::from(\"linear\")")]
    pub beta_schedule: String,
    /// Rescale the β schedule to zero terminal SNR, as diffusers' `rescale_betas_zero_snr`
    /// (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    /// Algorithm 1; [`NoiseSchedule::rescale_zero_terminal_snr`]): ᾱ_{T−1} = 0, so the model
    /// trains at the pure noise that sampling starts from, and ᾱ_0 is kept. ε-prediction
    /// cannot say what x_0 is there, so it needs another `prediction` (the paper's:
    /// `v_prediction`). `None` is `false` (an `Option` so that the checkpoints of runs from
    /// before it existed still load).
    #[config(default = "None")]
    pub rescale_betas_zero_snr: Option<bool>,
    /// What the model predicts: `epsilon`, `sample`, `v_prediction` or `flow_prediction`
    /// (rectified flow's velocity ε − x_0; with the `rectified_flow` β schedule, rectified
    /// flow itself: see [`kiln_forward::Prediction::Flow`]).
    #[config(default = "String::from(\"epsilon\")")]
    pub prediction: String,
    /// The variance of the model's reverse steps, by its diffusers name: `fixed_small`, the
    /// posterior variance β̃_t that DDPM samples with (Ho et al. 2020), or `learned_range`:
    /// the model also learns v (nominally in [−1, 1]) per value, log σ² =
    /// (v + 1)/2 · log β_t + (1 − v)/2 · log β̃_t, trained with the hybrid loss
    /// L_simple + λ L_vlb, λ = 0.001, whose bound term reaches only v (Nichol & Dhariwal
    /// 2021, "Improved Denoising Diffusion Probabilistic Models", §3.1). Its UNet has twice
    /// the input channels out (the prediction, then v), and DDPM samples with its variance. `None` is `fixed_small` (an
    /// `Option` so that the checkpoints of runs from before it existed still load).
    #[config(default = "None")]
    pub variance_type: Option<String>,
    /// Min-SNR-γ loss weighting (Hang et al. 2023); `None` weighs every timestep equally.
    #[config(default = "None")]
    pub min_snr_gamma: Option<f64>,
    /// Input perturbation γ (Ning et al. 2023, "Input Perturbation Reduces Exposure Bias in
    /// Diffusion Models", DDPM-IP; diffusers' `--input_perturbation`): the model is shown
    /// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t)(ε + γ ξ), ξ ~ N(0, I) drawn afresh, and still trained to
    /// the target of the unperturbed ε (ε itself, v = √ᾱ_t ε − √(1 − ᾱ_t) x_0, x_0, or
    /// ε − x_0). The extra noise stands in for the errors that a sampler's earlier steps
    /// leave in its input (exposure bias); diffusers recommends γ = 0.1. With a learned
    /// variance the bound's posterior is taken at the perturbed x_t, as the paper's code
    /// does, so even an exact ε leaves the mean off by β_t γ ξ / (√α_t √(1 − ᾱ_t)) and v
    /// learns a slightly larger variance near the data. Refused in a distillation; `None` is
    /// off.
    #[config(default = "None")]
    pub input_perturbation: Option<f64>,
    /// Offset noise s (Guttenberg 2023, "Diffusion With Offset Noise"; diffusers'
    /// `--noise_offset`): the noise is ε = ε₀ + s η, ε₀ ~ N(0, I) per pixel and η ~ N(0, 1) one
    /// value per image and channel, shared by all its pixels. x_t is made with this ε, and so
    /// is the target (ε itself, v or ε − x_0; an x_0 target does not involve it); an input
    /// perturbation is added on top of it. Per-pixel noise moves the mean of an H×W channel by
    /// only 1/√(HW) of its σ, so over most of the schedule the model sees the data's channel
    /// means through the noise and learns little about changing them; the shared shift
    /// teaches it to, for images much darker or brighter than the average. Guttenberg used
    /// s = 0.1. A learned variance's bound still takes the Gaussian posterior of per-pixel
    /// noise. Refused in a distillation; `None` is off.
    #[config(default = "None")]
    pub noise_offset: Option<f64>,
    /// How each image's training timestep is drawn (`None`: uniformly from the T, as Ho et
    /// al. 2020; see [`TimestepDensity`]).
    #[config(default = "None")]
    pub timestep_density: Option<TimestepDensity>,
    /// Class-conditional training (`None`: unconditional).
    #[config(default = "None")]
    pub classes: Option<ClassConditioning>,
    /// Distillation of a teacher into this run's model (`None`: ordinary training; see
    /// [`Distillation`]).
    #[config(default = "None")]
    pub distillation: Option<Distillation>,
    /// Mirror each training image left to right with probability ½.
    #[config(default = true)]
    pub random_flip: bool,
    /// Write a grid of samples from the EMA model every this many epochs (and after the last).
    #[config(default = 5)]
    pub sample_every_epochs: usize,
    /// Images in each sample grid.
    #[config(default = 16)]
    pub sample_count: usize,
    /// DDIM steps for the sample grids.
    #[config(default = 20)]
    pub sample_steps: usize,
    /// Save a checkpoint every this many epochs (and after the last, and on interruption).
    #[config(default = 5)]
    pub checkpoint_every_epochs: usize,
    /// How many checkpoints to keep; older ones are deleted.
    #[config(default = 3)]
    pub keep_checkpoints: usize,
    /// The seed of everything random: the initial weights, the data order, flips, timesteps,
    /// noise and its input perturbation, dropout and the sample grids' noise. (The initial
    /// weights and dropout come from burn's backend RNG, which is global to the process: two
    /// runs reproduce each other only if nothing else draws from it meanwhile.)
    #[config(default = 0)]
    pub seed: u64,
}

/// Class-conditional training for classifier-free guidance (Ho & Salimans 2022): each image's
/// class label goes to the UNet, and with probability `label_dropout` is replaced by the null
/// label, so that one model learns both f(x_t, t, c) and the unconditional f(x_t, t, ∅) that
/// guidance combines ([`kiln_sampler::Guided`]).
///
/// Label i is the class `names[i]`; the UNet has `names.len() + 1` class embeddings, the last
/// being the null label.
#[derive(Config, Debug, PartialEq)]
pub struct ClassConditioning {
    /// The class names, in label order.
    pub names: Vec<String>,
    /// The probability of training an image with the null label instead of its own.
    #[config(default = 0.1)]
    pub label_dropout: f64,
}

/// The density of the training timesteps (Esser et al. 2024, "Scaling Rectified Flow
/// Transformers for High-Resolution Image Synthesis", §3.1): a noise level t ∈ [0, 1] is
/// drawn from a [`FlowTimeDensity`] and becomes timestep
///
/// ```text
/// ⌊t·T⌋   (T − 1 at t = 1)
/// ```
///
/// so that t = 1 is the noisiest. On `rectified_flow` that is σ = (⌊t·T⌋ + 1)/T, SD3's draw
/// on Kiln's table; on the other schedules it is the same density over timestep/T. The
/// parameters and their defaults are those of diffusers' SD3 and Flux training scripts
/// (`weighting_scheme` `logit_normal` or `mode`, `logit_mean`, `logit_std`, `mode_scale`),
/// whose draws index their σ table from the noisiest down: their `logit_mean` m is Kiln's −m.
/// `cosmap` is the paper's CosMap density (diffusers' `cosmap` is a loss weighting with
/// uniform draws). A distillation trains at its student's timesteps and does not use this.
#[derive(Config, Debug, PartialEq)]
pub struct TimestepDensity {
    /// `uniform` (the draws of a run without a density), `logit_normal` (SD3's choice),
    /// `mode` or `cosmap`.
    pub scheme: String,
    /// `logit_normal`: the mean of the normal whose sigmoid is t (positive: toward noise).
    #[config(default = 0.0)]
    pub logit_mean: f64,
    /// `logit_normal`: its standard deviation.
    #[config(default = 1.0)]
    pub logit_std: f64,
    /// `mode`: how strongly the middle is favoured (negative: the ends).
    #[config(default = 1.29)]
    pub mode_scale: f64,
}

impl TimestepDensity {
    /// The density of t this names, with its parameters checked (all three must be finite,
    /// so that the config stays readable as JSON).
    pub fn density(&self) -> Result<FlowTimeDensity, TrainError> {
        let parameters = [
            ("timestep_density.logit_mean", self.logit_mean),
            ("timestep_density.logit_std", self.logit_std),
            ("timestep_density.mode_scale", self.mode_scale),
        ];
        if let Some((field, value)) = parameters.iter().find(|(_, value)| !value.is_finite()) {
            return Err(invalid(field, format!("{value}; must be finite")));
        }
        let density = match self.scheme.as_str() {
            "uniform" => FlowTimeDensity::Uniform,
            "logit_normal" => FlowTimeDensity::LogitNormal {
                mean: self.logit_mean,
                std: self.logit_std,
            },
            "mode" => FlowTimeDensity::Mode {
                scale: self.mode_scale,
            },
            "cosmap" => FlowTimeDensity::CosMap,
            other => {
                return Err(invalid(
                    "timestep_density.scheme",
                    format!("{other:?}; expected uniform, logit_normal, mode or cosmap"),
                ));
            }
        };
        let field = match density {
            FlowTimeDensity::LogitNormal { .. } => "timestep_density.logit_std",
            _ => "timestep_density.mode_scale",
        };
        density
            .validate()
            .map_err(|error| invalid(field, error.to_string()))?;
        Ok(density)
    }
}

/// Distillation of a teacher into the run's model, which starts from the teacher's weights
/// (the run's `min_snr_gamma` and `timestep_density` are not used, and `input_perturbation`
/// and `noise_offset` are refused). Three methods:
///
/// - `progressive` (the default): one round of progressive distillation (Salimans & Ho 2022,
///   [`kiln_distill::ProgressiveDistillation`]). The student learns to take one DDIM step where
///   the teacher takes two: each image is noised to one of the student's `student_steps`
///   timesteps (the `trailing` grid) instead of any of the T, its target is the x̃ of two
///   teacher DDIM steps, and its loss the x̂ error weighted by max(SNR, 1). Grids sample with
///   DDIM in `student_steps` steps on the `trailing` grid.
/// - `consistency`: consistency distillation (Song et al. 2023,
///   [`kiln_distill::ConsistencyDistillation`]) on the teacher's DDIM grid of `teacher_steps`
///   (M; the grid [`kiln_sampler::Lcm`] samples on with `original_inference_steps` = M): each
///   image is noised to one of its timesteps, the teacher takes one DDIM step down, and the
///   student's consistency function there is pulled towards its own answer (without gradient)
///   one step below. Grids sample with TCD in `student_steps` steps on that grid, γ =
///   [`CONSISTENCY_GAMMA`].
/// - `trajectory`: trajectory consistency distillation (Zheng et al. 2024, the `trajectory`
///   methods of [`kiln_distill::ConsistencyDistillation`]): the same pairs, but both answers
///   jump to one point of the trajectory drawn for each image among the grid points below
///   and 0, instead of to 0. Grids sample with TCD as above.
#[derive(Config, Debug, PartialEq)]
pub struct Distillation {
    /// The teacher: a folder or file `kiln_pipeline::load_for_sampling` reads (a run folder,
    /// one of its checkpoints), with this run's UNet and schedule.
    pub teacher: String,
    /// Progressive: N, the student's DDIM steps (the teacher takes 2N). Consistency and
    /// trajectory: the steps the run's grids sample in.
    pub student_steps: usize,
    /// `progressive`, `consistency` or `trajectory` (`None`: progressive, as runs from before
    /// consistency distillation existed).
    #[config(default = "None")]
    pub method: Option<String>,
    /// Consistency and trajectory: M, the steps of the teacher's DDIM grid (`None`: 10).
    #[config(default = "None")]
    pub teacher_steps: Option<usize>,
}

impl Distillation {
    /// Consistency and trajectory: M, the steps of the teacher's DDIM grid
    /// ([`Self::teacher_steps`], else [`CONSISTENCY_GRID`]).
    pub fn consistency_grid(&self) -> usize {
        self.teacher_steps.unwrap_or(CONSISTENCY_GRID)
    }

    /// How the student of a consistency method samples: TCD on the grid of
    /// [`Self::consistency_grid`] with γ = [`CONSISTENCY_GAMMA`] (`None` for progressive
    /// distillation and unknown methods).
    pub fn consistency_sampler(&self) -> Option<TcdConfig> {
        matches!(self.method.as_deref(), Some("consistency" | "trajectory")).then(|| TcdConfig {
            original_inference_steps: self.consistency_grid(),
            gamma: CONSISTENCY_GAMMA,
            ..TcdConfig::default()
        })
    }
}

/// The consistency distillation's grid when [`Distillation::teacher_steps`] is not set: ten
/// DDIM steps of the teacher, the coarsest discretisation of Song & Dhariwal 2023's
/// curriculum. (On the bundled faces the latent consistency models' 50 let the student's
/// answers at high noise drift into noise, which is as consistent across neighbouring
/// timesteps there as a face: docs/distillation.md.)
pub const CONSISTENCY_GRID: usize = 10;

/// γ of the TCD sampler ([`kiln_sampler::Tcd`]) a consistency or trajectory consistency
/// student samples with: 0, deterministic steps along the trajectory (DDIM on the distillation
/// grid) instead of LCM's fresh noise. On the bundled faces it gave the consistency student
/// its lowest FD at every step count from 2 to 8 (in 2 steps 1.50, against LCM's 2.57 and
/// γ = 0.3's 1.86), and the trajectory student its lowest at every γ and step count tried (in
/// 8 steps 1.58, against γ = 0.1's 2.37 and the paper's γ = 0.3's 3.14; γ = 0.3 and 0.5 at 2
/// and 4 steps too: docs/distillation.md).
pub const CONSISTENCY_GAMMA: f64 = 0.0;

/// Fields that may change when a run is resumed: they steer how long the run goes on and what
/// it writes, not the state it continues from.
const RESUMABLE_CHANGES: [&str; 6] = [
    "epochs",
    "sample_every_epochs",
    "sample_count",
    "sample_steps",
    "checkpoint_every_epochs",
    "keep_checkpoints",
];

impl TrainConfig {
    /// The parsed prediction type.
    pub fn prediction(&self) -> Result<Prediction, TrainError> {
        Prediction::from_name(&self.prediction).ok_or_else(|| {
            invalid(
                "prediction",
                format!(
                    "{:?}; expected epsilon, sample, v_prediction or flow_prediction",
                    self.prediction
                ),
            )
        })
    }

    /// Whether the model learns its variance (`variance_type = "learned_range"`).
    pub fn learns_variance(&self) -> Result<bool, TrainError> {
        match self.variance_type.as_deref() {
            None | Some("fixed_small") => Ok(false),
            Some("learned_range") => Ok(true),
            Some(other) => Err(invalid(
                "variance_type",
                format!("{other:?}; expected fixed_small or learned_range"),
            )),
        }
    }

    /// What a [`Distillation`] run trains its student with (`None` for ordinary training).
    pub fn distiller(&self) -> Result<Option<Distiller>, TrainError> {
        let Some(distillation) = &self.distillation else {
            return Ok(None);
        };
        let schedule = self.schedule()?;
        let steps = distillation.student_steps;
        let steps_error = |error: &dyn std::fmt::Display| {
            invalid("distillation.student_steps", error.to_string())
        };
        let method = distillation.method.as_deref().unwrap_or("progressive");
        if method == "progressive" {
            return ProgressiveDistillation::new(&schedule, steps)
                .map(|round| Some(Distiller::Progressive(round)))
                .map_err(|error| steps_error(&error));
        }
        let sampler = distillation.consistency_sampler().ok_or_else(|| {
            invalid(
                "distillation.method",
                format!("{method:?}; expected progressive, consistency or trajectory"),
            )
        })?;
        let grid = sampler.original_inference_steps;
        let consistency =
            ConsistencyDistillation::new(&schedule, grid, ConsistencyScalings::default())
                .map_err(|error| invalid("distillation.teacher_steps", error.to_string()))?;
        Tcd::new(sampler, &schedule, steps).map_err(|error| steps_error(&error))?;
        Ok(Some(if method == "trajectory" {
            Distiller::Trajectory(consistency)
        } else {
            Distiller::Consistency(consistency)
        }))
    }

    /// How the run's grids and evaluations sample: a [`Distillation`]'s student with its own
    /// sampler ([`Self::student_run`]), else DDIM in `sample_steps`, x̂_0 clipped, on the
    /// `trailing` grid where the schedule ends in pure noise (`rectified_flow`, or one rescaled
    /// to zero terminal SNR), so that the first step starts where the noise is (Lin et al.
    /// 2023, §3.3).
    pub fn sample_run(&self) -> NamedRun {
        self.student_run().unwrap_or_else(|| {
            let ends_in_noise = self
                .schedule()
                .is_ok_and(|schedule| schedule.ends_in_pure_noise());
            NamedRun {
                spacing: ends_in_noise.then_some(TimestepSpacing::Trailing),
                ..NamedRun::new(SamplerName::Ddim, self.sample_steps, true)
            }
        })
    }

    /// How a [`Distillation`]'s student samples, x̂_0 clipped (`None` for ordinary training):
    /// progressive, DDIM in `student_steps` on the `trailing` grid it was trained on;
    /// consistency and trajectory, TCD with γ = [`CONSISTENCY_GAMMA`] in `student_steps` on
    /// the teacher's grid of M = `teacher_steps` (diffusers' `original_inference_steps`).
    pub fn student_run(&self) -> Option<NamedRun> {
        let distillation = self.distillation.as_ref()?;
        let steps = distillation.student_steps;
        Some(match distillation.consistency_sampler() {
            Some(sampler) => NamedRun {
                original_steps: Some(sampler.original_inference_steps),
                gamma: Some(sampler.gamma),
                ..NamedRun::new(SamplerName::Tcd, steps, true)
            },
            None => NamedRun {
                spacing: Some(ProgressiveDistillation::grid().spacing),
                ..NamedRun::new(SamplerName::Ddim, steps, true)
            },
        })
    }

    /// The learning rate of optimizer step `step` (0-based) of a run of `total_steps` steps,
    /// with η the peak rate and W the warm-up steps:
    ///
    /// ```text
    /// k < W:    η · (k + 1)/W
    /// k ≥ W:    η                                   (constant)
    ///           η · ½ (1 + cos(π (k − W)/(K − W)))  (cosine; K = total_steps)
    /// ```
    pub fn learning_rate_at(&self, step: u64, total_steps: u64) -> Result<f64, TrainError> {
        let warmup = self.warmup_steps as u64;
        if step < warmup {
            return Ok(self.learning_rate * (step + 1) as f64 / warmup as f64);
        }
        match self.lr_schedule.as_deref().unwrap_or("constant") {
            "constant" => Ok(self.learning_rate),
            "cosine" => {
                let progress =
                    (step - warmup) as f64 / total_steps.saturating_sub(warmup).max(1) as f64;
                let factor = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
                Ok(self.learning_rate * factor)
            }
            other => Err(invalid(
                "lr_schedule",
                format!("{other:?}; expected constant or cosine"),
            )),
        }
    }

    /// `count` training timesteps drawn from `rng`: uniformly from 0..T without a
    /// [`TimestepDensity`] or with `uniform`, else ⌊t·T⌋ (at most T − 1) of t drawn from it.
    pub(crate) fn draw_timesteps(
        &self,
        count: usize,
        rng: &mut impl Rng,
    ) -> Result<Vec<usize>, TrainError> {
        let timesteps = self.num_train_timesteps;
        let density = match &self.timestep_density {
            Some(density) => density.density()?,
            None => FlowTimeDensity::Uniform,
        };
        if density == FlowTimeDensity::Uniform {
            return Ok((0..count).map(|_| rng.random_range(0..timesteps)).collect());
        }
        let levels = density
            .sample(count, rng)
            .map_err(|error| invalid("timestep_density", error.to_string()))?;
        Ok(levels
            .into_iter()
            .map(|t| timestep_of_level(t, timesteps))
            .collect())
    }

    /// AdamW with this config's weight decay and gradient clipping (the learning rate is set
    /// at each step, with its warm-up).
    pub fn optimizer(&self) -> AdamWConfig {
        let clipping = self
            .max_grad_norm
            .map(|norm| GradientClippingConfig::Norm(norm as f32));
        AdamWConfig::new()
            .with_weight_decay(self.weight_decay as f32)
            .with_grad_clipping(clipping)
    }

    /// The loss weighting.
    pub fn weighting(&self) -> LossWeighting {
        match self.min_snr_gamma {
            Some(gamma) => LossWeighting::MinSnr { gamma },
            None => LossWeighting::Uniform,
        }
    }

    /// The noise schedule: the named β schedule over `num_train_timesteps`, rescaled to zero
    /// terminal SNR where `rescale_betas_zero_snr` says so.
    pub fn schedule(&self) -> Result<NoiseSchedule, TrainError> {
        let beta = BetaSchedule::from_name(&self.beta_schedule).ok_or_else(|| {
            invalid(
                "beta_schedule",
                format!(
                    "{:?}; expected linear, scaled_linear, squaredcos_cap_v2, sigmoid or rectified_flow",
                    self.beta_schedule
                ),
            )
        })?;
        let schedule = NoiseSchedule::new(&beta, self.num_train_timesteps)
            .map_err(|error| invalid("num_train_timesteps", error.to_string()))?;
        if self.rescale_betas_zero_snr != Some(true) {
            return Ok(schedule);
        }
        schedule
            .rescale_zero_terminal_snr()
            .map_err(|error| invalid("rescale_betas_zero_snr", error.to_string()))
    }

    /// Checks every field that the types do not.
    pub fn validate(&self) -> Result<(), TrainError> {
        let prediction = self.prediction()?;
        let schedule = self.schedule()?;
        if prediction == Prediction::Epsilon && schedule.ends_in_pure_noise() {
            return Err(invalid(
                "prediction",
                "epsilon on a schedule that ends in pure noise (ᾱ_{T−1} = 0), where ε says \
                 nothing of x_0; use v_prediction (or flow_prediction on rectified_flow)"
                    .into(),
            ));
        }
        self.distiller()?;
        self.check_variance(prediction)?;
        self.learning_rate_at(u64::from(u32::MAX), u64::from(u32::MAX))?;
        if let Some(density) = &self.timestep_density {
            density.density()?;
        }
        if let Some(gamma) = self.min_snr_gamma {
            self.weighting()
                .weight(1.0, Prediction::Epsilon)
                .map_err(|_| invalid("min_snr_gamma", format!("{gamma}; must be > 0")))?;
        }
        self.check_noise_scale("input_perturbation", self.input_perturbation)?;
        self.check_noise_scale("noise_offset", self.noise_offset)?;
        let positive = [
            ("image_size", self.image_size),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("grad_accumulation", self.grad_accumulation),
            ("sample_every_epochs", self.sample_every_epochs),
            ("sample_count", self.sample_count),
            ("sample_steps", self.sample_steps),
            ("checkpoint_every_epochs", self.checkpoint_every_epochs),
            ("keep_checkpoints", self.keep_checkpoints),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(field, "must be at least 1".into()));
        }
        let embeddings = self.unet.num_class_embeds;
        match &self.classes {
            Some(classes) if classes.names.is_empty() => {
                return Err(invalid(
                    "classes.names",
                    "no classes; a run with labels needs at least one".into(),
                ));
            }
            Some(classes) if embeddings != Some(classes.names.len() + 1) => {
                return Err(invalid(
                    "unet.num_class_embeds",
                    format!(
                        "{embeddings:?}; {} classes need {} (one more for the null label)",
                        classes.names.len(),
                        classes.names.len() + 1
                    ),
                ));
            }
            Some(classes) if !(0.0..=1.0).contains(&classes.label_dropout) => {
                return Err(invalid(
                    "classes.label_dropout",
                    format!("{}; must be in [0, 1]", classes.label_dropout),
                ));
            }
            None if embeddings.is_some() => {
                return Err(invalid(
                    "unet.num_class_embeds",
                    format!("{embeddings:?}, but the run has no classes"),
                ));
            }
            _ => {}
        }
        if !self.batch_size.is_multiple_of(self.grad_accumulation) {
            return Err(invalid(
                "grad_accumulation",
                format!(
                    "{} does not divide the batch size {}",
                    self.grad_accumulation, self.batch_size
                ),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid("learning_rate", "must be positive".into()));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                "weight_decay",
                format!("{}; must be finite and at least 0", self.weight_decay),
            ));
        }
        check_decay(self.ema_decay)?;
        if self
            .max_grad_norm
            .is_some_and(|norm| norm.is_nan() || norm <= 0.0)
        {
            return Err(invalid("max_grad_norm", "must be positive".into()));
        }
        Ok(())
    }

    /// Checks that the UNet's output holds what the variance type needs (the prediction, and
    /// for `learned_range` v beside it) and that a learned variance trains on a β schedule's
    /// reverse steps outside a distillation.
    fn check_variance(&self, prediction: Prediction) -> Result<(), TrainError> {
        let learns = self.learns_variance()?;
        let channels = self.unet.in_channels;
        let out = if learns { 2 * channels } else { channels };
        if self.unet.out_channels != out {
            let holds = if learns {
                "the prediction and the learned variance"
            } else {
                "the prediction"
            };
            return Err(invalid(
                "unet.out_channels",
                format!(
                    "{}; {holds} of {channels} channels take {out}",
                    self.unet.out_channels
                ),
            ));
        }
        if learns && prediction == Prediction::Flow {
            return Err(invalid(
                "variance_type",
                "learned_range with flow_prediction: rectified flow's steps have no variance to \
                 learn"
                    .into(),
            ));
        }
        if learns && self.distillation.is_some() {
            return Err(invalid(
                "variance_type",
                "learned_range in a distillation, whose student learns its teacher's \
                 deterministic steps"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The scale of extra noise (`input_perturbation`, `noise_offset`) must be positive and
    /// finite, and no distillation's: a student learns its teacher's answers at x_t made from
    /// plain Gaussian noise.
    fn check_noise_scale(&self, field: &str, scale: Option<f64>) -> Result<(), TrainError> {
        let Some(scale) = scale else {
            return Ok(());
        };
        if !(scale.is_finite() && scale > 0.0) {
            return Err(invalid(
                field,
                format!("{scale}; must be > 0 and finite (leave it out to turn it off)"),
            ));
        }
        if self.distillation.is_some() {
            return Err(invalid(
                field,
                format!(
                    "{scale} in a distillation, whose student learns its teacher's answers at \
                     x_t made from plain Gaussian noise"
                ),
            ));
        }
        Ok(())
    }

    /// The first field (in alphabetical order) in which `other` differs from `self`, other
    /// than those a resumed run may change; `None` if the runs are compatible. Timestep
    /// densities are compared by the draws they make: no density, `uniform` and any density
    /// of a distillation (which does not use it) agree, and a parameter the scheme does not
    /// use (`mode_scale` of `logit_normal`) may differ; `rescale_betas_zero_snr` `None` and
    /// `Some(false)` agree, as do `variance_type` `None` and `fixed_small`.
    pub fn first_difference(&self, other: &TrainConfig) -> Option<ConfigDifference> {
        let (ours, theirs) = (fields(self), fields(other));
        let (compared_ours, compared_theirs) = (
            fields(&self.compared_form()),
            fields(&other.compared_form()),
        );
        let value = |map: &serde_json::Map<String, serde_json::Value>, field: &str| {
            map.get(field).cloned().unwrap_or(serde_json::Value::Null)
        };
        compared_ours.keys().find_map(|field| {
            let differs = !RESUMABLE_CHANGES.contains(&field.as_str())
                && value(&compared_ours, field) != value(&compared_theirs, field);
            differs.then(|| ConfigDifference {
                field: field.clone(),
                ours: value(&ours, field),
                theirs: value(&theirs, field),
            })
        })
    }

    /// This config as [`TrainConfig::first_difference`] compares it: `rescale_betas_zero_snr`
    /// `None` where it is off, `variance_type` `None` where it is `fixed_small`; its timestep
    /// density `None` where the draws are uniform or a distillation's, else with only the
    /// parameters its scheme reads (the others at their defaults). A density that does not
    /// validate is kept as it is.
    fn compared_form(&self) -> TrainConfig {
        let density = match (&self.timestep_density, &self.distillation) {
            (None, _) | (Some(_), Some(_)) => None,
            (Some(density), None) => match density.density() {
                Ok(FlowTimeDensity::Uniform) => None,
                Ok(FlowTimeDensity::LogitNormal { mean, std }) => Some(
                    TimestepDensity::new("logit_normal".into())
                        .with_logit_mean(mean)
                        .with_logit_std(std),
                ),
                Ok(FlowTimeDensity::Mode { scale }) => {
                    Some(TimestepDensity::new("mode".into()).with_mode_scale(scale))
                }
                Ok(FlowTimeDensity::CosMap) => Some(TimestepDensity::new("cosmap".into())),
                Err(_) => Some(density.clone()),
            },
        };
        let variance = self.variance_type.clone();
        self.clone()
            .with_timestep_density(density)
            .with_rescale_betas_zero_snr(self.rescale_betas_zero_snr.filter(|&on| on))
            .with_variance_type(variance.filter(|name| name != "fixed_small"))
    }
}

/// A field in which two configs differ ([`TrainConfig::first_difference`]), with both values
/// as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDifference {
    /// The field's name (`unet` for any field of the UNet's config).
    pub field: String,
    /// Its value in the config asked (`self`).
    pub ours: serde_json::Value,
    /// Its value in the other config.
    pub theirs: serde_json::Value,
}

impl ConfigDifference {
    /// "`field`: `theirs_name` has `theirs`, `ours_name` has `ours`".
    pub fn describe(&self, theirs_name: &str, ours_name: &str) -> String {
        let Self {
            field,
            ours,
            theirs,
        } = self;
        format!("{field}: {theirs_name} has {theirs}, {ours_name} has {ours}")
    }
}

/// ⌊t·T⌋, at most T − 1: the timestep of noise level t ∈ [0, 1] ([`TimestepDensity`]).
fn timestep_of_level(t: f64, timesteps: usize) -> usize {
    ((t * timesteps as f64) as usize).min(timesteps - 1)
}

fn invalid(field: &str, problem: String) -> TrainError {
    TrainError::Config {
        field: field.to_string(),
        problem,
    }
}

/// The fields of a config as JSON values, by name.
fn fields(config: &TrainConfig) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrainConfig {
        TrainConfig::new(UNetConfig::tiny(1), 16)
    }

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        config().validate().unwrap();
        let bad = config().with_prediction("noise".into()).validate();
        assert!(bad.unwrap_err().to_string().starts_with("prediction"));
        let bad = config().with_batch_size(16).with_grad_accumulation(3);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("grad_accumulation")
        );
        let bad = config().with_beta_schedule("quadratic".into()).validate();
        assert!(bad.unwrap_err().to_string().starts_with("beta_schedule"));
        for weight_decay in [-0.1, f64::NAN, f64::INFINITY] {
            let bad = config().with_weight_decay(weight_decay).validate();
            assert!(bad.unwrap_err().to_string().starts_with("weight_decay"));
        }
    }

    #[test]
    fn zero_terminal_snr_rescales_the_schedule_and_needs_a_prediction_other_than_epsilon() {
        let zero_snr = config()
            .with_rescale_betas_zero_snr(Some(true))
            .with_prediction("v_prediction".into());
        zero_snr.validate().unwrap();
        let linear = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
        let rescaled = zero_snr.schedule().unwrap();
        assert_eq!(rescaled, linear.rescale_zero_terminal_snr().unwrap());
        assert_eq!(rescaled.alphas_cumprod()[999], 0.0);
        assert!((rescaled.alphas_cumprod()[0] - linear.alphas_cumprod()[0]).abs() < 1e-15);
        for off in [None, Some(false)] {
            let schedule = zero_snr.clone().with_rescale_betas_zero_snr(off).schedule();
            assert_eq!(schedule.unwrap(), linear);
        }
        // ε where ᾱ = 0, rescaled or on rectified flow's path, is refused before training.
        for bad in [
            zero_snr.clone().with_prediction("epsilon".into()),
            config().with_beta_schedule("rectified_flow".into()),
        ] {
            let error = bad.validate().unwrap_err().to_string();
            assert!(
                error.starts_with("prediction: epsilon on a schedule"),
                "{error}"
            );
        }
        let too_short = zero_snr.with_num_train_timesteps(1).validate().unwrap_err();
        assert!(too_short.to_string().starts_with("rescale_betas_zero_snr"));
        // Off is off, however it is written; on is a different run.
        let off = config().with_rescale_betas_zero_snr(Some(false));
        assert_eq!(config().first_difference(&off), None);
        assert_eq!(off.first_difference(&config()), None);
        let on = config().with_rescale_betas_zero_snr(Some(true));
        let difference = on.first_difference(&off).unwrap();
        assert_eq!(difference.field, "rescale_betas_zero_snr");
    }

    #[test]
    fn extra_noise_is_a_positive_scale_outside_distillation() {
        type With = fn(TrainConfig, Option<f64>) -> TrainConfig;
        let cases: [(&str, With); 2] = [
            ("input_perturbation", TrainConfig::with_input_perturbation),
            ("noise_offset", TrainConfig::with_noise_offset),
        ];
        let error = |config: TrainConfig| config.validate().unwrap_err().to_string();
        for (field, with) in cases {
            let noisier = with(config(), Some(0.1));
            noisier.validate().unwrap();
            for scale in [0.0, -0.1, f64::NAN, f64::INFINITY] {
                let bad = with(config(), Some(scale));
                assert!(error(bad).starts_with(&format!("{field}: ")), "{scale}");
            }
            let distilled = noisier
                .clone()
                .with_distillation(Some(Distillation::new("teacher".into(), 4)));
            let message = error(distilled);
            assert!(message.starts_with(&format!("{field}: 0.1 in a distillation")));
            // It changes what the model is shown: a resumed run may not turn it on.
            let difference = config().first_difference(&noisier).unwrap();
            assert_eq!(difference.field, field);
        }
    }

    #[test]
    fn a_learned_variance_needs_its_output_channels_and_a_beta_schedule() {
        let with_out_channels = |mut config: TrainConfig, channels| {
            config.unet.out_channels = channels;
            config
        };
        let learned =
            with_out_channels(config(), 2).with_variance_type(Some("learned_range".into()));
        learned.validate().unwrap();
        assert!(learned.learns_variance().unwrap());
        let error = |config: TrainConfig| config.validate().unwrap_err().to_string();
        // The UNet's output must hold the prediction, and v beside it when learned.
        let short = with_out_channels(learned.clone(), 1);
        assert_eq!(
            error(short),
            "unet.out_channels: 1; the prediction and the learned variance of 1 channels take 2"
        );
        let doubled = with_out_channels(config(), 2);
        assert!(error(doubled).starts_with("unet.out_channels: 2; the prediction of 1"));
        let unknown = learned.clone().with_variance_type(Some("learned".into()));
        assert!(error(unknown).starts_with("variance_type: \"learned\"; expected"));
        let flow = learned
            .clone()
            .with_prediction("flow_prediction".into())
            .with_beta_schedule("rectified_flow".into());
        assert!(error(flow).starts_with("variance_type: learned_range with flow_prediction"));
        let distilled = learned
            .clone()
            .with_distillation(Some(Distillation::new("teacher".into(), 4)));
        assert!(error(distilled).starts_with("variance_type: learned_range in a distillation"));
        // Fixed is fixed, however it is written; learned is a different run.
        let fixed = config().with_variance_type(Some("fixed_small".into()));
        assert_eq!(config().first_difference(&fixed), None);
        assert_eq!(fixed.first_difference(&config()), None);
        let difference = learned
            .first_difference(&learned.clone().with_variance_type(None))
            .unwrap();
        assert_eq!(difference.field, "variance_type");
    }

    #[test]
    fn the_learning_rate_warms_up_then_stays_or_follows_half_a_cosine() {
        let constant = config().with_learning_rate(1e-3).with_warmup_steps(10);
        let at = |config: &TrainConfig, step| config.learning_rate_at(step, 110).unwrap();
        assert_eq!(at(&constant, 0), 1e-4);
        assert_eq!(at(&constant, 9), 1e-3);
        assert_eq!(at(&constant, 109), 1e-3);
        let cosine = constant.clone().with_lr_schedule(Some("cosine".into()));
        assert_eq!(at(&cosine, 4), 5e-4);
        assert_eq!(at(&cosine, 10), 1e-3);
        // A quarter of the way: ½(1 + cos(π/4)); halfway: ½; the last step: ½(1 + cos(0.99π)).
        assert!((at(&cosine, 35) - 1e-3 * 0.5 * (1.0 + 0.5f64.sqrt())).abs() < 1e-15);
        assert!((at(&cosine, 60) - 5e-4).abs() < 1e-15);
        assert!(
            (at(&cosine, 109) - 1e-3 * 0.5 * (1.0 + (0.99 * std::f64::consts::PI).cos())).abs()
                < 1e-15
        );
        let bad = config().with_lr_schedule(Some("linear".into())).validate();
        assert!(bad.unwrap_err().to_string().starts_with("lr_schedule"));

        // The config of a run from before the field existed reads as constant.
        let mut older = fields(&config());
        older.remove("lr_schedule");
        let older: TrainConfig = serde_json::from_value(older.into()).unwrap();
        assert_eq!(older, config());
    }

    #[test]
    fn timestep_densities_draw_where_their_noise_levels_are() {
        use rand::{SeedableRng, rngs::StdRng};
        let draws = |config: &TrainConfig| {
            let mut timesteps = config
                .draw_timesteps(10_000, &mut StdRng::seed_from_u64(3))
                .unwrap();
            timesteps.sort_unstable();
            timesteps
        };
        let with = |density: TimestepDensity| config().with_timestep_density(Some(density));
        let below_100 = |timesteps: &[usize]| timesteps.iter().filter(|&&t| t < 100).count();

        // Without a density, or with `uniform`, the draws of runs from before densities.
        let mut rng = StdRng::seed_from_u64(3);
        let mut earlier: Vec<usize> = (0..10_000).map(|_| rng.random_range(0..1000)).collect();
        earlier.sort_unstable();
        let uniform = draws(&config());
        assert_eq!(uniform, earlier);
        assert_eq!(
            draws(&with(TimestepDensity::new("uniform".into()))),
            uniform
        );
        assert!(below_100(&uniform).abs_diff(1000) < 90);

        // sigmoid(n) < 0.1 for n ~ N(0, 1) has probability 1.4 %; the median is at t = ½.
        let logit_normal = draws(&with(TimestepDensity::new("logit_normal".into())));
        assert!(below_100(&logit_normal).abs_diff(140) < 40);
        assert!(
            logit_normal[5_000].abs_diff(500) < 20,
            "{}",
            logit_normal[5_000]
        );
        // A positive mean moves toward noise: the median is at sigmoid(1) = 0.731.
        let noisier = with(TimestepDensity::new("logit_normal".into()).with_logit_mean(1.0));
        assert!(draws(&noisier)[5_000].abs_diff(731) < 20);
        // t < 0.1 with probability 4.67 % for mode (s = 1.29) and 7.04 % for CosMap
        // (tan(πu/2) < 1/9), both with median ½ (computed from their inverse CDFs).
        let mode = draws(&with(TimestepDensity::new("mode".into())));
        assert!(below_100(&mode).abs_diff(467) < 70, "{}", below_100(&mode));
        assert!(mode[5_000].abs_diff(500) < 20);
        let cosmap = draws(&with(TimestepDensity::new("cosmap".into())));
        assert!(
            below_100(&cosmap).abs_diff(704) < 80,
            "{}",
            below_100(&cosmap)
        );
        assert!(cosmap[5_000].abs_diff(500) < 20);

        assert_eq!(timestep_of_level(0.0, 1000), 0);
        assert_eq!(timestep_of_level(0.4999, 1000), 499);
        assert_eq!(timestep_of_level(1.0, 1000), 999);

        let named = |config: TrainConfig| config.validate().unwrap_err().to_string();
        assert!(
            named(with(TimestepDensity::new("beta".into())))
                .starts_with("timestep_density.scheme: \"beta\"")
        );
        let flat = TimestepDensity::new("logit_normal".into()).with_logit_std(0.0);
        assert!(named(with(flat)).starts_with("timestep_density.logit_std: "));
        let steep = TimestepDensity::new("mode".into()).with_mode_scale(2.0);
        assert!(named(with(steep)).starts_with("timestep_density.mode_scale: "));
        // Unused parameters too must be finite: the config is stored as JSON.
        let unused = TimestepDensity::new("mode".into()).with_logit_mean(f64::NAN);
        assert!(named(with(unused)).starts_with("timestep_density.logit_mean: NaN"));
        // A distillation draws its student's timesteps and ignores the density.
        with(TimestepDensity::new("cosmap".into()))
            .with_distillation(Some(Distillation::new("teacher".into(), 4)))
            .validate()
            .unwrap();

        // The config of a run from before the field existed draws uniformly.
        let mut older = fields(&config());
        older.remove("timestep_density");
        let older: TrainConfig = serde_json::from_value(older.into()).unwrap();
        assert_eq!(older, config());
    }

    #[test]
    fn differences_name_the_field_except_resumable_ones() {
        assert_eq!(config().first_difference(&config()), None);
        assert_eq!(config().first_difference(&config().with_epochs(500)), None);
        let difference = config()
            .with_learning_rate(1e-3)
            .first_difference(&config())
            .unwrap();
        assert_eq!(
            difference.describe("the checkpoint", "this run"),
            "learning_rate: the checkpoint has 0.0002, this run has 0.001"
        );
        let difference = config()
            .first_difference(&TrainConfig::new(UNetConfig::tiny(3), 16))
            .unwrap();
        assert_eq!(difference.field, "unet");
    }

    #[test]
    fn timestep_densities_differ_only_where_their_draws_do() {
        let d = |scheme: &str, logit_std: f64, mode_scale: f64| {
            Some(
                TimestepDensity::new(scheme.into())
                    .with_logit_std(logit_std)
                    .with_mode_scale(mode_scale),
            )
        };
        let ln = "logit_normal";
        // Two densities, and whether they draw alike.
        let cases = [
            // Parameters the scheme does not read may differ; no density is uniform.
            (None, d("uniform", 1.0, 1.29), true),
            (d("uniform", 1.0, 1.29), d("uniform", 2.0, 0.5), true),
            (d(ln, 1.0, 1.29), d(ln, 1.0, 0.0), true),
            (d("mode", 1.0, 1.29), d("mode", 2.0, 1.29), true),
            (d("cosmap", 1.0, 1.29), d("cosmap", 2.0, 0.5), true),
            // Those it reads may not, nor may the scheme.
            (None, d(ln, 1.0, 1.29), false),
            (d(ln, 1.0, 1.29), d(ln, 2.0, 1.29), false),
            (d("mode", 1.0, 1.29), d("mode", 1.0, 0.5), false),
            (d(ln, 1.0, 1.29), d("mode", 1.0, 1.29), false),
            (d("mode", 1.0, 1.29), d("cosmap", 1.0, 1.29), false),
            // One that does not validate is compared as written.
            (d("beta", 1.0, 1.29), d("gamma", 1.0, 1.29), false),
        ];
        for (a, b, alike) in cases {
            let (a, b) = (
                config().with_timestep_density(a),
                config().with_timestep_density(b),
            );
            let field = |difference: Option<ConfigDifference>| difference.map(|d| d.field);
            let expected = (!alike).then(|| "timestep_density".to_string());
            assert_eq!(field(a.first_difference(&b)), expected, "{a:?} {b:?}");
            assert_eq!(field(b.first_difference(&a)), expected, "{b:?} {a:?}");
        }
        // A distillation draws its student's timesteps whatever the density says.
        let distillation = Some(Distillation::new("teacher".into(), 4));
        let distilled = |density| {
            config()
                .with_timestep_density(density)
                .with_distillation(distillation.clone())
        };
        let flow_density = distilled(d("logit_normal", 1.0, 1.29));
        assert_eq!(distilled(None).first_difference(&flow_density), None);
        // A difference shows the values as the configs hold them.
        let uniform = config().with_timestep_density(d("uniform", 1.0, 1.29));
        let mode = config().with_timestep_density(d("mode", 2.0, 0.5));
        assert_eq!(
            uniform
                .first_difference(&mode)
                .unwrap()
                .describe("the checkpoint", "this run"),
            "timestep_density: the checkpoint has {\"logit_mean\":0.0,\"logit_std\":2.0,\
             \"mode_scale\":0.5,\"scheme\":\"mode\"}, this run has {\"logit_mean\":0.0,\
             \"logit_std\":1.0,\"mode_scale\":1.29,\"scheme\":\"uniform\"}"
        );
    }
}
