//! Times the UNet on the CPU: forward passes and full training steps (forward, MSE against a
//! target, backward, AdamW), to compare with `benches/peer/unet_step.py` (PyTorch + diffusers,
//! same architecture) in the same sitting.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example unet_step -- --preset tiny --size 32
//! RAYON_NUM_THREADS=2 cargo run --release --example unet_step -- --preset faces64 --size 64 --iterations 3
//! ```
//!
//! Prints the median wall time of each after one warm-up run. Peak memory: run it under
//! `/usr/bin/time -v`.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use clap::Parser;
use kiln::forward::standard_normal;
use kiln::timing::median_time;
use kiln::unet::{UNet, UNetConfig};
use rand::{SeedableRng, rngs::StdRng};

#[path = "common/allocator.rs"]
mod allocator;

/// Times UNet forward passes and training steps on the Flex CPU backend.
#[derive(Parser, Debug)]
struct Args {
    /// tiny, faces64 or cifar10.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Image height and width.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed runs of each workload (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    iterations: usize,
}

type B = Autodiff<Flex>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    allocator::keep_freed_memory();
    let args = Args::parse();
    let config = match args.preset.as_str() {
        "tiny" => UNetConfig::tiny(3),
        "faces64" => UNetConfig::faces64(3),
        "cifar10" => UNetConfig::ddpm_cifar10(),
        other => return Err(format!("unknown preset {other:?}").into()),
    };
    let device = Default::default();
    let mut model: UNet<B> = config.init(&device)?;
    let mut rng = StdRng::seed_from_u64(0);
    let shape = [args.batch, 3, args.size, args.size];
    let x = standard_normal::<B, 4>(shape, &mut rng, &device);
    let target = standard_normal::<B, 4>(shape, &mut rng, &device);
    let t = Tensor::<B, 1>::from_floats(
        (0..args.batch)
            .map(|i| (i * 61 % 1000) as f32)
            .collect::<Vec<_>>()
            .as_slice(),
        &device,
    );

    let inference = model.valid();
    let (x_inner, t_inner) = (x.clone().inner(), t.clone().inner());
    let forward = median_time(args.iterations, || {
        let y = inference
            .forward(x_inner.clone(), t_inner.clone(), None)
            .expect("valid input");
        y.into_data();
    });

    let mut optimizer = AdamWConfig::new().init::<B, UNet<B>>();
    let step = median_time(args.iterations, || {
        let y = model
            .forward(x.clone(), t.clone(), None)
            .expect("valid input");
        let loss = (y - target.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-4, model.clone(), grads);
    });
    println!(
        "{} {}x{} batch {}: forward median {forward:.1?}, train step median {step:.1?}",
        args.preset, args.size, args.size, args.batch
    );
    Ok(())
}
