//! The UNet on the default CPU device (Flex): a forward pass and a full training step
//! (forward, MSE on ε, backward, AdamW) at batch 16, for `tiny` at 32×32 and `faces64` at
//! 64×64.
//!
//! ```text
//! cargo bench --bench unet                 # all four (faces64 takes minutes per sample)
//! cargo bench --bench unet -- tiny         # just the tiny model
//! ```
//!
//! `examples/unet_step.rs` measures the same workloads with a median of a few runs, which is
//! what docs/performance.md compares with PyTorch (`benches/peer/unet_step.py`).

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::forward::standard_normal;
use kiln::unet::{UNet, UNetConfig};
use rand::{SeedableRng, rngs::StdRng};

type B = Autodiff<Flex>;

fn unet(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("unet_batch16");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, config, size) in [
        ("tiny_32", UNetConfig::tiny(3), 32),
        ("faces64_64", UNetConfig::faces64(3), 64),
    ] {
        let mut rng = StdRng::seed_from_u64(0);
        let shape = [16, 3, size, size];
        let x = standard_normal::<B, 4>(shape, &mut rng, &device);
        let noise = standard_normal::<B, 4>(shape, &mut rng, &device);
        let t = Tensor::<B, 1>::from_floats([500.0; 16], &device);
        let mut model: UNet<B> = config.init(&device).expect("valid preset");

        let inference = model.valid();
        let (x_inner, t_inner) = (x.clone().inner(), t.clone().inner());
        group.bench_function(format!("{name}/forward"), |b| {
            b.iter(|| {
                inference
                    .forward(x_inner.clone(), t_inner.clone(), None)
                    .expect("valid input")
                    .into_data()
            })
        });

        let mut optimizer = AdamWConfig::new().init::<B, UNet<B>>();
        group.bench_function(format!("{name}/train_step"), |b| {
            b.iter(|| {
                let prediction = model
                    .forward(x.clone(), t.clone(), None)
                    .expect("valid input");
                let loss = (prediction - noise.clone()).powi_scalar(2).mean();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(1e-4, model.clone(), grads);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, unet);
criterion_main!(benches);
