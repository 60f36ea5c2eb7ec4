//! diffusers folders and what they say about a model's training: the schedule and prediction
//! type of `scheduler_config.json`, the image size of the model's `config.json`; and a model
//! saved as a diffusers pipeline folder ([`SamplingModel::save_diffusers`]).

use std::fs;
use std::path::Path;

use burn::tensor::backend::Backend;
use kiln_forward::Prediction;
use kiln_sampler::VarianceType;
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use kiln_unet::save_diffusers;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{PipelineError, SamplingModel};

/// The fields of a diffusers scheduler config that define the training schedule.
#[derive(Serialize, Deserialize)]
struct SchedulerConfig {
    #[serde(default = "thousand")]
    num_train_timesteps: usize,
    #[serde(default = "linear")]
    beta_schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    beta_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    beta_end: Option<f64>,
    /// Every β_t, in place of the named schedule (diffusers' `trained_betas`).
    #[serde(default)]
    trained_betas: Option<Vec<f64>>,
    #[serde(default = "epsilon")]
    prediction_type: String,
    /// The schedule rescaled to zero terminal SNR (never written: an exported schedule is
    /// already in `trained_betas`).
    #[serde(default, skip_serializing)]
    rescale_betas_zero_snr: bool,
    /// DDPM's variance (`fixed_small` by default); `learned_range` says that the model gives
    /// its own beside its prediction.
    #[serde(default = "fixed_small")]
    variance_type: String,
}

fn thousand() -> usize {
    1000
}
fn linear() -> String {
    "linear".into()
}
fn epsilon() -> String {
    "epsilon".into()
}
fn fixed_small() -> String {
    "fixed_small".into()
}

/// What a diffusers scheduler config says about the model's training.
pub(crate) struct SchedulerSettings {
    /// What the model predicts.
    pub(crate) prediction: Prediction,
    /// The training schedule.
    pub(crate) schedule: NoiseSchedule,
    /// `variance_type = "learned_range"`: the model learns its variance.
    pub(crate) learned_variance: bool,
}

/// The prediction type, training schedule and variance type of the scheduler config `file`.
pub(crate) fn read_scheduler(file: &Path) -> Result<SchedulerSettings, PipelineError> {
    let text = fs::read_to_string(file).map_err(|error| PipelineError::io(file, error))?;
    let raw: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| PipelineError::io(file, error))?;
    if let Some((field, value)) = flow_matching(&raw) {
        return Err(unsupported(file, field, &value));
    }
    let parsed: SchedulerConfig =
        serde_json::from_value(raw).map_err(|error| PipelineError::io(file, error))?;
    if parsed.beta_schedule == "rectified_flow" {
        // Kiln's own name, which no diffusers scheduler knows.
        return Err(unsupported(file, "beta_schedule", &parsed.beta_schedule));
    }
    let prediction = prediction(file, &parsed.prediction_type)?;
    // The fixed variances (and their `_log` forms, the same numbers) are a sampling choice;
    // diffusers' `learned`, which takes the model's output as the variance itself, is not
    // Kiln's.
    let learned_variance = match parsed.variance_type.as_str() {
        "learned_range" => true,
        "fixed_small" | "fixed_small_log" | "fixed_large" | "fixed_large_log" => false,
        other => return Err(unsupported(file, "variance_type", other)),
    };
    let settings = |schedule| SchedulerSettings {
        prediction,
        schedule,
        learned_variance,
    };
    if let Some(betas) = parsed.trained_betas {
        if betas.len() != parsed.num_train_timesteps {
            let problem = format!(
                "trained_betas holds {} values for num_train_timesteps = {}",
                betas.len(),
                parsed.num_train_timesteps
            );
            return Err(PipelineError::Inconsistent {
                path: file.to_path_buf(),
                problem,
            });
        }
        let schedule =
            NoiseSchedule::from_betas(betas).map_err(|error| PipelineError::io(file, error))?;
        return Ok(settings(rescaled(
            file,
            schedule,
            parsed.rescale_betas_zero_snr,
        )?));
    }
    let mut beta = beta_schedule(file, &parsed.beta_schedule)?;
    if let BetaSchedule::Linear {
        beta_start,
        beta_end,
    }
    | BetaSchedule::ScaledLinear {
        beta_start,
        beta_end,
    }
    | BetaSchedule::Sigmoid {
        beta_start,
        beta_end,
    } = &mut beta
    {
        *beta_start = parsed.beta_start.unwrap_or(*beta_start);
        *beta_end = parsed.beta_end.unwrap_or(*beta_end);
    }
    let schedule = NoiseSchedule::new(&beta, parsed.num_train_timesteps)
        .map_err(|error| PipelineError::io(file, error))?;
    Ok(settings(rescaled(
        file,
        schedule,
        parsed.rescale_betas_zero_snr,
    )?))
}

/// `schedule` rescaled to zero terminal SNR where `file` (a scheduler config or a run's
/// state) says `rescale_betas_zero_snr`, as diffusers' schedulers and Kiln's training do.
pub(crate) fn rescaled(
    file: &Path,
    schedule: NoiseSchedule,
    rescale_betas_zero_snr: bool,
) -> Result<NoiseSchedule, PipelineError> {
    if !rescale_betas_zero_snr {
        return Ok(schedule);
    }
    schedule
        .rescale_zero_terminal_snr()
        .map_err(|error| PipelineError::io(file, error))
}

