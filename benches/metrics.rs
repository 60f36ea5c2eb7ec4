//! The quality metrics at the size of an evaluation: 1,000 samples a set, Inception's 2,048
//! pool3 features.
//!
//! ```text
//! cargo bench --bench metrics
//! ```
//!
//! - `metrics/gaussian_stats`: mean and covariance of 1,000 × 2,048 features;
//! - `metrics/frechet_distance`: FD between two such Gaussians (two 2,048 × 2,048 symmetric
//!   eigendecompositions);
//! - `metrics/kid_10_subsets`: KID with 10 subsets of 1,000 (torch-fidelity's default is 100:
//!   ten times this);
//! - `metrics/precision_recall`: k = 3 manifolds of two sets of 1,000;
//! - `features/inception_batch_10` and `features/face_encoder_batch_50`: the feature extractors
//!   on batches of 32 × 32 grayscale samples, the default run's (InceptionV3 resizes them to
//!   299 × 299; its weights here are a constant pattern, which costs what pytorch-fid's do).

use std::hint::black_box;

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::metrics::{
    FaceEncoder, FeatureExtractor, Features, FidInception, GaussianStats, KidConfig, MetricsError,
    WeightSource, frechet_distance, kernel_inception_distance, precision_recall,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const SAMPLES: usize = 1000;
const DIMS: usize = 2048;

fn features(seed: u64) -> Features {
    let mut rng = StdRng::seed_from_u64(seed);
    let values: Vec<f32> = (0..SAMPLES * DIMS).map(|_| rng.random::<f32>()).collect();
    Features::new(&values, DIMS).unwrap()
}

fn metrics(c: &mut Criterion) {
    let (a, b) = (features(1), features(2));
    let mut group = c.benchmark_group("metrics");
    group.sample_size(10);
    group.bench_function("gaussian_stats", |bench| {
        bench.iter(|| GaussianStats::of(black_box(&a)).unwrap())
    });
    let (stats_a, stats_b) = (
        GaussianStats::of(&a).unwrap(),
        GaussianStats::of(&b).unwrap(),
    );
    group.bench_function("frechet_distance", |bench| {
        bench.iter(|| frechet_distance(black_box(&stats_a), black_box(&stats_b)).unwrap())
    });
    let config = KidConfig {
        subsets: 10,
        ..KidConfig::default()
    };
    group.bench_function("kid_10_subsets", |bench| {
        let mut rng = StdRng::seed_from_u64(0);
        bench.iter(|| kernel_inception_distance(&a, &b, &config, &mut rng).unwrap())
    });
    group.bench_function("precision_recall", |bench| {
        bench.iter(|| precision_recall(black_box(&a), black_box(&b), 3).unwrap())
    });
    group.finish();
}

/// Weights of the right shapes that keep activations finite: batch-norm variances 1, the rest
/// small.
struct PatternWeights;

impl WeightSource for PatternWeights {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, MetricsError> {
        let fan_in = shape.iter().skip(1).product::<usize>().max(1) as f32;
        let value = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            1.0
        } else {
            0.5 / fan_in.sqrt()
        };
        Ok(vec![value; shape.iter().product()])
    }
}

fn extractors(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("features");
    group.sample_size(10);
    let samples = |n| Tensor::<Flex, 4>::random([n, 1, 32, 32], Distribution::Default, &device);
    let inception = FidInception::<Flex>::load(&mut PatternWeights, &device).unwrap();
    let batch = samples(10);
    group.bench_function("inception_batch_10", |bench| {
        bench.iter(|| {
            let features = inception.features(batch.clone()).unwrap();
            features.into_data()
        })
    });
    let encoder = FaceEncoder::<Flex>::bundled(&device).unwrap();
    let batch = samples(50);
    group.bench_function("face_encoder_batch_50", |bench| {
        bench.iter(|| {
            let features = encoder.features(batch.clone()).unwrap();
            features.into_data()
        })
    });
    group.finish();
}

criterion_group!(benches, metrics, extractors);
criterion_main!(benches);
