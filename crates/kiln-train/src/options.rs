//! The run's public types: how it is run ([`RunOptions`]), what it reports
//! ([`TrainEvent`]) and how it ended ([`TrainSummary`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kiln_metrics::{Quality, SampleScorer};
use kiln_pipeline::{Damage, SamplerName};

use crate::{ProcessGroup, SingleProcess, TrainError};

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
    /// Scores the EMA model's samples at the end of some epochs into `metrics.csv`; none by
    /// default.
    pub evaluation: Option<Evaluation<'a>>,
}

/// An evaluation of the model during a run: at the end of every `every_epochs`-th epoch and of
/// the last, the EMA model draws `count` samples with `sampler` in `steps` steps (x_0 clipped,
/// as the sample grids are drawn; a class-conditional run draws its classes in turn, unguided),
/// and `scorer` scores them against the real data (Fréchet distance, KID, precision, recall,
/// memorisation: `kiln_metrics::Evaluator`). Rank 0 alone evaluates; the other workers wait
/// at their next exchange.
///
/// The noise of evaluation `e` is seeded with (run seed, `e`'s epoch), so two runs with the
/// same seed are scored on the same noise.
#[derive(Clone, Copy)]
pub struct Evaluation<'a> {
    /// Epochs between two evaluations (at least 1).
    pub every_epochs: usize,
    /// Samples drawn per evaluation.
    pub count: usize,
    /// The sampler that draws them.
    pub sampler: SamplerName,
    /// Sampler steps per sample.
    pub steps: usize,
    /// What scores the samples.
    pub scorer: &'a dyn SampleScorer,
}

impl Evaluation<'_> {
    /// Refuses an evaluation that cannot happen: every 0 epochs, fewer than 2 samples (a
    /// covariance needs two), or 0 steps.
    pub fn validate(&self) -> Result<(), TrainError> {
        let refuse = |field: &str, problem: &str| {
            Err(TrainError::Config {
                field: format!("evaluation.{field}"),
                problem: problem.into(),
            })
        };
        if self.every_epochs == 0 {
            return refuse("every_epochs", "must be at least 1");
        }
        if self.count < 2 {
            return refuse(
                "count",
                "at least 2 samples are needed for their covariance",
            );
        }
        if self.steps == 0 {
            return refuse("steps", "must be at least 1");
        }
        Ok(())
    }
}

impl std::fmt::Debug for Evaluation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluation")
            .field("every_epochs", &self.every_epochs)
            .field("count", &self.count)
            .field("sampler", &self.sampler)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
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
            evaluation: None,
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
        /// Steps done when the event is sent: the log point that reports this step, the last
        /// step reported with it. A display's time per step is the time since
        /// [`TrainEvent::Started`] over `log_point` less the step it started from, not over
        /// `step` less it.
        log_point: u64,
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
    /// The EMA model's samples were scored ([`Evaluation`]) and the line appended to
    /// `metrics.csv`.
    Evaluated {
        /// The epoch just finished (1-based count).
        epoch: usize,
        /// The scores.
        quality: &'a Quality,
        /// Seconds spent drawing the samples.
        sampling_seconds: f64,
        /// Seconds spent scoring them.
        scoring_seconds: f64,
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
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// The Fréchet distance at each evaluation of the run as a picture (`metrics.png`, see
    /// [`crate::plot::metric_curve`]), written at the end of a run that evaluated.
    pub metrics_curve: Option<PathBuf>,
}
