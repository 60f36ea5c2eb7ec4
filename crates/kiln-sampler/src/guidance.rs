//! Classifier-free guidance (Ho & Salimans 2022) as a [`Denoiser`] wrapper, so every sampler
//! gets it.
//!
//! A class-conditional model trained with label dropout predicts both f(x_t, t, c) and the
//! unconditional f(x_t, t, ∅). Guidance with weight w samples with
//!
//! ```text
//! f̂ = f(x_t, t, ∅) + w · (f(x_t, t, c) − f(x_t, t, ∅))
//! ```
//!
//! computed as one model call on a doubled batch. At a fixed x_t, ε, x_0 and v are affine
//! functions of one another whose coefficients do not depend on the class, and the weights
//! 1 − w and w sum to one, so combining ε predictions, x_0 predictions or v predictions gives the
//! same guided step: the wrapper combines whatever the model outputs. A model that learns its
//! variance ([`Denoiser::learns_variance`]) has its predictions combined and the conditional
//! call's variance passed on beside them (GLIDE's choice).
//!
//! Guidance rescale φ (Lin et al. 2023, §3.4 and Algorithm 2) pulls the guided output's
//! per-sample standard deviation back towards the conditional one's, which over-strong guidance
//! inflates: f̂ ← f̂ · (φ · std(f_c)/std(f̂) + 1 − φ), with std over each sample's elements
//! (Bessel-corrected), as diffusers' `rescale_noise_cfg` does on the model output.
//!
//! A guidance interval (Kynkäänniemi et al. 2024) applies guidance only at timesteps inside
//! [t_lo, t_hi]; elsewhere the model is called once, conditionally (w = 1).

use std::ops::RangeInclusive;

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;

use crate::error::check_range;
use crate::sampler::{join_output, split_output};
use crate::{Denoiser, SamplerError};

/// A model that can be conditioned on a class label per batch element.
///
/// Labels are `0..classes()`; `None` asks for the unconditional prediction (the model's null
/// label).
pub trait ClassConditional<B: Backend, const D: usize> {
    /// The kind of output the model makes.
    fn prediction(&self) -> Prediction;

    /// The number of classes, not counting the null label.
    fn classes(&self) -> usize;

    /// The model's output for `sample` = x_t at `timestep`, element i conditioned on
    /// `labels[i]`. Callers pass one label per batch element, each below [`Self::classes`]; a
    /// model refuses other input with an error ([`SamplerError::ClassOutOfRange`] for a label
    /// it does not have, [`SamplerError::Model`] for an input it cannot take).
    fn denoise_labelled(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, D>, SamplerError>;

    /// Whether the model also learns its variance ([`Denoiser::learns_variance`]); `false`
    /// unless the model says otherwise.
    fn learns_variance(&self) -> bool {
        false
    }

    /// [`ClassConditional::denoise_labelled`] with the learned variance beside the prediction
    /// ([`Denoiser::denoise_with_variance`]'s layout). A model that does not learn its
    /// variance (the default) fails with [`SamplerError::NoLearnedVariance`].
    fn denoise_labelled_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, D>, SamplerError> {
        let _ = (sample, timestep, labels);
        Err(SamplerError::NoLearnedVariance)
    }
}

impl<B: Backend, const D: usize, M: ClassConditional<B, D> + ?Sized> ClassConditional<B, D> for &M {
    fn prediction(&self) -> Prediction {
        (**self).prediction()
    }

    fn classes(&self) -> usize {
        (**self).classes()
    }

    fn denoise_labelled(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, D>, SamplerError> {
        (**self).denoise_labelled(sample, timestep, labels)
    }

    fn learns_variance(&self) -> bool {
        (**self).learns_variance()
    }

    fn denoise_labelled_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, D>, SamplerError> {
        (**self).denoise_labelled_with_variance(sample, timestep, labels)
    }
}

/// How strongly, and when, to guide.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidanceConfig {
    /// The guidance weight w: 0 is unconditional sampling, 1 plain conditional sampling,
    /// larger values push samples towards what is typical of the class.
    pub scale: f64,
    /// Guidance rescale φ ∈ [0, 1] (0: none).
    pub rescale: f64,
    /// Guide only at timesteps in this range (`None`: at every step).
    pub interval: Option<RangeInclusive<f64>>,
}

impl GuidanceConfig {
    /// Guidance weight `scale` at every step, without rescale.
    pub fn new(scale: f64) -> Self {
        Self {
            scale,
            rescale: 0.0,
            interval: None,
        }
    }

