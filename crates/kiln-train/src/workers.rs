//! One worker per device: the first on the calling thread, the others on threads of their
//! own; a failing or panicking worker stops the others, and the run reports the cause.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};
use std::thread;

use burn::module::Module;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use kiln_unet::UNet;

use crate::options::TrainEvent;
use crate::reduction::{self, Reduction};
use crate::run::{Done, Run};
use crate::step_loop::{Lead, run_steps};
use crate::{ProcessGroup, TrainError};

/// Makes sure only one run at a time uses burn-collective in this process: its groups are
/// per backend type and process-wide.
static COLLECTIVE_RUNS: Mutex<()> = Mutex::new(());

/// Runs the steps with one worker per device: the first on this thread (with `lead`), the
/// others on scoped threads; returns the first worker's outcome or, if any failed, the error
/// that started the failure.
pub(crate) fn run_threads<B, O, F>(
    run: &Run<'_>,
    model: UNet<B>,
    optimizer: O,
    devices: &[B::Device],
    processes: &dyn ProcessGroup,
    lead: &mut Lead<'_, B, F>,
) -> Result<Done, TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
    F: FnMut(TrainEvent<'_>),
{
    let _one_run = COLLECTIVE_RUNS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let across_processes = processes.size() > 1;
    thread::scope(|scope| {
        let others: Vec<_> = devices
            .iter()
            .enumerate()
            .skip(1)
            .map(|(local, device)| {
                let (replica, optimizer) = (model.clone().fork(device), optimizer.clone());
                scope.spawn(move || {
                    guarded::<B, _>(local, || {
                        let reduction =
                            Reduction::join::<B>(local, devices.len(), device, across_processes)?;
                        run_steps::<B, O, F>(
                            run, local, replica, optimizer, device, reduction, None,
                        )
                    })
                })
            })
            .collect();
        let first = guarded::<B, _>(0, || {
            let reduction = Reduction::join::<B>(0, devices.len(), &devices[0], across_processes)?
                .leading(processes);
            run_steps(run, 0, model, optimizer, &devices[0], reduction, Some(lead))
        });
        let outcomes =
            std::iter::once(first).chain(others.into_iter().zip(1..).map(|(handle, local)| {
                handle
                    .join()
                    .unwrap_or_else(|payload| Err(panicked(local, payload)))
            }));
        first_failure(outcomes.collect())
    })
}

/// Worker `local`'s `body`, with a panic turned into [`TrainError::WorkerPanicked`]; on any
/// failure the process's other workers are woken from their exchanges.
fn guarded<B: AutodiffBackend, T>(
    local: usize,
    body: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(panicked(local, payload)));
    if outcome.is_err() {
        reduction::abandon::<B>();
    }
    outcome
}

/// A worker's panic as an error.
fn panicked(worker: usize, payload: Box<dyn std::any::Any + Send>) -> TrainError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|message| message.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    TrainError::WorkerPanicked { worker, message }
}

/// The first worker's outcome if all succeeded; otherwise the failure that came first in
/// cause: an error other than a failed exchange (which only says that another worker stopped).
fn first_failure(outcomes: Vec<Result<Done, TrainError>>) -> Result<Done, TrainError> {
    let mut errors: Vec<TrainError> = Vec::new();
    let mut first = None;
    for outcome in outcomes {
        match outcome {
            Ok(done) => first = first.or(Some(done)),
            Err(error) => errors.push(error),
        }
    }
    let cause = errors
        .iter()
        .position(|error| !matches!(error, TrainError::Collective(_)))
        .unwrap_or(0);
    match errors.len() {
        0 => Ok(first.expect("at least one worker")),
        _ => Err(errors.swap_remove(cause)),
    }
}