/// The setting that marks a scheduler config as flow matching, and its value: diffusers'
/// `FlowMatch*` schedulers (which have no `prediction_type`), `use_flow_sigmas` on a multistep
/// scheduler, or `prediction_type = flow_prediction`. Their models take x_σ = (1 − σ) x_0 + σ ε,
/// not the variance-preserving x_t that Kiln gives a model with a β schedule.
fn flow_matching(config: &serde_json::Value) -> Option<(&'static str, String)> {
    let text = |key: &str| config.get(key).and_then(|value| value.as_str());
    if let Some(class) = text("_class_name").filter(|class| class.starts_with("FlowMatch")) {
        return Some(("_class_name", class.to_string()));
    }
    if config
        .get("use_flow_sigmas")
        .and_then(|value| value.as_bool())
        == Some(true)
    {
        return Some(("use_flow_sigmas", "true".into()));
    }
    text("prediction_type")
        .filter(|&name| name == Prediction::Flow.name())
        .map(|name| ("prediction_type", name.to_string()))
}

/// diffusers' `sample_size` from a model `config.json`, if it is a single number.
pub(crate) fn read_sample_size(file: &Path) -> Option<usize> {
    let text = fs::read_to_string(file).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("sample_size")?.as_u64().map(|size| size as usize)
}

/// The β schedule of diffusers' name `name`, as recorded in `file`.
pub(crate) fn beta_schedule(file: &Path, name: &str) -> Result<BetaSchedule, PipelineError> {
    BetaSchedule::from_name(name).ok_or_else(|| unsupported(file, "beta_schedule", name))
}

/// The prediction type of diffusers' name `name`, as recorded in `file`.
pub(crate) fn prediction(file: &Path, name: &str) -> Result<Prediction, PipelineError> {
    Prediction::from_name(name).ok_or_else(|| unsupported(file, "prediction_type", name))
}

fn unsupported(file: &Path, field: &str, value: &str) -> PipelineError {
    PipelineError::Unsupported {
        path: file.to_path_buf(),
        field: field.to_string(),
        value: value.to_string(),
    }
}

impl<B: Backend> SamplingModel<B> {
    /// Saves the model as a diffusers pipeline folder, which `DDPMPipeline.from_pretrained`
    /// loads (and [`crate::load_for_sampling`] too):
    ///
    /// ```text
    /// folder/model_index.json                       DDPMPipeline: unet and scheduler
    /// folder/unet/                                  the UNet2DModel (kiln_unet::save_diffusers)
    /// folder/scheduler/scheduler_config.json        DDPMScheduler with the training schedule
    /// ```
    ///
    /// The scheduler holds every β_t as `trained_betas`, so any schedule (cosine, or one
    /// rescaled to zero terminal SNR) reaches diffusers exactly, with the prediction type,
    /// clipping of x̂_0 to [−1, 1] and `variance_type` (`learned_range` for a model that
    /// learns its variance, else `fixed_small`); `sample_size` is the model's image size
    /// where known. A schedule that ends in pure noise (ᾱ_{T−1} = 0) gets
    /// `timestep_spacing = "trailing"`, so that a scheduler made from the config starts its
    /// steps there, as `face_sample` and the training grids do (Lin et al. 2023, §3.3).
    ///
    /// A `flow_prediction` model is refused ([`PipelineError::Unsupported`]): diffusers'
    /// `DDPMScheduler` has no such prediction type, and its flow schedulers feed the model
    /// x_σ rather than the x_t Kiln's flow models were trained on.
    pub fn save_diffusers(&self, folder: &Path) -> Result<(), PipelineError> {
        if self.prediction == Prediction::Flow {
            return Err(unsupported(
                folder,
                "prediction_type",
                self.prediction.name(),
            ));
        }
        save_diffusers(
            &self.model,
            &self.config,
            self.image_size,
            &folder.join("unet"),
        )?;
        let betas = self.schedule.betas().to_vec();
        let scheduler = SchedulerConfig {
            num_train_timesteps: betas.len(),
            beta_schedule: linear(),
            beta_start: None,
            beta_end: None,
            trained_betas: Some(betas),
            prediction_type: self.prediction.name().into(),
            rescale_betas_zero_snr: false,
            variance_type: VarianceType::default_for(self.model.learns_variance())
                .name()
                .into(),
        };
        let mut scheduler =
            serde_json::to_value(scheduler).map_err(|error| PipelineError::io(folder, error))?;
        if let Some(fields) = scheduler.as_object_mut() {
            fields.insert("_class_name".into(), "DDPMScheduler".into());
            fields.insert("clip_sample".into(), true.into());
            if self.schedule.ends_in_pure_noise() {
                fields.insert("timestep_spacing".into(), "trailing".into());
            }
        }
        write_json(&folder.join("scheduler/scheduler_config.json"), &scheduler)?;
        let index = json!({
            "_class_name": "DDPMPipeline",
            "scheduler": ["diffusers", "DDPMScheduler"],
            "unet": ["diffusers", "UNet2DModel"],
        });
        write_json(&folder.join("model_index.json"), &index)
    }
}

/// Writes `value` to `file` as pretty JSON, creating its folder: into a file beside it first,
/// then renamed into place.
fn write_json(file: &Path, value: &serde_json::Value) -> Result<(), PipelineError> {
    let io = |error: &dyn std::fmt::Display| PipelineError::io(file, error);
    if let Some(folder) = file.parent() {
        fs::create_dir_all(folder).map_err(|error| io(&error))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|error| io(&error))? + "\n";
    let temporary = file.with_extension("json.tmp");
    fs::write(&temporary, text).map_err(|error| PipelineError::io(&temporary, error))?;
    fs::rename(&temporary, file).map_err(|error| io(&error))
}
