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
//! - `state.json`: the [`TrainConfig`], the number of optimizer steps done, the dataset size,
//!   and the size and SHA-256 of each file above ([`crate::integrity`]). Every random draw of
//!   step k is seeded from (`seed`, k), so this is the whole RNG state.
//!
//! A checkpoint is written into `.step-NNNNNNNN.partial/`, its files flushed to disk, renamed
//! to its final name once complete, and only then named in `latest` (itself replaced by a
//! rename). A write killed at any point leaves the previous checkpoint and `latest` as they
//! were. A checkpoint is verified against its checksums before it is used.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use kiln_forward::Prediction;
use kiln_sampler::{SamplerError, StepEvent};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use kiln_unet::{UNet, UNetConfig, load_checkpoint, load_diffusers, load_weights, save_checkpoint};
use serde::{Deserialize, Serialize};

use crate::integrity::{Damage, FileDigest, StateFile, newest_first, verify_checkpoint};
use crate::sampling::{Generation, generate};
use crate::{TrainConfig, TrainError};

/// The file in the checkpoints folder that names the newest complete checkpoint.
pub const LATEST: &str = "latest";
/// The EMA weights inside a checkpoint folder.
pub const EMA_FILE: &str = "ema.safetensors";
const MODEL_FILE: &str = "model.bin";
const OPTIMIZER_FILE: &str = "optimizer.bin";
pub(crate) const STATE_FILE: &str = "state.json";
/// The files of a checkpoint besides `state.json`, which records their checksums.
pub(crate) const FILES: [&str; 3] = [MODEL_FILE, OPTIMIZER_FILE, EMA_FILE];
/// Appended to the name of a damaged checkpoint set aside when a run resumes.
pub const DAMAGED_SUFFIX: &str = ".damaged";

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
    let mut files = std::collections::BTreeMap::new();
    for file in FILES {
        let path = partial.join(file);
        flush(&path)?;
        let digest = FileDigest::of(&path).map_err(io_error(&path))?;
        files.insert(file.to_string(), digest);
    }
    let state_file = StateFile {
        state: state.clone(),
        files,
    };
    let json = serde_json::to_string_pretty(&state_file)
        .map_err(|error| TrainError::io(&partial, error))?;
    let state_path = partial.join(STATE_FILE);
    fs::write(&state_path, json).map_err(io_error(&state_path))?;
    flush(&state_path)?;
    if done.exists() {
        discard(checkpoints, &done)?;
    }
    fs::rename(&partial, &done).map_err(io_error(&done))?;
    write_atomically(&checkpoints.join(LATEST), name.as_bytes())?;
    prune(checkpoints, keep)?;
    Ok(done)
}

/// Reads the checkpoint folder `checkpoint` back onto `device` after verifying it; `optimizer`
/// is a fresh optimizer of the same kind. A checkpoint that fails to verify or to load is a
/// [`TrainError::DamagedCheckpoint`] naming the file.
pub(crate) fn restore<B, O>(
    checkpoint: &Path,
    optimizer: O,
    device: &B::Device,
) -> Result<Restored<B, O>, TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
{
    let damaged = |damage| TrainError::DamagedCheckpoint {
        path: checkpoint.to_path_buf(),
        damage,
    };
    // burn's own message for an undecodable record is several nested, escaped errors and a
    // paragraph about format changes; the file's name and what it is says more.
    let unreadable = |file: &str| damaged(Damage::new(file, "does not decode as a burn record"));
    let state = verify_checkpoint(checkpoint).map_err(damaged)?;
    let recorder = FileRecorder::new();
    let model = state
        .config
        .unet
        .init::<B>(device)?
        .load_file(checkpoint.join(MODEL_FILE), &recorder, device)
        .map_err(|_| unreadable(MODEL_FILE))?;
    let record = Recorder::<B>::load(&recorder, checkpoint.join(OPTIMIZER_FILE), device)
        .map_err(|_| unreadable(OPTIMIZER_FILE))?;
    let optimizer = optimizer.load_record(record);
    let ema = load_weights(model.valid(), &checkpoint.join(EMA_FILE))
        .map_err(|error| damaged(Damage::new(EMA_FILE, error.to_string())))?;
    Ok(Restored {
        state,
        model,
        optimizer,
        ema,
    })
}

/// Restores the newest checkpoint in `checkpoints` that verifies and loads, with a fresh
/// optimizer from `new_optimizer` for each attempt. Each damaged checkpoint tried before it is
/// renamed out of the way ([`set_aside`]) and reported to `on_skip` with its damage and new
/// path, and `latest` is pointed at the one restored.
pub(crate) fn restore_newest_intact<B, O>(
    checkpoints: &Path,
    new_optimizer: impl Fn() -> O,
    device: &B::Device,
    mut on_skip: impl FnMut(&Path, &Damage, &Path),
) -> Result<(PathBuf, Restored<B, O>), TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
{
    let candidates = newest_first(checkpoints)?;
    if candidates.is_empty() {
        return Err(TrainError::io(checkpoints, "no checkpoint to resume from"));
    }
    let mut skipped = 0;
    for checkpoint in candidates {
        match restore::<B, O>(&checkpoint, new_optimizer(), device) {
            Ok(restored) => {
                if skipped > 0 {
                    point_latest(checkpoints, &checkpoint)?;
                }
                return Ok((checkpoint, restored));
            }
            Err(TrainError::DamagedCheckpoint { damage, .. }) => {
                let moved = set_aside(&checkpoint)?;
                on_skip(&checkpoint, &damage, &moved);
                skipped += 1;
            }
            Err(other) => return Err(other),
        }
    }
    Err(TrainError::io(
        checkpoints,
        format!(
            "none of its {skipped} checkpoints is intact (each set aside as *{DAMAGED_SUFFIX})"
        ),
    ))
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
    /// The names of its classes in label order (a class-conditional run's folder names, or
    /// the label numbers where the model has classes but no names); empty for an
    /// unconditional model.
    pub class_names: Vec<String>,
}

