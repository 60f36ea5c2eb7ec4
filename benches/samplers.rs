//! Sampler bookkeeping: the cost of a sampling loop beyond the model.
//!
//! ```text
//! cargo bench --bench samplers
//! ```
//!
//! Each bench runs a full 20-step `sample()` on a 16×3×64×64 batch on the default (Flex) device
//! with a trivial denoiser (one multiply), reading the result back. `model_only` runs the same
//! 20 denoiser calls without a sampler, so (sampler − model_only)/20 is the per-step overhead
//! (Heun makes 39 model calls for 20 steps, PNDM 29). `flow_euler` and `flow_heun` run
//! `sample_flow` with the same trivial model as a velocity.

use std::hint::black_box;

use burn::backend::Flex;
use burn::tensor::Tensor;
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::forward::standard_normal;
use kiln::sampler::{
    AlgorithmType, Ddim, DdimConfig, Ddpm, DdpmConfig, Deis, DeisConfig, Dpm2, Dpm2Config,
    DpmSolver, DpmSolverConfig, DpmSolverSde, DpmSolverSinglestep, DpmSolverSinglestepConfig,
    Euler, EulerConfig, FlowEuler, FlowEulerConfig, FlowHeun, FlowSampler, FnDenoiser, FnVelocity,
    Heun, HeunConfig, Lcm, LcmConfig, Lms, LmsConfig, Pndm, PndmConfig, Prediction, SaSolver,
    SaSolverConfig, SaSolverTau, Sampler, Tcd, TcdConfig, UniPc, UniPcConfig, sample, sample_flow,
};
use kiln::schedule::{BetaSchedule, FlowSchedule, NoiseSchedule};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;
const STEPS: usize = 20;

fn run(sampler: &mut impl Sampler<B, 4>, noise: &Tensor<B, 4>) -> Vec<f32> {
    let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 4>, _| x.mul_scalar(0.1));
    let mut rng = StdRng::seed_from_u64(0);
    let x = sample(sampler, &model, noise.clone(), &mut rng, |_| {}).expect("valid sampler");
    x.into_data().to_vec().expect("f32 data")
}

fn run_flow(sampler: &mut impl FlowSampler<B, 4>, noise: &Tensor<B, 4>) -> Vec<f32> {
    let model = FnVelocity(|x: Tensor<B, 4>, _| x.mul_scalar(0.1));
    let mut rng = StdRng::seed_from_u64(0);
    let x = sample_flow(sampler, &model, noise.clone(), &mut rng, |_| {}).expect("valid sampler");
    x.into_data().to_vec().expect("f32 data")
}

fn samplers(c: &mut Criterion) {
    let device = Default::default();
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).expect("valid schedule");
    let noise = standard_normal::<B, 4>([16, 3, 64, 64], &mut StdRng::seed_from_u64(1), &device);
    let mut group = c.benchmark_group("sample_20_steps_16x3x64x64");
    group.sample_size(20);
    group.bench_function("model_only", |b| {
        b.iter(|| {
            let mut x = noise.clone();
            for step in 0..STEPS {
                x = x.mul_scalar(black_box(0.1 + step as f64 * 1e-3));
            }
            x.into_data()
        })
    });
    group.bench_function("ddpm", |b| {
        b.iter(|| {
            run(
                &mut Ddpm::new(DdpmConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("ddim", |b| {
        b.iter(|| {
            run(
                &mut Ddim::new(DdimConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("euler", |b| {
        b.iter(|| {
            run(
                &mut Euler::new(EulerConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    let ancestral = EulerConfig {
        ancestral: true,
        ..EulerConfig::default()
    };
    group.bench_function("euler_ancestral", |b| {
        b.iter(|| {
            run(
                &mut Euler::new(ancestral, &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("heun", |b| {
        b.iter(|| {
            run(
                &mut Heun::<B, 4>::new(HeunConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("pndm", |b| {
        b.iter(|| {
            run(
                &mut Pndm::<B, 4>::new(PndmConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("unipc", |b| {
        b.iter(|| {
            run(
                &mut UniPc::<B, 4>::new(UniPcConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("lms", |b| {
        b.iter(|| {
            run(
                &mut Lms::<B, 4>::new(LmsConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("dpm2", |b| {
        b.iter(|| {
            run(
                &mut Dpm2::<B, 4>::new(Dpm2Config::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("dpm++2s", |b| {
        b.iter(|| {
            let config = DpmSolverSinglestepConfig::default();
            run(
                &mut DpmSolverSinglestep::<B, 4>::new(config, &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("deis", |b| {
        b.iter(|| {
            run(
                &mut Deis::<B, 4>::new(DeisConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    let dpm2_ancestral = Dpm2Config {
        ancestral: true,
        ..Dpm2Config::default()
    };
    group.bench_function("dpm2_ancestral", |b| {
        b.iter(|| {
            run(
                &mut Dpm2::<B, 4>::new(dpm2_ancestral, &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("dpm++sde", |b| {
        b.iter(|| {
            run(
                &mut DpmSolverSde::<B, 4>::new(Default::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    // diffusers' default τ window draws noise in the 13 of 20 steps with 200 ≤ t ≤ 800.
    let sa_solver_sde = SaSolverConfig {
        tau: SaSolverTau::constant(1.0),
        ..SaSolverConfig::default()
    };
    for (name, config) in [
        ("sa_solver", SaSolverConfig::default()),
        ("sa_solver_sde", sa_solver_sde),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                run(
                    &mut SaSolver::<B, 4>::new(config, &schedule, STEPS).unwrap(),
                    &noise,
                )
            })
        });
    }
    group.bench_function("lcm", |b| {
        b.iter(|| {
            run(
                &mut Lcm::new(LcmConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("tcd", |b| {
        b.iter(|| {
            run(
                &mut Tcd::new(TcdConfig::default(), &schedule, STEPS).unwrap(),
                &noise,
            )
        })
    });
    for (name, config) in [
        ("dpm++2m", DpmSolverConfig::default()),
        (
            "dpm++3m",
            DpmSolverConfig {
                solver_order: 3,
                ..DpmSolverConfig::default()
            },
        ),
        (
            "dpm++2m_sde",
            DpmSolverConfig {
                algorithm_type: AlgorithmType::SdeDpmSolverPlusPlus,
                ..DpmSolverConfig::default()
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                run(
                    &mut DpmSolver::<B, 4>::new(config, &schedule, STEPS).unwrap(),
                    &noise,
                )
            })
        });
    }
    let flow = FlowSchedule::default();
    group.bench_function("flow_euler", |b| {
        b.iter(|| {
            run_flow(
                &mut FlowEuler::new(FlowEulerConfig::default(), &flow, STEPS).unwrap(),
                &noise,
            )
        })
    });
    group.bench_function("flow_heun", |b| {
        b.iter(|| run_flow(&mut FlowHeun::new(&flow, STEPS).unwrap(), &noise))
    });
    group.finish();
}

criterion_group!(benches, samplers);
criterion_main!(benches);
