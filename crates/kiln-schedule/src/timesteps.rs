use crate::ScheduleError;
use crate::numbers::linspace;

/// How N inference timesteps are spread over the T training timesteps: diffusers'
/// `timestep_spacing` (compared in Lin et al. 2023, Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestepSpacing {
    /// `linspace`: evenly spaced from T − 1 down to 0 (fractional before rounding).
    Linspace,
    /// `leading`: multiples of ⌊T / N⌋ counted up from 0, plus `steps_offset`; never reaches
    /// t = T − 1, so sampling starts from a partly noised image.
    #[default]
    Leading,
    /// `trailing`: counted down from T by T / N, minus one; always starts at t = T − 1.
    Trailing,
}

impl TimestepSpacing {
    /// Looks the spacing up by its diffusers name (`linspace`, `leading`, `trailing`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "linspace" => Some(Self::Linspace),
            "leading" => Some(Self::Leading),
            "trailing" => Some(Self::Trailing),
            _ => None,
        }
    }
}

/// Where the grid of inference timesteps ends. diffusers' scheduler families differ here, and
/// a sampler must use its family's convention to reproduce its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GridEnd {
    /// Lay N points; the last is the timestep of the final model call (diffusers' DDPM, DDIM,
    /// PNDM, Euler, Heun and LMS schedulers).
    #[default]
    AtLastStep,
    /// Lay N + 1 points ending at t = 0 and drop that end point, which stands for the clean
    /// sample the final step lands on (diffusers' DPM-Solver, UniPC and DEIS schedulers).
    BeforeZero,
}

/// The inference timesteps a sampler visits, from the noisiest down, built exactly as diffusers'
/// `set_timesteps` builds them.
///
/// ```
/// use kiln_schedule::{GridEnd, TimestepGrid, TimestepSpacing};
///
/// // DDIM with `steps_offset = 1` (Stable Diffusion's setting), 5 steps.
/// let ddim = TimestepGrid { spacing: TimestepSpacing::Leading, steps_offset: 1, end: GridEnd::AtLastStep };
/// assert_eq!(ddim.discrete_timesteps(1000, 5)?, [801, 601, 401, 201, 1]);
/// # Ok::<(), kiln_schedule::ScheduleError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimestepGrid {
    /// How the steps are spread (`timestep_spacing`).
    pub spacing: TimestepSpacing,
    /// Added to every `leading` timestep (`steps_offset`; ignored by the other spacings, as in
    /// diffusers).
    pub steps_offset: usize,
    /// Which family's end-point convention to follow.
    pub end: GridEnd,
}

impl TimestepGrid {
    /// A grid with the given spacing and end convention and no `steps_offset`.
    pub const fn new(spacing: TimestepSpacing, end: GridEnd) -> Self {
        Self {
            spacing,
            steps_offset: 0,
            end,
        }
    }

    /// The N = `steps` inference timesteps for a schedule of T = `train_timesteps`, in
    /// decreasing order. `linspace` values are fractional (diffusers' σ-space samplers
    /// interpolate them); the other spacings give whole numbers.
    ///
    /// With r the step ratio:
    /// - `linspace`: linspace(0, T−1, N)  (or N + 1 points without the 0 for
    ///   [`GridEnd::BeforeZero`]), reversed;
    /// - `leading`: k·⌊T/N⌋ + offset for k = N−1, …, 0 (⌊T/(N+1)⌋ and k = N, …, 1 for
    ///   [`GridEnd::BeforeZero`]);
    /// - `trailing`: round(T − k·T/N) − 1 for k = 0, …, N−1.
    ///
    /// Fails when N = 0, T = 0, N > T (N > T − 1 for `leading` with N + 1 points), or when
    /// `steps_offset` pushes a timestep past T − 1.
    pub fn timesteps(
        &self,
        train_timesteps: usize,
        steps: usize,
    ) -> Result<Vec<f64>, ScheduleError> {
        if train_timesteps == 0 {
            return Err(ScheduleError::ZeroTimesteps);
        }
        if steps == 0 {
            return Err(ScheduleError::ZeroSteps);
        }
        // `leading` with N + 1 points needs ⌊T/(N + 1)⌋ ≥ 1.
        let most = match (self.spacing, self.end) {
            (TimestepSpacing::Leading, GridEnd::BeforeZero) => train_timesteps - 1,
            _ => train_timesteps,
        };
        if steps > most {
            return Err(ScheduleError::TooManySteps {
                steps,
                train_timesteps,
                most,
            });
        }
        let last = (train_timesteps - 1) as f64;
        // The number of grid points laid before the end point is dropped.
        let points = match self.end {
            GridEnd::AtLastStep => steps,
            GridEnd::BeforeZero => steps + 1,
        };
        let mut timesteps: Vec<f64> = match self.spacing {
            TimestepSpacing::Linspace => linspace(0.0, last, points).collect(),
            TimestepSpacing::Leading => {
                let ratio = train_timesteps / points;
                (0..points)
                    // In f64: an offset near usize::MAX is OffsetPastEnd below, not overflow.
                    .map(|k| (k * ratio) as f64 + self.steps_offset as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train_timesteps as f64 / steps as f64;
                (0..steps)
                    .rev()
                    .map(|k| (train_timesteps as f64 - k as f64 * ratio).round_ties_even() - 1.0)
                    .collect()
            }
        };
        timesteps.reverse();
        if self.end == GridEnd::BeforeZero && self.spacing != TimestepSpacing::Trailing {
            timesteps.pop();
        }
        if let Some(&past) = timesteps.iter().find(|&&t| t > last) {
            return Err(ScheduleError::OffsetPastEnd {
                steps_offset: self.steps_offset,
                timestep: past,
                last: train_timesteps - 1,
            });
        }
        Ok(timesteps)
    }

    /// [`TimestepGrid::timesteps`] rounded half to even (as `numpy.round`) to whole training
    /// timesteps, for samplers that index the schedule's tables.
    ///
    /// Also fails when rounding would repeat a timestep (`linspace` with N + 1 points and
    /// N = T), which would make a step of zero length.
    pub fn discrete_timesteps(
        &self,
        train_timesteps: usize,
        steps: usize,
    ) -> Result<Vec<usize>, ScheduleError> {
        let timesteps: Vec<usize> = self
            .timesteps(train_timesteps, steps)?
            .into_iter()
            .map(|t| t.round_ties_even() as usize)
            .collect();
        if timesteps.windows(2).any(|pair| pair[1] >= pair[0]) {
            return Err(ScheduleError::TooManySteps {
                steps,
                train_timesteps,
                most: train_timesteps - 1,
            });
        }
        Ok(timesteps)
    }
}
