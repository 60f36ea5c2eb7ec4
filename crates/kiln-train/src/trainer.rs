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
//! where the target is ε, x_0 or v and w is 1 or min-SNR-γ ([`crate::TrainConfig`]). Images
//! are visited in a fresh random order each epoch (seeded with (s, epoch)). Because every draw
//! is seeded from the step number (dropout included, through the backend's seed), a run
//! resumed from a checkpoint continues with exactly the numbers it would have drawn.
//!
//! Synchronous data parallelism (as PyTorch's DistributedDataParallel): every device of every
//! process is a worker with its own replica of the model and its own optimizer. Each step the
//! workers compute the gradients of their shards of the batch, sum them (burn-collective's
//! all-reduce between the devices of a process, then a [`ProcessGroup`] between processes) and
//! all take the same AdamW step, so the replicas stay identical. The first worker of the first
//! process keeps the EMA and writes the grids, checkpoints and log.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

use burn::module::Module;
use burn::optim::{AdamWConfig, Optimizer, grad_clipping::GradientClippingConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use kiln_forward::{ForwardProcess, Prediction};
use kiln_kernels::on_worker_thread;
use kiln_schedule::NoiseSchedule;
use kiln_unet::UNet;
use serde::{Deserialize, Serialize};

use crate::bookkeeping::{Bookkeeping, checkpoints_folder};
use crate::checkpoint;
use crate::dataset::ImageFolder;
use crate::ema::Ema;
use crate::integrity::Damage;
use crate::pending::PendingLosses;
use crate::reduction::{self, Reduction, Totals};
use crate::resident::DeviceImages;
use crate::step::{Objective, Place, StepDraws, epoch_order, gradients};
use crate::{ProcessGroup, SingleProcess, TrainConfig, TrainError};

/// Where a run writes, how it may be stopped, and which processes train it together.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// The run folder: `checkpoints/`, `samples/`, `loss.csv`, `progress.png`.
    pub out: &'a Path,
    /// Continue from the latest checkpoint in `out` (which must exist). Without it, `out` must
    /// not hold checkpoints yet, so an earlier run is never overwritten.
    pub resume: bool,
    /// Set (for example from a Ctrl-C handler) to stop with a checkpoint after the step in
    /// progress. The flag is read once per step, before the workers exchange gradients (so that
    /// all stop together): set while a `Step` event is handled at the log point after step k,
    /// it stops after step k + 1. In a run of several processes, rank 0's flag decides for all.
    pub stop: &'a AtomicBool,
    /// The processes training this model together: [`SingleProcess`], or an MPI job
    /// (`crate::MpiProcesses`, feature `mpi`).
    pub processes: &'a dyn ProcessGroup,
    /// Steps between two log points (at least 1; [`DEFAULT_LOG_EVERY`] by default). The losses
    /// stay on the device until a log point reads them all at once (one wait for the device):
    /// every `log_every`-th step, at the end of every epoch and when the run stops. Only then
    /// are the losses checked, logged and reported ([`TrainEvent::Step`]), so on a GPU the
    /// steps in between are queued without the host ever waiting for the device.
    pub log_every: u64,
}

/// Steps between two log points unless [`RunOptions::log_every`] says otherwise.
pub const DEFAULT_LOG_EVERY: u64 = 10;

impl<'a> RunOptions<'a> {
    /// A run of this process alone in `out`, stopped by `stop`, with log points every
    /// [`DEFAULT_LOG_EVERY`] steps.
    pub fn new(out: &'a Path, resume: bool, stop: &'a AtomicBool) -> Self {
        Self {
            out,
            resume,
            stop,
            processes: &SingleProcess,
            log_every: DEFAULT_LOG_EVERY,
        }
    }
}

