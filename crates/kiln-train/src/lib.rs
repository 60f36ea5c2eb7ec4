//! Training diffusion UNets on folders of images, with burn.
//!
//! - [`ImageFolder`]: a folder of images decoded once, in parallel, into memory, with bad
//!   files reported by path;
//! - [`train`]: the training loop (ε/x₀/v targets, optional min-SNR weighting, AdamW with
//!   warm-up and gradient clipping, gradient accumulation, an [`Ema`] of the weights, class
//!   labels with label dropout for classifier-free guidance), writing sample grids, a loss log
//!   and atomic, exactly resumable checkpoints, and scoring the samples' quality as it goes
//!   ([`Evaluation`]: FD, KID, precision, recall and memorisation into `metrics.csv`), or
//!   distilling a trained model into a few-step student ([`Distillation`]: a round of
//!   progressive distillation, or consistency distillation, plain or trajectory; [`Distiller`]);
//!   data-parallel over several devices (a worker thread each, gradients summed with
//!   burn-collective) and several processes or machines (a [`ProcessGroup`]: `MpiProcesses`
//!   with the `mpi` feature);
//! - [`check_run`] and [`verify_checkpoint`]: whether a run's checkpoints are whole;
//! - [`plot`]: the loss and metric curves.
//!
//! Sampling a trained model (the run's grids too) is kiln-pipeline's: `load_for_sampling`
//! reads the run folders written here, whose layout is its `RunFolder`.
//!
//! The library never prints: progress arrives through callbacks ([`LoadEvent`],
//! [`TrainEvent`]).

#![warn(missing_docs)]

mod agreement;
mod bookkeeping;
mod checkpoint;
mod config;
mod csv_log;
mod dataset;
mod distilling;
mod ema;
mod error;
mod evaluation;
#[cfg(feature = "mpi")]
mod mpi;
mod options;
mod pending;
pub mod plot;
mod processes;
mod reduction;
mod resident;
mod run;
mod sampling;
mod start;
mod state;
mod step;
mod step_loop;
mod teacher;
mod trainer;
mod workers;

pub use config::{
    CONSISTENCY_GAMMA, CONSISTENCY_GRID, ClassConditioning, ConfigDifference, Distillation,
    TimestepDensity, TrainConfig,
};
pub use dataset::{
    DatasetError, IMAGE_EXTENSIONS, ImageFolder, ImageFolderOptions, Labels, LoadEvent, SkippedFile,
};
pub use distilling::Distiller;
pub use ema::Ema;
pub use error::TrainError;
#[cfg(feature = "mpi")]
pub use mpi::MpiProcesses;
pub use options::{DEFAULT_LOG_EVERY, Evaluation, RunOptions, TrainEvent, TrainSummary};
pub use processes::{ProcessGroup, SingleProcess};
pub use resident::DeviceImages;
pub use state::{CheckpointHealth, TrainState, check_run, read_state, verify_checkpoint};
pub use trainer::train;
