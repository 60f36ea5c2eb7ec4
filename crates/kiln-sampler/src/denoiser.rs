use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;

use crate::SamplerError;

/// A denoising model: maps a noisy sample x_t at timestep t to a prediction of the kind
/// [`Denoiser::prediction`] names (ε, x_0 or v).
///
/// x_t is in the variance-preserving scale of training, x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε; σ-space
/// samplers rescale their state before calling the model. Timesteps are `f64` because σ-space
/// samplers (Euler, Karras σ) ask for fractional ones; a model trained on integer timesteps
/// embeds them as it would any real number. The same timestep applies to the whole batch.
/// Tensors may have any rank: images are `[batch, channels, height, width]`, test points
/// `[batch, dims]`.
///
/// A model may refuse an input (a shape or a label it does not take): it returns
/// [`SamplerError::Model`] with its own error ([`crate::ModelError`]), which every sampler and
/// editor hands on to its caller.
pub trait Denoiser<B: Backend, const D: usize> {
    /// The kind of output the model makes.
    fn prediction(&self) -> Prediction;

    /// The model's output for `sample` = x_t at `timestep`, or why it cannot make one. It has
    /// the sample's shape; the samplers refuse one that has not
    /// ([`SamplerError::ShapeMismatch`]).
    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError>;

    /// Whether the model also learns the variance of each reverse step (Nichol & Dhariwal
    /// 2021, §3.1), which [`Denoiser::denoise_with_variance`] then gives (a model that learns
    /// its variance implements both). `false` unless the model says otherwise.
    fn learns_variance(&self) -> bool {
        false
    }

    /// The model's prediction at `sample` = x_t and its learned variance, concatenated along
    /// dimension 1 (twice the sample's channels): the prediction, then v of the sample's
    /// shape, which DDPM's [`VarianceType::LearnedRange`](crate::VarianceType::LearnedRange)
    /// reads. This is how diffusers lays out the output of a UNet whose scheduler has
    /// `variance_type = "learned_range"` (twice the input channels out);
    /// [`Denoiser::denoise`] gives the prediction alone.
    ///
    /// A model that does not learn its variance (the default) fails with
    /// [`SamplerError::NoLearnedVariance`].
    fn denoise_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
    ) -> Result<Tensor<B, D>, SamplerError> {
        let _ = (sample, timestep);
        Err(SamplerError::NoLearnedVariance)
    }
}

/// A [`Denoiser`] made from a closure that cannot fail.
///
/// ```
/// use burn::backend::Flex;
/// use kiln_sampler::{Denoiser, FnDenoiser, Prediction};
///
/// // diffusers' scheduler-test model: x · t / (t + 1).
/// let dummy = FnDenoiser::new(Prediction::Epsilon, |x: burn::tensor::Tensor<Flex, 4>, t| {
///     x.mul_scalar(t / (t + 1.0))
/// });
/// assert_eq!(dummy.prediction(), Prediction::Epsilon);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FnDenoiser<F> {
    prediction: Prediction,
    function: F,
}

impl<F> FnDenoiser<F> {
    /// A denoiser that predicts `prediction` by calling `function(x_t, t)`.
    pub fn new(prediction: Prediction, function: F) -> Self {
        Self {
            prediction,
            function,
        }
    }
}

impl<B, const D: usize, F> Denoiser<B, D> for FnDenoiser<F>
where
    B: Backend,
    F: Fn(Tensor<B, D>, f64) -> Tensor<B, D>,
{
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        Ok((self.function)(sample, timestep))
    }
}
