//! Times the UNet: forward passes and full training steps (forward, MSE against a target,
//! backward, AdamW), to compare with `benches/peer/unet_step.py` (PyTorch + diffusers, same
//! architecture) in the same sitting, or to measure a GPU.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example unet_step -- --preset tiny --size 32
//! RAYON_NUM_THREADS=2 cargo run --release --example unet_step -- --preset faces64 --size 64 --iterations 3
//! cargo run --release --features cuda --example unet_step -- --preset faces64 --size 64 --batch 128 --device cuda
//! ```
//!
//! Prints the median wall time of each after one warm-up run (on a GPU, each timed run ends by
//! waiting for the device), the training images per second, and the warm-up runs' own times (on
//! a GPU: compiling and autotuning every kernel, or loading them from the caches of
//! `kiln::gpu_cache`). Peak memory: run it under
//! `/usr/bin/time -v` (CPU) or watch `nvidia-smi` (GPU).

use std::process::ExitCode;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::forward::standard_normal;
use kiln::kernels::on_worker_thread;
use kiln::timing::first_and_median_time;
use kiln::unet::{UNet, UNetConfig, UNetError, UNetPreset};
use rand::{SeedableRng, rngs::StdRng};

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/exit.rs"]
mod exit;
#[path = "common/names.rs"]
mod names;

/// Times UNet forward passes and training steps.
#[derive(Parser, Debug)]
struct Args {
    /// The UNet (3 channels).
    #[arg(long, default_value = "tiny", value_parser = names::by_name::<UNetPreset>(&UNetPreset::NAMES, []))]
    preset: UNetPreset,
    /// Image height and width.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed runs of each workload (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// flex, ndarray, wgpu[:N] or cuda[:N] (GPU backends need `--features wgpu|cuda`).
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let args = Args::parse();
    let config = args.preset.config(3);
    exit::exit_code(run_on(args.device, Timing { args, config }))
}

struct Timing {
    args: Args,
    config: UNetConfig,
}

impl BackendTask for Timing {
    type Output = Result<(), Box<dyn std::error::Error>>;

    fn run<D: Backend>(self, device: D::Device) -> Self::Output {
        time_unet::<Autodiff<D>>(&self.args, &self.config, &device)
    }
}

fn time_unet<B: AutodiffBackend>(
    args: &Args,
    config: &UNetConfig,
    device: &B::Device,
) -> Result<(), Box<dyn std::error::Error>> {
    // The model's work runs on one of rayon's threads, as in Kiln's trainer: every op of the
    // CPU kernels then starts at once instead of waking the pool (`on_worker_thread`).
    let (forward, step) = on_worker_thread::<B, _>(|| {
        let mut model: UNet<B> = config.init(device)?;
        let mut rng = StdRng::seed_from_u64(0);
        let shape = [args.batch, 3, args.size, args.size];
        let x = standard_normal::<B, 4>(shape, &mut rng, device);
        let target = standard_normal::<B, 4>(shape, &mut rng, device);
        let t = Tensor::<B, 1>::from_floats(
            (0..args.batch)
                .map(|i| (i * 61 % 1000) as f32)
                .collect::<Vec<_>>()
                .as_slice(),
            device,
        );

        let inference = model.valid();
        let (x_inner, t_inner) = (x.clone().inner(), t.clone().inner());
        let forward = first_and_median_time(args.iterations, || {
            let y = inference
                .forward(x_inner.clone(), t_inner.clone(), None)
                .expect("valid input");
            y.into_data();
        });

        let mut optimizer = AdamWConfig::new().init::<B, UNet<B>>();
        let step = first_and_median_time(args.iterations, || {
            let y = model
                .forward(x.clone(), t.clone(), None)
                .expect("valid input");
            let loss = (y - target.clone()).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-4, model.clone(), grads);
            B::sync(device).expect("the device finished the step");
        });
        Ok::<_, UNetError>((forward, step))
    })?;
    println!(
        "{} {}x{} batch {} on {}: forward median {:.1}ms, train step median {:.1}ms \
         ({:.1} images/s); first forward {:.2}s, first train step {:.2}s",
        args.preset,
        args.size,
        args.size,
        args.batch,
        args.device,
        forward.median.as_secs_f64() * 1e3,
        step.median.as_secs_f64() * 1e3,
        args.batch as f64 / step.median.as_secs_f64(),
        forward.first.as_secs_f64(),
        step.first.as_secs_f64(),
    );
    Ok(())
}
