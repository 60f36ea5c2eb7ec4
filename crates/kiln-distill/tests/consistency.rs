//! Consistency distillation against the exact denoiser of a Gaussian mixture: the ideal
//! consistency model is the teacher's DDIM map down the grid and has zero loss, and a small
//! network trained by consistency distillation lands in one step near that map.

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use kiln_distill::{ConsistencyDistillation, DistillError, IdealConsistency, PerTimestep, Teacher};
use kiln_forward::{Prediction, standard_normal};
use kiln_sampler::{
    ConsistencyScalings, DdimConfig, Denoiser, FnDenoiser, Lcm, SampleClipping, Sampler,
    SamplerError, sample,
};
use kiln_schedule::{GridEnd, TimestepGrid, TimestepSpacing};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use common::{A, B, Student, ddim_with, host, mixture, rms, schedule};

mod common;

/// The grid's steps in these tests.
const STEPS: usize = 10;

fn distillation(steps: usize) -> ConsistencyDistillation {
    ConsistencyDistillation::new(&schedule(), steps, ConsistencyScalings::default()).unwrap()
}

/// DDIM down the distillation's grid (`trailing`: k·T/M − 1) and on to t = 0: the teacher's
/// map that a consistency model learns.
fn teacher_map() -> DdimConfig {
    DdimConfig {
        eta: 0.0,
        clipping: SampleClipping::thresholding_only(None),
        set_alpha_to_one: false,
        grid: TimestepGrid::new(TimestepSpacing::Trailing, GridEnd::AtLastStep),
    }
}

/// `steps` consistency-sampling steps of `model` from `noise`.
fn consistency_sample(
    distillation: &ConsistencyDistillation,
    model: &impl Denoiser<B, 2>,
    steps: usize,
    noise: Tensor<B, 2>,
) -> Vec<f32> {
    let mut sampler = Lcm::new(distillation.sampler_config(), &schedule(), steps).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    host(sample(&mut sampler, model, noise, &mut rng, |_| {}).unwrap())
}

#[test]
fn the_grid_is_the_consistency_samplers_and_ends_at_zero() {
    for steps in [1, 2, 10, 50, 333, 1000] {
        let distillation = distillation(steps);
        let sampler = Lcm::new(distillation.sampler_config(), &schedule(), steps).unwrap();
        assert_eq!(
            distillation.timesteps(),
            Sampler::<B, 2>::timesteps(&sampler),
            "{steps} steps"
        );
        assert_eq!(distillation.teacher_steps(), steps);
        assert_eq!(
            distillation.previous_timesteps_of(&[steps - 1]).unwrap(),
            [0.0]
        );
        if steps > 1 {
            assert_eq!(
                distillation.previous_timesteps_of(&[0]).unwrap(),
                [distillation.timesteps()[1]]
            );
        }
    }
}

/// The ideal consistency model's one step from t = T − 1 is the teacher's M DDIM steps (RMS
/// 3.5e-7 when written), and its distillation loss is zero at every grid point (0 in f32),
/// where the diffusion model itself, read as a consistency model, is far from consistent
/// (7.8e-3).
#[test]
fn the_ideal_consistency_model_is_the_teachers_map_with_zero_loss() {
    let distillation = distillation(STEPS);
    let teacher = PerTimestep(mixture());
    let ideal = IdealConsistency::new(distillation.clone(), teacher.clone());
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64(1);
    let noise = standard_normal::<B, 2>([256, 2], &mut rng, &device);

    let one_step = consistency_sample(&distillation, &ideal, 1, noise.clone());
    let map = ddim_with(teacher_map(), &mixture(), STEPS, noise.clone());
    let distance = rms(&one_step, &map);
    println!("one step of the ideal model against {STEPS} teacher DDIM steps: {distance:.1e}");
    assert!(distance < 1e-5, "{distance}");

    let indices: Vec<usize> = (0..256).map(|i| i % STEPS).collect();
    let clean = mixture().sample_data::<B>(256, &mut rng, &device);
    let noisy = distillation.noisy(clean, noise, &indices).unwrap();
    let previous = distillation
        .teacher_step(&teacher, noisy.clone(), &indices)
        .unwrap();
    let loss_of = |model: &dyn Teacher<B, 2>| -> f32 {
        let at = distillation.timesteps_of(&indices).unwrap();
        let below = distillation.previous_timesteps_of(&indices).unwrap();
        let answers = distillation.consistency("the student", model, noisy.clone(), &at);
        let targets = distillation.consistency("the target", model, previous.clone(), &below);
        distillation
            .loss(answers.unwrap(), targets.unwrap(), &indices)
            .unwrap()
            .into_scalar()
    };
    let ideal_loss = loss_of(&PerTimestep(ideal));
    let diffusion_loss = loss_of(&teacher);
    println!(
        "loss: ideal consistency model {ideal_loss:.1e}, diffusion model {diffusion_loss:.1e}"
    );
    assert!(ideal_loss < 1e-10, "{ideal_loss}");
    assert!(diffusion_loss > 1e-3, "{diffusion_loss}");
}

