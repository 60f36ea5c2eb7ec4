//! Where a model's work starts: on one of rayon's worker threads.

use burn::tensor::backend::Backend;

/// Runs `work` for a model on backend `B` on one of rayon's worker threads (at once, if the
/// calling thread is one) and returns what it returns.
///
/// Every kernel here, and every multi-threaded op of burn's Flex backend, splits its work with
/// rayon. Started from a thread outside rayon's pool (a program's main thread), each such op is
/// queued for the pool while the caller sleeps until a worker has finished it: a thread wake-up
/// each way per op, and a training step runs hundreds of ops. Started from a worker thread, an
/// op begins on that thread at once while the other workers take parts of it. Running a whole
/// training step or sampling loop through this function made a `tiny` step at 32×32 about
/// 12 % faster on 2 cores and cut the process's system time tenfold (`docs/performance.md`).
///
/// Only work on burn's Flex backend (`B` = `Flex` or `Autodiff<Flex>`, whose ops are these
/// kernels and Flex's own rayon loops) moves; for any other backend `work` runs on the calling
/// thread. A GPU backend gains nothing from the move, and with the trainer's steps on a worker
/// thread and its EMA updated on the caller, the wgpu run's EMA weights ended 6× their training
/// movement away from the CPU run's (`tests/gpu.rs`; the trained weights agreed) — not traced
/// to its cause in burn's fusion backend, which keeps an operation stream per thread.
///
/// Threads that wait on one another (say, workers exchanging gradients) must not each call this
/// with work that waits: a worker thread idle inside one op may start another caller's queued
/// work on top of its own, which can then wait forever for the work beneath it. One caller at a
/// time, or work that never waits on another thread, is safe.
///
/// Without the `flex` feature (no rayon kernels to start) it simply calls `work`.
pub fn on_worker_thread<B: Backend, R: Send>(work: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "flex")]
    if crate::route::is_flex::<B>() && rayon::current_thread_index().is_none() {
        // `rayon::scope` called from outside the pool runs its body on a worker thread and
        // blocks the caller until it returns.
        return rayon::scope(|_| work());
    }
    work()
}
