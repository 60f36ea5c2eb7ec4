use std::fmt;
use std::sync::Arc;

use kiln_forward::Prediction;
use kiln_schedule::ScheduleError;
use thiserror::Error;

/// Everything that can be wrong with a sampler's configuration or use.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplerError {
    /// The schedule or the requested steps are invalid (zero steps, more steps than training
    /// timesteps, …).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),

    /// The sampler has no solver of this order.
    #[error("{sampler} has no order {order}; expected {expected}")]
    UnsupportedOrder {
        /// The sampler's name.
        sampler: &'static str,
        /// The requested order.
        order: usize,
        /// The orders it has.
        expected: &'static str,
    },

    /// The sampler cannot use this kind of model output at this step (an ε prediction where
    /// ᾱ = 0, as at the last step of a zero-terminal-SNR schedule).
    #[error("{sampler} cannot use a {prediction:?} prediction at timestep {timestep}")]
    UnsupportedPrediction {
        /// The sampler's name.
        sampler: &'static str,
        /// The kind of model output.
        prediction: Prediction,
        /// The timestep of the step.
        timestep: f64,
    },

    /// A numeric setting is outside its range.
    #[error("{name} is {value}; expected {expected}")]
    OutOfRange {
        /// The setting's name in diffusers' vocabulary.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The range it must lie in, in words.
        expected: &'static str,
    },

    /// Two settings that cannot go together.
    #[error("{sampler}: {reason}")]
    Incompatible {
        /// The sampler's name.
        sampler: &'static str,
        /// Which settings, and what to do instead, in words.
        reason: &'static str,
    },

    /// A step taken out of order by a sampler that keeps state between steps.
    #[error("step {index} taken out of order; {sampler} expected step {expected}")]
    OutOfOrder {
        /// The sampler's name.
        sampler: &'static str,
        /// The step index given.
        index: usize,
        /// The step index the sampler's state is at.
        expected: usize,
    },

    /// A class label the model does not have.
    #[error("class {class} is out of range; the model has {classes} classes (0 to {})", classes.saturating_sub(1))]
    ClassOutOfRange {
        /// The label asked for.
        class: usize,
        /// The model's number of classes.
        classes: usize,
    },

    /// Guidance asked of a model that has no classes.
    #[error("the model is unconditional (it has no classes), so it cannot be guided towards one")]
    Unconditional,

    /// A batch of another size than the labels it is guided towards.
    #[error("{labels} guidance labels for a batch of {batch}; expected one label per sample")]
    LabelCount {
        /// The number of labels.
        labels: usize,
        /// The batch size.
        batch: usize,
    },

    /// DDIM inversion of a sampler that is not an invertible map.
    #[error("DDIM cannot be inverted here: {reason}")]
    NotInvertible {
        /// Why, in words.
        reason: &'static str,
    },

    /// Exact DDIM inversion whose fixed-point iteration stopped converging.
    #[error(
        "exact DDIM inversion stopped converging at timestep {timestep} (the fixed-point change stayed at {residual:.2e}); use more steps, fewer iterations, or plain inversion"
    )]
    InversionDiverged {
        /// The timestep of the step being inverted.
        timestep: f64,
        /// The RMS change of the iteration that grew.
        residual: f64,
    },

    /// A trajectory started at a step where the sampler cannot begin one.
    #[error(
        "{sampler} cannot start a trajectory at step {index}, mid-way through one of its steps"
    )]
    CannotStartAt {
        /// The sampler's name.
        sampler: &'static str,
        /// The step index asked for.
        index: usize,
    },

    /// A tensor whose shape does not match the one it goes with.
    #[error("the {what} has shape {found:?}; expected {expected:?}")]
    ShapeMismatch {
        /// Which input, in words.
        what: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// Its shape.
        found: Vec<usize>,
    },

    /// The model ([`crate::Denoiser`]) rejected its input (a shape or a label it does not
    /// take) or failed on it; its own error is kept ([`ModelError::downcast_ref`]).
    #[error("the model failed: {0}")]
    Model(ModelError),

    /// A sampler that reads a learned variance (DDPM with
    /// [`VarianceType::LearnedRange`](crate::VarianceType::LearnedRange)) run over a model that
    /// does not learn one.
    #[error(
        "the sampler reads the variance a model learns (DDPM with learned_range), and this \
         model does not learn one; use a fixed variance"
    )]
    NoLearnedVariance,

    /// A step index past the end of the sampler's timesteps.
    #[error("step {index} requested, but the sampler has {steps} steps")]
    StepOutOfRange {
        /// The requested step index.
        index: usize,
        /// The number of steps.
        steps: usize,
    },
}

/// A model's own error, as a [`Denoiser`](crate::Denoiser) reports it: any error type, shared
/// so that [`SamplerError`] stays `Clone`. Two are equal when their messages are.
#[derive(Debug, Clone)]
pub struct ModelError(Arc<dyn std::error::Error + Send + Sync>);

impl ModelError {
    /// Wraps the model's error `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The model's error as its own type `E`, if it is one.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<ModelError> for SamplerError {
    /// [`SamplerError::Model`]: its message includes the model's, so the model's error is not
    /// also its `source` (an error chain would print it twice).
    fn from(error: ModelError) -> Self {
        Self::Model(error)
    }
}

impl PartialEq for ModelError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Checks that `value` is finite and within `range`.
pub(crate) fn check_range(
    name: &'static str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
    expected: &'static str,
) -> Result<(), SamplerError> {
    if value.is_finite() && range.contains(&value) {
        Ok(())
    } else {
        Err(SamplerError::OutOfRange {
            name,
            value,
            expected,
        })
    }
}
