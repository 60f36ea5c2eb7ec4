//! Scoring the EMA model's samples during a run ([`Evaluation`]) into `metrics.csv`, and its
//! curve `metrics.png`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kiln_kernels::mix;
use kiln_pipeline::{Generation, NamedRun, RunFolder};

use crate::csv_log::CsvLog;
use crate::options::{Evaluation, TrainEvent};
use crate::plot;
use crate::sampling::{Sampled, sample_condition};
use crate::{TrainConfig, TrainError};

/// The header of `metrics.csv`: the step and epoch evaluated, the scores (memorisation empty
/// without held-out data) and the seconds spent drawing and scoring.
const METRICS_HEADER: &str = "step,epoch,frechet,kid,kid_std,precision,recall,memorisation,\
                              sampling_seconds,scoring_seconds";
/// The column of the Fréchet distance, which `metrics.png` draws.
const FRECHET_COLUMN: usize = 2;
/// Images drawn at once: an evaluation of many samples is drawn in batches of this many, so
/// its memory stays that of a large sample grid.
const SAMPLING_BATCH: usize = 250;
/// Separates the evaluations' noise from the sample grids' and the steps' seeds.
const EVALUATION_STREAM: u64 = 0x6576_616c_7561_7465;

/// The evaluations of a run and their log.
pub(crate) struct Evaluations<'a> {
    evaluation: Evaluation<'a>,
    log: CsvLog,
}

impl<'a> Evaluations<'a> {
    /// The evaluations of a run starting at step `start`, logged into `folder`'s
    /// `metrics.csv`.
    pub(crate) fn open(
        evaluation: Evaluation<'a>,
        folder: &RunFolder,
        start: u64,
    ) -> Result<Self, TrainError> {
        Ok(Self {
            evaluation,
            log: CsvLog::open(&folder.metrics_log(), METRICS_HEADER, start)?,
        })
    }

    /// Whether the end of epoch `epochs_done` (1-based) is evaluated: every
    /// `every_epochs`-th, and the last.
    pub(crate) fn due(&self, epochs_done: usize, last: bool) -> bool {
        last || epochs_done.is_multiple_of(self.evaluation.every_epochs)
    }

    /// Draws the evaluation's samples from `sampled`, scores them, logs the line of optimizer
    /// step `step` (steps done) at the end of epoch `epoch`, and reports it.
    pub(crate) fn evaluate<B: Backend>(
        &mut self,
        config: &TrainConfig,
        sampled: &Sampled<'_, B>,
        step: u64,
        epoch: usize,
        on_event: &mut impl FnMut(TrainEvent<'_>),
    ) -> Result<(), TrainError> {
        let Evaluation {
            count,
            sampler,
            steps,
            scorer,
            ..
        } = self.evaluation;
        let began = Instant::now();
        let seed = mix(config.seed ^ EVALUATION_STREAM, epoch as u64);
        let mut batches = Vec::new();
        for (index, first) in (0..count).step_by(SAMPLING_BATCH).enumerate() {
            let size = SAMPLING_BATCH.min(count - first);
            let run = NamedRun {
                sampler,
                steps,
                ..config.sample_run()
            };
            let generation = Generation {
                seed: mix(seed, index as u64),
                condition: sample_condition(config, first..first + size),
                ..Generation::with_run(run, size, config.image_size)
            };
            let images = sampled.generate(generation)?;
            batches.push(((images + 1.0) / 2.0).clamp(0.0, 1.0));
        }
        let images = Tensor::cat(batches, 0).into_data();
        let sampling_seconds = began.elapsed().as_secs_f64();
        let began = Instant::now();
        let quality = scorer.score_data(images)?;
        let scoring_seconds = began.elapsed().as_secs_f64();
        let memorisation = quality
            .memorisation
            .map_or(String::new(), |memorisation| memorisation.rate.to_string());
        let pr = quality.precision_recall;
        self.log.append(&format!(
            "{step},{epoch},{},{},{},{},{},{memorisation},{sampling_seconds:.3},{scoring_seconds:.3}",
            quality.frechet, quality.kid.mean, quality.kid.std, pr.precision, pr.recall,
        ))?;
        on_event(TrainEvent::Evaluated {
            epoch,
            quality: &quality,
            sampling_seconds,
            scoring_seconds,
        });
        Ok(())
    }

    /// Writes what is logged to `metrics.csv`.
    pub(crate) fn flush(&mut self) -> Result<(), TrainError> {
        self.log.flush()
    }

    /// Draws the Fréchet distance of every logged evaluation over its epoch into `path`;
    /// `None` if there is nothing to draw.
    pub(crate) fn plot(&mut self, path: &Path) -> Result<Option<PathBuf>, TrainError> {
        let rows = self.log.read_columns([1, FRECHET_COLUMN])?;
        let points: Vec<(f64, f64)> = rows.iter().map(|&[epoch, fd]| (epoch, fd)).collect();
        plot::save(plot::metric_curve(&points, 800, 300), path)
    }
}
