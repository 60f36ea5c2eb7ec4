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
//! - `state.json`: the [`crate::TrainConfig`], the number of optimizer steps done, the dataset
//!   size, and the size and SHA-256 of each file above ([`crate::state`]). Every random draw
//!   of step k is seeded from (`seed`, k), so this is the whole RNG state.
//!
//! The names are kiln-pipeline's [`RunFolder`] layout, which sampling reads.
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
use burn::tensor::backend::AutodiffBackend;
use kiln_pipeline::{
    CHECKPOINT_FILES, DAMAGED_SUFFIX, Damage, EMA_FILE, FileDigest, LATEST, MODEL_FILE,
    OPTIMIZER_FILE, RunFolder, STATE_FILE, StateFile, checkpoint_name,
};
use kiln_unet::{UNet, load_weights, save_checkpoint};

use crate::TrainError;
use crate::state::{TrainState, verify_checkpoint};

type FileRecorder = BinFileRecorder<FullPrecisionSettings>;

/// A checkpoint read back: the state, the trained model, the optimizer and the EMA weights
/// (with the model's parameter ids).
pub(crate) struct Restored<B: AutodiffBackend, O> {
    pub state: TrainState,
    pub model: UNet<B>,
    pub optimizer: O,
    pub ema: UNet<B::InnerBackend>,
}

/// Writes a checkpoint of step `state.step` into the checkpoints of `run`, points `latest` at
/// it and deletes all but the newest `keep` checkpoints. Returns the checkpoint's folder.
pub(crate) fn save<B, O>(
    run: &RunFolder,
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
    let checkpoints = &run.checkpoints();
    let name = checkpoint_name(state.step);
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
    for file in CHECKPOINT_FILES {
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
    prune(run, keep)?;
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
        .init_for_loading::<B>(device)?
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

/// Restores the newest checkpoint of `run` that verifies and loads, with a fresh
/// optimizer from `new_optimizer` for each attempt. Each damaged checkpoint tried before it is
/// renamed out of the way ([`set_aside`]) and reported to `on_skip` with its damage and new
/// path, and `latest` is pointed at the one restored.
pub(crate) fn restore_newest_intact<B, O>(
    run: &RunFolder,
    new_optimizer: impl Fn() -> O,
    device: &B::Device,
    mut on_skip: impl FnMut(&Path, &Damage, &Path),
) -> Result<(PathBuf, Restored<B, O>), TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
{
    let checkpoints = &run.checkpoints();
    let candidates = run.checkpoints_newest_first()?;
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

/// Deletes all but the newest `keep` complete checkpoints of `run` (damaged ones set aside
/// stay), and what a killed deletion left behind.
fn prune(run: &RunFolder, keep: usize) -> Result<(), TrainError> {
    let checkpoints = &run.checkpoints();
    for path in run.checkpoints_newest_first()?.iter().skip(keep.max(1)) {
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
