//! The agreement between the processes of a run: the same run everywhere, and the same step
//! to start from.

use serde::{Deserialize, Serialize};

use crate::{ProcessGroup, TrainConfig, TrainError};

/// What every process of a run must agree on.
#[derive(Serialize, Deserialize)]
struct RunShape {
    config: TrainConfig,
    images: usize,
    devices: usize,
}

impl RunShape {
    /// How `self` (this process's run) differs from rank 0's, if it does.
    fn difference(&self, rank0: &RunShape) -> Option<String> {
        if let Some(difference) = self.config.first_difference(&rank0.config) {
            Some(format!("config: {}", difference.describe("rank 0", "here")))
        } else if self.images != rank0.images {
            Some(format!(
                "{} images here, {} on rank 0",
                self.images, rank0.images
            ))
        } else if self.devices != rank0.devices {
            Some(format!(
                "{} devices here, {} on rank 0 (every process must drive as many)",
                self.devices, rank0.devices
            ))
        } else {
            None
        }
    }
}

/// Checks that every process trains the same run as rank 0: the same config, as many images
/// and as many devices. Every process learns the outcome; one that differs names the first
/// difference, the others which ranks differ.
pub(crate) fn agree_on_run(
    processes: &dyn ProcessGroup,
    config: &TrainConfig,
    images: usize,
    devices: usize,
) -> Result<(), TrainError> {
    if processes.size() == 1 {
        return Ok(());
    }
    let ours = RunShape {
        config: config.clone(),
        images,
        devices,
    };
    let mut shared = serde_json::to_vec(&ours).map_err(distributed)?;
    processes.broadcast(&mut shared);
    let rank0: RunShape = serde_json::from_slice(&shared).map_err(distributed)?;
    let difference = ours.difference(&rank0);
    let mut differs = vec![0.0; processes.size()];
    differs[processes.rank()] = if difference.is_some() { 1.0 } else { 0.0 };
    processes.all_reduce_sum(&mut differs);
    if let Some(difference) = difference {
        return Err(TrainError::Distributed(format!(
            "rank {} trains another run than rank 0: {difference}",
            processes.rank()
        )));
    }
    let ranks: Vec<usize> = (0..differs.len()).filter(|&r| differs[r] > 0.5).collect();
    match ranks.is_empty() {
        true => Ok(()),
        false => Err(TrainError::Distributed(format!(
            "ranks {ranks:?} train another run than rank 0 (their errors name the difference)"
        ))),
    }
}

/// A serialisation failure while processes agree on a run.
fn distributed(error: serde_json::Error) -> TrainError {
    TrainError::Distributed(error.to_string())
}

/// Shares rank 0's start (its step, or why it could not start: `rank0`, given on rank 0 only)
/// with every process.
pub(crate) fn share_start(
    processes: &dyn ProcessGroup,
    rank0: Option<Result<u64, String>>,
) -> Result<u64, TrainError> {
    let ours = rank0.unwrap_or(Ok(0));
    let mut shared = serde_json::to_vec(&ours).map_err(distributed)?;
    processes.broadcast(&mut shared);
    let rank0: Result<u64, String> = serde_json::from_slice(&shared).map_err(distributed)?;
    rank0.map_err(|error| TrainError::Distributed(format!("rank 0 could not start: {error}")))
}

/// Checks that this process starts at rank 0's step `rank0`.
pub(crate) fn check_same_start(
    processes: &dyn ProcessGroup,
    step: u64,
    rank0: u64,
) -> Result<(), TrainError> {
    match step == rank0 {
        true => Ok(()),
        false => Err(TrainError::Distributed(format!(
            "rank {} starts at step {step}, rank 0 at step {rank0}: do all ranks see the same run folder?",
            processes.rank()
        ))),
    }
}
