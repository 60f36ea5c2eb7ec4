//! The UNet seen by the samplers: the adapter between kiln-unet and kiln-sampler.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use kiln_forward::Prediction;
use kiln_kernels::on_worker_thread;
use kiln_sampler::{ClassConditional, Denoiser, ModelError, SamplerError};
use kiln_unet::{UNet, UNetError};

/// A [`UNet`] seen as a [`Denoiser`]: the timestep is broadcast over the batch; class-conditional
/// models get the null label (unconditional generation). As a [`ClassConditional`] model it
/// takes a label per sample, for guidance ([`kiln_sampler::Guided`]). On burn's Flex backend
/// each model call runs on one of rayon's worker threads ([`on_worker_thread`]), where the CPU
/// kernels start fastest.
///
/// A UNet that learns the variance of its reverse steps ([`UNet::learns_variance`]: twice
/// the input's channels) gives its prediction alone to [`Denoiser::denoise`] and to guidance,
/// and both halves to [`Denoiser::denoise_with_variance`] (DDPM's `learned_range`).
///
/// An input the UNet refuses (an empty batch, another channel count, a size that does not
/// halve down its levels, labels not one per sample) is a [`SamplerError::Model`] holding the
/// [`UNetError`]; a label the model does not have is a [`SamplerError::ClassOutOfRange`].
#[derive(Debug, Clone)]
pub struct UNetDenoiser<'a, B: Backend> {
    model: &'a UNet<B>,
    prediction: Prediction,
}

impl<'a, B: Backend> UNetDenoiser<'a, B> {
    /// `model`, trained to predict `prediction`.
    pub fn new(model: &'a UNet<B>, prediction: Prediction) -> Self {
        Self { model, prediction }
    }

    /// The UNet at `timestep` for the whole batch, with `labels` if any.
    fn forward(
        &self,
        sample: Tensor<B, 4>,
        timestep: f64,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        let [batch, ..] = sample.dims();
        let timesteps = Tensor::full([batch], timestep, &sample.device());
        on_worker_thread::<B, _>(|| self.model.forward(sample, timesteps, labels))
            .map_err(|error: UNetError| ModelError::new(error).into())
    }

    /// The UNet's whole output, prediction and learned variance, for a model that learns its
    /// variance; [`SamplerError::NoLearnedVariance`] for one that does not.
    fn forward_with_variance(
        &self,
        sample: Tensor<B, 4>,
        timestep: f64,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        if !self.model.learns_variance() {
            return Err(SamplerError::NoLearnedVariance);
        }
        self.forward(sample, timestep, labels)
    }

    /// `labels` on `device`, the null label for `None`, after checking that the model has
    /// each class.
    fn label_tensor(
        &self,
        labels: &[Option<usize>],
        device: &B::Device,
    ) -> Result<Tensor<B, 1, Int>, SamplerError> {
        let null = ClassConditional::<B, 4>::classes(self);
        if let Some(class) = labels
            .iter()
            .flatten()
            .copied()
            .find(|&class| class >= null)
        {
            return Err(SamplerError::ClassOutOfRange {
                class,
                classes: null,
            });
        }
        let labels: Vec<i64> = labels.iter().map(|l| l.unwrap_or(null) as i64).collect();
        let count = labels.len();
        Ok(Tensor::from_data(TensorData::new(labels, [count]), device))
    }

    /// The prediction in the UNet's `output`: the first half of its channels where the model
    /// learns its variance, else all of them.
    fn prediction_part(&self, output: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.model.learns_variance() {
            output.narrow(1, 0, self.model.in_channels())
        } else {
            output
        }
    }
}

impl<B: Backend> Denoiser<B, 4> for UNetDenoiser<'_, B> {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn denoise(&self, sample: Tensor<B, 4>, timestep: f64) -> Result<Tensor<B, 4>, SamplerError> {
        Ok(self.prediction_part(self.forward(sample, timestep, None)?))
    }

    fn learns_variance(&self) -> bool {
        self.model.learns_variance()
    }

    fn denoise_with_variance(
        &self,
        sample: Tensor<B, 4>,
        timestep: f64,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        self.forward_with_variance(sample, timestep, None)
    }
}

impl<B: Backend> ClassConditional<B, 4> for UNetDenoiser<'_, B> {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn classes(&self) -> usize {
        self.model.null_label().unwrap_or(0)
    }

    fn denoise_labelled(
        &self,
        sample: Tensor<B, 4>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, 4>, SamplerError> {
        let labels = self.label_tensor(labels, &sample.device())?;
        Ok(self.prediction_part(self.forward(sample, timestep, Some(labels))?))
    }

    fn learns_variance(&self) -> bool {
        self.model.learns_variance()
    }

    fn denoise_labelled_with_variance(
        &self,
        sample: Tensor<B, 4>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, 4>, SamplerError> {
        let labels = self.label_tensor(labels, &sample.device())?;
        self.forward_with_variance(sample, timestep, Some(labels))
    }
}
