//! Training a [`FaceEncoder`] on labelled faces: how the bundled encoder was made, and the
//! classifier of the classification accuracy score.
//!
//! Cross-entropy over the identities, AdamW (weight decay 10⁻⁴), the training images in a fresh
//! random order each epoch, and each image of a batch flipped left to right with probability
//! ½ and given a random contrast c ~ U(0.8, 1.2) and brightness b ~ U(−0.1, 0.1),
//! x ↦ clamp((x − ½)·c + ½ + b, 0, 1), so that the features carry who is pictured rather than
//! how the photo was exposed. At the end the features are scaled to a root mean square of 1
//! over the (unaugmented) training images ([`FaceEncoder::with_feature_scale`]).
//!
//! The classification accuracy score (CAS; Ravuri & Vinyals 2019, "Classification Accuracy
//! Score for Conditional Generative Models") asks the opposite question of FD: a classifier
//! trained only on a class-conditional model's samples, labelled with the classes they were
//! drawn for, is tested on real images it never saw. It is high only when the samples carry
//! each class's real features, in their real variety.

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, ElementConversion, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::face_encoder::check_identities;
use crate::{FaceEncoder, MetricsError};

/// How [`train_face_encoder`] trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceTraining {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// AdamW's weight decay.
    pub weight_decay: f64,
    /// Seed of the initial weights, the order of the images and the augmentation.
    pub seed: u64,
}

impl Default for FaceTraining {
    /// The bundled encoder's recipe: 150 epochs of batches of 32 at learning rate 2·10⁻³,
    /// seed 0.
    fn default() -> Self {
        Self {
            epochs: 150,
            batch_size: 32,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            seed: 0,
        }
    }
}

/// The end of an epoch of [`train_face_encoder`], for its caller to look at (reading anything
/// back from the device only when asked).
pub struct TrainedEpoch<'a, B: AutodiffBackend> {
    /// The epoch just finished (1-based).
    pub epoch: usize,
    encoder: &'a FaceEncoder<B>,
    losses: &'a [Tensor<B::InnerBackend, 1>],
}

impl<B: AutodiffBackend> TrainedEpoch<'_, B> {
    /// The encoder as it stands, without the autodiff graph (and without its feature scale,
    /// which is set at the end).
    pub fn encoder(&self) -> FaceEncoder<B::InnerBackend> {
        self.encoder.valid()
    }

    /// The mean cross-entropy of the epoch's batches (one read back from the device).
    pub fn mean_loss(&self) -> f64 {
        Tensor::cat(self.losses.to_vec(), 0)
            .mean()
            .into_scalar()
            .elem()
    }
}

/// A fresh [`FaceEncoder`] trained on `images` (`[n, channels, h, w]` in [0, 1]) to tell
/// `identities` (one per image, each below [`FACE_ENCODER_IDENTITIES`]) apart, as the module
/// documentation describes; `on_epoch` sees the end of every epoch. Identities that do not fit
/// are a [`MetricsError::Sizes`] or [`MetricsError::OutOfRange`], as for
/// [`FaceEncoder::accuracy`]; no images or a batch size of 0, [`MetricsError::Images`].
///
/// [`FACE_ENCODER_IDENTITIES`]: crate::FACE_ENCODER_IDENTITIES
pub fn train_face_encoder<B: AutodiffBackend>(
    images: Tensor<B, 4>,
    identities: &[usize],
    training: &FaceTraining,
    mut on_epoch: impl FnMut(TrainedEpoch<'_, B>),
) -> Result<FaceEncoder<B::InnerBackend>, MetricsError> {
    let [n, channels, h, w] = images.dims();
    check_identities(n, identities)?;
    if n == 0 || training.batch_size == 0 {
        return Err(MetricsError::Images {
            shape: vec![n, channels, h, w],
            reason: "there is nothing to train on",
        });
    }
    let device = images.device();
    B::seed(&device, training.seed);
    let mut rng = StdRng::seed_from_u64(training.seed);
    let mut encoder = FaceEncoder::<B>::init(&device);
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(training.weight_decay as f32)
        .init::<B, FaceEncoder<B>>();
    let loss_of = CrossEntropyLossConfig::new().init(&device);
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 1..=training.epochs {
        order.shuffle(&mut rng);
        let mut losses = Vec::new();
        for batch in order.chunks(training.batch_size) {
            let augmented = augment(select(&images, batch), &mut rng);
            let targets = select_identities::<B>(identities, batch, &device);
            let loss = loss_of.forward(encoder.logits(augmented)?, targets);
            losses.push(loss.clone().inner());
            let grads = GradientsParams::from_grads(loss.backward(), &encoder);
            encoder = optimizer.step(training.learning_rate, encoder, grads);
        }
        on_epoch(TrainedEpoch {
            epoch,
            encoder: &encoder,
            losses: &losses,
        });
    }
    let encoder = encoder.valid();
    let images = images.inner();
    let mean_square: f32 = encoder
        .embed(images)?
        .powi_scalar(2)
        .mean()
        .into_scalar()
        .elem();
    Ok(encoder.with_feature_scale(1.0 / mean_square.sqrt()))
}

/// The classification accuracy score: the share of the `real` images (`[m, channels, h, w]` in
/// [0, 1]) whose `real_identities` a face encoder trained by `training` on the `generated`
/// images, labelled `generated_identities`, names (module documentation). Both sets of
/// identities are checked before any training: the real ones here, the generated ones by
/// [`train_face_encoder`].
pub fn classification_accuracy_score<B: AutodiffBackend>(
    generated: Tensor<B, 4>,
    generated_identities: &[usize],
    real: Tensor<B::InnerBackend, 4>,
    real_identities: &[usize],
    training: &FaceTraining,
) -> Result<f64, MetricsError> {
    check_identities(real.dims()[0], real_identities)?;
    let classifier = train_face_encoder(generated, generated_identities, training, |_| {})?;
    classifier.accuracy(real, real_identities)
}

/// The images at `indices`.
fn select<B: Backend>(images: &Tensor<B, 4>, indices: &[usize]) -> Tensor<B, 4> {
    let device = images.device();
    let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let count = indices.len();
    images.clone().select(
        0,
        Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [count]), &device),
    )
}

/// `images` each flipped left to right with probability ½, then given a random contrast and
/// brightness (module documentation); the random numbers are drawn flips first, then
/// contrasts, then brightnesses.
fn augment<B: Backend>(images: Tensor<B, 4>, rng: &mut StdRng) -> Tensor<B, 4> {
    let n = images.dims()[0];
    let device = images.device();
    let flips: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
    let contrast: Vec<f32> = (0..n).map(|_| rng.random_range(0.8..1.2)).collect();
    let brightness: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1..0.1)).collect();
    let per_image = |values: Vec<f32>| {
        Tensor::<B, 4>::from_data(TensorData::new(values, [n, 1, 1, 1]), &device)
    };
    let flipped = Tensor::<B, 4, Bool>::from_data(TensorData::new(flips, [n, 1, 1, 1]), &device);
    let images = images
        .clone()
        .mask_where(flipped.expand(images.shape()), images.flip([3]));
    ((images - 0.5) * per_image(contrast) + 0.5 + per_image(brightness)).clamp(0.0, 1.0)
}

/// The identities of the images at `indices`.
fn select_identities<B: Backend>(
    identities: &[usize],
    indices: &[usize],
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| identities[i] as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}
