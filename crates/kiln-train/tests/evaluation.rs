//! Evaluations during a run: `metrics.csv` gets a line at every `every_epochs`-th epoch and at
//! the last, the events carry the same scores, the scores depend only on the run's seed (a
//! stopped and resumed run logs the same file as an uninterrupted one), evaluating leaves the
//! training untouched, and an evaluation that cannot happen is refused before training starts.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, Flex};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Tensor, backend::Backend};
use kiln_metrics::{Evaluator, FeatureExtractor, MetricsError, QualityConfig};
use kiln_pipeline::SamplerName;
use kiln_train::{Evaluation, RunOptions, TrainError, TrainEvent, TrainSummary, train};

mod common;
mod runs;

/// Each image's means over its four 8×8 quarters: features enough to tell the discs apart.
struct Quarters;

impl<B: Backend> FeatureExtractor<B> for Quarters {
    fn dims(&self) -> usize {
        4
    }

    fn features(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError> {
        Ok(adaptive_avg_pool2d(images, [2, 2]).flatten(1, 3))
    }
}

/// The discs' features as the evaluator's real data (all of them as training images, the
/// last 8 again as held-out ones).
fn evaluator(data: &kiln_train::ImageFolder) -> Evaluator<Flex, Quarters> {
    let device = Default::default();
    let unit = |indices: Vec<usize>| {
        let flips = vec![false; indices.len()];
        (data.batch::<Flex>(&indices, &flips, &device).unwrap() + 1.0) / 2.0
    };
    let training = vec![unit((0..data.len()).collect())];
    let held_out = Some(vec![unit((data.len() - 8..data.len()).collect())]);
    Evaluator::new(Quarters, training, held_out, QualityConfig::default()).unwrap()
}

/// Trains 3 epochs (12 steps) into `out`, with an evaluation of `count` samples every
/// `every_epochs` epochs when `evaluate` is `Some((every_epochs, count))`, stopping after
/// `stop_after` steps; the summary and the Fréchet distances reported.
fn run(
    test: &str,
    out: &Path,
    resume: bool,
    stop_after: Option<u64>,
    evaluate: Option<(usize, usize)>,
) -> Result<(TrainSummary, Vec<(usize, f64)>), TrainError> {
    let data_dir = common::scratch("evaluation", &format!("{test}-data"));
    runs::write_discs(&data_dir);
    let data = runs::load_discs(&data_dir);
    let evaluator = evaluator(&data);
    let _turn = common::my_turn();
    let stop = AtomicBool::new(false);
    let options = RunOptions {
        log_every: 1,
        evaluation: evaluate.map(|(every_epochs, count)| Evaluation {
            every_epochs,
            count,
            sampler: SamplerName::Ddim,
            steps: 3,
            scorer: &evaluator,
        }),
        ..RunOptions::new(out, resume, &stop)
    };
    let mut reported = Vec::new();
    let summary = train::<Autodiff<Flex>>(
        &runs::config(3),
        &data,
        &[Default::default()],
        options,
        |event| match event {
            TrainEvent::Step { step, .. } if Some(step + 1) == stop_after => {
                stop.store(true, Ordering::SeqCst);
            }
            TrainEvent::Evaluated { epoch, quality, .. } => {
                reported.push((epoch, quality.frechet));
            }
            _ => {}
        },
    )?;
    Ok((summary, reported))
}

/// The lines of `metrics.csv` in `out` without the seconds (the last two columns).
fn scores(out: &Path) -> Vec<String> {
    let csv = fs::read_to_string(out.join("metrics.csv")).unwrap();
    csv.lines()
        .map(|line| line.rsplitn(3, ',').nth(2).unwrap().to_string())
        .collect()
}

#[test]
fn every_second_epoch_and_the_last_are_scored_the_same_when_resumed() {
    let straight = common::scratch("evaluation", "straight");
    let (summary, reported) = run("straight", &straight, false, None, Some((2, 6))).unwrap();
    let lines = scores(&straight);
    assert_eq!(
        lines[0],
        "step,epoch,frechet,kid,kid_std,precision,recall,memorisation"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    let fields: Vec<Vec<f64>> = lines[1..]
        .iter()
        .map(|line| {
            line.split(',')
                .map(|field| field.parse().unwrap())
                .collect()
        })
        .collect();
    assert_eq!((fields[0][0], fields[0][1]), (8.0, 2.0));
    assert_eq!((fields[1][0], fields[1][1]), (12.0, 3.0));
    for line in &fields {
        assert!(line[2] > 0.0 && line[2].is_finite(), "FD {}", line[2]);
        // Precision, recall and the memorisation rate are shares.
        assert!(line[5..].iter().all(|share| (0.0..=1.0).contains(share)));
    }
    let logged: Vec<(usize, f64)> = fields.iter().map(|f| (f[1] as usize, f[2])).collect();
    assert_eq!(reported, logged);
    assert_eq!(summary.metrics_curve, Some(straight.join("metrics.png")));
    assert!(straight.join("metrics.png").is_file());

    // Stopped after step 5 (before the first evaluation), then resumed: the same scores.
    let split = common::scratch("evaluation", "split");
    let (first, reported) = run("split", &split, false, Some(5), Some((2, 6))).unwrap();
    assert!(first.interrupted && reported.is_empty());
    assert_eq!(scores(&split).len(), 1);
    run("split", &split, true, None, Some((2, 6))).unwrap();
    assert_eq!(scores(&split), lines);

    // The same run without evaluations trains the same weights.
    let plain = common::scratch("evaluation", "plain");
    let (summary, _) = run("plain", &plain, false, None, None).unwrap();
    assert_eq!(summary.metrics_curve, None);
    assert!(!plain.join("metrics.csv").exists());
    let [trained, ema] = runs::final_weights(&plain);
    let [evaluated_trained, evaluated_ema] = runs::final_weights(&straight);
    assert_eq!(runs::max_difference(&trained, &evaluated_trained), 0.0);
    assert_eq!(runs::max_difference(&ema, &evaluated_ema), 0.0);
}

#[test]
fn an_evaluation_that_cannot_happen_is_refused_before_training() {
    let out = common::scratch("evaluation", "refused");
    for (every_epochs, count, field) in [(0, 6, "every_epochs"), (1, 1, "count")] {
        let Err(error) = run("refused", &out, false, None, Some((every_epochs, count))) else {
            panic!("evaluation every {every_epochs} epochs of {count} samples was accepted");
        };
        assert!(error.to_string().contains(field), "{error}");
    }
    assert!(!out.join("checkpoints").exists());
}
