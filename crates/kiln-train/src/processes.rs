//! The processes that train one model together: one process alone, or several (on one machine
//! or many) that sum their gradients every step.

use std::fmt::Debug;

/// The processes of one data-parallel run, and the two collective operations the trainer
/// needs from them.
///
/// Every process calls [`crate::train`] with the same config, the same data and the same
/// number of devices. With P processes of L devices each there are W = P·L workers; worker
/// w = rank·L + d (device d of process `rank`) takes the shards w, w + W, w + 2W, … of each
/// step's batch, so that together they draw, noise and sum exactly what one process with all
/// W devices would. Each step the processes add up their gradients, losses and the stop flag
/// with one [`ProcessGroup::all_reduce_sum`]; rank 0 alone writes checkpoints, sample grids and
/// the loss log.
///
/// Implemented by [`SingleProcess`] and, with the `mpi` feature, `MpiProcesses`.
pub trait ProcessGroup: Debug {
    /// This process's number, 0 … [`ProcessGroup::size`] − 1.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn size(&self) -> usize;

    /// Replaces `values` by their element-wise sum over all processes. Every process calls it
    /// at the same point of the run with a buffer of the same length.
    fn all_reduce_sum(&self, values: &mut [f32]);

    /// Replaces `bytes` on every process by rank 0's. Every process calls it at the same point
    /// of the run (the lengths may differ).
    fn broadcast(&self, bytes: &mut Vec<u8>);

    /// Ends this process and every other process of the run with exit code `code`: what a
    /// process that failed must do while the others may be waiting for it in an exchange.
    fn abort(&self, code: i32) -> !;
}

/// A run of one process: there is nothing to sum with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl ProcessGroup for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _values: &mut [f32]) {}

    fn broadcast(&self, _bytes: &mut Vec<u8>) {}

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
