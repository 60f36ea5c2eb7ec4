//! Trains the face encoder of `kiln_metrics::FaceEncoder` on the bundled faces and writes the
//! weights the crate ships: 40 people, 8 photos each to train on, the last 2 of each person
//! (in file order) held out to measure it.
//!
//! ```text
//! cargo run --release --example face_encoder
//! ```
//!
//! Cross-entropy over the 40 identities, AdamW, batches of 32 with random left-right flips and
//! a random contrast (×0.8–1.2) and brightness (±0.1) per image, so that the features carry who
//! is pictured rather than how the photo was exposed. Prints the held-out accuracy as it trains
//! and at the end.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::metrics::{
    FACE_ENCODER_IDENTITIES, FACE_ENCODER_INPUT, FACE_ENCODER_PEOPLE, FaceEncoder, IdentitySplit,
};
use kiln::train::{ImageFolder, ImageFolderOptions, Labels};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::StdRng};

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
    let all: Vec<usize> = (0..faces.len()).collect();
    let labels = faces.labels_of(&all).expect("loaded with labels");
    let split = IdentitySplit::new(&labels, HELD_OUT);
    println!(
        "{} photos of {people} people: {} to train on, {} held out",
        faces.len(),
        split.train.len(),
        split.held_out.len()
    );

    B::seed(device, args.seed);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut encoder = FaceEncoder::<B>::init(device);
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(1e-4)
        .init::<B, FaceEncoder<B>>();
    let loss_of = CrossEntropyLossConfig::new().init(device);
    let mut order = split.train.clone();
    for epoch in 1..=args.epochs {
        order.shuffle(&mut rng);
        // The epoch's losses stay on the device and are read back once, when printed.
        let mut losses = Vec::new();
        for batch in order.chunks(args.batch_size) {
            let images = augmented::<B>(&faces, batch, &mut rng, device);
            let targets = identities::<B>(&labels, batch, device);
            let loss = loss_of.forward(encoder.logits(images)?, targets);
            losses.push(loss.clone().inner());
            let grads = GradientsParams::from_grads(loss.backward(), &encoder);
            encoder = optimizer.step(args.learning_rate, encoder, grads);
        }
        if epoch % 10 == 0 || epoch == args.epochs {
            let held_out = accuracy(&encoder.valid(), &faces, &labels, &split.held_out)?;
            let loss: f64 = Tensor::cat(losses, 0).mean().into_scalar().elem();
            println!(
                "epoch {epoch:>3}: loss {loss:.4}, held-out accuracy {:.1} %",
                held_out * 100.0
            );
        }
    }
    let encoder = encoder.valid();
    let scale = feature_scale(&encoder, &faces, &split.train)?;
    let encoder = encoder.with_feature_scale(scale);
    let train = accuracy(&encoder, &faces, &labels, &split.train)?;
    let held_out = accuracy(&encoder, &faces, &labels, &split.held_out)?;
    encoder.save(&args.out)?;
    println!(
        "accuracy: {:.1} % on the {} training photos, {:.1} % on the {} held out; feature scale {scale:.5}; weights in {}",
        train * 100.0,
        split.train.len(),
        held_out * 100.0,
        split.held_out.len(),
        args.out.display()
    );
    Ok(())
}

/// The photos at `indices` in [0, 1], each flipped left to right at random and given a random
/// contrast and brightness.
fn augmented<B: Backend>(
    faces: &ImageFolder,
    indices: &[usize],
    rng: &mut StdRng,
    device: &B::Device,
) -> Tensor<B, 4> {
    let n = indices.len();
    let flips: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
    let contrast: Vec<f32> = (0..n).map(|_| rng.random_range(0.8..1.2)).collect();
    let brightness: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1..0.1)).collect();
    let per_image =
        |values: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(values, [n, 1, 1, 1]), device);
    let images = (faces.batch::<B>(indices, &flips, device) + 1.0) / 2.0;
    ((images - 0.5) * per_image(contrast) + 0.5 + per_image(brightness)).clamp(0.0, 1.0)
}

/// The identities of the photos at `indices`.
fn identities<B: Backend>(
    labels: &[usize],
    indices: &[usize],
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| labels[i] as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// 1 / the root mean square of the features of the photos at `indices`.
fn feature_scale<B: Backend>(
    encoder: &FaceEncoder<B>,
    faces: &ImageFolder,
    indices: &[usize],
) -> Result<f32, Box<dyn std::error::Error>> {
    let device = &encoder.devices()[0];
    let images = (faces.batch::<B>(indices, &vec![false; indices.len()], device) + 1.0) / 2.0;
    let mean_square: f32 = encoder
        .embed(images)?
        .powi_scalar(2)
        .mean()
        .into_scalar()
        .elem();
    Ok(1.0 / mean_square.sqrt())
}

/// The share of the photos at `indices` whose identity the encoder names.
fn accuracy<B: Backend>(
    encoder: &FaceEncoder<B>,
    faces: &ImageFolder,
    labels: &[usize],
    indices: &[usize],
) -> Result<f64, Box<dyn std::error::Error>> {
    let device = &encoder.devices()[0];
    let images = (faces.batch::<B>(indices, &vec![false; indices.len()], device) + 1.0) / 2.0;
    let identities: Vec<usize> = indices.iter().map(|&i| labels[i]).collect();
    Ok(encoder.accuracy(images, &identities)?)
}