    /// The same guidance with rescale φ = `rescale`.
    pub fn with_rescale(mut self, rescale: f64) -> Self {
        self.rescale = rescale;
        self
    }

    /// The same guidance, applied only at timesteps in `interval`.
    pub fn with_interval(mut self, interval: RangeInclusive<f64>) -> Self {
        self.interval = Some(interval);
        self
    }

    fn validate(&self) -> Result<(), SamplerError> {
        check_range(
            "guidance scale",
            self.scale,
            0.0..=f64::MAX,
            "a finite weight ≥ 0",
        )?;
        check_range("guidance rescale", self.rescale, 0.0..=1.0, "φ in [0, 1]")?;
        if let Some(interval) = &self.interval {
            check_range(
                "guidance interval start",
                *interval.start(),
                0.0..=*interval.end(),
                "a finite start no later than the interval's end",
            )?;
        }
        Ok(())
    }
}

/// A [`ClassConditional`] model guided towards fixed classes: a [`Denoiser`] that any sampler
/// drives.
#[derive(Debug, Clone)]
pub struct Guided<M> {
    model: M,
    labels: Vec<Option<usize>>,
    config: GuidanceConfig,
}

impl<M> Guided<M> {
    /// `model` guided towards `labels[i]` for batch element i, with `config`.
    ///
    /// There must be at least one label, every label below the model's number of classes, and
    /// the model must have at least one class (an unconditional model cannot be guided).
    pub fn new<B: Backend, const D: usize>(
        model: M,
        labels: Vec<usize>,
        config: GuidanceConfig,
    ) -> Result<Self, SamplerError>
    where
        M: ClassConditional<B, D>,
    {
        config.validate()?;
        let classes = model.classes();
        if classes == 0 {
            return Err(SamplerError::Unconditional);
        }
        if let Some(&class) = labels.iter().find(|&&class| class >= classes) {
            return Err(SamplerError::ClassOutOfRange { class, classes });
        }
        if labels.is_empty() {
            return Err(SamplerError::OutOfRange {
                name: "labels",
                value: 0.0,
                expected: "one label per sample, at least one",
            });
        }
        Ok(Self {
            model,
            labels: labels.into_iter().map(Some).collect(),
            config,
        })
    }

    /// Checks that the guided labels fit a batch of `batch` samples, as [`Denoiser::denoise`]
    /// requires (it returns this error otherwise).
    pub fn check_batch(&self, batch: usize) -> Result<(), SamplerError> {
        if self.labels.len() == batch {
            Ok(())
        } else {
            Err(SamplerError::LabelCount {
                labels: self.labels.len(),
                batch,
            })
        }
    }

    /// The guidance settings.
    pub fn config(&self) -> &GuidanceConfig {
        &self.config
    }

    fn guides_at(&self, timestep: f64) -> bool {
        self.config
            .interval
            .as_ref()
            .is_none_or(|interval| interval.contains(&timestep))
    }

    /// The model's outputs for a guided call at `sample` = x_t, `with_variance` or not: one
    /// call's output where guidance needs one (weight 0 or 1, or outside the interval), else
    /// the two halves of one call on the doubled batch.
    pub(crate) fn outputs<B: Backend, const D: usize>(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        with_variance: bool,
    ) -> Result<GuidedOutputs<B, D>, SamplerError>
    where
        M: ClassConditional<B, D>,
    {
        let batch = sample.dims()[0];
        self.check_batch(batch)?;
        let call = |sample: Tensor<B, D>, labels: &[Option<usize>]| {
            if with_variance {
                self.model
                    .denoise_labelled_with_variance(sample, timestep, labels)
            } else {
                self.model.denoise_labelled(sample, timestep, labels)
            }
        };
        let scale = if self.guides_at(timestep) {
            self.config.scale
        } else {
            1.0
        };
        if scale == 1.0 {
            return call(sample, &self.labels).map(GuidedOutputs::Single);
        }
        if scale == 0.0 {
            return call(sample, &vec![None; batch]).map(GuidedOutputs::Single);
        }
        let doubled = Tensor::cat(vec![sample.clone(), sample], 0);
        let labels: Vec<Option<usize>> = self
            .labels
            .iter()
            .copied()
            .chain(std::iter::repeat_n(None, batch))
            .collect();
        let outputs = call(doubled.clone(), &labels)?;
        let (outputs, variance) = split_output("guidance", outputs, &doubled, with_variance)?;
        Ok(GuidedOutputs::Pair(GuidedPair {
            conditional: outputs.clone().narrow(0, 0, batch),
            unconditional: outputs.narrow(0, batch, batch),
            variance: variance.map(|variance| variance.narrow(0, 0, batch)),
            scale,
        }))
    }