/// What a run reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent<'a> {
    /// Training is about to begin.
    Started {
        /// The step it starts from (0, or the resumed checkpoint's).
        step: u64,
        /// Steps the run will have done at the end.
        total_steps: u64,
        /// Optimizer steps per epoch.
        steps_per_epoch: u64,
        /// The checkpoint it resumed from.
        resumed_from: Option<&'a Path>,
    },
    /// An optimizer step finished. The steps between two log points
    /// ([`RunOptions::log_every`]) are reported together at the second, in order.
    Step {
        /// Steps done, this one included.
        step: u64,
        /// Steps the run will have done at the end.
        total_steps: u64,
        /// The epoch (0-based) of this step.
        epoch: usize,
        /// The step's loss.
        loss: f64,
        /// The learning rate used.
        learning_rate: f64,
        /// Training images per second since the previous log point.
        images_per_second: f64,
    },
    /// A damaged checkpoint was passed over when resuming (the run continues from an older,
    /// intact one) and renamed out of the way, not deleted.
    SkippedCheckpoint {
        /// The checkpoint folder as it was named.
        path: &'a Path,
        /// The damaged file and what is wrong with it.
        damage: &'a Damage,
        /// Where it was moved (`step-NNNNNNNN.damaged`).
        set_aside: &'a Path,
    },
    /// A grid of samples from the EMA model was written.
    Sampled {
        /// The epoch just finished (1-based count).
        epoch: usize,
        /// The PNG.
        path: &'a Path,
    },
    /// A checkpoint was written.
    Saved {
        /// Steps done.
        step: u64,
        /// The checkpoint folder.
        path: &'a Path,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Steps done.
    pub steps: u64,
    /// Whether it stopped early on request.
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// The sample grids written by this run, in order.
    pub grids: Vec<PathBuf>,
    /// All sample grids of the run side by side (`progress.png`), written at the end.
    pub montage: Option<PathBuf>,
    /// The loss of every step of the run as a picture (`loss.png`, see
    /// [`crate::plot::loss_curve`]), written at the end.
    pub loss_curve: Option<PathBuf>,
}

/// Trains a UNet on `data` according to `config`, on `devices` (of this process), writing into
/// `options.out`.
///
/// Each device gets a worker with a replica of the model (the first device's worker runs on
/// the calling thread; the others on threads of their own). Each optimizer step is
/// `StepDraws::for_step` (its randomness, the same in every worker), `gradients` (forward and
/// backward over the worker's shards), the [`Reduction`] (sum over all workers), the AdamW
/// step, and on the first worker the books (EMA, log, grids, checkpoints); a stop request
/// ends the run after the step that saw it.
///
/// A worker that fails — an error, a panic, a lost device — stops the others at their next
/// exchange, and the run returns that worker's error; checkpoints are written atomically, so
/// the last complete one stays the latest. In a run of several processes every process calls
/// `train`; one that fails leaves the others waiting in their exchange, so the program must
/// then end the job ([`ProcessGroup::abort`]), as `mpirun` does for a process that dies.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    data: &ImageFolder,
    devices: &[B::Device],
    options: RunOptions<'_>,
    mut on_event: impl FnMut(TrainEvent<'_>),
) -> Result<TrainSummary, TrainError> {
    let processes = options.processes;
    check_inputs(config, data, devices, processes.size())?;
    agree_on_run(processes, config, data.len(), devices.len())?;
    let optimizer_config = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(
            config
                .max_grad_norm
                .map(|norm| GradientClippingConfig::Norm(norm as f32)),
        );
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
    let prediction = config.prediction()?;
    let steps_per_epoch = (data.len() / config.batch_size).max(1) as u64;
    let run = Run {
        config,
        data,
        schedule: &schedule,
        prediction,
        steps_per_epoch,
        total_steps: steps_per_epoch * config.epochs as u64,
        start,
        rank: processes.rank(),
        local_devices: devices.len(),
        workers: devices.len() * processes.size(),
    };
    let books = match processes.rank() {
        0 => Some(Bookkeeping::open(&run, options.out, ema)?),
        _ => None,
    };
    on_event(TrainEvent::Started {
        step: start,
        total_steps: run.total_steps,
        steps_per_epoch,
        resumed_from: resumed_from.as_deref(),
    });
    let mut lead = Lead {
        stop: options.stop,
        log_every: options.log_every.max(1),
        losses: PendingLosses::new(),
        books,
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
    match lead.books {
        Some(books) => books.finish(done.steps, done.interrupted),
        None => Ok(TrainSummary {
            steps: done.steps,
            interrupted: done.interrupted,
            checkpoint: None,
            grids: Vec::new(),
            montage: None,
            loss_curve: None,
        }),
    }
}

/// What every worker of a run shares (and rank 0's books read).
pub(crate) struct Run<'a> {
    pub(crate) config: &'a TrainConfig,
    pub(crate) data: &'a ImageFolder,
    pub(crate) schedule: &'a NoiseSchedule,
    pub(crate) prediction: Prediction,
    pub(crate) steps_per_epoch: u64,
    pub(crate) total_steps: u64,
    /// The step the run starts from.
    pub(crate) start: u64,
    /// This process's rank.
    rank: usize,
    /// This process's devices.
    local_devices: usize,
    /// All workers of all processes.
    workers: usize,
}

