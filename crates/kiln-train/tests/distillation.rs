//! Distillation as a run, progressive, consistency and trajectory: the student starts as its teacher, a
//! stopped and resumed run ends with the weights of an uninterrupted one, its grids are drawn
//! with the student's sampler (which the run records for face_sample), and a teacher or
//! settings that do not fit are refused before training.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, Flex};
use kiln_pipeline::{NamedRun, SamplerName};
use kiln_schedule::TimestepSpacing;
use kiln_train::{
    Distillation, RunOptions, TrainConfig, TrainError, TrainEvent, TrainSummary, train,
};
use kiln_unet::UNetConfig;

mod common;
mod runs;

/// Trains `config` on the discs into `out`, stopping after `stop_after` steps.
fn run(
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    stop_after: Option<u64>,
) -> Result<TrainSummary, TrainError> {
    let name = out.file_name().unwrap().to_string_lossy();
    let data_dir = common::scratch("distillation", &format!("{name}-data"));
    runs::write_discs(&data_dir);
    let data = runs::load_discs(&data_dir);
    let _turn = common::my_turn();
    let stop = AtomicBool::new(false);
    let options = RunOptions {
        log_every: 1,
        ..RunOptions::new(out, resume, &stop)
    };
    train::<Autodiff<Flex>>(config, &data, &[Default::default()], options, |event| {
        if let TrainEvent::Step { step, .. } = event
            && Some(step + 1) == stop_after
        {
            stop.store(true, Ordering::SeqCst);
        }
    })
}

/// A distillation of `teacher` by `method` whose student samples in 2 steps, v-prediction.
fn distilling(teacher: &Path, epochs: usize, method: &str) -> TrainConfig {
    runs::config(epochs)
        .with_prediction("v_prediction".into())
        .with_distillation(Some(
            Distillation::new(teacher.display().to_string(), 2).with_method(Some(method.into())),
        ))
}

/// A round of progressive distillation.
fn round(teacher: &Path, epochs: usize) -> TrainConfig {
    distilling(teacher, epochs, "progressive")
}

#[test]
fn a_round_starts_from_its_teacher_and_resumes_exactly() {
    starts_from_its_teacher_and_resumes_exactly("progressive");
}

#[test]
fn a_consistency_distillation_starts_from_its_teacher_and_resumes_exactly() {
    starts_from_its_teacher_and_resumes_exactly("consistency");
}

#[test]
fn a_trajectory_distillation_starts_from_its_teacher_and_resumes_exactly() {
    starts_from_its_teacher_and_resumes_exactly("trajectory");
}

fn starts_from_its_teacher_and_resumes_exactly(method: &str) {
    let round = |teacher: &Path, epochs: usize| distilling(teacher, epochs, method);
    let scratch = |name: &str| common::scratch("distillation", &format!("{method}-{name}"));
    let teacher = scratch("teacher");
    run(&runs::config(2), &teacher, false, None).unwrap();
    let [_, teacher_ema] = runs::final_weights(&teacher);

    // With a learning rate of 1e-30 the student is still its teacher after training.
    let frozen = scratch("frozen");
    run(
        &round(&teacher, 1).with_learning_rate(1e-30),
        &frozen,
        false,
        None,
    )
    .unwrap();
    let [student, _] = runs::final_weights(&frozen);
    assert!(runs::max_difference(&student, &teacher_ema) < 1e-12);

    // Training moves it; stopped after step 3 and resumed, it ends where a straight run does.
    let straight = scratch("straight");
    let summary = run(&round(&teacher, 2), &straight, false, None).unwrap();
    assert_eq!(summary.steps, 8);
    assert!(straight.join("samples/epoch-0002.png").is_file());
    let [trained, ema] = runs::final_weights(&straight);
    assert!(runs::max_difference(&trained, &teacher_ema) > 0.0);
    let split = scratch("split");
    assert!(
        run(&round(&teacher, 2), &split, false, Some(3))
            .unwrap()
            .interrupted
    );
    run(&round(&teacher, 2), &split, true, None).unwrap();
    let [trained_again, ema_again] = runs::final_weights(&split);
    assert_eq!(runs::max_difference(&trained, &trained_again), 0.0);
    assert_eq!(runs::max_difference(&ema, &ema_again), 0.0);
}

#[test]
fn a_student_samples_with_its_own_sampler_on_its_own_grid() {
    let teacher = Path::new("teacher");
    let ordinary = runs::config(1).with_sample_steps(7);
    assert_eq!(ordinary.student_run(), None);
    assert_eq!(
        ordinary.sample_run(),
        NamedRun::new(SamplerName::Ddim, 7, true)
    );
    let progressive = round(teacher, 1);
    assert_eq!(
        progressive.sample_run(),
        NamedRun {
            spacing: Some(TimestepSpacing::Trailing),
            ..NamedRun::new(SamplerName::Ddim, 2, true)
        }
    );
    let consistency = distilling(teacher, 1, "consistency");
    let tcd = |grid| NamedRun {
        original_steps: Some(grid),
        gamma: Some(0.0),
        ..NamedRun::new(SamplerName::Tcd, 2, true)
    };
    assert_eq!(consistency.student_run(), Some(tcd(10)));
    let mut coarse = consistency.clone();
    coarse.distillation.as_mut().unwrap().teacher_steps = Some(4);
    assert_eq!(coarse.sample_run(), tcd(4));
    let trajectory = distilling(teacher, 1, "trajectory");
    assert_eq!(trajectory.student_run(), Some(tcd(10)));
}

#[test]
fn a_teacher_that_does_not_fit_is_refused_before_training() {
    let teacher = common::scratch("distillation", "small-teacher");
    run(&runs::config(1), &teacher, false, None).unwrap();
    let wider = UNetConfig {
        block_out_channels: vec![16, 32],
        ..UNetConfig::tiny(1)
    };
    let student = common::scratch("distillation", "wider-student");
    let config = TrainConfig {
        unet: wider,
        ..round(&teacher, 1)
    };
    let error = run(&config, &student, false, None).unwrap_err();
    assert!(matches!(error, TrainError::Teacher { .. }), "{error}");

    let too_many = round(&teacher, 1)
        .with_distillation(Some(Distillation::new(teacher.display().to_string(), 600)));
    let error = run(&too_many, &student, false, None).unwrap_err();
    assert!(
        matches!(&error, TrainError::Config { field, .. } if field == "distillation.student_steps"),
        "{error}"
    );
    // A consistency model samples in at most the M steps of its grid (10 by default).
    let too_many = distilling(&teacher, 1, "consistency").with_distillation(Some(
        Distillation::new(teacher.display().to_string(), 11)
            .with_method(Some("consistency".into())),
    ));
    let error = run(&too_many, &student, false, None).unwrap_err();
    assert!(
        matches!(&error, TrainError::Config { field, .. } if field == "distillation.student_steps"),
        "{error}"
    );
    let unknown = distilling(&teacher, 1, "adversarial");
    let error = run(&unknown, &student, false, None).unwrap_err();
    assert!(
        matches!(&error, TrainError::Config { field, .. } if field == "distillation.method"),
        "{error}"
    );
}
