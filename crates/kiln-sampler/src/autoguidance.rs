//! Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of
//! Itself") as a [`Denoiser`] wrapper: [`AutoGuided`].

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;

use crate::error::check_range;
use crate::sampler::{check_output_shape, join_output, split_output};
use crate::{ClassConditional, Denoiser, SamplerError};

/// A model guided by a weaker version of itself (autoguidance; Karras et al. 2024, "Guiding a
/// Diffusion Model with a Bad Version of Itself"): a [`Denoiser`] that any sampler drives.
///
/// Classifier-free guidance extrapolates from an unconditional prediction towards the
/// conditional one; autoguidance extrapolates from the prediction of a guiding model that is
/// worse in the same ways as the model (smaller, trained for less long) towards the model's
/// own, with weight w:
///
/// ```text
/// f̂ = f_guide(x_t, t) + w · (f(x_t, t) − f_guide(x_t, t))
/// ```
///
/// Where the two models' errors agree, the difference pushes away from them, so samples move
/// towards the data without the loss of variety that guidance towards a class brings; it works
/// for unconditional models, which classifier-free guidance cannot guide. w = 1 is the model
/// alone and w = 0 the guide alone (one call; the model's too where its learned variance is
/// asked for); otherwise each call runs both models. Both must predict the same kind of
/// output (the weights sum to one, so the combination is then the same step for every kind,
/// as for classifier-free guidance); a model that learns its variance has the combined
/// prediction and its own variance, and a guide that learns one gives its prediction alone.
///
/// With class labels ([`ClassConditional`]) both models are called with the same labels, so
/// [`crate::Guided`] around it guides towards a class on top.
#[derive(Debug, Clone)]
pub struct AutoGuided<M, G> {
    model: M,
    guide: G,
    scale: f64,
}

impl<M, G> AutoGuided<M, G> {
    /// `model` guided by `guide` with weight `scale` (w ≥ 0; 1 is `model` alone). A weight
    /// that is not finite and non-negative is a [`SamplerError::OutOfRange`]; models that
    /// predict different kinds of output are [`SamplerError::Incompatible`].
    pub fn new<B: Backend, const D: usize>(
        model: M,
        guide: G,
        scale: f64,
    ) -> Result<Self, SamplerError>
    where
        M: Denoiser<B, D>,
        G: Denoiser<B, D>,
    {
        check_range(
            "autoguidance scale",
            scale,
            0.0..=f64::MAX,
            "a finite weight ≥ 0",
        )?;
        if model.prediction() != guide.prediction() {
            return Err(SamplerError::Incompatible {
                sampler: "autoguidance",
                reason: "the guiding model predicts another kind of output than the model; \
                         guide with a model trained with the same prediction type",
            });
        }
        Ok(Self {
            model,
            guide,
            scale,
        })
    }

    /// The guided prediction from the model's prediction `output` (of the `sample`'s shape)
    /// and the guiding model's `guide` for `sample`: f_g + w (f − f_g).
    fn combine<B: Backend, const D: usize>(
        &self,
        output: Tensor<B, D>,
        guide: Tensor<B, D>,
        sample: &Tensor<B, D>,
    ) -> Result<Tensor<B, D>, SamplerError> {
        check_output_shape(&guide, sample)?;
        Ok(guide.clone() + (output - guide).mul_scalar(self.scale))
    }

    /// The model's output `model(x_t)` where w = 1, the guiding model's `guide(x_t)` where
    /// w = 0 without a variance; else the guided output from the two, followed along
    /// dimension 1 by the model's variance `with_variance` (which `model` then returns after
    /// its prediction).
    fn guided<B: Backend, const D: usize>(
        &self,
        sample: Tensor<B, D>,
        with_variance: bool,
        model: impl Fn(Tensor<B, D>) -> Result<Tensor<B, D>, SamplerError>,
        guide: impl Fn(Tensor<B, D>) -> Result<Tensor<B, D>, SamplerError>,
    ) -> Result<Tensor<B, D>, SamplerError> {
        if self.scale == 1.0 {
            return model(sample);
        }
        if self.scale == 0.0 && !with_variance {
            let output = guide(sample.clone())?;
            check_output_shape(&output, &sample)?;
            return Ok(output);
        }
        let (output, variance) = split_output(
            "autoguidance",
            model(sample.clone())?,
            &sample,
            with_variance,
        )?;
        let guided = self.combine(output, guide(sample.clone())?, &sample)?;
        Ok(join_output(guided, variance))
    }
}

impl<B, const D: usize, M, G> Denoiser<B, D> for AutoGuided<M, G>
where
    B: Backend,
    M: Denoiser<B, D>,
    G: Denoiser<B, D>,
{
    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }

    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        self.guided(
            sample,
            false,
            |x| self.model.denoise(x, timestep),
            |x| self.guide.denoise(x, timestep),
        )
    }

    fn learns_variance(&self) -> bool {
        self.model.learns_variance()
    }

    /// The guided prediction, and beside it the variance the model (not its guide) learns.
    fn denoise_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
    ) -> Result<Tensor<B, D>, SamplerError> {
        self.guided(
            sample,
            true,
            |x| self.model.denoise_with_variance(x, timestep),
            |x| self.guide.denoise(x, timestep),
        )
    }
}

impl<B, const D: usize, M, G> ClassConditional<B, D> for AutoGuided<M, G>
where
    B: Backend,
    M: ClassConditional<B, D>,
    G: ClassConditional<B, D>,
{
    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }

    /// The model's classes; the guiding model must have them too (a label it lacks is its
    /// error at the call).
    fn classes(&self) -> usize {
        self.model.classes()
    }

    fn denoise_labelled(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, D>, SamplerError> {
        self.guided(
            sample,
            false,
            |x| self.model.denoise_labelled(x, timestep, labels),
            |x| self.guide.denoise_labelled(x, timestep, labels),
        )
    }

    fn learns_variance(&self) -> bool {
        self.model.learns_variance()
    }

    fn denoise_labelled_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, D>, SamplerError> {
        self.guided(
            sample,
            true,
            |x| {
                self.model
                    .denoise_labelled_with_variance(x, timestep, labels)
            },
            |x| self.guide.denoise_labelled(x, timestep, labels),
        )
    }
}
