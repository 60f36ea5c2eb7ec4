//! The layout of a run folder: what `kiln_train::train` writes and [`crate::load_for_sampling`]
//! reads, named in this one place.
//!
//! ```text
//! runs/faces/
//!   checkpoints/
//!     latest                  the name of the newest complete checkpoint
//!     step-00001000/          one checkpoint: model.bin, optimizer.bin, ema.safetensors,
//!                             state.json (the run's state and the other files' checksums)
//!   samples/epoch-0010.png    sample grids
//!   loss.csv, loss.png        the loss log and its plot
//!   metrics.csv, metrics.png  sample quality at evaluated epochs, and the FD curve
//!   progress.png              the sample grids side by side
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::PipelineError;

/// The file in the checkpoints folder that names the newest complete checkpoint.
pub const LATEST: &str = "latest";
/// The trained weights with their parameter ids (burn's `BinFileRecorder`).
pub const MODEL_FILE: &str = "model.bin";
/// The optimizer's state.
pub const OPTIMIZER_FILE: &str = "optimizer.bin";
/// The EMA weights, a self-describing Kiln UNet checkpoint (what sampling loads).
pub const EMA_FILE: &str = "ema.safetensors";
/// The run's state and the checksums of the files above ([`crate::StateFile`]).
pub const STATE_FILE: &str = "state.json";
/// The files of a checkpoint besides `state.json`, which records their checksums.
pub const CHECKPOINT_FILES: [&str; 3] = [MODEL_FILE, OPTIMIZER_FILE, EMA_FILE];
/// Appended to the name of a damaged checkpoint set aside when a run resumes.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// A run folder, and the path of each thing in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFolder {
    root: PathBuf,
}

impl RunFolder {
    /// The run folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// `samples/`, the sample grids.
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The sample grid written after `epoch` (1-based).
    pub fn sample_grid(&self, epoch: usize) -> PathBuf {
        self.samples().join(format!("epoch-{epoch:04}.png"))
    }

    /// `loss.csv`, one line per logged step.
    pub fn loss_log(&self) -> PathBuf {
        self.root.join("loss.csv")
    }

    /// `loss.png`, the loss curve.
    pub fn loss_plot(&self) -> PathBuf {
        self.root.join("loss.png")
    }

    /// `metrics.csv`, one line per evaluation of the samples' quality.
    pub fn metrics_log(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    /// `metrics.png`, the Fréchet distance over the evaluations.
    pub fn metrics_plot(&self) -> PathBuf {
        self.root.join("metrics.png")
    }

    /// `progress.png`, the sample grids side by side.
    pub fn progress(&self) -> PathBuf {
        self.root.join("progress.png")
    }

    /// The folder of the checkpoint of optimizer step `step`.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(checkpoint_name(step))
    }

    /// The checkpoint that `checkpoints/latest` names, if there is one.
    pub fn latest_checkpoint(&self) -> Result<Option<PathBuf>, PipelineError> {
        let checkpoints = self.checkpoints();
        let pointer = checkpoints.join(LATEST);
        match fs::read_to_string(&pointer) {
            Ok(name) => Ok(Some(checkpoints.join(name.trim()))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(PipelineError::io(pointer, error)),
        }
    }

    /// The checkpoint folders (`step-NNNNNNNN`), newest first.
    pub fn checkpoints_newest_first(&self) -> Result<Vec<PathBuf>, PipelineError> {
        let checkpoints = self.checkpoints();
        let listing = match fs::read_dir(&checkpoints) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(PipelineError::io(checkpoints, error)),
        };
        let mut found: Vec<(u64, PathBuf)> = listing
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let step = step_of(entry.file_name().to_str()?)?;
                Some((step, entry.path()))
            })
            .collect();
        found.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
        Ok(found.into_iter().map(|(_, path)| path).collect())
    }
}

/// The folder name of the checkpoint of step `step`: `step-` and eight or more digits.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The step of a checkpoint folder's name ([`checkpoint_name`]), if it is one.
pub fn step_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    (digits.len() >= 8 && digits.bytes().all(|byte| byte.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}
