//! What a run writes besides the weights' updates: the loss log, sample grids, evaluations,
//! checkpoints and the run's summary, into the run folder ([`RunFolder`]). Only the first process of a run
//! (rank 0) keeps these books; the EMA they sample and save is updated by the step loop.

use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use kiln_pipeline::{Generation, RunFolder, pixels};
use kiln_unet::UNet;

use crate::checkpoint;
use crate::csv_log::CsvLog;
use crate::evaluation::Evaluations;
use crate::options::{RunOptions, TrainEvent, TrainSummary};
use crate::pending::LoggedStep;
use crate::plot;
use crate::run::Run;
use crate::sampling::{Sampled, sample_condition};
use crate::state::TrainState;
use crate::{TrainConfig, TrainError};

/// The header of `loss.csv`: one line per optimizer step.
const LOSS_HEADER: &str = "step,epoch,loss,learning_rate";

/// Rank 0's books: `loss.csv`, sample grids, `metrics.csv` and checkpoints in the run folder.
pub(crate) struct Bookkeeping<'a> {
    run: &'a Run<'a>,
    folder: RunFolder,
    log: CsvLog,
    evaluations: Option<Evaluations<'a>>,
    grids: Vec<PathBuf>,
    checkpoint: Option<PathBuf>,
}

/// What a checkpoint saves after a step: the trained weights, the optimizer and the EMA.
pub(crate) struct Trained<'w, B: AutodiffBackend, O> {
    pub model: &'w UNet<B>,
    pub optimizer: &'w O,
    pub ema: &'w UNet<B::InnerBackend>,
}

impl<'a> Bookkeeping<'a> {
    /// The books of `run` in `options.out`; creates `checkpoints/` and `samples/` and opens
    /// `loss.csv` (and `metrics.csv` for a run with an evaluation).
    pub(crate) fn open(run: &'a Run<'a>, options: &RunOptions<'a>) -> Result<Self, TrainError> {
        let folder = RunFolder::new(options.out);
        for path in [folder.checkpoints(), folder.samples()] {
            fs::create_dir_all(&path).map_err(|error| TrainError::io(&path, error))?;
        }
        Ok(Self {
            run,
            log: CsvLog::open(&folder.loss_log(), LOSS_HEADER, run.start)?,
            evaluations: options
                .evaluation
                .map(|evaluation| Evaluations::open(evaluation, &folder, run.start))
                .transpose()?,
            folder,
            grids: Vec::new(),
            checkpoint: None,
        })
    }

    /// Writes a step's line into `loss.csv` (its 0-based number written as the count of
    /// steps done).
    pub(crate) fn log(&mut self, logged: &LoggedStep) -> Result<(), TrainError> {
        let LoggedStep {
            step,
            epoch,
            loss,
            learning_rate,
        } = logged;
        self.log
            .append(&format!("{},{epoch},{loss},{learning_rate}", step + 1))
    }

