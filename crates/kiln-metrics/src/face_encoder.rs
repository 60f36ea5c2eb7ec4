//! A small face-identity network trained by Kiln on its bundled faces, shipped with its weights:
//! the feature space of the offline face metric, and the classifier behind identity accuracy
//! and CAS.
//!
//! Fréchet distance and KID are only as meaningful as the features they compare. FID's
//! InceptionV3 ([`crate::FidInception`]) is the field's reference, but its weights are a
//! 95 MB download that Kiln cannot ship; [`FaceEncoder::bundled`] needs nothing but the crate.
//! It was trained (examples/face_encoder.rs) to tell apart the 40 people of the bundled faces
//! (AT&T/ORL: 10 photos each; 8 a person to train on, the last 2 in file order held out, see
//! [`IdentitySplit`]), so its features separate what makes faces differ from one another —
//! identity, pose, expression, lighting — and ignore the rest.
//!
//! The network: the image as grayscale (the mean of its channels), box-filtered to 32×32
//! (`adaptive_avg_pool2d`; exact for sizes that are multiples of 32), scaled to [−1, 1]; four
//! 3×3 convolutions with ReLU (16, 32, 64, 64 channels), each of the first three followed by a
//! 2×2 max pool; the mean over the remaining 4×4 positions gives the 64 features; a linear
//! layer maps them to one logit per identity. The features are those of the layer before the
//! logits, as pool3 is InceptionV3's, times one constant that gives the training photos'
//! features a root mean square of 1.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::{adaptive_avg_pool2d, max_pool2d};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use burn_store::{ModuleSnapshot, SafetensorsStore};

use crate::{FeatureExtractor, MetricsError};

/// The side of the square grayscale image the convolutions see.
pub const FACE_ENCODER_INPUT: usize = 32;
/// Values per feature vector.
pub const FACE_ENCODER_DIMS: usize = 64;
/// The identities of the bundled faces, one logit each.
pub const FACE_ENCODER_IDENTITIES: usize = 40;
/// The people of the bundled faces in the order of the encoder's identities: their folders'
/// names in natural order, the order in which an `ImageFolder` of them numbers its classes.
pub const FACE_ENCODER_PEOPLE: [&str; FACE_ENCODER_IDENTITIES] = [
    "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15",
    "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28",
    "s29", "s30", "s31", "s32", "s33", "s34", "s35", "s36", "s37", "s38", "s39", "s40",
];

/// Convolution widths, input to features.
const WIDTHS: [usize; 4] = [16, 32, 64, FACE_ENCODER_DIMS];

/// The shipped weights (safetensors, written by `cargo run --release --example face_encoder`)
/// and where they are in the crate.
const BUNDLED_WEIGHTS: &[u8] = include_bytes!("../weights/face_encoder.safetensors");
const BUNDLED_PATH: &str = "kiln-metrics/weights/face_encoder.safetensors";

