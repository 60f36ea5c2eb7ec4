//! What a diffusers model folder says about its training: the schedule and prediction type
//! of `scheduler_config.json`, the image size of the model's `config.json`.

use std::fs;
use std::path::Path;

use kiln_forward::Prediction;
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use serde::Deserialize;

use crate::PipelineError;

/// The fields of a diffusers scheduler config that define the training schedule.
#[derive(Deserialize)]
struct SchedulerConfig {
    #[serde(default = "thousand")]
    num_train_timesteps: usize,
    #[serde(default = "linear")]
    beta_schedule: String,
    beta_start: Option<f64>,
    beta_end: Option<f64>,
    #[serde(default = "epsilon")]
    prediction_type: String,
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

/// The prediction type and training schedule of the scheduler config `file`.
pub(crate) fn read_scheduler(file: &Path) -> Result<(Prediction, NoiseSchedule), PipelineError> {
    let text = fs::read_to_string(file).map_err(|error| PipelineError::io(file, error))?;
    let parsed: SchedulerConfig =
        serde_json::from_str(&text).map_err(|error| PipelineError::io(file, error))?;
    let mut beta = beta_schedule(file, &parsed.beta_schedule)?;
    if let BetaSchedule::Linear {
        beta_start,
        beta_end,
    }
    | BetaSchedule::ScaledLinear {
        beta_start,
        beta_end,
    } = &mut beta
    {
        *beta_start = parsed.beta_start.unwrap_or(*beta_start);
        *beta_end = parsed.beta_end.unwrap_or(*beta_end);
    }
    let prediction = prediction(file, &parsed.prediction_type)?;
    let schedule = NoiseSchedule::new(&beta, parsed.num_train_timesteps)
        .map_err(|error| PipelineError::io(file, error))?;
    Ok((prediction, schedule))
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