    /// After optimizer step `step` (0-based), whose loss has been logged if it ends an epoch
    /// or the run, and whose EMA update is done: a grid from the EMA model at the end of every
    /// `sample_every_epochs`-th epoch and of the last; an evaluation of the EMA model where
    /// one is due; a checkpoint of `trained` at the end of
    /// every `checkpoint_every_epochs`-th epoch, of the last, and on a `stop` request.
    pub(crate) fn after_step<B: AutodiffBackend, O: Optimizer<UNet<B>, B>>(
        &mut self,
        step: u64,
        stop: bool,
        trained: Trained<'_, B, O>,
        device: &B::Device,
        on_event: &mut impl FnMut(TrainEvent<'_>),
    ) -> Result<(), TrainError> {
        let (run, config) = (self.run, self.run.config);
        let finished_epoch = (step + 1).is_multiple_of(run.steps_per_epoch);
        let epochs_done = ((step + 1) / run.steps_per_epoch) as usize;
        let last = step + 1 == run.total_steps;
        let sampled = Sampled {
            model: trained.ema,
            prediction: run.prediction,
            schedule: run.schedule,
            device,
        };
        if finished_epoch && (epochs_done.is_multiple_of(config.sample_every_epochs) || last) {
            let path = self.folder.sample_grid(epochs_done);
            write_grid(config, &sampled, &path)?;
            on_event(TrainEvent::Sampled {
                epoch: epochs_done,
                path: &path,
            });
            self.grids.push(path);
        }
        if let Some(evaluations) = &mut self.evaluations
            && finished_epoch
            && evaluations.due(epochs_done, last)
        {
            evaluations.evaluate(config, &sampled, step + 1, epochs_done, on_event)?;
        }
        if stop
            || (finished_epoch
                && (epochs_done.is_multiple_of(config.checkpoint_every_epochs) || last))
        {
            self.log.flush()?;
            let state = TrainState {
                config: config.clone(),
                step: step + 1,
                images: run.data.len(),
            };
            let path = checkpoint::save(
                &self.folder,
                &state,
                trained.model,
                trained.optimizer,
                trained.ema,
                config.keep_checkpoints,
            )?;
            on_event(TrainEvent::Saved {
                step: step + 1,
                path: &path,
            });
            self.checkpoint = Some(path);
        }
        Ok(())
    }

    /// Flushes the logs and, after a whole run, writes `progress.png`, `loss.png` and
    /// `metrics.png`; the summary of a run that ended after `steps` steps.
    pub(crate) fn finish(
        mut self,
        steps: u64,
        interrupted: bool,
    ) -> Result<TrainSummary, TrainError> {
        self.log.flush()?;
        let whole = !interrupted && steps == self.run.total_steps;
        if let Some(evaluations) = &mut self.evaluations {
            evaluations.flush()?;
        }
        let (montage, loss_curve, metrics_curve) = if whole {
            let losses = self.log.read_columns([2])?;
            let curve = plot::loss_curve(
                &losses.iter().map(|[loss]| *loss).collect::<Vec<_>>(),
                800,
                300,
            );
            let metrics_curve = match &mut self.evaluations {
                Some(evaluations) => evaluations.plot(&self.folder.metrics_plot())?,
                None => None,
            };
            (
                write_montage(&self.folder.samples(), &self.folder.progress())?,
                plot::save(curve, &self.folder.loss_plot())?,
                metrics_curve,
            )
        } else {
            (None, None, None)
        };
        Ok(TrainSummary {
            steps,
            interrupted,
            checkpoint: self.checkpoint,
            grids: self.grids,
            montage,
            loss_curve,
            metrics_curve,
        })
    }
}

/// Samples a grid from the EMA model with DDIM (x_0 kept in [−1, 1]) and the run's seed; a
/// distillation's student with its own sampler, in its own steps on its grid.
///
/// DDIM rather than a multistep solver: early in training the model's errors are large, and
/// DPM-Solver++ and UniPC amplify them into speckle where first-order DDIM with the same 20
/// steps gives clean faces (docs/training.md).
fn write_grid<B: Backend>(
    config: &TrainConfig,
    sampled: &Sampled<'_, B>,
    path: &Path,
) -> Result<(), TrainError> {
    let condition = sample_condition(config, 0..config.sample_count);
    let generation = Generation {
        seed: config.seed,
        condition,
        ..Generation::with_run(config.sample_run(), config.sample_count, config.image_size)
    };
    let images = sampled.generate(generation)?;
    let columns = (config.sample_count as f64).sqrt().ceil() as usize;
    pixels::save(&pixels::grid(images, columns, 2)?, path)?;
    Ok(())
}

/// Lays every `epoch-*.png` grid in `samples` side by side (up to 8 per row) into `path`.
fn write_montage(samples: &Path, path: &Path) -> Result<Option<PathBuf>, TrainError> {
    let mut grids: Vec<PathBuf> = fs::read_dir(samples)
        .map_err(|error| TrainError::io(samples, error))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("epoch-") && name.ends_with(".png"))
        })
        .collect();
    if grids.is_empty() {
        return Ok(None);
    }
    grids.sort();
    let images = grids
        .iter()
        .map(|grid| pixels::open(grid))
        .collect::<Result<Vec<_>, _>>()?;
    pixels::save(&pixels::montage(&images, 8, 8)?, path)?;
    Ok(Some(path.to_path_buf()))
}
