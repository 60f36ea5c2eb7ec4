use std::path::PathBuf;

use kiln_distill::DistillError;
use kiln_forward::ForwardError;
use kiln_metrics::MetricsError;
use kiln_pipeline::pixels::PixelError;
use kiln_pipeline::{Damage, PipelineError};
use kiln_unet::UNetError;
use thiserror::Error;

use crate::dataset::DatasetError;

/// Everything that can stop a training run.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A [`crate::TrainConfig`] field is invalid.
    #[error("{field}: {problem}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The checkpoint to resume from was made with a different configuration.
    #[error("cannot resume from {path}: {difference}")]
    ConfigMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The first differing field, with both values.
        difference: String,
    },
    /// The checkpoint to resume from was made on a different dataset size.
    #[error("cannot resume from {path}: it was trained on {expected} images, the data has {found}")]
    DataMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// Images when the checkpoint was written.
        expected: usize,
        /// Images now.
        found: usize,
    },
    /// The loss became NaN or infinite; the last checkpoint on disk is untouched.
    #[error(
        "the loss became {loss} at step {step} (epoch {epoch}); stopped without saving. \
         Try a lower learning rate or gradient clipping, and resume from the last checkpoint"
    )]
    NonFiniteLoss {
        /// The optimizer step (0-based) whose loss was not finite.
        step: u64,
        /// Its epoch (0-based).
        epoch: usize,
        /// The loss.
        loss: f64,
    },
    /// No devices were given.
    #[error("training needs at least one device")]
    NoDevices,
    /// The batch does not split over the devices and accumulation steps.
    #[error("a micro-batch of {micro_batch} images cannot be split over {devices} devices")]
    BatchSplit {
        /// Images per micro-batch.
        micro_batch: usize,
        /// Devices.
        devices: usize,
    },
    /// A worker panicked (for example on a lost device); the other workers were stopped.
    #[error("the worker of device {worker} of this process panicked: {message}")]
    WorkerPanicked {
        /// The worker's device index in this process.
        worker: usize,
        /// The panic's message.
        message: String,
    },
    /// Exchanging gradients between this process's devices failed: another worker stopped
    /// (its own error is the one reported), or burn-collective refused the exchange.
    #[error("exchanging gradients between devices failed: {0}")]
    Collective(String),
    /// The device failed to compute or to hand back a result (a lost GPU, a driver error).
    #[error("the device failed: {0}")]
    Device(String),
    /// The processes of a distributed run disagree, or one of them failed to start.
    #[error("distributed training: {0}")]
    Distributed(String),
    /// A checkpoint failed verification or could not be loaded.
    #[error("checkpoint {path} is damaged: {damage}")]
    DamagedCheckpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// The damaged file and what is wrong with it.
        damage: Damage,
    },
    /// A file or folder of the run could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The training images.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The model.
    #[error(transparent)]
    UNet(#[from] UNetError),
    /// The forward process.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// Writing an image.
    #[error(transparent)]
    Pixels(#[from] PixelError),
    /// Generating the sample grids, or reading the run folder's layout.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A distillation's targets: the teacher failed, or a timestep is off the student's grid.
    #[error("distilling: {0}")]
    Distill(#[from] DistillError),
    /// A distillation's teacher does not fit the run.
    #[error("the teacher {path} does not fit this run: {problem}")]
    Teacher {
        /// The teacher's path.
        path: PathBuf,
        /// What differs.
        problem: String,
    },
    /// Scoring the samples of an evaluation failed.
    #[error("evaluating the samples: {0}")]
    Metrics(#[from] MetricsError),
}

impl TrainError {
    /// An [`TrainError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.into(),
            message: error.to_string(),
        }
    }
}