impl<B: Backend> SamplingModel<B> {
    /// [`generate`] with this model, what it predicts and its schedule.
    pub fn generate(
        &self,
        generation: Generation,
        device: &B::Device,
        on_step: impl FnMut(StepEvent<'_, B, 4>),
    ) -> Result<Tensor<B, 4>, TrainError> {
        generate(
            &self.model,
            self.prediction,
            &self.schedule,
            generation,
            device,
            on_step,
        )
    }

    /// The label of the class `name`: one of [`Self::class_names`], or a label number.
    pub fn class_label(&self, name: &str) -> Result<usize, TrainError> {
        if self.class_names.is_empty() {
            return Err(SamplerError::Unconditional.into());
        }
        let count = self.class_names.len();
        let by_number = name.parse::<usize>().ok().filter(|&label| label < count);
        self.class_names
            .iter()
            .position(|known| known == name)
            .or(by_number)
            .ok_or_else(|| TrainError::UnknownClass {
                name: name.to_string(),
                classes: count,
                example: self.class_names[0].clone(),
            })
    }
}

/// Class names for `model`: `names` when given, else its label numbers.
fn class_names<B: Backend>(model: &UNet<B>, names: Option<&[String]>) -> Vec<String> {
    match names {
        Some(names) => names.to_vec(),
        None => (0..model.null_label().unwrap_or(0))
            .map(|label| label.to_string())
            .collect(),
    }
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
            class_names: class_names(&model, None),
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
        let state =
            verify_checkpoint(&checkpoint).map_err(|damage| TrainError::DamagedCheckpoint {
                path: checkpoint.clone(),
                damage,
            })?;
        let (config, model) = load_checkpoint(&checkpoint.join(EMA_FILE), device)?;
        let names = state.config.classes.as_ref().map(|c| c.names.as_slice());
        return Ok(SamplingModel {
            class_names: class_names(&model, names),
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
        class_names: class_names(&model, None),
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

/// Deletes all but the newest `keep` complete checkpoints (damaged ones set aside stay), and
/// what a killed deletion left behind.
fn prune(checkpoints: &Path, keep: usize) -> Result<(), TrainError> {
    for path in newest_first(checkpoints)?.iter().skip(keep.max(1)) {
        discard(checkpoints, path)?;
    }
    let listing = fs::read_dir(checkpoints).map_err(io_error(checkpoints))?;
    for entry in listing.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(DELETING_SUFFIX) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_error(&path))?;
        }
    }
    Ok(())
}

/// Deletes the checkpoint folder `path` after renaming it to `.step-NNNNNNNN.deleting`, so a
/// process killed while deleting leaves a hidden folder for [`prune`] to finish, never a
/// half-deleted one under a checkpoint's name.
fn discard(checkpoints: &Path, path: &Path) -> Result<(), TrainError> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    let doomed = checkpoints.join(format!(".{}{DELETING_SUFFIX}", name.unwrap_or_default()));
    if doomed.exists() {
        fs::remove_dir_all(&doomed).map_err(io_error(&doomed))?;
    }
    fs::rename(path, &doomed).map_err(io_error(path))?;
    fs::remove_dir_all(&doomed).map_err(io_error(&doomed))
}

/// Appended to the hidden name of a checkpoint being deleted.
const DELETING_SUFFIX: &str = ".deleting";

/// Forces the file at `path` to disk, so that a checkpoint renamed into place after a power
/// cut is whole, not only after a killed process.
fn flush(path: &Path) -> Result<(), TrainError> {
    fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(io_error(path))
}

/// Renames the damaged checkpoint folder `checkpoint` to `step-NNNNNNNN.damaged` (numbered
/// further if that exists), out of the way of resuming and pruning; returns the new path.
pub(crate) fn set_aside(checkpoint: &Path) -> Result<PathBuf, TrainError> {
    let mut name = checkpoint.as_os_str().to_owned();
    name.push(DAMAGED_SUFFIX);
    let mut target = PathBuf::from(&name);
    let mut copy = 1;
    while target.exists() {
        copy += 1;
        target = PathBuf::from(format!("{}-{copy}", name.to_string_lossy()));
    }
    fs::rename(checkpoint, &target).map_err(io_error(checkpoint))?;
    Ok(target)
}

/// Points `checkpoints/latest` at the checkpoint folder `checkpoint`.
pub(crate) fn point_latest(checkpoints: &Path, checkpoint: &Path) -> Result<(), TrainError> {
    let name = checkpoint
        .file_name()
        .ok_or_else(|| TrainError::io(checkpoint, "not a checkpoint folder"))?;
    write_atomically(&checkpoints.join(LATEST), name.as_encoded_bytes())
}
