//! Wall-clock timing for the examples that compare backends and frameworks.

use std::time::{Duration, Instant};

/// Runs `work` once to warm up, then `iterations` times, and returns the median wall time
/// (the same protocol as `benches/peer/*.py`).
pub fn median_time(iterations: usize, work: impl FnMut()) -> Duration {
    first_and_median_time(iterations, work).median
}

/// The wall times of a piece of work run once to warm up and then several times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    /// The warm-up run: on a GPU it includes compiling and autotuning every new kernel.
    pub first: Duration,
    /// The median of the runs after it.
    pub median: Duration,
}

/// Runs `work` once to warm up, then `iterations` times (at least once); times both.
pub fn first_and_median_time(iterations: usize, mut work: impl FnMut()) -> Timed {
    let mut time = || {
        let start = Instant::now();
        work();
        start.elapsed()
    };
    let first = time();
    let mut times: Vec<Duration> = (0..iterations.max(1)).map(|_| time()).collect();
    times.sort();
    Timed {
        first,
        median: times[times.len() / 2],
    }
}
