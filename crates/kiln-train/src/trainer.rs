//! The training loop (Ho et al. 2020, Algorithm 1, with the usual refinements), data-parallel
//! over devices and processes.
//!
//! Optimizer step k (0-based) of a run with seed s:
//!
//! ```text
//! draw, from an RNG seeded with (s, k): a mirror flag per image, t ~ U{0, …, T−1},
//!   for a class-conditional run a label-dropout flag per image (c_i ← ∅ with probability p),
//!   and ε ~ N(0, I)
//! x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε                            (kiln-forward)
//! L = 1/B Σ_i w(t_i) · mean over pixels of (f_θ(x_t, t, c)_i − target_i)²
//! lr_k = lr · min(1, (k + 1)/warm-up);  AdamW step on ∇L (norm clipped);  EMA update
//! ```
//!
//! where the target is ε, x_0 or v and w is 1 or min-SNR-γ ([`crate::TrainConfig`]); a
//! [`crate::Distillation`] draws t from the timesteps its student learns at instead, and its
//! loss is progressive, consistency or trajectory consistency distillation's
//! ([`crate::Distiller`]). Images
//! are visited in a fresh random order each epoch (seeded with (s, epoch)). Because every draw
//! is seeded from the step number (dropout included: Kiln's CPU kernel keys its masks by (s, k)
//! and each image's place in the batch; burn's dropout on the GPU backends draws from the
//! backend's generator, seeded with (s, k) and the worker), a run resumed from a checkpoint
//! continues with exactly the numbers it would have drawn; the one exception is dropout on
//! several GPUs in one process, whose workers share that generator.
//!
//! Synchronous data parallelism (as PyTorch's DistributedDataParallel): every device of every
//! process is a worker with its own replica of the model and its own optimizer. Each step the
//! workers compute the gradients of their shards of the batch, sum them (burn-collective's
//! all-reduce between the devices of a process, then a [`crate::ProcessGroup`] between
//! processes) and all take the same AdamW step, so the replicas stay identical. The first
//! worker of the first process keeps the EMA and writes the grids, checkpoints and log.

use burn::tensor::backend::AutodiffBackend;
use kiln_unet::UNet;

use crate::agreement::agree_on_run;
use crate::bookkeeping::Bookkeeping;
use crate::dataset::ImageFolder;
use crate::options::{RunOptions, TrainEvent, TrainSummary};
use crate::pending::PendingLosses;
use crate::reduction::Reduction;
use crate::run::Run;
use crate::start::{Start, check_inputs, start_everywhere};
use crate::step_loop::{Keeper, Lead, run_steps};
use crate::workers::run_threads;
use crate::{TrainConfig, TrainError};

/// Trains a UNet on `data` according to `config`, on `devices` (of this process), writing into
/// `options.out`.
///
/// Each device gets a worker with a replica of the model (the first device's worker runs on
/// the calling thread; the others on threads of their own). Each optimizer step is
/// `StepDraws::for_step` (its randomness, the same in every worker), `gradients` (forward and
/// backward over the worker's shards), the reduction (a sum over all workers), the AdamW
/// step, and on the first worker the books (EMA, log, grids, checkpoints); a stop request
/// ends the run after the step that saw it.
///
/// A worker that fails — an error, a panic, a lost device — stops the others at their next
/// exchange, and the run returns that worker's error; checkpoints are written atomically, so
/// the last complete one stays the latest. In a run of several processes every process calls
/// `train`; one that fails leaves the others waiting in their exchange, so the program must
/// then end the job ([`crate::ProcessGroup::abort`]), as `mpirun` does for a process that dies.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    data: &ImageFolder,
    devices: &[B::Device],
    options: RunOptions<'_>,
    mut on_event: impl FnMut(TrainEvent<'_>),
) -> Result<TrainSummary, TrainError> {
    let processes = options.processes;
    check_inputs(config, data, devices, processes.size())?;
    if let Some(evaluation) = &options.evaluation {
        evaluation.validate()?;
    }
    agree_on_run(processes, config, data.len(), devices.len())?;
    let optimizer_config = config.optimizer();
    let Start {
        model,
        optimizer,
        ema,
        step: start,
        resumed_from,
    } = start_everywhere::<B, _>(
        config,
        data,
        options,
        &devices[0],
        || optimizer_config.init::<B, UNet<B>>(),
        &mut on_event,
    )?;
    let schedule = config.schedule()?;
    let run = Run::new(config, data, &schedule, start, processes, devices.len())?;
    let keeper = match processes.rank() {
        0 => Some(Keeper {
            ema,
            books: Bookkeeping::open(&run, &options)?,
        }),
        _ => None,
    };
    on_event(TrainEvent::Started {
        step: start,
        total_steps: run.total_steps,
        steps_per_epoch: run.steps_per_epoch,
        resumed_from: resumed_from.as_deref(),
    });
    let mut lead = Lead {
        stop: options.stop,
        log_every: options.log_every.max(1),
        losses: PendingLosses::new(),
        keeper,
        on_event,
    };
    let done = if devices.len() == 1 {
        let reduction =
            Reduction::join::<B>(0, 1, &devices[0], processes.size() > 1)?.leading(processes);
        run_steps(
            &run,
            0,
            model,
            optimizer,
            &devices[0],
            reduction,
            Some(&mut lead),
        )?
    } else {
        run_threads(&run, model, optimizer, devices, processes, &mut lead)?
    };
    match lead.keeper {
        Some(keeper) => keeper.books.finish(done.steps, done.interrupted),
        None => Ok(TrainSummary {
            steps: done.steps,
            interrupted: done.interrupted,
            ..TrainSummary::default()
        }),
    }
}
