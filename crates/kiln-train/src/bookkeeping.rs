//! What a run writes besides the weights' updates: the loss log, sample grids, checkpoints and
//! the run's summary, into the run folder ([`RunFolder`]). Only the first process of a run
//! (rank 0) keeps these books; the EMA they sample and save is updated by the step loop.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use kiln_forward::Prediction;
use kiln_pipeline::{Condition, Generation, RunFolder, SamplerName, generate, pixels};
use kiln_sampler::GuidanceConfig;
use kiln_schedule::NoiseSchedule;
use kiln_unet::UNet;

use crate::checkpoint;
use crate::options::{TrainEvent, TrainSummary};
use crate::pending::LoggedStep;
use crate::plot;
use crate::run::Run;
use crate::state::TrainState;
use crate::{TrainConfig, TrainError};

/// Rank 0's books: `loss.csv`, sample grids and checkpoints in the run folder.
pub(crate) struct Bookkeeping<'a> {
    run: &'a Run<'a>,
    folder: RunFolder,
    log: LossLog,
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
    /// The books of `run` in `out`; creates `checkpoints/` and `samples/` and opens
    /// `loss.csv`.
    pub(crate) fn open(run: &'a Run<'a>, out: &Path) -> Result<Self, TrainError> {
        let folder = RunFolder::new(out);
        for path in [folder.checkpoints(), folder.samples()] {
            fs::create_dir_all(&path).map_err(|error| TrainError::io(&path, error))?;
        }
        Ok(Self {
            run,
            log: LossLog::open(&folder.loss_log(), run.start)?,
            folder,
            grids: Vec::new(),
            checkpoint: None,
        })
    }

    /// Writes a step's line into `loss.csv`.
    pub(crate) fn log(&mut self, logged: &LoggedStep) -> Result<(), TrainError> {
        self.log.append(logged)
    }

    /// After optimizer step `step` (0-based), whose loss has been logged if it ends an epoch
    /// or the run, and whose EMA update is done: a grid from the EMA model at the end of every
    /// `sample_every_epochs`-th epoch and of the last; a checkpoint of `trained` at the end of
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
        if finished_epoch && (epochs_done.is_multiple_of(config.sample_every_epochs) || last) {
            let path = self.folder.sample_grid(epochs_done);
            write_grid(
                config,
                trained.ema,
                run.prediction,
                run.schedule,
                device,
                &path,
            )?;
            on_event(TrainEvent::Sampled {
                epoch: epochs_done,
                path: &path,
            });
            self.grids.push(path);
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

    /// Flushes the log and, after a whole run, writes `progress.png` and `loss.png`; the
    /// summary of a run that ended after `steps` steps.
    pub(crate) fn finish(
        mut self,
        steps: u64,
        interrupted: bool,
    ) -> Result<TrainSummary, TrainError> {
        self.log.flush()?;
        let whole = !interrupted && steps == self.run.total_steps;
        let (montage, loss_curve) = if whole {
            (
                write_montage(&self.folder.samples(), &self.folder.progress())?,
                self.log.plot(&self.folder.loss_plot())?,
            )
        } else {
            (None, None)
        };
        Ok(TrainSummary {
            steps,
            interrupted,
            checkpoint: self.checkpoint,
            grids: self.grids,
            montage,
            loss_curve,
        })
    }
}

/// Samples a grid from the EMA model with DDIM (x_0 kept in [−1, 1]) and the run's seed.
///
/// DDIM rather than a multistep solver: early in training the model's errors are large, and
/// DPM-Solver++ and UniPC amplify them into speckle where first-order DDIM with the same 20
/// steps gives clean faces (docs/training.md).
fn write_grid<B: Backend>(
    config: &TrainConfig,
    model: &UNet<B>,
    prediction: Prediction,
    schedule: &NoiseSchedule,
    device: &B::Device,
    path: &Path,
) -> Result<(), TrainError> {
    // A class-conditional run shows its classes in turn, sampled conditionally (w = 1).
    let condition = match &config.classes {
        None => Condition::Unconditional,
        Some(classes) => Condition::Classes {
            labels: (0..config.sample_count)
                .map(|i| i % classes.names.len())
                .collect(),
            guidance: GuidanceConfig::new(1.0),
        },
    };
    let generation = Generation {
        sampler: SamplerName::Ddim,
        steps: config.sample_steps,
        count: config.sample_count,
        image_size: config.image_size,
        seed: config.seed,
        clip: true,
        condition,
    };
    let images = generate(model, prediction, schedule, generation, device, |_| {})?;
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

/// `loss.csv`: one line per optimizer step (`step,epoch,loss,learning_rate`).
struct LossLog {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl LossLog {
    /// Opens the log for a run starting at step `start`, keeping the lines of earlier steps
    /// (a resumed run drops those written after its checkpoint).
    fn open(path: &Path, start: u64) -> Result<Self, TrainError> {
        let io = |error: std::io::Error| TrainError::io(path, error);
        let mut kept = vec!["step,epoch,loss,learning_rate".to_string()];
        if start > 0 && path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            for line in reader.lines().skip(1) {
                let line = line.map_err(io)?;
                let step: Option<u64> = line.split(',').next().and_then(|s| s.parse().ok());
                if step.is_some_and(|step| step <= start) {
                    kept.push(line);
                }
            }
        }
        let mut writer = BufWriter::new(File::create(path).map_err(io)?);
        for line in &kept {
            writeln!(writer, "{line}").map_err(io)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Logs a step (its 0-based number written as the count of steps done).
    fn append(&mut self, logged: &LoggedStep) -> Result<(), TrainError> {
        let LoggedStep {
            step,
            epoch,
            loss,
            learning_rate,
        } = logged;
        writeln!(self.writer, "{},{epoch},{loss},{learning_rate}", step + 1)
            .map_err(|error| TrainError::io(&self.path, error))
    }

    /// Draws every loss in the log into `path`; `None` if there was nothing to draw.
    fn plot(&self, path: &Path) -> Result<Option<PathBuf>, TrainError> {
        let text =
            fs::read_to_string(&self.path).map_err(|error| TrainError::io(&self.path, error))?;
        let losses: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').nth(2)?.parse().ok())
            .collect();
        let Some(image) = plot::loss_curve(&losses, 800, 300) else {
            return Ok(None);
        };
        image
            .save(path)
            .map_err(|error| TrainError::io(path, error))?;
        Ok(Some(path.to_path_buf()))
    }

    fn flush(&mut self) -> Result<(), TrainError> {
        self.writer
            .flush()
            .map_err(|error| TrainError::io(&self.path, error))
    }
}
