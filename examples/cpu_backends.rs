//! Times the CPU backends on Kiln's own work, to choose the default.
//!
//! ```text
//! cargo run --release --features ndarray --example cpu_backends -- --device flex
//! cargo run --release --features ndarray --example cpu_backends -- --device ndarray --iterations 3
//! ```
//!
//! Two workloads, each run once to warm up and then `--iterations` times; prints the median
//! wall time of each:
//! - `q_sample`: the O(1) forward jump of a 64×3×64×64 batch, read back to the host;
//! - `block`: a UNet-like block at batch 16, 64×64 (conv 3→64, GroupNorm(32), SiLU,
//!   conv 64→64, stride-2 conv 64→64, nearest ×2 upsampling), forward and backward.
//!
//! Threads: set `RAYON_NUM_THREADS` (both backends use rayon). The example uses mimalloc as its
//! allocator: with glibc's, every large tensor is a fresh `mmap` that page-faults on first touch
//! (docs/performance.md has the figures).

use std::time::Duration;

use burn::backend::Autodiff;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, activation::silu};
use clap::Parser;

#[path = "common/allocator.rs"]
mod allocator;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::forward::{ForwardProcess, standard_normal};
use kiln::schedule::{BetaSchedule, NoiseSchedule};
use kiln::timing::median_time;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Times q_sample and a UNet-like block (forward + backward) on one CPU backend.
#[derive(Parser, Debug)]
struct Args {
    /// flex or ndarray.
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    /// Timed runs of each workload (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    iterations: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    allocator::keep_freed_memory();
    let args = Args::parse();
    let device = args.device;
    let Timings { q_sample, block } = run_on(device, Bench(args.iterations))?;
    println!(
        "{device}: q_sample 64x3x64x64 median {q_sample:.1?}; block fwd+bwd b16 64x64 median {block:.1?}"
    );
    Ok(())
}

struct Bench(usize);

struct Timings {
    q_sample: Duration,
    block: Duration,
}

impl BackendTask for Bench {
    type Output = Timings;

    fn run<B: Backend>(self, device: B::Device) -> Timings {
        let iterations = self.0;
        let mut rng = StdRng::seed_from_u64(0);
        let forward = ForwardProcess::<B>::new(
            NoiseSchedule::new(&BetaSchedule::linear(), 1000).expect("valid schedule"),
            &device,
        );
        let shape = [64, 3, 64, 64];
        let x0 = standard_normal::<B, 4>(shape, &mut rng, &device);
        let noise = standard_normal::<B, 4>(shape, &mut rng, &device);
        let timesteps: Vec<usize> = (0..64).map(|_| rng.random_range(0..1000)).collect();
        let q_sample = median_time(iterations, || {
            forward
                .q_sample(x0.clone(), &timesteps, noise.clone())
                .expect("matching shapes")
                .into_data();
        });

        let block = Block::<Autodiff<B>>::new(&device);
        let input = standard_normal::<Autodiff<B>, 4>([16, 3, 64, 64], &mut rng, &device);
        let block = median_time(iterations, || block.step(input.clone()));
        Timings { q_sample, block }
    }
}

/// The UNet-like block of the measurement.
struct Block<B: Backend> {
    conv_in: Conv2d<B>,
    norm: GroupNorm<B>,
    conv: Conv2d<B>,
    down: Conv2d<B>,
}

impl<B: AutodiffBackend> Block<B> {
    fn new(device: &B::Device) -> Self {
        let conv = |channels: [usize; 2], stride| {
            Conv2dConfig::new(channels, [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv_in: conv([3, 64], 1),
            norm: GroupNormConfig::new(32, 64).init(device),
            conv: conv([64, 64], 1),
            down: conv([64, 64], 2),
        }
    }

    /// Forward, a mean-square loss and backward.
    fn step(&self, x: Tensor<B, 4>) {
        let h = silu(self.norm.forward(self.conv_in.forward(x)));
        let h = self.down.forward(self.conv.forward(h));
        let [_, _, height, width] = h.dims();
        let up = interpolate(
            h,
            [height * 2, width * 2],
            InterpolateOptions::new(InterpolateMode::Nearest),
        );
        let _gradients = up.powi_scalar(2).mean().backward();
    }
}
