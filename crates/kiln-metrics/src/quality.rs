//! Every metric of the crate at once, for one set of generated samples against real data: what
//! an evaluation during training or after sampling reports.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{
    FeatureExtractor, Features, GaussianStats, Kid, KidConfig, Memorisation, MetricsError,
    PrecisionRecall, extract, frechet_distance, kernel_inception_distance, memorisation_rate,
    precision_recall,
};

/// The real data generated samples are scored against, as features.
#[derive(Debug, Clone)]
pub struct RealFeatures {
    /// The images the model was trained on: the reference of FD, KID, precision and recall,
    /// and the set memorisation looks for copies of.
    pub training: Features,
    /// Real images the model never saw, when there are any: they set memorisation's threshold
    /// (see [`memorisation_rate`]).
    pub held_out: Option<Features>,
    /// The Gaussian of `training`, computed once for every evaluation against it.
    stats: GaussianStats,
}

impl RealFeatures {
    /// The reference made of `training` and, optionally, `held_out` features.
    pub fn new(training: Features, held_out: Option<Features>) -> Result<Self, MetricsError> {
        if let Some(held_out) = &held_out {
            held_out.check_comparable(&training)?;
        }
        let stats = GaussianStats::of(&training)?;
        Ok(Self {
            training,
            held_out,
            stats,
        })
    }
}

/// How [`quality`] computes what it reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityConfig {
    /// KID's subsets; a subset larger than either set is cut to the smaller set's size.
    pub kid: KidConfig,
    /// Neighbours of precision and recall's manifolds (3 in Kynkäänniemi et al.).
    pub k: usize,
    /// The held-out quantile of memorisation's threshold.
    pub memorisation_quantile: f64,
    /// Seed of KID's subsets.
    pub seed: u64,
}

impl Default for QualityConfig {
    /// torch-fidelity's KID (100 subsets of up to 1,000), k = 3, the 5 % quantile, seed 0.
    fn default() -> Self {
        Self {
            kid: KidConfig::default(),
            k: 3,
            memorisation_quantile: 0.05,
            seed: 0,
        }
    }
}

/// The metrics of one set of generated samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// The Fréchet distance between the generated and the training features' Gaussians.
    pub frechet: f64,
    /// KID against the training features.
    pub kid: Kid,
    /// Precision and recall against the training features.
    pub precision_recall: PrecisionRecall,
    /// The memorisation rate, when held-out real features were given.
    pub memorisation: Option<Memorisation>,
}

/// FD, KID, precision and recall of `generated` against `real.training`, and the memorisation
/// rate where `real.held_out` is known.
pub fn quality(
    generated: &Features,
    real: &RealFeatures,
    config: &QualityConfig,
) -> Result<Quality, MetricsError> {
    generated.check_comparable(&real.training)?;
    let frechet = frechet_distance(&GaussianStats::of(generated)?, &real.stats)?;
    let kid_config = KidConfig {
        subset_size: config
            .kid
            .subset_size
            .min(generated.len())
            .min(real.training.len()),
        ..config.kid
    };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let kid = kernel_inception_distance(generated, &real.training, &kid_config, &mut rng)?;
    let precision_recall = precision_recall(generated, &real.training, config.k)?;
    let memorisation = real
        .held_out
        .as_ref()
        .map(|held_out| {
            memorisation_rate(
                generated,
                &real.training,
                held_out,
                config.memorisation_quantile,
            )
        })
        .transpose()?;
    Ok(Quality {
        frechet,
        kid,
        precision_recall,
        memorisation,
    })
}

/// Images per batch through the feature network when [`SampleScorer::score_data`] hands a
/// whole set over at once (what InceptionV3 at 299×299 holds in memory comfortably).
const SCORE_BATCH: usize = 50;

/// Scores generated images handed over as host data: how a training run, which samples on its
/// own backend, reaches an evaluator built on any backend (the images cross to the host once,
/// a few megabytes, next to the seconds it takes to draw them).
pub trait SampleScorer {
    /// The [`Quality`] of `images`: `[n, channels, h, w]` values in [0, 1].
    fn score_data(&self, images: TensorData) -> Result<Quality, MetricsError>;
}

/// A feature network and the real data in its features: scores any number of generated sets
/// (during training, after sampling) with the real features computed once.
pub struct Evaluator<B: Backend, E: FeatureExtractor<B>> {
    extractor: E,
    real: RealFeatures,
    config: QualityConfig,
    /// Where the real images were, and where [`SampleScorer::score_data`] puts its images.
    device: B::Device,
}

impl<B: Backend, E: FeatureExtractor<B>> Evaluator<B, E> {
    /// An evaluator with `extractor`'s features of the real `training` images and, when given,
    /// of `held_out` ones (batches `[n, channels, h, w]` in [0, 1], as the extractor takes
    /// them).
    pub fn new(
        extractor: E,
        training: impl IntoIterator<Item = Tensor<B, 4>>,
        held_out: Option<Vec<Tensor<B, 4>>>,
        config: QualityConfig,
    ) -> Result<Self, MetricsError> {
        let training: Vec<Tensor<B, 4>> = training.into_iter().collect();
        let device = training
            .first()
            .map(Tensor::device)
            .ok_or(MetricsError::Images {
                shape: Vec::new(),
                reason: "there are no real training images",
            })?;
        let training = extract(&extractor, training)?;
        let held_out = held_out
            .map(|batches| extract(&extractor, batches))
            .transpose()?;
        Ok(Self {
            real: RealFeatures::new(training, held_out)?,
            extractor,
            config,
            device,
        })
    }

