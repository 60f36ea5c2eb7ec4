//! Feature networks: images in, one feature vector per image out.

use burn::tensor::{Tensor, backend::Backend};

use crate::{Features, MetricsError};

/// A network that maps images to feature vectors, the space the metrics compare sets in.
pub trait FeatureExtractor<B: Backend> {
    /// Values per feature vector.
    fn dims(&self) -> usize;

    /// `[n, channels, h, w]` images with values in [0, 1] → `[n, dims]` features. Each network
    /// states the channels and sizes it takes.
    fn features(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, MetricsError>;
}

/// The features of every image in `batches`, read back to the host one batch at a time (so a
/// large set never sits on the device whole).
pub fn extract<B: Backend>(
    extractor: &impl FeatureExtractor<B>,
    batches: impl IntoIterator<Item = Tensor<B, 4>>,
) -> Result<Features, MetricsError> {
    let mut values = Vec::new();
    for batch in batches {
        let features = extractor.features(batch)?;
        values.extend(
            features
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|error| MetricsError::Device(format!("{error:?}")))?,
        );
    }
    Features::new(&values, extractor.dims())
}

/// `images` as `[n, 3, h, w]`: three channels kept, one repeated (a grayscale image as RGB, as
/// PIL's `convert("RGB")` makes it); an empty batch or any other channel count refused.
pub(crate) fn as_rgb<B: Backend>(images: Tensor<B, 4>) -> Result<Tensor<B, 4>, MetricsError> {
    let [n, channels, h, w] = images.dims();
    let refuse = |reason| MetricsError::Images {
        shape: vec![n, channels, h, w],
        reason,
    };
    if n == 0 || h == 0 || w == 0 {
        return Err(refuse("the batch is empty"));
    }
    match channels {
        3 => Ok(images),
        1 => Ok(images.repeat_dim(1, 3)),
        _ => Err(refuse("expected 1 (grayscale) or 3 (RGB) channels")),
    }
}
