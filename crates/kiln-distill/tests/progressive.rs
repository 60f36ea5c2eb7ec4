//! Progressive distillation against the exact denoiser of a Gaussian mixture: the perfect
//! students of every round reproduce the teacher's DDIM map exactly (an ε teacher's and a
//! rectified-flow teacher's), and a small network trained for one round learns most of what two
//! teacher steps do in one.

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kiln_distill::{DistillError, IdealStudent, PerTimestep, ProgressiveDistillation, Teacher};
use kiln_forward::{Prediction, standard_normal};
use kiln_sampler::{Ddim, Denoiser, FnDenoiser, GaussianMixture, Sampler, SamplerError};
use kiln_schedule::{NoiseSchedule, ScheduleError};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use common::{A, B, Student, ddim_on, flow_mixture, flow_schedule, mixture, rms, schedule};

mod common;

/// `steps` deterministic DDIM steps of `model` from `noise`, on the rounds' grid of `schedule`.
fn ddim<Bk: Backend>(
    schedule: &NoiseSchedule,
    model: &impl Denoiser<Bk, 2>,
    steps: usize,
    noise: Tensor<Bk, 2>,
) -> Vec<f32> {
    ddim_on(
        schedule,
        ProgressiveDistillation::sampler_config(),
        model,
        steps,
        noise,
    )
}

#[test]
fn the_students_grid_is_every_other_point_of_the_teachers() {
    let schedule = schedule();
    for steps in (1..=40).chain([50, 64, 100, 128, 250, 500]) {
        let round = ProgressiveDistillation::new(&schedule, steps).unwrap();
        let student =
            Ddim::new(ProgressiveDistillation::sampler_config(), &schedule, steps).unwrap();
        let teacher = Ddim::new(
            ProgressiveDistillation::sampler_config(),
            &schedule,
            2 * steps,
        )
        .unwrap();
        let sampled = |sampler: &Ddim| Sampler::<B, 2>::timesteps(sampler).to_vec();
        assert_eq!(
            round.student_timesteps(),
            sampled(&student),
            "{steps} steps"
        );
        assert_eq!(
            round.teacher_timesteps(),
            sampled(&teacher),
            "{steps} steps"
        );
        assert_eq!(round.student_steps(), steps);
    }
}

/// A perfect student of 2^k teacher steps in one is the teacher, to float precision (RMS
/// 7e-7 when written), for every round down to one step: the targets' algebra and the rounds'
/// grids agree.
#[test]
fn perfect_students_reproduce_the_teacher_in_every_round() {
    perfect_students_reproduce(&schedule(), &mixture());
}

/// The same for a rectified-flow teacher (velocity ε − x_0 on rectified flow's path, whose
/// first student timestep T − 1 is pure noise, ᾱ = 0): RMS 3.3e-7 when written.
#[test]
fn perfect_students_reproduce_a_rectified_flow_teacher() {
    perfect_students_reproduce(&flow_schedule(), &flow_mixture());
}

fn perfect_students_reproduce(schedule: &NoiseSchedule, teacher: &GaussianMixture) {
    let noise =
        standard_normal::<B, 2>([256, 2], &mut StdRng::seed_from_u64(1), &Default::default());
    let sixteen = ddim(schedule, teacher, 16, noise.clone());
    let round = |steps| ProgressiveDistillation::new(schedule, steps).unwrap();
    let eight = IdealStudent::new(round(8), PerTimestep(teacher.clone()));
    let four = IdealStudent::new(round(4), PerTimestep(eight.clone()));
    let two = IdealStudent::new(round(2), PerTimestep(four.clone()));
    let one = IdealStudent::new(round(1), PerTimestep(two.clone()));
    for (steps, samples) in [
        (8, ddim(schedule, &eight, 8, noise.clone())),
        (4, ddim(schedule, &four, 4, noise.clone())),
        (2, ddim(schedule, &two, 2, noise.clone())),
        (1, ddim(schedule, &one, 1, noise.clone())),
    ] {
        let distance = rms(&samples, &sixteen);
        println!("perfect student of {steps} steps against 16 teacher steps: {distance:.2e}");
        assert!(distance < 1e-5, "{steps} steps: {distance}");
    }
    // Fewer teacher steps are not the same map: the check can fail.
    assert!(rms(&ddim(schedule, teacher, 4, noise), &sixteen) > 1e-2);
}

