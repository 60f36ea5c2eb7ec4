//! Training diffusion UNets on folders of images, with burn.
//!
//! - [`ImageFolder`]: a folder of images decoded once, in parallel, into memory, with bad
//!   files reported by path;
//! - [`train`]: the training loop (ε/x₀/v targets, optional min-SNR weighting, AdamW with
//!   warm-up and gradient clipping, gradient accumulation, an [`Ema`] of the weights, class
//!   labels with label dropout for classifier-free guidance), writing sample grids, a loss log
//!   and atomic, exactly resumable checkpoints; data-parallel over several devices (a worker
//!   thread each, gradients summed with burn-collective) and several processes or machines (a
//!   [`ProcessGroup`]: `MpiProcesses` with the `mpi` feature);
//! - [`generate`] and [`UNetDenoiser`]: sampling a trained model with any Kiln sampler, picked
//!   by name, unconditionally or guided towards classes ([`Condition`]); [`load_for_sampling`] reads a run, a checkpoint or a diffusers model folder;
//! - [`pixels`]: images to tensors in [−1, 1] and back, grids and montages; [`plot`]: the loss
//!   curve.
//!
//! The library never prints: progress arrives through callbacks ([`LoadEvent`],
//! [`TrainEvent`]).

#![warn(missing_docs)]

mod bookkeeping;
mod checkpoint;
mod config;
mod dataset;
mod ema;
mod error;
mod integrity;
#[cfg(feature = "mpi")]
mod mpi;
mod pending;
pub mod pixels;
pub mod plot;
mod processes;
mod reduction;
mod resident;
mod sampling;
mod step;
mod trainer;

pub use checkpoint::{
    DAMAGED_SUFFIX, EMA_FILE, LATEST, SamplingModel, TrainState, latest_checkpoint,
    load_for_sampling, read_state,
};
pub use config::{ClassConditioning, TrainConfig};
pub use dataset::{
    DatasetError, IMAGE_EXTENSIONS, ImageFolder, ImageFolderOptions, Labels, LoadEvent, SkippedFile,
};
pub use ema::Ema;
pub use error::TrainError;
pub use integrity::{CheckpointHealth, Damage, FileDigest, check_run, verify_checkpoint};
#[cfg(feature = "mpi")]
pub use mpi::MpiProcesses;
pub use processes::{ProcessGroup, SingleProcess};
pub use resident::DeviceImages;
pub use sampling::{
    Condition, Generation, NamedRun, SamplerName, UNetDenoiser, generate, sample_by_name,
};
pub use trainer::{DEFAULT_LOG_EVERY, RunOptions, TrainEvent, TrainSummary, train};
