//! Training checkpoints: everything needed to continue a run exactly, written atomically.
//!
//! A run folder holds `checkpoints/step-NNNNNNNN/` folders and a `checkpoints/latest` file
//! naming the newest complete one. Each checkpoint folder holds
//!
//! - `model.bin`: the trained weights with their parameter ids (burn's `BinFileRecorder`, full
//!   precision), which the optimizer state refers to;
//! - `optimizer.bin`: AdamW's moments and step counts;
//! - `ema.safetensors`: the EMA weights as a self-describing Kiln UNet checkpoint (what
//!   `face_sample` loads);
//! - `state.json`: the [`TrainConfig`], the number of optimizer steps done and the dataset
//!   size. Every random draw of step k is seeded from (`seed`, k), so this is the whole RNG
//!   state.
//!
//! A checkpoint is written into `.step-NNNNNNNN.partial/`, renamed to its final name once
//! complete, and only then named in `latest` (itself replaced by a rename). A write killed at
//! any point leaves the previous checkpoint and `latest` as they were.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use kiln_forward::Prediction;
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use kiln_unet::{UNet, UNetConfig, load_checkpoint, load_diffusers, load_weights, save_checkpoint};
use serde::{Deserialize, Serialize};

use crate::{TrainConfig, TrainError};

/// The file in the checkpoints folder that names the newest complete checkpoint.
pub const LATEST: &str = "latest";
/// The EMA weights inside a checkpoint folder.
pub const EMA_FILE: &str = "ema.safetensors";
const MODEL_FILE: &str = "model";
const OPTIMIZER_FILE: &str = "optimizer";
const STATE_FILE: &str = "state.json";

type FileRecorder = BinFileRecorder<FullPrecisionSettings>;

/// Where a run stands: stored as `state.json` in each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The run's configuration.
    pub config: TrainConfig,
    /// Optimizer steps done.
    pub step: u64,
    /// Images in the dataset.
    pub images: usize,
}

/// A checkpoint read back: the state, the trained model, the optimizer and the EMA weights
/// (with the model's parameter ids).
pub(crate) struct Restored<B: AutodiffBackend, O> {
    pub state: TrainState,
    pub model: UNet<B>,
    pub optimizer: O,
    pub ema: UNet<B::InnerBackend>,
}

/// The checkpoint named by `checkpoints/latest`, if there is one.
pub fn latest_checkpoint(checkpoints: &Path) -> Result<Option<PathBuf>, TrainError> {
    let pointer = checkpoints.join(LATEST);
    match fs::read_to_string(&pointer) {
        Ok(name) => Ok(Some(checkpoints.join(name.trim()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(TrainError::io(pointer, error)),
    }
}

/// Reads `state.json` of the checkpoint folder `checkpoint`.
pub fn read_state(checkpoint: &Path) -> Result<TrainState, TrainError> {
    let path = checkpoint.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|error| TrainError::io(&path, error))?;
    serde_json::from_str(&text).map_err(|error| TrainError::io(&path, error))
}

/// Writes a checkpoint of step `state.step` into `checkpoints`, points `latest` at it and
/// deletes all but the newest `keep` checkpoints. Returns the checkpoint's folder.
pub(crate) fn save<B, O>(
    checkpoints: &Path,
    state: &TrainState,
    model: &UNet<B>,
    optimizer: &O,
    ema: &UNet<B::InnerBackend>,
    keep: usize,
) -> Result<PathBuf, TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
{
    let name = format!("step-{:08}", state.step);
    let partial = checkpoints.join(format!(".{name}.partial"));
    let done = checkpoints.join(&name);
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io_error(&partial))?;
    }
    fs::create_dir_all(&partial).map_err(io_error(&partial))?;
    let recorder = FileRecorder::new();
    model
        .clone()
        .save_file(partial.join(MODEL_FILE), &recorder)
        .map_err(|error| TrainError::io(partial.join(MODEL_FILE), error))?;
    Recorder::<B>::record(
        &recorder,
        optimizer.to_record(),
        partial.join(OPTIMIZER_FILE),
    )
    .map_err(|error| TrainError::io(partial.join(OPTIMIZER_FILE), error))?;
    save_checkpoint(ema, &state.config.unet, &partial.join(EMA_FILE))?;
    let json =
        serde_json::to_string_pretty(state).map_err(|error| TrainError::io(&partial, error))?;
    fs::write(partial.join(STATE_FILE), json).map_err(io_error(&partial))?;
    if done.exists() {
        fs::remove_dir_all(&done).map_err(io_error(&done))?;
    }
    fs::rename(&partial, &done).map_err(io_error(&done))?;
    write_atomically(&checkpoints.join(LATEST), name.as_bytes())?;
    prune(checkpoints, keep)?;
    Ok(done)
}

/// Reads the checkpoint folder `checkpoint` back onto `device`; `optimizer` is a fresh
/// optimizer of the same kind.
pub(crate) fn restore<B, O>(
    checkpoint: &Path,
    optimizer: O,
    device: &B::Device,
) -> Result<Restored<B, O>, TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
{
    let state = read_state(checkpoint)?;
    let recorder = FileRecorder::new();
    let model = state
        .config
        .unet
        .init::<B>(device)?
        .load_file(checkpoint.join(MODEL_FILE), &recorder, device)
        .map_err(|error| TrainError::io(checkpoint.join(MODEL_FILE), error))?;
    let record = Recorder::<B>::load(&recorder, checkpoint.join(OPTIMIZER_FILE), device)
        .map_err(|error| TrainError::io(checkpoint.join(OPTIMIZER_FILE), error))?;
    let optimizer = optimizer.load_record(record);
    let ema = load_weights(model.valid(), &checkpoint.join(EMA_FILE))?;
    Ok(Restored {
        state,
        model,
        optimizer,
        ema,
    })
}

