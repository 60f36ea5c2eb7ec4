//! Training across processes and machines with MPI (feature `mpi`): the processes started by
//! `mpirun` or Slurm's `srun` form one [`ProcessGroup`].

use mpi::Threading;
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};

use crate::{ProcessGroup, TrainError};

/// The processes of an MPI job (`MPI_COMM_WORLD`), for [`crate::RunOptions::processes`].
///
/// Gradients are summed with one `MPI_Allreduce` of one flat `f32` buffer per step (every
/// parameter's gradient, then the loss and the stop flag); Open MPI picks the algorithm
/// (ring or recursive doubling) by size. MPI calls come only from the thread that calls
/// [`crate::train`], so MPI is initialised with `MPI_THREAD_SERIALIZED`.
///
/// MPI is finalised when this value is dropped. A process that stops with an error while the
/// others wait in a collective must end the job with [`ProcessGroup::abort`] (`MPI_Abort`)
/// rather than return normally (finalising would wait for the others forever).
pub struct MpiProcesses {
    world: SimpleCommunicator,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

impl MpiProcesses {
    /// Initialises MPI; `TrainError::Distributed` if it was initialised already or the MPI
    /// library does not allow calls from a second thread.
    pub fn init() -> Result<Self, TrainError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| TrainError::Distributed("MPI was initialised already".into()))?;
        if threading < Threading::Serialized {
            return Err(TrainError::Distributed(format!(
                "the MPI library offers only {threading:?} threading, training needs Serialized"
            )));
        }
        Ok(Self {
            world: universe.world(),
            _universe: universe,
        })
    }
}

impl std::fmt::Debug for MpiProcesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiProcesses")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

impl ProcessGroup for MpiProcesses {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, values: &mut [f32]) {
        let sent = values.to_vec();
        self.world
            .all_reduce_into(&sent[..], values, SystemOperation::sum());
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
