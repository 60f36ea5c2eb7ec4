//! Saves a trained model as a diffusers pipeline folder, for PyTorch users:
//!
//! ```text
//! cargo run --release --example export_diffusers -- --checkpoint runs/faces --out faces-diffusers
//! ```
//!
//! then, in Python with diffusers installed:
//!
//! ```text
//! from diffusers import DDPMPipeline, DDIMScheduler
//! pipeline = DDPMPipeline.from_pretrained("faces-diffusers")
//! pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
//! images = pipeline(batch_size=16, num_inference_steps=50).images
//! ```
//!
//! `--checkpoint` takes what face_sample takes: a face_train run folder (its latest EMA
//! weights), one of its checkpoint folders, a Kiln UNet `.safetensors` file or a diffusers
//! folder. The folder written holds `model_index.json`, `unet/` (a `UNet2DModel`) and
//! `scheduler/` (a `DDPMScheduler` with the run's β schedule and prediction type); see
//! `SamplingModel::save_diffusers`. A class-conditional model's UNet takes `class_labels`
//! (the last label is the unconditional one), which `DDPMPipeline` does not pass: call the
//! UNet in a loop of your own.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::backend::Backend;
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::pipeline::load_for_sampling;

#[path = "common/exit.rs"]
mod exit;

/// Saves a trained model as a diffusers pipeline folder.
#[derive(Parser, Debug)]
struct Args {
    /// A face_train run folder, a checkpoint folder, a Kiln UNet .safetensors file or a
    /// diffusers model folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The diffusers pipeline folder to write.
    #[arg(long)]
    out: PathBuf,
    /// The image size the pipeline samples at (diffusers' `sample_size`; default: the training
    /// size the checkpoint records, which a Kiln UNet .safetensors file does not).
    #[arg(long)]
    image_size: Option<usize>,
    /// flex, ndarray, wgpu[:N] or cuda[:N]: where the weights are loaded on their way.
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
}

fn main() -> ExitCode {
    let args = Args::parse();
    exit::exit_code(run_on(args.device, Export(args)))
}

struct Export(Args);

impl BackendTask for Export {
    type Output = Result<(), Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let Export(args) = self;
        let mut model = load_for_sampling::<B>(&args.checkpoint, &device)?;
        model.image_size = args.image_size.or(model.image_size);
        if model.image_size.is_none() {
            return Err("this checkpoint does not record its image size; pass --image-size".into());
        }
        model.save_diffusers(&args.out)?;
        println!(
            "wrote {}: a UNet2DModel predicting {} and its DDPMScheduler over {} timesteps",
            args.out.display(),
            model.prediction.name(),
            model.schedule.num_timesteps(),
        );
        Ok(())
    }
}