    /// The guided output at `sample` = x_t, `with_variance` or not: the combination of the
    /// conditional and unconditional predictions (rescaled where asked), followed along
    /// dimension 1 by the conditional variance `with_variance`.
    fn guide<B: Backend, const D: usize>(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        with_variance: bool,
    ) -> Result<Tensor<B, D>, SamplerError>
    where
        M: ClassConditional<B, D>,
    {
        Ok(match self.outputs(sample, timestep, with_variance)? {
            GuidedOutputs::Single(output) => output,
            GuidedOutputs::Pair(pair) => {
                let difference = pair.conditional.clone() - pair.unconditional.clone();
                let guided = pair.unconditional.clone() + difference.mul_scalar(pair.scale);
                pair.finish(guided, self.config.rescale)
            }
        })
    }
}

/// What a guided call's model outputs are ([`Guided::outputs`]).
pub(crate) enum GuidedOutputs<B: Backend, const D: usize> {
    /// One call's output, already what the sampler gets.
    Single(Tensor<B, D>),
    /// The conditional and unconditional predictions, for the caller to combine.
    Pair(GuidedPair<B, D>),
}

/// The two predictions of one guided call on the doubled batch, with the guidance weight w
/// in force there.
pub(crate) struct GuidedPair<B: Backend, const D: usize> {
    /// f(x_t, t, c).
    pub(crate) conditional: Tensor<B, D>,
    /// f(x_t, t, ∅).
    pub(crate) unconditional: Tensor<B, D>,
    /// The conditional call's learned variance, where the sampler asked for it.
    pub(crate) variance: Option<Tensor<B, D>>,
    /// w.
    pub(crate) scale: f64,
}

impl<B: Backend, const D: usize> GuidedPair<B, D> {
    /// `guided`, a combination of the pair, rescaled by φ = `rescale` towards the conditional
    /// prediction's standard deviation (Lin et al. 2023; none at 0), followed along dimension
    /// 1 by the conditional variance where there is one.
    pub(crate) fn finish(self, guided: Tensor<B, D>, rescale: f64) -> Tensor<B, D> {
        let guided = if rescale == 0.0 {
            guided
        } else {
            let batch = guided.dims()[0];
            let ratio = sample_std(self.conditional) / sample_std(guided.clone());
            let factor = ratio.mul_scalar(rescale).add_scalar(1.0 - rescale);
            guided * factor.reshape(broadcast_shape::<D>(batch))
        };
        join_output(guided, self.variance)
    }
}

impl<B, const D: usize, M> Denoiser<B, D> for Guided<M>
where
    B: Backend,
    M: ClassConditional<B, D>,
{
    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }

    /// A batch not as long as the labels is a [`SamplerError::LabelCount`].
    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        self.guide(sample, timestep, false)
    }

    fn learns_variance(&self) -> bool {
        self.model.learns_variance()
    }

    /// The guided prediction, and beside it the variance the model learns for the classes
    /// (the conditional call's, as GLIDE does; the unconditional one's at weight 0).
    fn denoise_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
    ) -> Result<Tensor<B, D>, SamplerError> {
        self.guide(sample, timestep, true)
    }
}

/// Each sample's standard deviation over its elements (Bessel-corrected), as `[batch]`.
fn sample_std<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    let batch = x.dims()[0];
    rows(x).var(1).sqrt().reshape([batch])
}

/// `x` flattened to one row per sample.
pub(crate) fn rows<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 2> {
    let batch = x.dims()[0];
    x.reshape([batch as i32, -1])
}

/// `[batch, 1, …, 1]` with rank `D`.
fn broadcast_shape<const D: usize>(batch: usize) -> [usize; D] {
    let mut shape = [1; D];
    shape[0] = batch;
    shape
}