impl Run<'_> {
    /// Runs a worker's computation on backend `B`: on a rayon worker thread when this process
    /// has a single worker and `B` is Flex, where Flex's and Kiln's kernels start their parallel
    /// work fastest ([`on_worker_thread`]); several workers stay on their own threads and share
    /// rayon's global pool, rather than each keeping a pool of one thread per core.
    fn compute<B: Backend, R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        if self.local_devices == 1 {
            on_worker_thread::<B, _>(work)
        } else {
            work()
        }
    }

    /// The place among all workers of device `local` of this process.
    fn place(&self, local: usize) -> Place {
        Place {
            index: self.rank * self.local_devices + local,
            count: self.workers,
        }
    }
}

/// What the worker on the calling thread does besides training: it reads the stop flag, reads
/// the losses back at the log points, reports events and (on rank 0) keeps the books.
struct Lead<'a, B: AutodiffBackend, F> {
    stop: &'a AtomicBool,
    log_every: u64,
    losses: PendingLosses<B::InnerBackend>,
    books: Option<Bookkeeping<'a, B>>,
    on_event: F,
}

impl<B: AutodiffBackend, F: FnMut(TrainEvent<'_>)> Lead<'_, B, F> {
    /// Reads the pending losses of `run` back, checks them, reports them and logs them.
    fn log(&mut self, run: &Run<'_>) -> Result<(), TrainError> {
        let (steps, images_per_second) = self.losses.read(run.config.batch_size)?;
        for logged in steps {
            (self.on_event)(TrainEvent::Step {
                step: logged.step + 1,
                total_steps: run.total_steps,
                epoch: logged.epoch,
                loss: logged.loss,
                learning_rate: logged.learning_rate,
                images_per_second,
            });
            if let Some(books) = self.books.as_mut() {
                books.log(&logged)?;
            }
        }
        Ok(())
    }
}

/// How the steps ended.
#[derive(Debug, Clone, Copy)]
struct Done {
    steps: u64,
    interrupted: bool,
}

/// Makes sure only one run at a time uses burn-collective in this process: its groups are
/// per backend type and process-wide.
static COLLECTIVE_RUNS: Mutex<()> = Mutex::new(());

/// Runs the steps with one worker per device: the first on this thread (with `lead`), the
/// others on scoped threads; returns the first worker's outcome or, if any failed, the error
/// that started the failure.
fn run_threads<B, O, F>(
    run: &Run<'_>,
    model: UNet<B>,
    optimizer: O,
    devices: &[B::Device],
    processes: &dyn ProcessGroup,
    lead: &mut Lead<'_, B, F>,
) -> Result<Done, TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
    F: FnMut(TrainEvent<'_>),
{
    let _one_run = COLLECTIVE_RUNS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let across_processes = processes.size() > 1;
    thread::scope(|scope| {
        let others: Vec<_> = devices
            .iter()
            .enumerate()
            .skip(1)
            .map(|(local, device)| {
                let (replica, optimizer) = (model.clone().fork(device), optimizer.clone());
                scope.spawn(move || {
                    guarded::<B, _>(local, || {
                        let reduction =
                            Reduction::join::<B>(local, devices.len(), device, across_processes)?;
                        run_steps::<B, O, F>(
                            run, local, replica, optimizer, device, reduction, None,
                        )
                    })
                })
            })
            .collect();
        let first = guarded::<B, _>(0, || {
            let reduction = Reduction::join::<B>(0, devices.len(), &devices[0], across_processes)?
                .leading(processes);
            run_steps(run, 0, model, optimizer, &devices[0], reduction, Some(lead))
        });
        let outcomes =
            std::iter::once(first).chain(others.into_iter().zip(1..).map(|(handle, local)| {
                handle
                    .join()
                    .unwrap_or_else(|payload| Err(panicked(local, payload)))
            }));
        first_failure(outcomes.collect())
    })
}

/// Worker `local`'s `body`, with a panic turned into [`TrainError::WorkerPanicked`]; on any
/// failure the process's other workers are woken from their exchanges.
fn guarded<B: AutodiffBackend, T>(
    local: usize,
    body: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(panicked(local, payload)));
    if outcome.is_err() {
        reduction::abandon::<B>();
    }
    outcome
}

/// A worker's panic as an error.
fn panicked(worker: usize, payload: Box<dyn std::any::Any + Send>) -> TrainError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|message| message.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    TrainError::WorkerPanicked { worker, message }
}