/// A model ready to generate with, and what a sampler needs to know about its training.
#[derive(Debug)]
pub struct SamplingModel<B: Backend> {
    /// The weights (a run's EMA weights).
    pub model: UNet<B>,
    /// Its architecture.
    pub config: UNetConfig,
    /// What it predicts.
    pub prediction: Prediction,
    /// The noise schedule it was trained with.
    pub schedule: NoiseSchedule,
    /// The image size it was trained at, where known.
    pub image_size: Option<usize>,
}

/// Loads a model to sample from. `path` may be
/// - a run folder (its latest checkpoint's EMA weights) or a checkpoint folder in it;
/// - a Kiln UNet checkpoint file (`.safetensors`; ε-prediction and the linear schedule of
///   Ho et al. 2020 are assumed);
/// - a diffusers model folder (`config.json` + `diffusion_pytorch_model.safetensors`), or a
///   pipeline folder holding one as `unet/`, with the schedule and prediction type read from
///   `scheduler_config.json` beside it or from a sibling `scheduler/` folder, where present.
pub fn load_for_sampling<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<SamplingModel<B>, TrainError> {
    if !path.exists() {
        return Err(TrainError::io(path, "no such file or folder"));
    }
    if path.is_file() {
        let (config, model) = load_checkpoint(path, device)?;
        return Ok(SamplingModel {
            model,
            config,
            prediction: Prediction::Epsilon,
            schedule: default_schedule()?,
            image_size: None,
        });
    }
    let checkpoint = match latest_checkpoint(&path.join("checkpoints"))? {
        Some(checkpoint) => checkpoint,
        None => path.to_path_buf(),
    };
    if checkpoint.join(STATE_FILE).is_file() {
        let state = read_state(&checkpoint)?;
        let (config, model) = load_checkpoint(&checkpoint.join(EMA_FILE), device)?;
        return Ok(SamplingModel {
            model,
            config,
            prediction: state.config.prediction()?,
            schedule: state.config.schedule()?,
            image_size: Some(state.config.image_size),
        });
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
        Some(file) => read_diffusers_scheduler(&file)?,
        None => (Prediction::Epsilon, default_schedule()?),
    };
    Ok(SamplingModel {
        model,
        config,
        prediction,
        schedule,
        image_size: read_sample_size(&path.join("config.json")),
    })
}

/// The schedule of Ho et al. 2020: linear β from 1e-4 to 0.02 over 1000 steps.
fn default_schedule() -> Result<NoiseSchedule, TrainError> {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000).map_err(|error| TrainError::Config {
        field: "schedule".into(),
        problem: error.to_string(),
    })
}

/// The fields of a diffusers scheduler config that define the training schedule.
#[derive(Deserialize)]
struct DiffusersScheduler {
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

fn read_diffusers_scheduler(file: &Path) -> Result<(Prediction, NoiseSchedule), TrainError> {
    let text = fs::read_to_string(file).map_err(|error| TrainError::io(file, error))?;
    let parsed: DiffusersScheduler =
        serde_json::from_str(&text).map_err(|error| TrainError::io(file, error))?;
    let unsupported =
        |field: &str, value: &str| TrainError::io(file, format!("unsupported {field} {value:?}"));
    let mut beta = BetaSchedule::from_name(&parsed.beta_schedule)
        .ok_or_else(|| unsupported("beta_schedule", &parsed.beta_schedule))?;
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
    let prediction = Prediction::from_name(&parsed.prediction_type)
        .ok_or_else(|| unsupported("prediction_type", &parsed.prediction_type))?;
    let schedule = NoiseSchedule::new(&beta, parsed.num_train_timesteps)
        .map_err(|error| TrainError::io(file, error))?;
    Ok((prediction, schedule))
}

/// diffusers' `sample_size` from a model `config.json`, if it is a single number.
fn read_sample_size(file: &Path) -> Option<usize> {
    let text = fs::read_to_string(file).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("sample_size")?.as_u64().map(|size| size as usize)
}

/// Turns an I/O error about `path` into a [`TrainError`].
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::io(path, error)
}

/// Replaces `path` with `contents` by writing a temporary file beside it and renaming it.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), TrainError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, contents).map_err(|error| TrainError::io(&temporary, error))?;
    fs::rename(&temporary, path).map_err(|error| TrainError::io(path, error))
}

/// Deletes all but the newest `keep` complete checkpoints.
fn prune(checkpoints: &Path, keep: usize) -> Result<(), TrainError> {
    let mut names: Vec<String> = fs::read_dir(checkpoints)
        .map_err(|error| TrainError::io(checkpoints, error))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("step-"))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep.max(1));
    for name in &names[..excess] {
        let path = checkpoints.join(name);
        fs::remove_dir_all(&path).map_err(|error| TrainError::io(&path, error))?;
    }
    Ok(())
}