    /// The [`quality`] of the `generated` images (batches in [0, 1]).
    pub fn score(
        &self,
        generated: impl IntoIterator<Item = Tensor<B, 4>>,
    ) -> Result<Quality, MetricsError> {
        quality(
            &extract(&self.extractor, generated)?,
            &self.real,
            &self.config,
        )
    }

    /// The real data's features.
    pub fn real(&self) -> &RealFeatures {
        &self.real
    }
}

impl<B: Backend, E: FeatureExtractor<B>> SampleScorer for Evaluator<B, E> {
    fn score_data(&self, images: TensorData) -> Result<Quality, MetricsError> {
        if images.shape.len() != 4 {
            return Err(MetricsError::Images {
                shape: images.shape.to_vec(),
                reason: "expected [count, channels, height, width]",
            });
        }
        let images = Tensor::<B, 4>::from_data(images, &self.device);
        self.score(images.split(SCORE_BATCH, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` points of a `dims`-dimensional lattice walk, shifted by `shift`.
    fn points(n: usize, dims: usize, shift: f64) -> Features {
        let values: Vec<f64> = (0..n * dims)
            .map(|i| ((i * 7919 % 101) as f64) / 101.0 + shift)
            .collect();
        Features::new(&values, dims).unwrap()
    }

    #[test]
    fn each_metric_is_the_one_its_function_gives() {
        let real = points(60, 4, 0.0);
        let held_out = points(30, 4, 0.01);
        let generated = points(40, 4, 0.3);
        let config = QualityConfig::default();
        let reference = RealFeatures::new(real.clone(), Some(held_out.clone())).unwrap();
        let quality = quality(&generated, &reference, &config).unwrap();

        let fd = frechet_distance(
            &GaussianStats::of(&generated).unwrap(),
            &GaussianStats::of(&real).unwrap(),
        )
        .unwrap();
        assert_eq!(quality.frechet, fd);
        let kid_config = KidConfig {
            subset_size: 40,
            ..config.kid
        };
        let kid = kernel_inception_distance(
            &generated,
            &real,
            &kid_config,
            &mut StdRng::seed_from_u64(0),
        )
        .unwrap();
        assert_eq!(quality.kid, kid);
        assert_eq!(
            quality.precision_recall,
            precision_recall(&generated, &real, 3).unwrap()
        );
        let memorisation = memorisation_rate(&generated, &real, &held_out, 0.05).unwrap();
        assert_eq!(quality.memorisation, Some(memorisation));

        let without = RealFeatures::new(real, None).unwrap();
        assert_eq!(
            super::quality(&generated, &without, &config)
                .unwrap()
                .memorisation,
            None
        );
    }

    /// Each image's pixels as its features.
    struct Pixels;

    impl<B: Backend> FeatureExtractor<B> for Pixels {
        fn dims(&self) -> usize {
            4
        }

        fn features(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError> {
            Ok(images.flatten(1, 3))
        }
    }

    /// `n` 1×2×2 images with values in [0, 1], offset by `shift`.
    fn images(n: usize, shift: f32) -> TensorData {
        let values: Vec<f32> = (0..n * 4)
            .map(|i| ((i * 7919 % 101) as f32) / 101.0 * 0.5 + shift)
            .collect();
        TensorData::new(values, [n, 1, 2, 2])
    }

    #[test]
    fn host_data_scores_as_the_same_images_on_the_device() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let tensor = |data| Tensor::<B, 4>::from_data(data, &device);
        let training = vec![tensor(images(30, 0.0)), tensor(images(30, 0.1))];
        let held_out = Some(vec![tensor(images(20, 0.05))]);
        let evaluator =
            Evaluator::new(Pixels, training, held_out, QualityConfig::default()).unwrap();
        // More images than one scoring batch, so the split into batches is exercised.
        let generated = images(120, 0.3);
        let on_device = evaluator.score([tensor(generated.clone())]).unwrap();
        assert_eq!(evaluator.score_data(generated).unwrap(), on_device);
        assert!(on_device.frechet > 0.0 && on_device.memorisation.is_some());
        // Host data of another rank is refused, not handed to burn, which panics on it.
        let flat = TensorData::new(vec![0.5f32; 8], [2, 4]);
        assert!(matches!(
            evaluator.score_data(flat),
            Err(MetricsError::Images { shape, .. }) if shape == [2, 4]
        ));
        let none: Vec<Tensor<B, 4>> = Vec::new();
        assert!(Evaluator::new(Pixels, none, None, QualityConfig::default()).is_err());
    }

    #[test]
    fn features_of_other_widths_are_refused() {
        let reference = RealFeatures::new(points(20, 4, 0.0), None).unwrap();
        let narrow = points(20, 3, 0.0);
        let config = QualityConfig::default();
        assert!(quality(&narrow, &reference, &config).is_err());
        assert!(RealFeatures::new(points(20, 4, 0.0), Some(narrow)).is_err());
    }
}
