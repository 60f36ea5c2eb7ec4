//! Times what a backend spends around its kernels rather than in them: making the device
//! ready, the first launch of a kernel (compiling it; for matmul and convolution, autotuning
//! it too), a round trip to the host, and back-to-back launches once everything is compiled.
//! Each stage prints as it ends, so a run that stalls shows where.
//!
//! ```text
//! cargo run --release --features cuda --example backend_probe -- --device cuda
//! cargo run --release --features wgpu --example backend_probe -- --device wgpu
//! ```
//!
//! A training step of Kiln's UNet launches a few hundred kernels of a few dozen kinds, so these
//! figures bound its cold start (kinds × first launch) and its host cost (launches × launch).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::timing::first_and_median_time;

#[path = "common/exit.rs"]
mod exit;

/// Times a device's first launches, launches and host round trips.
#[derive(Parser, Debug)]
struct Args {
    /// flex, ndarray, wgpu[:N] or cuda[:N] (GPU backends need `--features wgpu|cuda`).
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    /// Launches timed back to back.
    #[arg(long, default_value_t = 200)]
    launches: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    exit::exit_code(run_on(args.device, Probe { args }))
}

struct Probe {
    args: Args,
}

impl BackendTask for Probe {
    type Output = Result<(), Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        probe::<B>(&device, self.args.launches);
        Ok(())
    }
}

/// Prints one stage's time as soon as it is known.
fn report(stage: &str, seconds: f64) {
    println!("{stage}: {:.3} ms", seconds * 1e3);
    std::io::stdout().flush().ok();
}

/// Runs `work` once and reports its time, waiting for the device at its end.
fn once<B: Backend>(stage: &str, device: &B::Device, work: impl FnOnce()) {
    let start = Instant::now();
    work();
    B::sync(device).expect("the device finished");
    report(stage, start.elapsed().as_secs_f64());
}

fn probe<B: Backend>(device: &B::Device, launches: usize) {
    once::<B>("device ready (first tensor)", device, || {
        Tensor::<B, 1>::zeros([1], device).into_data();
    });
    let x = Tensor::<B, 1>::random([1024], Distribution::Default, device);
    B::sync(device).expect("the device finished");

    let round_trip = first_and_median_time(20, || {
        (x.clone() * 2.0 + 1.0).into_data();
    });
    report(
        "element-wise, first (compile)",
        round_trip.first.as_secs_f64(),
    );
    report("element-wise round trip", round_trip.median.as_secs_f64());

    for size in [64, 512] {
        let a = Tensor::<B, 2>::random([size, size], Distribution::Default, device);
        let mut c = a.clone();
        once::<B>(
            &format!("matmul {size}², first (compile, autotune)"),
            device,
            || {
                c = c.clone().matmul(a.clone());
            },
        );
        let start = Instant::now();
        for _ in 0..launches {
            c = c.matmul(a.clone()) * 1e-3;
        }
        B::sync(device).expect("the device finished");
        report(
            &format!("matmul {size}², each of {launches} back to back"),
            start.elapsed().as_secs_f64() / launches as f64,
        );
    }

    let input = Tensor::<Autodiff<B>, 4>::random([8, 64, 32, 32], Distribution::Default, device)
        .require_grad();
    let weight = Tensor::<Autodiff<B>, 4>::random([64, 64, 3, 3], Distribution::Default, device)
        .require_grad();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let convolve = || conv2d(input.clone(), weight.clone(), None, options.clone());
    once::<B>(
        "conv2d 3×3 64→64 32² batch 8, first (compile, autotune)",
        device,
        || {
            convolve();
        },
    );
    once::<B>("conv2d, again", device, || {
        convolve();
    });
    once::<B>("conv2d backward, first (compile, autotune)", device, || {
        convolve().sum().backward();
    });
    once::<B>("conv2d forward and backward, again", device, || {
        convolve().sum().backward();
    });
}
