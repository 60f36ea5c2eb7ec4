use thiserror::Error;

use crate::Prediction;

/// Everything that can be wrong with a request to the forward process.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ForwardError {
    /// A timestep is not below the schedule's number of training timesteps.
    #[error("timestep {timestep} is out of range: the schedule has timesteps 0..{num_timesteps}")]
    TimestepOutOfRange {
        /// The offending timestep.
        timestep: usize,
        /// T, the schedule's number of training timesteps.
        num_timesteps: usize,
    },

    /// The number of timesteps given differs from the batch size (one per batch element).
    #[error("{timesteps} timesteps given for a batch of {batch}; give one per batch element")]
    BatchMismatch {
        /// How many timesteps were given.
        timesteps: usize,
        /// The size of the first tensor dimension.
        batch: usize,
    },

    /// Two tensors that must have the same shape do not.
    #[error("{name} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The argument with the wrong shape.
        name: &'static str,
        /// The shape it should have.
        expected: Vec<usize>,
        /// The shape it has.
        actual: Vec<usize>,
    },

    /// The conversion is undefined at this timestep: an ε prediction says nothing about x_0
    /// where ᾱ_t = 0 (the last step of a zero-terminal-SNR schedule).
    #[error("cannot convert a {from:?} prediction to {to:?} at timestep {timestep}, where ᾱ = 0")]
    Undetermined {
        /// The timestep at which the conversion is singular.
        timestep: usize,
        /// The kind of the model output.
        from: Prediction,
        /// The kind asked for.
        to: Prediction,
    },

    /// A noise level or a setting of rectified flow's training is outside its range.
    #[error("{name} is {value}; expected {expected}")]
    OutOfRange {
        /// The setting's name (`sigma`, `std`, `mode_scale`, …).
        name: &'static str,
        /// Its value.
        value: f64,
        /// The range it must lie in, in words.
        expected: &'static str,
    },

    /// The γ of min-SNR weighting must be positive and finite.
    #[error("min-SNR gamma is {0}; it must be a positive, finite number (5 in Hang et al. 2023)")]
    InvalidGamma(f64),
}
