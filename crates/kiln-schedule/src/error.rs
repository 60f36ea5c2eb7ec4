use thiserror::Error;

/// Everything that can be wrong with a schedule or a request for inference timesteps.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScheduleError {
    /// A schedule needs at least one training timestep.
    #[error("the number of training timesteps must be at least 1, got 0")]
    ZeroTimesteps,

    /// A β (given, or produced by a named schedule) is not in (0, 1], or is so small that
    /// 1 − β rounds to 1 (ᾱ would not fall, and σ = 0 makes the posterior 0/0).
    #[error(
        "beta at timestep {index} is {value}; every beta must lie in (0, 1], with 1 - beta below 1"
    )]
    BetaOutOfRange {
        /// The 0-based timestep of the offending β.
        index: usize,
        /// Its value.
        value: f64,
    },

    /// A parameter of a named schedule is NaN or infinite.
    #[error("{name} is {value}; it must be a finite number")]
    NonFinite {
        /// The parameter's name in diffusers' vocabulary (`beta_start`, `rho`, …).
        name: &'static str,
        /// Its value.
        value: f64,
    },

    /// A parameter is finite but outside the range where it makes sense.
    #[error("{name} is {value}; expected {expected}")]
    OutOfRange {
        /// The parameter's name in diffusers' vocabulary.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The range it must lie in, in words.
        expected: &'static str,
    },

    /// A schedule that interpolates from `beta_start` to `beta_end` was given them in the wrong
    /// order, which would make the noise shrink over time.
    #[error("beta_start ({start}) is greater than beta_end ({end}); betas must not decrease")]
    DecreasingBetas {
        /// The given `beta_start`.
        start: f64,
        /// The given `beta_end`.
        end: f64,
    },

    /// Zero inference steps were requested.
    #[error("the number of inference steps must be at least 1, got 0")]
    ZeroSteps,

    /// More inference steps were requested than the grid can lay over the training timesteps.
    #[error(
        "{steps} inference steps requested; this grid lays at most {most} over {train_timesteps} training timesteps"
    )]
    TooManySteps {
        /// The requested number of inference steps.
        steps: usize,
        /// The number of training timesteps of the schedule.
        train_timesteps: usize,
        /// The most steps the grid can lay over them: T, or T − 1 where N + 1 points are laid
        /// and the last dropped (`leading`, and `linspace` in whole timesteps).
        most: usize,
    },

    /// `steps_offset` pushed an inference timestep past the last training timestep.
    #[error(
        "steps_offset {steps_offset} moves timestep {timestep} past the last training timestep {last}"
    )]
    OffsetPastEnd {
        /// The configured `steps_offset`.
        steps_offset: usize,
        /// The shifted timestep.
        timestep: f64,
        /// The last valid timestep, `T − 1`.
        last: usize,
    },

    /// Zero-terminal-SNR rescaling needs a first and a distinct last timestep.
    #[error("rescaling to zero terminal SNR needs at least 2 timesteps, got {timesteps}")]
    TooShortToRescale {
        /// The number of timesteps of the schedule.
        timesteps: usize,
    },
}
