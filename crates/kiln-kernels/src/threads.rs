//! Where a model's work starts: on one of rayon's worker threads.

use burn::tensor::backend::Backend;

/// Runs `work` for a model on backend `B` on a rayon worker thread of the calling thread's own
/// pool (at once, if the calling thread is a rayon worker already) and returns what it returns.
///
/// Every kernel here, and every multi-threaded op of burn's Flex backend, splits its work with
/// rayon. Started from a thread outside a rayon pool (a program's main thread), each such op is
/// queued for the pool while the caller sleeps until a worker has finished it: a thread wake-up
/// each way per op, and a training step runs hundreds of ops. Started from a worker thread, an
/// op begins on that thread at once while the other workers take parts of it. Running a whole
/// training step or sampling loop through this function made a `tiny` step at 32×32 about
/// 12 % faster on 2 cores and cut the process's system time tenfold (`docs/performance-history.md`).
/// While `work` runs, the pool's other workers are kept looking for work instead of going to
/// sleep between ops, so that each op's parallel parts start on them at once.
///
/// The pool belongs to the calling thread: it is built on the thread's first call, with as many
/// threads as rayon's global pool (`RAYON_NUM_THREADS`, or one per core), and lives as long as
/// the thread. Nothing but `work` and the ops it starts ever runs on it, which is what makes
/// this safe with several threads at once. On a shared pool, a worker waiting inside one
/// thread's op may take up another thread's queued work, which then runs on top of the op it
/// interrupted; burn's autodiff holds a lock of its graph while a backward pass runs its ops,
/// and work that needs that lock, on top of a part of the op that holds it, waits forever (two
/// tests training at once hung this way). Threads that wait on one another, such as workers
/// exchanging gradients, may each call this too.
///
/// Only work on burn's Flex backend (`B` = `Flex` or `Autodiff<Flex>`, whose ops are these
/// kernels and Flex's own rayon loops) moves; for any other backend `work` runs on the calling
/// thread. A GPU backend gains nothing from the move, and with the trainer's steps on a worker
/// thread and its EMA updated on the caller, the wgpu run's EMA weights ended 6× their training
/// movement away from the CPU run's (`tests/gpu.rs`; the trained weights agreed) — not traced
/// to its cause in burn's fusion backend, which keeps an operation stream per thread. Should
/// the operating system refuse the pool's threads (or the calling thread be exiting), `work`
/// runs on the calling thread too.
///
/// Without the `flex` feature (no rayon kernels to start) it simply calls `work`.
pub fn on_worker_thread<B: Backend, R: Send>(work: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "flex")]
    if crate::route::is_flex::<B>()
        && rayon::current_thread_index().is_none()
        && let Some(pool) = own_pool::get()
    {
        // `scope` runs its body on one of the pool's workers and blocks the caller until it
        // returns.
        let done = std::sync::atomic::AtomicBool::new(false);
        return pool.scope(|scope| awake::with_workers_awake(scope, work, &done));
    }
    work()
}

#[cfg(feature = "flex")]
mod own_pool {
    use std::cell::OnceCell;
    use std::sync::Arc;

    use rayon::ThreadPool;

    thread_local! {
        /// The calling thread's pool for [`super::on_worker_thread`]; `None` if it could not
        /// be built.
        static OWN_POOL: OnceCell<Option<Arc<ThreadPool>>> = const { OnceCell::new() };
    }

    /// The calling thread's pool, built on its first call with as many threads as rayon's
    /// global pool; `None` if the threads could not be started, or while the thread is being
    /// torn down.
    pub(super) fn get() -> Option<Arc<ThreadPool>> {
        OWN_POOL
            .try_with(|pool| pool.get_or_init(build).clone())
            .ok()
            .flatten()
    }

    fn build() -> Option<Arc<ThreadPool>> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|index| format!("kiln-worker-{index}"))
            .build()
            .ok()
            .map(Arc::new)
    }
}

#[cfg(feature = "flex")]
mod awake {
    use std::sync::atomic::{AtomicBool, Ordering};

    use rayon::Yield;

    /// Fruitless looks for work after which a kept worker also offers its core to other
    /// threads (`sched_yield`) between looks: tens of microseconds of spinning, about the gap
    /// between two ops of a step.
    const SPINS_BEFORE_YIELDING: u32 = 1_000;

    /// Runs `work` on this worker thread while every other worker of the pool looks for work
    /// without pause (rayon's `yield_now` in a loop) until `work` returns.
    ///
    /// A rayon worker that finds nothing to do in 33 rounds of looking goes to sleep (rayon-core
    /// 1.13, <https://github.com/rayon-rs/rayon/blob/main/rayon-core/src/sleep/mod.rs>; between
    /// 50 and 200 µs here), and waking it takes longer than many of a step's ops last: a SiLU over
    /// 16×32×32×32 values took 160 µs on 2 threads called back to back, but 305 µs — its
    /// 1-thread time — after a 200 µs pause, the second thread never joining in time. A
    /// training step pauses between ops for its autodiff bookkeeping and optimizer, so the
    /// other workers slept through the start of op after op. (OpenMP's threads, which PyTorch
    /// uses, spin between parallel regions for the same reason.) Kept awake, they made a `tiny`
    /// step at 32×32 on 2 threads about 5 % faster (`docs/performance-history.md`). The cost:
    /// the other cores stay busy while `work` runs alone, offering themselves to other threads
    /// after [`SPINS_BEFORE_YIELDING`] fruitless looks (so that a second process on the same
    /// cores, such as an MPI rank, still gets them).
    pub(super) fn with_workers_awake<'scope, R>(
        scope: &rayon::Scope<'scope>,
        work: impl FnOnce() -> R,
        done: &'scope AtomicBool,
    ) -> R {
        // The keepers are queued on this thread before any part of `work`, and other workers
        // take a thread's queued jobs oldest first: each keeper starts on a worker with
        // nothing beneath it, never on top of a part of `work` that it would then wait for
        // forever. Nothing else is queued on the caller's own pool.
        let owner = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(move |_| {
                // This thread may pop its own keeper while it waits inside `work`: it must not
                // spin there, beneath the work it waits for.
                if rayon::current_thread_index() == owner {
                    return;
                }
                let mut idle = 0;
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() == Some(Yield::Executed) {
                        idle = 0;
                    } else if idle < SPINS_BEFORE_YIELDING {
                        idle += 1;
                        std::hint::spin_loop();
                    } else {
                        // Gives the core to any other runnable thread (another process's, say).
                        std::thread::yield_now();
                    }
                }
            });
        }
        /// Ends the keepers' loops when `work` returns or unwinds.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _done = Done(done);
        work()
    }
}