/// A small network trained as a diffusion model (1,000 Adam steps of 512 points), then
/// distilled on a grid of 10 (3,000 steps; seconds in all): one consistency step lands at RMS
/// 0.20 from the teacher's 10-step DDIM map (0.14–0.17 without the weights λ_n), where the
/// teacher's own single step lands at 0.88.
#[test]
fn a_distilled_student_reproduces_the_teachers_map_in_one_step() {
    let device = Default::default();
    let distillation = distillation(STEPS);
    let teacher = PerTimestep(mixture());
    let oracle = mixture();
    A::seed(&device, 4);
    let mut student = Student::<A>::new(&device);
    let mut optimizer = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(2);
    let batch = 512;
    // The student starts as a diffusion model, as it starts from its teacher on the faces.
    let alphas = schedule().alphas_cumprod().to_vec();
    for _ in 0..1000 {
        let clean = oracle.sample_data::<A>(batch, &mut rng, &device);
        let noise = standard_normal::<A, 2>([batch, 2], &mut rng, &device);
        let timesteps: Vec<f64> = (0..batch)
            .map(|_| rng.random_range(0..1000) as f64)
            .collect();
        let scale = |f: fn(f64) -> f64| {
            let values: Vec<f32> = timesteps
                .iter()
                .map(|&t| f(alphas[t as usize]) as f32)
                .collect();
            Tensor::<A, 2>::from_data(TensorData::new(values, [batch, 1]), &device)
        };
        let (signal, noise_scale) = (scale(f64::sqrt), scale(|a| (1.0 - a).sqrt()));
        let noisy = clean.clone() * signal.clone() + noise.clone() * noise_scale.clone();
        let v = noise * signal - clean * noise_scale;
        let loss = (student.forward(noisy, &timesteps) - v)
            .powi_scalar(2)
            .mean();
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        student = optimizer.step(1e-3, student, grads);
    }
    let iterations = 3000;
    for iteration in 0..iterations {
        let clean = oracle.sample_data::<A>(batch, &mut rng, &device);
        let noise = standard_normal::<A, 2>([batch, 2], &mut rng, &device);
        let indices: Vec<usize> = (0..batch).map(|_| rng.random_range(0..STEPS)).collect();
        let noisy = distillation.noisy(clean, noise, &indices).unwrap();
        let previous = distillation
            .teacher_step(&teacher, noisy.clone().inner(), &indices)
            .unwrap();
        // The target network is the student's own weights, without gradient.
        let frozen = student.valid();
        let targets = distillation
            .consistency(
                "the target",
                &frozen,
                previous,
                &distillation.previous_timesteps_of(&indices).unwrap(),
            )
            .unwrap();
        let answers = distillation
            .consistency(
                "the student",
                &student,
                noisy,
                &distillation.timesteps_of(&indices).unwrap(),
            )
            .unwrap();
        let loss = distillation
            .loss(answers, Tensor::from_inner(targets), &indices)
            .unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        let rate = if iteration < 2 * iterations / 3 {
            1e-3
        } else {
            3e-4
        };
        student = optimizer.step(rate, student, grads);
    }
    let trained: Student<B> = student.valid();
    let model = FnDenoiser::new(Prediction::V, |x: Tensor<B, 2>, t: f64| {
        let n = x.dims()[0];
        trained.forward(x, &vec![t; n])
    });
    let noise = standard_normal::<B, 2>([1024, 2], &mut StdRng::seed_from_u64(3), &device);
    let map = ddim_with(teacher_map(), &mixture(), STEPS, noise.clone());
    let distilled = rms(
        &consistency_sample(&distillation, &model, 1, noise.clone()),
        &map,
    );
    let naive = rms(&ddim_with(teacher_map(), &mixture(), 1, noise), &map);
    println!("one step against the teacher's {STEPS}: student {distilled:.3}, teacher {naive:.3}");
    assert!(distilled < 0.25, "student {distilled}, teacher {naive}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let schedule = schedule();
    for steps in [0, 1001] {
        assert!(matches!(
            ConsistencyDistillation::new(&schedule, steps, ConsistencyScalings::default()),
            Err(DistillError::Sampler(SamplerError::OutOfRange { .. }))
        ));
    }
    let distillation = distillation(STEPS);
    assert_eq!(
        distillation.timesteps_of(&[STEPS]),
        Err(DistillError::StepOutOfRange {
            index: STEPS,
            steps: STEPS
        })
    );
    assert_eq!(
        distillation.index_of(500.0),
        Err(DistillError::OffGrid { timestep: 500.0 })
    );
    let x = Tensor::<B, 2>::zeros([3, 2], &Default::default());
    assert_eq!(
        distillation
            .noisy(x.clone(), x.clone(), &[0, 1])
            .unwrap_err(),
        DistillError::IndexCount {
            indices: 2,
            batch: 3
        }
    );
    let teacher = PerTimestep(mixture());
    assert_eq!(
        distillation
            .consistency("the student", &teacher, x.clone(), &[1.5, 0.0, 0.0])
            .unwrap_err(),
        DistillError::OffGrid { timestep: 1.5 }
    );
    assert!(matches!(
        distillation.loss(x.clone(), x.clone().narrow(0, 0, 2), &[0, 1, 2]),
        Err(DistillError::ShapeMismatch { .. })
    ));
    let off_grid = IdealConsistency::new(distillation, teacher).denoise(x, 500.0);
    assert!(off_grid.unwrap_err().to_string().contains("500"));
}
