//! Loading any model Kiln can sample from: a run folder, one of its checkpoints, a Kiln UNet
//! checkpoint file or a diffusers model or pipeline folder.

use std::path::Path;

use burn::tensor::backend::Backend;
use kiln_forward::Prediction;
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use kiln_unet::{load_checkpoint, load_diffusers};
use serde::Deserialize;

use crate::diffusers::{beta_schedule, prediction, read_sample_size, read_scheduler, rescaled};
use crate::integrity::verify_checkpoint;
use crate::run_folder::{EMA_FILE, RunFolder, STATE_FILE};
use crate::{PipelineError, SamplingModel};

/// Loads a model to sample from. `path` may be
/// - a run folder (its latest checkpoint's EMA weights) or a checkpoint folder in it, verified
///   against its checksums first ([`crate::verify_checkpoint`]);
/// - a Kiln UNet checkpoint file (`.safetensors`; ε-prediction and the linear schedule of
///   Ho et al. 2020 are assumed);
/// - a diffusers model folder (`config.json` + `diffusion_pytorch_model.safetensors`), or a
///   pipeline folder holding one as `unet/`, with the schedule and prediction type read from
///   `scheduler_config.json` beside it or from a sibling `scheduler/` folder, where present.
///
/// A UNet with twice its input channels out learns its variance
/// ([`kiln_unet::UNet::learns_variance`]), which DDPM then reads, whatever the scheduler
/// config's fixed `variance_type` says; a config with `variance_type = "learned_range"` for a
/// UNet that does not learn one, or with diffusers' `learned`, is an error.
pub fn load_for_sampling<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<SamplingModel<B>, PipelineError> {
    if !path.exists() {
        return Err(PipelineError::io(path, "no such file or folder"));
    }
    if path.is_file() {
        let (config, model) = load_checkpoint(path, device)?;
        let schedule = default_schedule();
        let prediction = Prediction::Epsilon;
        return Ok(SamplingModel::new(
            model, config, prediction, schedule, None, None,
        ));
    }
    let checkpoint = RunFolder::new(path)
        .latest_checkpoint()?
        .unwrap_or_else(|| path.to_path_buf());
    if checkpoint.join(STATE_FILE).is_file() {
        return load_checkpoint_folder(&checkpoint, device);
    }
    // A diffusers pipeline folder keeps the model in `unet/` and the schedule in `scheduler/`.
    let path = &if path.join("unet/config.json").is_file() {
        path.join("unet")
    } else {
        path.to_path_buf()
    };
    let (config, model) = load_diffusers(path, device)?;
    let scheduler = [
        path.join("scheduler_config.json"),
        path.join("../scheduler/scheduler_config.json"),
    ]
    .into_iter()
    .find(|candidate| candidate.is_file());
    let (prediction, schedule) = match scheduler {
        Some(file) => {
            let settings = read_scheduler(&file)?;
            if settings.learned_variance && !model.learns_variance() {
                let problem = format!(
                    "variance_type = \"learned_range\", but the model's {} output channels do \
                     not hold a variance beside its prediction (that takes twice its {} input \
                     channels)",
                    model.out_channels(),
                    model.in_channels()
                );
                return Err(PipelineError::Inconsistent {
                    path: file,
                    problem,
                });
            }
            (settings.prediction, settings.schedule)
        }
        None => (Prediction::Epsilon, default_schedule()),
    };
    let image_size = read_sample_size(&path.join("config.json"));
    Ok(SamplingModel::new(
        model, config, prediction, schedule, image_size, None,
    ))
}

/// What a sampler needs from a run's `state.json`: the part of kiln-train's `TrainState`
/// that says how the model was trained.
#[derive(Deserialize)]
struct RecordedRun {
    config: RecordedConfig,
}

/// The sampling-relevant fields of kiln-train's `TrainConfig`.
#[derive(Deserialize)]
struct RecordedConfig {
    image_size: usize,
    num_train_timesteps: usize,
    beta_schedule: String,
    /// Absent from the runs of before it existed (`null` or missing: `false`).
    #[serde(default)]
    rescale_betas_zero_snr: Option<bool>,
    prediction: String,
    classes: Option<RecordedClasses>,
}

#[derive(Deserialize)]
struct RecordedClasses {
    names: Vec<String>,
}

/// A checkpoint folder of a run: its EMA weights, after verifying its checksums.
fn load_checkpoint_folder<B: Backend>(
    checkpoint: &Path,
    device: &B::Device,
) -> Result<SamplingModel<B>, PipelineError> {
    let recorded: RecordedRun =
        verify_checkpoint(checkpoint).map_err(|damage| PipelineError::DamagedCheckpoint {
            path: checkpoint.to_path_buf(),
            damage,
        })?;
    let config = recorded.config;
    let state = checkpoint.join(STATE_FILE);
    let beta = beta_schedule(&state, &config.beta_schedule)?;
    let schedule = NoiseSchedule::new(&beta, config.num_train_timesteps)
        .map_err(|error| PipelineError::io(&state, error))?;
    let schedule = rescaled(
        &state,
        schedule,
        config.rescale_betas_zero_snr == Some(true),
    )?;
    let prediction = prediction(&state, &config.prediction)?;
    let (unet, model) = load_checkpoint(&checkpoint.join(EMA_FILE), device)?;
    let names = config.classes.map(|classes| classes.names);
    Ok(SamplingModel::new(
        model,
        unet,
        prediction,
        schedule,
        Some(config.image_size),
        names,
    ))
}

/// The schedule of Ho et al. 2020: linear β from 1e-4 to 0.02 over 1000 steps.
fn default_schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000)
        .expect("the linear schedule over 1000 steps is valid")
}