/// One round, 8 teacher steps into 4, trained on the mixture's data (1,500 Adam steps of 512
/// points, a few seconds): the student's four steps land far nearer the teacher's eight than
/// four teacher steps do (RMS 0.021 against 0.27 when written).
#[test]
fn a_trained_student_does_two_teacher_steps_in_one() {
    let device = Default::default();
    let schedule = schedule();
    let round = ProgressiveDistillation::new(&schedule, 4).unwrap();
    let teacher = PerTimestep(mixture());
    let oracle = mixture();
    let mut student = Student::<A>::new(&device);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(2);
    let batch = 512;
    for iteration in 0..1500 {
        let clean = oracle.sample_data::<A>(batch, &mut rng, &device);
        let noise = standard_normal::<A, 2>([batch, 2], &mut rng, &device);
        let indices: Vec<usize> = (0..batch).map(|_| rng.random_range(0..4)).collect();
        let noisy = round.noisy(clean, noise, &indices).unwrap();
        let target = round
            .target(&teacher, noisy.clone(), &indices)
            .unwrap()
            .detach();
        let output = student.forward(noisy.clone(), &round.timesteps_of(&indices).unwrap());
        let loss = round
            .loss(output, Prediction::V, noisy, target, &indices)
            .unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        let rate = if iteration < 1000 { 3e-3 } else { 1e-3 };
        student = optimizer.step(rate, student, grads);
    }
    let trained: Student<B> = student.valid();
    let model = FnDenoiser::new(Prediction::V, |x: Tensor<B, 2>, t: f64| {
        let n = x.dims()[0];
        trained.forward(x, &vec![t; n])
    });
    let noise = standard_normal::<B, 2>([1024, 2], &mut StdRng::seed_from_u64(3), &device);
    let target = ddim(&schedule, &mixture(), 8, noise.clone());
    let distilled = rms(&ddim(&schedule, &model, 4, noise.clone()), &target);
    let naive = rms(&ddim(&schedule, &mixture(), 4, noise), &target);
    println!("4 steps against the teacher's 8: student {distilled:.4}, teacher {naive:.4}");
    assert!(
        distilled < 0.2 * naive,
        "student {distilled}, teacher {naive}"
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let schedule = schedule();
    assert_eq!(
        ProgressiveDistillation::new(&schedule, 0),
        Err(DistillError::Schedule(ScheduleError::ZeroSteps))
    );
    assert!(matches!(
        ProgressiveDistillation::new(&schedule, 501),
        Err(DistillError::Schedule(_))
    ));
    let round = ProgressiveDistillation::new(&schedule, 4).unwrap();
    assert_eq!(
        round.timesteps_of(&[4]),
        Err(DistillError::StepOutOfRange { index: 4, steps: 4 })
    );
    assert_eq!(
        round.student_index(500.0),
        Err(DistillError::OffGrid { timestep: 500.0 })
    );
    let x = Tensor::<B, 2>::zeros([3, 2], &Default::default());
    assert_eq!(
        round.noisy(x.clone(), x.clone(), &[0, 1]).unwrap_err(),
        DistillError::IndexCount {
            indices: 2,
            batch: 3
        }
    );
    // Noise of another shape, even one that would broadcast to the batch's.
    for noise in [[1, 2], [3, 4]] {
        let noise = Tensor::<B, 2>::zeros(noise, &Default::default());
        assert_eq!(
            round
                .noisy(x.clone(), noise.clone(), &[0, 1, 2])
                .unwrap_err(),
            DistillError::Sampler(SamplerError::ShapeMismatch {
                what: "noise",
                expected: vec![3, 2],
                found: noise.dims().to_vec(),
            })
        );
    }
    let shorter = x.clone().narrow(0, 0, 2);
    let loss = |noisy: Tensor<B, 2>, target| {
        round
            .loss(x.clone(), Prediction::Epsilon, noisy, target, &[0, 1, 2])
            .unwrap_err()
    };
    assert!(matches!(
        loss(x.clone(), shorter.clone()),
        DistillError::ShapeMismatch { .. }
    ));
    assert!(matches!(
        loss(shorter, x.clone()),
        DistillError::Sampler(SamplerError::ShapeMismatch {
            what: "noisy batch",
            ..
        })
    ));
    let off_grid =
        IdealStudent::new(round.clone(), PerTimestep(mixture())).denoise(x.clone(), 500.0);
    assert!(off_grid.unwrap_err().to_string().contains("500"));
    // An empty batch, and a teacher asked for more or fewer timesteps than samples.
    let empty = Tensor::<B, 2>::zeros([0, 2], &Default::default());
    assert_eq!(
        round.noisy(empty.clone(), empty, &[]).unwrap_err(),
        DistillError::IndexCount {
            indices: 0,
            batch: 0
        }
    );
    for timesteps in [&[10.0, 20.0][..], &[10.0; 4][..], &[][..]] {
        let result = PerTimestep(mixture()).predict(x.clone(), timesteps);
        assert!(
            matches!(
                result,
                Err(SamplerError::ShapeMismatch {
                    what: "timesteps",
                    ..
                })
            ),
            "{timesteps:?}: {result:?}"
        );
    }
    let nothing = Tensor::<B, 2>::zeros([0, 2], &Default::default());
    let result = PerTimestep(mixture()).predict(nothing, &[]);
    assert!(
        matches!(result, Err(SamplerError::OutOfRange { name: "batch", .. })),
        "{result:?}"
    );
}
