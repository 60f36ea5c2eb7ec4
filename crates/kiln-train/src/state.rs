//! Where a run stands, as each checkpoint records it in `state.json`, and whether the run's
//! checkpoints are whole.
//!
//! `state.json` holds the [`TrainState`] and the size and SHA-256 of every other file of the
//! checkpoint ([`kiln_pipeline::StateFile`]); [`verify_checkpoint`] checks them without
//! loading anything, so a truncated, emptied or bit-flipped file is found and named before
//! training resumes; [`check_run`] does it for every checkpoint of a run. Checkpoints written
//! before checksums were recorded are checked for their files being present and non-empty,
//! and are then fully loaded.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_pipeline::{Damage, RunFolder, STATE_FILE, StateFile};
use serde::{Deserialize, Serialize};

use crate::{TrainConfig, TrainError};

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

/// Reads `state.json` of the checkpoint folder `checkpoint`, without verifying the others.
pub fn read_state(checkpoint: &Path) -> Result<TrainState, TrainError> {
    let path = checkpoint.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|error| TrainError::io(&path, error))?;
    let parsed: StateFile<TrainState> =
        serde_json::from_str(&text).map_err(|error| TrainError::io(&path, error))?;
    Ok(parsed.state)
}

/// Checks the checkpoint folder `checkpoint` without loading it: `state.json` parses, and each
/// file it records has its recorded size and SHA-256. Returns the state it records.
pub fn verify_checkpoint(checkpoint: &Path) -> Result<TrainState, Damage> {
    kiln_pipeline::verify_checkpoint(checkpoint)
}

/// One checkpoint of a run as [`check_run`] found it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointHealth {
    /// The checkpoint folder.
    pub path: PathBuf,
    /// Whether `checkpoints/latest` names it.
    pub latest: bool,
    /// Its state if intact, else the damage.
    pub verdict: Result<TrainState, Damage>,
}

/// Verifies every checkpoint of the run folder `out`, newest first.
pub fn check_run(out: &Path) -> Result<Vec<CheckpointHealth>, TrainError> {
    let run = RunFolder::new(out);
    let latest = run.latest_checkpoint()?;
    Ok(run
        .checkpoints_newest_first()?
        .into_iter()
        .map(|path| CheckpointHealth {
            latest: latest.as_ref() == Some(&path),
            verdict: verify_checkpoint(&path),
            path,
        })
        .collect())
}
