//! Wall-clock timing for the examples that compare backends and frameworks.

use std::time::{Duration, Instant};

/// Runs `work` once to warm up, then `iterations` times, and returns the median wall time
/// (the same protocol as `benches/peer/*.py`).
pub fn median_time(iterations: usize, mut work: impl FnMut()) -> Duration {
    work();
    let mut times: Vec<Duration> = (0..iterations.max(1))
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
