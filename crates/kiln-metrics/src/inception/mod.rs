//! InceptionV3 as pytorch-fid defines it for FID (Heusel et al. 2017): the network of Szegedy et
//! al. 2016 with the TensorFlow FID graph's weights (`pt_inception-2015-12-05-6726825d.pth`) and
//! its pooling variants, images resized bilinearly to 299×299 (`align_corners=False`, no
//! antialiasing) and scaled from [0, 1] to [-1, 1], and the 2,048 features of the final average
//! pool ("pool3"). FID computed with these features is comparable with pytorch-fid's and the
//! papers that use it.

mod blocks;
mod conv;

use std::path::{Path, PathBuf};

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, backend::Backend};

use crate::extractor::as_rgb;
use crate::{FeatureExtractor, MetricsError, PthWeights, WeightSource};
use blocks::{Loader, MixedA, MixedB, MixedC, MixedD, MixedE, PoolKind, max_3x3};
use conv::{BasicConv, ConvShape};

/// The environment variable [`inception_weights`] reads: the path of pytorch-fid's weight file.
pub const INCEPTION_WEIGHTS_ENV: &str = "KILN_INCEPTION_WEIGHTS";

/// Where pytorch-fid publishes the FID weights.
pub const INCEPTION_WEIGHTS_URL: &str = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";

/// The side the network resizes every image to.
const INPUT_SIDE: usize = 299;

/// The path of the InceptionV3 weights: `explicit` when given, else the file named by
/// [`INCEPTION_WEIGHTS_ENV`]; [`MetricsError::NoInceptionWeights`] (which says where to download
/// them) when neither is.
pub fn inception_weights(explicit: Option<&Path>) -> Result<PathBuf, MetricsError> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(INCEPTION_WEIGHTS_ENV).map(PathBuf::from))
        .ok_or(MetricsError::NoInceptionWeights {
            env: INCEPTION_WEIGHTS_ENV,
            url: INCEPTION_WEIGHTS_URL,
        })
}

/// pytorch-fid's `InceptionV3([3])` (resize and normalisation on), its batch norms folded into
/// the convolutions.
///
/// ```no_run
/// use burn::backend::Flex;
/// use kiln_metrics::{FeatureExtractor, FidInception, inception_weights};
///
/// let device = Default::default();
/// let network = FidInception::<Flex>::from_pth(inception_weights(None)?, &device)?;
/// let images = burn::tensor::Tensor::<Flex, 4>::ones([2, 3, 64, 64], &device);
/// assert_eq!(network.features(images)?.dims(), [2, 2048]);
/// # Ok::<(), kiln_metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FidInception<B: Backend> {
    /// `Conv2d_1a_3x3`, `Conv2d_2a_3x3`, `Conv2d_2b_3x3`, then a 3×3 max pool with stride 2.
    stem: [BasicConv<B>; 3],
    /// `Conv2d_3b_1x1`, `Conv2d_4a_3x3`, then a 3×3 max pool with stride 2.
    reduction: [BasicConv<B>; 2],
    mixed_5: [MixedA<B>; 3],
    mixed_6a: MixedB<B>,
    mixed_6: [MixedC<B>; 4],
    mixed_7a: MixedD<B>,
    mixed_7b: MixedE<B>,
    mixed_7c: MixedE<B>,
}

impl<B: Backend> FidInception<B> {
    /// The network with pytorch-fid's weights from `path` (a `.pth` state dict).
    pub fn from_pth(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, MetricsError> {
        Self::load(&mut PthWeights::open(path)?, device)
    }

    /// The network with the weights `source` names as torchvision's `Inception3` state dict
    /// does (`Mixed_6b.branch7x7_2.conv.weight`, `….bn.running_var`, …); the classifier's are
    /// not read.
    pub fn load(source: &mut dyn WeightSource, device: &B::Device) -> Result<Self, MetricsError> {
        let mut loader = Loader { source, device };
        let square = ConvShape::square;
        Ok(Self {
            stem: [
                loader.conv("Conv2d_1a_3x3", square(3, 32, 3).strided(2))?,
                loader.conv("Conv2d_2a_3x3", square(32, 32, 3))?,
                loader.conv("Conv2d_2b_3x3", square(32, 64, 3).padded([1, 1]))?,
            ],
            reduction: [
                loader.conv("Conv2d_3b_1x1", square(64, 80, 1))?,
                loader.conv("Conv2d_4a_3x3", square(80, 192, 3))?,
            ],
            mixed_5: [
                MixedA::load(&mut loader, "Mixed_5b", 192, 32)?,
                MixedA::load(&mut loader, "Mixed_5c", 256, 64)?,
                MixedA::load(&mut loader, "Mixed_5d", 288, 64)?,
            ],
            mixed_6a: MixedB::load(&mut loader, "Mixed_6a", 288)?,
            mixed_6: [
                MixedC::load(&mut loader, "Mixed_6b", 768, 128)?,
                MixedC::load(&mut loader, "Mixed_6c", 768, 160)?,
                MixedC::load(&mut loader, "Mixed_6d", 768, 160)?,
                MixedC::load(&mut loader, "Mixed_6e", 768, 192)?,
            ],
            mixed_7a: MixedD::load(&mut loader, "Mixed_7a", 768)?,
            mixed_7b: MixedE::load(&mut loader, "Mixed_7b", 1280, PoolKind::Average)?,
            mixed_7c: MixedE::load(&mut loader, "Mixed_7c", 2048, PoolKind::Max)?,
        })
    }

    /// `[n, 3, 299, 299]` in [-1, 1] → `[n, 2048, 8, 8]`, the map before pool3.
    fn trunk(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = max_3x3(self.stem.iter().fold(x, |x, unit| unit.forward(x)), 2);
        let x = max_3x3(self.reduction.iter().fold(x, |x, unit| unit.forward(x)), 2);
        let x = self.mixed_5.iter().fold(x, |x, block| block.forward(x));
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6.iter().fold(x, |x, block| block.forward(x));
        let x = self.mixed_7a.forward(x);
        self.mixed_7c.forward(self.mixed_7b.forward(x))
    }
}

impl<B: Backend> FeatureExtractor<B> for FidInception<B> {
    fn dims(&self) -> usize {
        2048
    }

    /// Images of any size, RGB or grayscale (repeated to RGB), values in [0, 1].
    fn features(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError> {
        let images = as_rgb(images)?;
        let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
        let x = interpolate(images, [INPUT_SIDE, INPUT_SIDE], options) * 2.0 - 1.0;
        let map = self.trunk(x);
        let [n, channels, h, w] = map.dims();
        Ok(map
            .reshape([n, channels, h * w])
            .mean_dim(2)
            .reshape([n, channels]))
    }
}
