//! The forward process as a picture: one image noised to evenly spaced timesteps, side by side.
//!
//! ```text
//! cargo run --release --example forward_strip -- --schedule squaredcos_cap_v2 --frames 11
//! ```
//!
//! Frame k of F has had round(k·T/(F−1)) noising steps: the first is the clean image, the last
//! x_T. Every frame uses the same noise ε, so the strip shows one image fading into one noise
//! field: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε. Pixels map [−1, 1] to [0, 255] affinely; the noise
//! beyond ±1 saturates to black or white.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::{Tensor, backend::Backend};
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::forward::{ForwardProcess, standard_normal};
use kiln::pixels;
use kiln::schedule::{BetaSchedule, NoiseSchedule};
use rand::{SeedableRng, rngs::StdRng};

/// Writes a PNG strip of an image being noised by the forward process of a diffusion model.
#[derive(Parser, Debug)]
struct Args {
    /// The image to noise (any format the `image` crate reads). Default: a bundled face.
    #[arg(long)]
    image: Option<PathBuf>,
    /// The β schedule: linear, scaled_linear, squaredcos_cap_v2 (or cosine) or sigmoid.
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2023), so the last frame is pure
    /// noise.
    #[arg(long)]
    zero_terminal_snr: bool,
    /// T, the number of training timesteps.
    #[arg(long, default_value_t = 1000)]
    timesteps: usize,
    /// The number of frames, from the clean image (t = 0) to x_T.
    #[arg(long, default_value_t = 10)]
    frames: usize,
    /// Crop the image's centre square and resize it to this many pixels a side.
    #[arg(long, default_value_t = 92)]
    size: u32,
    /// 1 for grayscale, 3 for RGB.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// flex, ndarray, wgpu[:N] or cuda[:N] (the backend must be compiled in).
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    /// Where to write the PNG strip.
    #[arg(long, default_value = "forward_strip.png")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run_on(args.device, Strip(args)) {
        Ok(Ok(path)) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

struct Strip(Args);

impl BackendTask for Strip {
    type Output = Result<PathBuf, Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let args = self.0;
        if args.frames < 2 || args.frames > args.timesteps + 1 {
            let frames = args.frames;
            return Err(format!(
                "--frames must be in 2..={}, got {frames}",
                args.timesteps + 1
            )
            .into());
        }
        let beta = BetaSchedule::from_name(&args.schedule)
            .ok_or_else(|| format!("unknown schedule {:?}", args.schedule))?;
        let mut schedule = NoiseSchedule::new(&beta, args.timesteps)?;
        if args.zero_terminal_snr {
            schedule = schedule.rescale_zero_terminal_snr()?;
        }
        let path = args.image.unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/faces/s1/1.png")
        });
        let image = pixels::center_square(&pixels::open(&path)?, Some(args.size));
        let x0 = pixels::to_tensor::<B>(&image, args.channels, &device)?.unsqueeze::<4>();

        // Frame k has had round(k·T/(F−1)) steps, i.e. sits at 0-based timestep that − 1.
        let last_frame = args.frames - 1;
        let timesteps: Vec<usize> = (1..=last_frame)
            .map(|k| (k * args.timesteps + last_frame / 2) / last_frame - 1)
            .collect();
        let noisy_count = timesteps.len();
        let clean = x0.clone().repeat_dim(0, noisy_count);
        let [_, channels, height, width] = x0.dims();
        let noise = standard_normal::<B, 3>(
            [channels, height, width],
            &mut StdRng::seed_from_u64(args.seed),
            &device,
        )
        .unsqueeze::<4>()
        .repeat_dim(0, noisy_count);
        let forward = ForwardProcess::<B>::new(schedule, &device);
        let noisy = forward.q_sample(clean, &timesteps, noise)?;

        let strip = pixels::grid(Tensor::cat(vec![x0, noisy], 0), args.frames, 2)?;
        pixels::save(&strip, &args.out)?;
        Ok(args.out)
    }
}
