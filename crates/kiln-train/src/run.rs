//! What every worker of a run shares, and how a worker's steps ended.

use burn::tensor::backend::Backend;
use kiln_forward::Prediction;
use kiln_kernels::on_worker_thread;
use kiln_schedule::NoiseSchedule;

use crate::dataset::ImageFolder;
use crate::distilling::Distiller;
use crate::step::Place;
use crate::{ProcessGroup, TrainConfig, TrainError};

/// What every worker of a run shares (and rank 0's books read).
pub(crate) struct Run<'a> {
    pub(crate) config: &'a TrainConfig,
    pub(crate) data: &'a ImageFolder,
    pub(crate) schedule: &'a NoiseSchedule,
    pub(crate) prediction: Prediction,
    /// What a distillation run trains its student with.
    pub(crate) distillation: Option<Distiller>,
    pub(crate) steps_per_epoch: u64,
    pub(crate) total_steps: u64,
    /// The step the run starts from.
    pub(crate) start: u64,
    /// This process's rank.
    pub(crate) rank: usize,
    /// This process's devices.
    pub(crate) local_devices: usize,
    /// All workers of all processes.
    pub(crate) workers: usize,
}

impl<'a> Run<'a> {
    /// The run of `config` on `data` over `schedule`, from step `start`, with `local_devices`
    /// devices in each of `processes`.
    pub(crate) fn new(
        config: &'a TrainConfig,
        data: &'a ImageFolder,
        schedule: &'a NoiseSchedule,
        start: u64,
        processes: &dyn ProcessGroup,
        local_devices: usize,
    ) -> Result<Self, TrainError> {
        let steps_per_epoch = (data.len() / config.batch_size).max(1) as u64;
        Ok(Self {
            config,
            data,
            schedule,
            prediction: config.prediction()?,
            distillation: config.distiller()?,
            steps_per_epoch,
            total_steps: steps_per_epoch * config.epochs as u64,
            start,
            rank: processes.rank(),
            local_devices,
            workers: local_devices * processes.size(),
        })
    }

    /// Runs a worker's computation on backend `B`: on a rayon worker thread when this process
    /// has a single worker and `B` is Flex, where Flex's and Kiln's kernels start their parallel
    /// work fastest ([`on_worker_thread`]); several workers stay on their own threads and share
    /// rayon's global pool, rather than each keeping a pool of one thread per core.
    pub(crate) fn compute<B: Backend, R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        if self.local_devices == 1 {
            on_worker_thread::<B, _>(work)
        } else {
            work()
        }
    }

    /// The place among all workers of device `local` of this process.
    pub(crate) fn place(&self, local: usize) -> Place {
        Place {
            index: self.rank * self.local_devices + local,
            count: self.workers,
        }
    }
}

/// How the steps ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    /// Steps done.
    pub(crate) steps: u64,
    /// Whether a stop request ended them.
    pub(crate) interrupted: bool,
}
