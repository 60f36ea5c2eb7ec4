use burn::tensor::{Tensor, backend::Backend};

use crate::SamplerError;
use crate::error::check_range;

/// Dynamic thresholding of the predicted x_0 (Saharia et al. 2022, "Photorealistic
/// Text-to-Image Diffusion Models with Deep Language Understanding", §2.3): per sample, s is
/// the `ratio` quantile of |x̂_0|, clamped to [1, `max_value`]; x̂_0 is clamped to [−s, s] and
/// divided by s. diffusers' `thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicThresholding {
    /// The quantile of |x̂_0| taken as the threshold (0.995 in the paper).
    pub ratio: f64,
    /// The largest threshold (1.0 for pixel-space models).
    pub max_value: f64,
}

impl Default for DynamicThresholding {
    fn default() -> Self {
        Self {
            ratio: 0.995,
            max_value: 1.0,
        }
    }
}

/// How a sampler keeps its x_0 prediction in range: dynamic thresholding if set, else
/// clamping to [−`clip_sample_range`, `clip_sample_range`] if `clip_sample`, else nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleClipping {
    /// Clamp x̂_0 (diffusers' `clip_sample`).
    pub clip_sample: bool,
    /// The clamp's bound (diffusers' `clip_sample_range`, 1.0 by default).
    pub clip_sample_range: f64,
    /// Dynamic thresholding, which takes precedence over `clip_sample`.
    pub thresholding: Option<DynamicThresholding>,
}

impl Default for SampleClipping {
    fn default() -> Self {
        Self {
            clip_sample: false,
            clip_sample_range: 1.0,
            thresholding: None,
        }
    }
}

impl SampleClipping {
    /// Dynamic thresholding alone, if any (the multistep solvers have no plain clamp).
    pub const fn thresholding_only(thresholding: Option<DynamicThresholding>) -> Self {
        Self {
            clip_sample: false,
            clip_sample_range: 1.0,
            thresholding,
        }
    }

    /// Checks the settings.
    pub(crate) fn validate(&self) -> Result<(), SamplerError> {
        if self.clip_sample {
            let range = self.clip_sample_range;
            check_range(
                "clip_sample_range",
                range,
                f64::MIN_POSITIVE..=f64::MAX,
                "a positive number",
            )?;
        }
        if let Some(threshold) = self.thresholding {
            let ratio = threshold.ratio;
            check_range(
                "dynamic_thresholding_ratio",
                ratio,
                0.0..=1.0,
                "a value in [0, 1]",
            )?;
            let max = threshold.max_value;
            check_range(
                "sample_max_value",
                max,
                f64::MIN_POSITIVE..=f64::MAX,
                "a positive number",
            )?;
        }
        Ok(())
    }

    /// Applies the clipping to a predicted x_0.
    pub(crate) fn apply<B: Backend, const D: usize>(&self, x0: Tensor<B, D>) -> Tensor<B, D> {
        match self.thresholding {
            Some(threshold) => dynamic_threshold(x0, threshold),
            None if self.clip_sample => {
                let range = self.clip_sample_range;
                x0.clamp(-range, range)
            }
            None => x0,
        }
    }
}

/// Dynamic thresholding on the device: sort |x| per sample, interpolate the quantile linearly
/// between neighbours (as `torch.quantile`), clamp and rescale.
fn dynamic_threshold<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    threshold: DynamicThresholding,
) -> Tensor<B, D> {
    let shape = x.dims();
    let batch = shape[0];
    let count = shape.iter().skip(1).product::<usize>();
    // No elements, no quantile: nothing to clamp.
    if batch == 0 || count == 0 {
        return x;
    }
    let flat: Tensor<B, 2> = x.reshape([batch, count]);
    let sorted = flat.clone().abs().sort(1);
    let position = threshold.ratio * (count - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    let weight = position - low as f64;
    let at = |index: usize| sorted.clone().narrow(1, index, 1);
    let quantile = at(low).mul_scalar(1.0 - weight) + at(high).mul_scalar(weight);
    let s = quantile.clamp_min(1.0).clamp_max(threshold.max_value);
    let s = s.expand([batch, count]);
    let clamped = flat.max_pair(s.clone().neg()).min_pair(s.clone()) / s;
    clamped.reshape(shape)
}
