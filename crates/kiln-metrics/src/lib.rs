//! Sample quality of generative models, over any feature extractor: the numbers papers and
//! peers report, computed as their reference implementations compute them.
//!
//! - [`frechet_distance`] of two [`GaussianStats`] (FID with Inception features; pytorch-fid's
//!   formula);
//! - [`kernel_inception_distance`] (KID; torch-fidelity's unbiased MMD² with the cubic
//!   polynomial kernel, mean and standard deviation over random subsets);
//! - [`precision_recall`] (Kynkäänniemi et al. 2019, k-nearest-neighbour manifolds);
//! - [`memorisation_rate`] (the share of samples nearer to a training sample than new real data
//!   is);
//! - [`quality`]: all of them for one set of samples against [`RealFeatures`];
//! - [`classification_accuracy_score`] (CAS, Ravuri & Vinyals 2019) of a class-conditional
//!   model's faces: a classifier trained on them, tested on real held-out photos.
//!
//! Features come from a [`FeatureExtractor`]: [`FidInception`] is pytorch-fid's InceptionV3, whose
//! weights a user downloads ([`inception_weights`] finds them); [`FaceEncoder`] is a small
//! face-identity network whose weights ship with the crate, the offline default for faces.
//!
//! Features are f32 from a network (a burn tensor, read back once by [`Features::from_tensor`])
//! and every statistic is computed in f64, with faer for the dense linear algebra (covariances,
//! symmetric eigendecompositions): pure Rust, actively maintained, with blocked and parallel
//! algorithms that are among the fastest in any language, and no system BLAS or LAPACK to
//! install.
//!
//! ```
//! use kiln_metrics::{Features, GaussianStats, frechet_distance};
//!
//! let a = Features::new(&[0.0f32, 1.0, 1.0, 0.0, 2.0, 2.0], 2)?;
//! let b = Features::new(&[1.0f32, 2.0, 2.0, 1.0, 3.0, 3.0], 2)?;
//! // The same spread, shifted by (1, 1): the distance is the squared shift.
//! let d = frechet_distance(&GaussianStats::of(&a)?, &GaussianStats::of(&b)?)?;
//! assert!((d - 2.0).abs() < 1e-9);
//! # Ok::<(), kiln_metrics::MetricsError>(())
//! ```

#![warn(missing_docs)]

mod distances;
mod error;
mod extractor;
mod face_encoder;
mod face_training;
mod features;
mod frechet;
mod gaussian;
mod inception;
mod kid;
mod memorisation;
mod precision_recall;
mod quality;
mod weights;

pub use error::MetricsError;
pub use extractor::{FeatureExtractor, extract};
pub use face_encoder::{
    FACE_ENCODER_DIMS, FACE_ENCODER_IDENTITIES, FACE_ENCODER_INPUT, FACE_ENCODER_PEOPLE,
    FaceEncoder, IdentitySplit,
};
pub use face_training::{
    FaceTraining, TrainedEpoch, classification_accuracy_score, train_face_encoder,
};
pub use features::Features;
pub use frechet::frechet_distance;
pub use gaussian::GaussianStats;
pub use inception::{
    FidInception, INCEPTION_WEIGHTS_ENV, INCEPTION_WEIGHTS_URL, inception_weights,
};
pub use kid::{
    Kid, KidConfig, PolynomialKernel, kernel_inception_distance, kid_over_subsets, mmd2_unbiased,
};
pub use memorisation::{Memorisation, memorisation_rate};
pub use precision_recall::{PrecisionRecall, precision_recall};
pub use quality::{Evaluator, Quality, QualityConfig, RealFeatures, SampleScorer, quality};
pub use weights::{PthWeights, WeightSource};