/// The face-identity network of the module documentation.
#[derive(Module, Debug)]
pub struct FaceEncoder<B: Backend> {
    convs: Vec<Conv2d<B>>,
    head: Linear<B>,
    /// One factor on every feature, set after training so that the training photos' features
    /// have a root mean square of 1 (as values of the order of InceptionV3's keep KID's cubic
    /// kernel, (x·y/d + 1)³, in its working range); not trained.
    feature_scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> FaceEncoder<B> {
    /// A network with freshly initialised weights (Kaiming-uniform, burn's default), to train.
    pub fn init(device: &B::Device) -> Self {
        let mut channels = 1;
        let convs = WIDTHS
            .iter()
            .map(|&width| {
                let conv = Conv2dConfig::new([channels, width], [3, 3])
                    .with_padding(PaddingConfig2d::Same)
                    .init(device);
                channels = width;
                conv
            })
            .collect();
        Self {
            convs,
            head: LinearConfig::new(FACE_ENCODER_DIMS, FACE_ENCODER_IDENTITIES).init(device),
            feature_scale: Param::from_tensor(Tensor::ones([1], device)).set_require_grad(false),
        }
    }

    /// The network with the weights that ship with this crate.
    pub fn bundled(device: &B::Device) -> Result<Self, MetricsError> {
        Self::init(device).with_weights(
            SafetensorsStore::from_bytes(Some(BUNDLED_WEIGHTS.to_vec())),
            Path::new(BUNDLED_PATH),
        )
    }

    /// The network with the weights of a safetensors file written by [`Self::save`].
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, MetricsError> {
        Self::init(device).with_weights(SafetensorsStore::from_file(path), path)
    }

    /// Writes the weights to a safetensors file, atomically: to a temporary file beside it,
    /// then renamed over it.
    pub fn save(&self, path: &Path) -> Result<(), MetricsError> {
        let failed = |reason: String| MetricsError::WeightFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".partial");
        let temporary = std::path::PathBuf::from(temporary);
        self.save_into(&mut SafetensorsStore::from_file(&temporary).overwrite(true))
            .map_err(|error| failed(error.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|error| failed(error.to_string()))
    }

    /// Loads the weights `store` holds (read from `path`); every tensor must be there, in its
    /// shape.
    fn with_weights(
        mut self,
        mut store: SafetensorsStore,
        path: &Path,
    ) -> Result<Self, MetricsError> {
        let unreadable = |reason: String| MetricsError::WeightFile {
            path: path.to_path_buf(),
            reason,
        };
        let result = self
            .load_from(&mut store)
            .map_err(|error| unreadable(error.to_string()))?;
        if let Some((name, _)) = result.missing.first() {
            return Err(MetricsError::MissingWeight {
                name: name.clone(),
                source_name: path.display().to_string(),
            });
        }
        match result.errors.first() {
            Some(error) => Err(unreadable(error.to_string())),
            None => Ok(self),
        }
    }

    /// `[n, channels, h, w]` images in [0, 1] → `[n, 64]` features (the module documentation
    /// says how), times the feature scale. Any channel count is averaged to grayscale; an
    /// empty batch is refused.
    pub fn embed(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError> {
        Ok(self.trunk(images)? * self.feature_scale.val().unsqueeze())
    }

    /// `[n, channels, h, w]` images in [0, 1] → `[n, 40]` identity logits.
    pub fn logits(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError> {
        Ok(self.head.forward(self.trunk(images)?))
    }

    /// The most likely identity of each image (`[n]`): an index into [`FACE_ENCODER_PEOPLE`].
    pub fn identify(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 1, Int>, MetricsError> {
        let logits = self.logits(images)?;
        let n = logits.dims()[0];
        Ok(logits.argmax(1).reshape([n]))
    }

    /// The share of `images` in which the encoder recognises `person` (a folder name of the
    /// bundled faces, as [`FACE_ENCODER_PEOPLE`] lists them): the identity accuracy of samples
    /// drawn for that person. `None` for a name the encoder does not know.
    pub fn identity_accuracy(
        &self,
        images: Tensor<B, 4>,
        person: &str,
    ) -> Result<Option<f64>, MetricsError> {
        let Some(identity) = FACE_ENCODER_PEOPLE
            .iter()
            .position(|&known| known == person)
        else {
            return Ok(None);
        };
        let n = images.dims()[0];
        self.accuracy(images, &vec![identity; n]).map(Some)
    }

    /// The share of `images` whose identity the encoder names as `identities` (one index into
    /// [`FACE_ENCODER_PEOPLE`] per image) says. Fails unless there is one identity per image,
    /// each an index into [`FACE_ENCODER_PEOPLE`].
    pub fn accuracy(
        &self,
        images: Tensor<B, 4>,
        identities: &[usize],
    ) -> Result<f64, MetricsError> {
        let n = images.dims()[0];
        check_identities(n, identities)?;
        let device = images.device();
        let expected: Vec<i64> = identities.iter().map(|&identity| identity as i64).collect();
        let expected = Tensor::<B, 1, Int>::from_data(TensorData::new(expected, [n]), &device);
        let right = self
            .identify(images)?
            .equal(expected)
            .int()
            .sum()
            .into_scalar()
            .elem::<f64>();
        Ok(right / n as f64)
    }

    /// The network with every feature multiplied by `scale` (what training ends with).
    pub fn with_feature_scale(mut self, scale: f32) -> Self {
        let device = self.feature_scale.device();
        self.feature_scale =
            Param::from_tensor(Tensor::from_floats([scale], &device)).set_require_grad(false);
        self
    }

    /// The features before the feature scale.
    fn trunk(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError> {
        let [n, channels, h, w] = images.dims();
        if n == 0 || channels == 0 || h == 0 || w == 0 {
            return Err(MetricsError::Images {
                shape: vec![n, channels, h, w],
                reason: "the batch is empty",
            });
        }
        let gray = images.mean_dim(1);
        let mut x = adaptive_avg_pool2d(gray, [FACE_ENCODER_INPUT; 2]) * 2.0 - 1.0;
        let last = self.convs.len() - 1;
        for (index, conv) in self.convs.iter().enumerate() {
            x = relu(conv.forward(x));
            if index < last {
                x = max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        Ok(x.mean_dim(3).mean_dim(2).reshape([n, FACE_ENCODER_DIMS]))
    }
}

impl<B: Backend> FeatureExtractor<B> for FaceEncoder<B> {
    fn dims(&self) -> usize {
        FACE_ENCODER_DIMS
    }

    fn features(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError> {
        self.embed(images)
    }
}

/// Which images of a labelled set train a classifier and which are held out to test it: the
/// last `held_out` images of each class, in the set's order (file order for a folder), are
/// held out; the rest train. With the bundled faces and `held_out = 2`: 320 to train, 80 held
/// out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySplit {
    /// Indices of the images to train on, in order.
    pub train: Vec<usize>,
    /// Indices of the held-out images, in order.
    pub held_out: Vec<usize>,
}

impl IdentitySplit {
    /// The split of images whose classes are `labels` (one per image).
    pub fn new(labels: &[usize], held_out: usize) -> Self {
        let classes = labels.iter().max().map_or(0, |&max| max + 1);
        let mut seen_from_end = vec![0; classes];
        let mut is_held_out = vec![false; labels.len()];
        for (index, &label) in labels.iter().enumerate().rev() {
            if seen_from_end[label] < held_out {
                seen_from_end[label] += 1;
                is_held_out[index] = true;
            }
        }
        let (held_out, train): (Vec<usize>, Vec<usize>) =
            (0..labels.len()).partition(|&index| is_held_out[index]);
        Self { train, held_out }
    }
}

/// Refuses `identities` unless there is one per image (`count` of them, else a
/// [`MetricsError::Sizes`]), each an index into [`FACE_ENCODER_PEOPLE`] (else
/// [`MetricsError::OutOfRange`]): what scoring and training the encoder both need.
pub(crate) fn check_identities(count: usize, identities: &[usize]) -> Result<(), MetricsError> {
    if identities.len() != count {
        return Err(MetricsError::Sizes {
            a: count,
            b: identities.len(),
        });
    }
    match identities
        .iter()
        .find(|&&identity| identity >= FACE_ENCODER_IDENTITIES)
    {
        Some(&unknown) => Err(MetricsError::OutOfRange {
            name: "an identity",
            value: unknown as f64,
            expected: "an index into FACE_ENCODER_PEOPLE",
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_images_of_each_class_are_held_out() {
        let labels = [0, 0, 1, 0, 1, 2, 1, 0];
        let split = IdentitySplit::new(&labels, 2);
        assert_eq!(split.held_out, vec![3, 4, 5, 6, 7]);
        assert_eq!(split.train, vec![0, 1, 2]);
        assert_eq!(IdentitySplit::new(&labels, 0).held_out, Vec::<usize>::new());
        assert_eq!(
            IdentitySplit::new(&[], 2),
            IdentitySplit {
                train: vec![],
                held_out: vec![]
            }
        );
    }
}
