//! The losses of the steps since the last log point, kept on the device and read back all at
//! once.
//!
//! Reading a loss back to the host (`into_scalar`) waits until the device has finished the
//! step that computed it, and on a GPU that drains the queue the host fills ahead of it. So
//! the trainer reads no number from the device between two log points: each step's loss stays
//! a one-element tensor until the log point reads them all in one [`Transaction`], checks them
//! (the NaN guard) and reports them.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, Transaction};

use crate::TrainError;

/// A step's loss, read back, with what it is logged with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LoggedStep {
    /// The optimizer step, 0-based.
    pub(crate) step: u64,
    /// Its epoch, 0-based.
    pub(crate) epoch: usize,
    pub(crate) loss: f64,
    pub(crate) learning_rate: f64,
}

/// The losses of the steps since the last log point, in step order, still on the device.
pub(crate) struct PendingLosses<B: Backend> {
    /// Each step's (step, epoch, learning rate), in the order of `losses`.
    steps: Vec<(u64, usize, f64)>,
    losses: Vec<Tensor<B, 1>>,
    /// When the first of these steps began.
    since: Instant,
}

impl<B: Backend> PendingLosses<B> {
    /// None pending; the stretch to the next log point starts now.
    pub(crate) fn new() -> Self {
        Self {
            steps: Vec::new(),
            losses: Vec::new(),
            since: Instant::now(),
        }
    }

    /// Adds step `step`'s `loss` (one element, on the device).
    pub(crate) fn push(&mut self, step: u64, epoch: usize, learning_rate: f64, loss: Tensor<B, 1>) {
        self.steps.push((step, epoch, learning_rate));
        self.losses.push(loss);
    }

    /// Reads every pending loss back in one transaction (the host waits here for the device to
    /// finish these steps) and starts a new stretch. Returns the steps and the training images
    /// per second over the stretch (`batch_size` images a step). A loss that is NaN or infinite
    /// is a [`TrainError::NonFiniteLoss`] naming the first such step.
    pub(crate) fn read(&mut self, batch_size: usize) -> Result<(Vec<LoggedStep>, f64), TrainError> {
        let steps = std::mem::take(&mut self.steps);
        let losses = std::mem::take(&mut self.losses);
        if losses.is_empty() {
            return Ok((Vec::new(), 0.0));
        }
        let values = Transaction::default()
            .register(Tensor::cat(losses, 0))
            .try_execute()
            .map_err(|error| TrainError::Device(error.to_string()))?
            .remove(0)
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|error| TrainError::Device(format!("{error:?}")))?;
        let seconds = self.since.elapsed().as_secs_f64();
        self.since = Instant::now();
        let logged: Vec<LoggedStep> = steps
            .into_iter()
            .zip(values)
            .map(|((step, epoch, learning_rate), loss)| LoggedStep {
                step,
                epoch,
                loss: loss as f64,
                learning_rate,
            })
            .collect();
        if let Some(bad) = logged.iter().find(|logged| !logged.loss.is_finite()) {
            return Err(TrainError::NonFiniteLoss {
                step: bad.step,
                epoch: bad.epoch,
                loss: bad.loss,
            });
        }
        let images_per_second = (logged.len() * batch_size) as f64 / seconds;
        Ok((logged, images_per_second))
    }
}
