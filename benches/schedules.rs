//! Schedules and the forward process.
//!
//! ```text
//! cargo bench --bench schedules
//! ```
//!
//! - `schedule/<name>`: building a T = 1000 schedule with all of its derived tables;
//! - `timesteps/<spacing>`: a 50-step inference grid; `timesteps/flow_sd3`: rectified flow's
//!   28-step grid with SD3's shift 3;
//! - `q_sample/64x3x64x64`: one O(1) jump of a batch on the default (Flex) device, with the
//!   host-side coefficient upload and the result read back so the work is not deferred.

use std::hint::black_box;

use burn::backend::Flex;
use burn::tensor::Tensor;
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::forward::{ForwardProcess, standard_normal};
use kiln::schedule::{
    BetaSchedule, FlowSchedule, FlowShift, GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing,
    karras_sigmas,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn schedules(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule");
    for (name, beta) in [
        ("linear", BetaSchedule::linear()),
        ("scaled_linear", BetaSchedule::scaled_linear()),
        ("squaredcos_cap_v2", BetaSchedule::cosine()),
        ("sigmoid", BetaSchedule::sigmoid()),
        ("rectified_flow", BetaSchedule::rectified_flow()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| NoiseSchedule::new(black_box(&beta), 1000).unwrap())
        });
    }
    let linear = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    group.bench_function("zero_terminal_snr", |b| {
        b.iter(|| black_box(&linear).rescale_zero_terminal_snr().unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("timesteps");
    for spacing in [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ] {
        let grid = TimestepGrid {
            spacing,
            steps_offset: 1,
            end: GridEnd::BeforeZero,
        };
        group.bench_function(format!("{spacing:?}").to_lowercase(), |b| {
            b.iter(|| grid.discrete_timesteps(1000, black_box(50)).unwrap())
        });
    }
    let sd3 = FlowSchedule {
        shift: FlowShift::Static(3.0),
        ..FlowSchedule::default()
    };
    group.bench_function("flow_sd3", |b| b.iter(|| black_box(&sd3).grid(28).unwrap()));
    let sigmas = linear.sigmas();
    group.bench_function("karras", |b| {
        b.iter(|| {
            karras_sigmas(sigmas[0], sigmas[999], black_box(50), 7.0)
                .unwrap()
                .into_iter()
                .map(|sigma| linear.sigma_to_timestep(sigma))
                .sum::<f64>()
        })
    });
    group.finish();
}

fn q_sample(c: &mut Criterion) {
    let device = Default::default();
    let forward = ForwardProcess::<Flex>::new(
        NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap(),
        &device,
    );
    let mut rng = StdRng::seed_from_u64(0);
    let shape = [64, 3, 64, 64];
    let x0 = standard_normal::<Flex, 4>(shape, &mut rng, &device).clamp(-1.0, 1.0);
    let noise = standard_normal::<Flex, 4>(shape, &mut rng, &device);
    let timesteps: Vec<usize> = (0..64).map(|_| rng.random_range(0..1000)).collect();
    c.bench_function("q_sample/64x3x64x64", |b| {
        b.iter(|| {
            let x_t: Tensor<Flex, 4> = forward
                .q_sample(x0.clone(), &timesteps, noise.clone())
                .unwrap();
            x_t.into_data()
        })
    });
}

criterion_group!(benches, schedules, q_sample);
criterion_main!(benches);
