//! Trains the face encoder of `kiln_metrics::FaceEncoder` on the bundled faces and writes the
//! weights the crate ships: 40 people, 8 photos each to train on, the last 2 of each person
//! (in file order) held out to measure it.
//!
//! ```text
//! cargo run --release --example face_encoder
//! ```
//!
//! The recipe is `kiln_metrics::train_face_encoder`'s (cross-entropy over the 40 identities,
//! AdamW, random flips, contrast and brightness). Prints the held-out accuracy as it trains and
//! at the end.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::metrics::{
    FACE_ENCODER_IDENTITIES, FACE_ENCODER_INPUT, FACE_ENCODER_PEOPLE, FaceTraining, IdentitySplit,
    train_face_encoder,
};
use kiln::train::{DatasetError, ImageFolder, ImageFolderOptions, Labels};

#[path = "common/exit.rs"]
mod exit;

/// Trains the bundled face encoder.
#[derive(Parser, Debug)]
struct Args {
    /// The faces: one folder per person.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/faces"))]
    data: PathBuf,
    /// Where the weights go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/kiln-metrics/weights/face_encoder.safetensors"))]
    out: PathBuf,
    /// Passes over the training photos.
    #[arg(long, default_value_t = 150)]
    epochs: usize,
    /// Photos per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = 2e-3)]
    learning_rate: f64,
    /// Seed of the initial weights, the order of the photos and the augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// flex, ndarray, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
}

/// Photos of each person held out to measure the encoder.
const HELD_OUT: usize = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    exit::exit_code(run_on(args.device, Training { args }))
}

struct Training {
    args: Args,
}

impl BackendTask for Training {
    type Output = Result<(), Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        train::<Autodiff<B>>(&self.args, &device)
    }
}

fn train<B: AutodiffBackend>(
    args: &Args,
    device: &B::Device,
) -> Result<(), Box<dyn std::error::Error>> {
    let options = ImageFolderOptions {
        image_size: FACE_ENCODER_INPUT as u32,
        channels: 1,
        strict: true,
        labels: Labels::Folders,
    };
    let faces = ImageFolder::load(&args.data, options, |_| {})?;
    let people = faces.class_names().len();
    if faces.class_names() != FACE_ENCODER_PEOPLE {
        return Err(format!(
            "{} has {people} people; the encoder tells apart the {FACE_ENCODER_IDENTITIES} of \
             FACE_ENCODER_PEOPLE",
            args.data.display()
        )
        .into());
    }
    let labels = faces.labels().ok_or("loaded without labels")?;
    let split = IdentitySplit::new(labels, HELD_OUT);
    println!(
        "{} photos of {people} people: {} to train on, {} held out",
        faces.len(),
        split.train.len(),
        split.held_out.len()
    );

    let unit = |indices: &[usize]| {
        let images = faces.batch::<B>(indices, &vec![false; indices.len()], device)?;
        Ok::<_, DatasetError>((images + 1.0) / 2.0)
    };
    let identities = |indices: &[usize]| indices.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let training = FaceTraining {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        seed: args.seed,
        ..FaceTraining::default()
    };
    let held_out_images = unit(&split.held_out)?.inner();
    let held_out_identities = identities(&split.held_out);
    let mut failure = None;
    let encoder = train_face_encoder(
        unit(&split.train)?,
        &identities(&split.train),
        &training,
        |trained| {
            if trained.epoch % 10 == 0 || trained.epoch == args.epochs {
                match trained
                    .encoder()
                    .accuracy(held_out_images.clone(), &held_out_identities)
                {
                    Ok(accuracy) => println!(
                        "epoch {:>3}: loss {:.4}, held-out accuracy {:.1} %",
                        trained.epoch,
                        trained.mean_loss(),
                        accuracy * 100.0
                    ),
                    Err(error) => failure = Some(error),
                }
            }
        },
    )?;
    if let Some(error) = failure {
        return Err(error.into());
    }
    let train = encoder.accuracy(unit(&split.train)?.inner(), &identities(&split.train))?;
    let held_out = encoder.accuracy(held_out_images, &held_out_identities)?;
    encoder.save(&args.out)?;
    println!(
        "accuracy: {:.1} % on the {} training photos, {:.1} % on the {} held out; weights in {}",
        train * 100.0,
        split.train.len(),
        held_out * 100.0,
        split.held_out.len(),
        args.out.display()
    );
    Ok(())
}
