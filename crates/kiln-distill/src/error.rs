use kiln_sampler::SamplerError;
use kiln_schedule::ScheduleError;
use thiserror::Error;

/// Everything that can be wrong with a distillation's settings or inputs.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DistillError {
    /// The student's steps do not lay out on the schedule (zero, or twice as many as it has
    /// timesteps).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),

    /// The teacher (or the student's prediction) failed, a prediction kind cannot be used
    /// at a timestep, or a consistency distillation's grid does not fit the schedule.
    #[error(transparent)]
    Sampler(#[from] SamplerError),

    /// A student step index past the student's steps.
    #[error("student step {index} requested, but the student has {steps} steps")]
    StepOutOfRange {
        /// The index asked for.
        index: usize,
        /// The student's number of steps.
        steps: usize,
    },

    /// A timestep that is not one of the student's.
    #[error("timestep {timestep} is not on the student's grid")]
    OffGrid {
        /// The timestep asked for.
        timestep: f64,
    },

    /// A trajectory consistency function asked to land above the timestep it starts from.
    #[error("cannot land at timestep {landing} from timestep {timestep}: landings lie below")]
    LandingAbove {
        /// The timestep the jump starts from.
        timestep: f64,
        /// The landing asked for.
        landing: f64,
    },

    /// A student's answers and their targets differ in shape.
    #[error("the student's answers have shape {student:?}, their targets {target:?}")]
    ShapeMismatch {
        /// The student's shape.
        student: Vec<usize>,
        /// The targets' shape.
        target: Vec<usize>,
    },

    /// One step index per sample of a batch of at least one was expected.
    #[error("{indices} step indices for a batch of {batch}; expected one per sample, at least one")]
    IndexCount {
        /// The number of indices.
        indices: usize,
        /// The batch size.
        batch: usize,
    },
}
