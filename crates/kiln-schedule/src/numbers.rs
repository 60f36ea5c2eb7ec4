//! The small numeric helpers the schedules share: numpy's `linspace` and the checks of
//! settings.

use crate::ScheduleError;

/// `n` evenly spaced points from `start` to `end` inclusive (`[start]` when n = 1), as
/// `numpy.linspace`.
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> impl Iterator<Item = f64> {
    let step = if n > 1 {
        (end - start) / (n - 1) as f64
    } else {
        0.0
    };
    (0..n).map(move |i| {
        if i + 1 == n && n > 1 {
            end
        } else {
            start + step * i as f64
        }
    })
}

/// Fails unless `value` is finite.
pub(crate) fn check_finite(name: &'static str, value: f64) -> Result<(), ScheduleError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ScheduleError::NonFinite { name, value })
    }
}

/// The error for a finite `value` of `name` outside its range.
pub(crate) fn out_of_range(
    name: &'static str,
    value: f64,
    expected: &'static str,
) -> ScheduleError {
    ScheduleError::OutOfRange {
        name,
        value,
        expected,
    }
}

/// A finite, positive parameter.
pub(crate) fn check_positive(name: &'static str, value: f64) -> Result<(), ScheduleError> {
    check_finite(name, value)?;
    if value <= 0.0 {
        return Err(out_of_range(name, value, "a positive number"));
    }
    Ok(())
}