/// The first worker's outcome if all succeeded; otherwise the failure that came first in
/// cause: an error other than a failed exchange (which only says that another worker stopped).
fn first_failure(outcomes: Vec<Result<Done, TrainError>>) -> Result<Done, TrainError> {
    let mut errors: Vec<TrainError> = Vec::new();
    let mut first = None;
    for outcome in outcomes {
        match outcome {
            Ok(done) => first = first.or(Some(done)),
            Err(error) => errors.push(error),
        }
    }
    let cause = errors
        .iter()
        .position(|error| !matches!(error, TrainError::Collective(_)))
        .unwrap_or(0);
    match errors.len() {
        0 => Ok(first.expect("at least one worker")),
        _ => Err(errors.swap_remove(cause)),
    }
}

/// Worker `local`'s loop over the run's steps, with its replica `model` and `optimizer` on
/// `device`; `lead` on the calling thread's worker.
fn run_steps<B, O, F>(
    run: &Run<'_>,
    local: usize,
    mut model: UNet<B>,
    mut optimizer: O,
    device: &B::Device,
    reduction: Reduction<'_>,
    mut lead: Option<&mut Lead<'_, B, F>>,
) -> Result<Done, TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
    F: FnMut(TrainEvent<'_>),
{
    let config = run.config;
    let objective = Objective {
        prediction: run.prediction,
        weighting: config.weighting(),
        process: ForwardProcess::new(run.schedule.clone(), device),
        images: DeviceImages::new(run.data, device),
        device: device.clone(),
    };
    let place = run.place(local);
    let mut done = Done {
        steps: run.start,
        interrupted: false,
    };
    let mut order: Option<(usize, Vec<usize>)> = None;
    for step in run.start..run.total_steps {
        let epoch = (step / run.steps_per_epoch) as usize;
        if order.as_ref().is_none_or(|(cached, _)| *cached != epoch) {
            order = Some((epoch, epoch_order(config.seed, epoch, run.data.len())));
        }
        let (_, permutation) = order.as_ref().expect("just set");
        let draws = StepDraws::for_step(config, run.data, step, run.steps_per_epoch, permutation);
        let (grads, loss) =
            run.compute::<B, _>(|| gradients(&model, config, &objective, place, draws, step))?;
        let stop = run.rank == 0
            && lead
                .as_ref()
                .is_some_and(|lead| lead.stop.load(Ordering::SeqCst));
        let (grads, totals) = reduction.sum(&model, grads, Totals { loss, stop })?;
        let warmup = (step + 1) as f64 / config.warmup_steps.max(1) as f64;
        let learning_rate = config.learning_rate * warmup.min(1.0);
        model = run.compute::<B, _>(|| optimizer.step(learning_rate, model, grads));
        done.steps = step + 1;
        if let Some(lead) = lead.as_deref_mut() {
            lead.losses.push(step, epoch, learning_rate, totals.loss);
            let log_point = (step + 1).is_multiple_of(lead.log_every)
                || (step + 1).is_multiple_of(run.steps_per_epoch)
                || step + 1 == run.total_steps
                || totals.stop;
            if log_point {
                lead.log(run)?;
            }
            if let Some(books) = lead.books.as_mut() {
                books.after_step(
                    step,
                    totals.stop,
                    &model,
                    &optimizer,
                    device,
                    &mut lead.on_event,
                )?;
            }
        }
        if totals.stop {
            done.interrupted = true;
            break;
        }
    }
    reduction.leave::<B>()?;
    Ok(done)
}

/// Checks the run's settings against the data and the devices of all `processes` processes.
fn check_inputs<D>(
    config: &TrainConfig,
    data: &ImageFolder,
    devices: &[D],
    processes: usize,
) -> Result<(), TrainError> {
    config.validate()?;
    if devices.is_empty() {
        return Err(TrainError::NoDevices);
    }
    let micro_batch = config.batch_size / config.grad_accumulation;
    let workers = devices.len() * processes;
    if !micro_batch.is_multiple_of(workers) {
        return Err(TrainError::BatchSplit {
            micro_batch,
            devices: workers,
        });
    }
    if let Some(classes) = &config.classes
        && data.class_names() != classes.names.as_slice()
    {
        return Err(TrainError::Config {
            field: "classes".into(),
            problem: format!(
                "the run's classes are [{}], the data's [{}] (load it with labels from folders)",
                classes.names.join(", "),
                data.class_names().join(", ")
            ),
        });
    }
    if data.channels() != config.unet.in_channels || data.image_size() != config.image_size {
        return Err(TrainError::Config {
            field: "image_size".into(),
            problem: format!(
                "the data is {}×{}×{}, the model takes {}×{}×{}",
                data.channels(),
                data.image_size(),
                data.image_size(),
                config.unet.in_channels,
                config.image_size,
                config.image_size
            ),
        });
    }
    Ok(())
}

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
        if let Some(difference) = rank0.config.first_difference(&self.config) {
            Some(format!("config: {difference}"))
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
fn agree_on_run(
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

/// [`start`] on every process: rank 0 first (it alone sets damaged checkpoints aside), then
/// the others, which must arrive at rank 0's step.
fn start_everywhere<B: AutodiffBackend, O: Optimizer<UNet<B>, B>>(
    config: &TrainConfig,
    data: &ImageFolder,
    options: RunOptions<'_>,
    device: &B::Device,
    new_optimizer: impl Fn() -> O,
    on_event: &mut impl FnMut(TrainEvent<'_>),
) -> Result<Start<B, O>, TrainError> {
    let processes = options.processes;
    let checkpoints = checkpoints_folder(options.out);
    let mut here = || {
        start(
            config,
            data,
            &checkpoints,
            options.resume,
            device,
            &new_optimizer,
            on_event,
        )
    };
    if processes.size() == 1 {
        return here();
    }
    let ours = (processes.rank() == 0).then(&mut here);
    let rank0: Result<u64, String> = match &ours {
        Some(Ok(start)) => Ok(start.step),
        Some(Err(error)) => Err(error.to_string()),
        None => Ok(0),
    };
    let mut shared = serde_json::to_vec(&rank0).map_err(distributed)?;
    processes.broadcast(&mut shared);
    let rank0: Result<u64, String> = serde_json::from_slice(&shared).map_err(distributed)?;
    if let Some(ours) = ours {
        return ours;
    }
    let step = rank0
        .map_err(|error| TrainError::Distributed(format!("rank 0 could not start: {error}")))?;
    let ours = here()?;
    match ours.step == step {
        true => Ok(ours),
        false => Err(TrainError::Distributed(format!(
            "rank {} starts at step {}, rank 0 at step {step}: do all ranks see the same run folder?",
            processes.rank(),
            ours.step
        ))),
    }
}

/// Where a run starts: a new model, or the newest intact checkpoint's state.
struct Start<B: AutodiffBackend, O> {
    model: UNet<B>,
    optimizer: O,
    ema: Ema<B, UNet<B>>,
    step: u64,
    resumed_from: Option<PathBuf>,
}

/// A new run (seeded weights, a fresh optimizer), or with `resume` the newest intact checkpoint
/// in `checkpoints`, checked against `config` and `data`.
fn start<B: AutodiffBackend, O: Optimizer<UNet<B>, B>>(
    config: &TrainConfig,
    data: &ImageFolder,
    checkpoints: &Path,
    resume: bool,
    device: &B::Device,
    new_optimizer: impl Fn() -> O,
    on_event: &mut impl FnMut(TrainEvent<'_>),
) -> Result<Start<B, O>, TrainError> {
    let latest = checkpoint::latest_checkpoint(checkpoints)?;
    match (resume, latest) {
        (true, _) => {
            let (latest, restored) = checkpoint::restore_newest_intact::<B, _>(
                checkpoints,
                new_optimizer,
                device,
                |path, damage, set_aside| {
                    on_event(TrainEvent::SkippedCheckpoint {
                        path,
                        damage,
                        set_aside,
                    })
                },
            )?;
            if let Some(difference) = restored.state.config.first_difference(config) {
                return Err(TrainError::ConfigMismatch {
                    path: latest,
                    difference,
                });
            }
            if restored.state.images != data.len() {
                return Err(TrainError::DataMismatch {
                    path: latest,
                    expected: restored.state.images,
                    found: data.len(),
                });
            }
            Ok(Start {
                ema: Ema::from_average(restored.ema, config.ema_decay),
                step: restored.state.step,
                model: restored.model,
                optimizer: restored.optimizer,
                resumed_from: Some(latest),
            })
        }
        (false, Some(latest)) => Err(TrainError::io(
            latest,
            "this folder already holds a run; resume it or choose another output folder",
        )),
        (false, None) => {
            B::seed(device, config.seed);
            let model = config.unet.init::<B>(device)?;
            Ok(Start {
                ema: Ema::new(&model, config.ema_decay),
                model,
                optimizer: new_optimizer(),
                step: 0,
                resumed_from: None,
            })
        }
    }
}
