//! Adding up the workers' gradients, losses and stop requests each step: over the devices of
//! one process with burn-collective, then over processes with a [`ProcessGroup`].

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use kiln_unet::UNet;

use crate::{ProcessGroup, TrainError};

/// What every worker contributes to a step besides its gradients: its part of the loss (on
/// its device), and the stop request (counted from the first worker of rank 0 only).
#[derive(Debug, Clone)]
pub(crate) struct Totals<B: Backend> {
    pub(crate) loss: Tensor<B, 1>,
    pub(crate) stop: bool,
}

/// How one worker's share of a step is summed with every other worker's.
///
/// With several devices in the process, each worker is a burn-collective peer and every
/// parameter's gradient is all-reduced (summed) over the devices, in the module's order.
/// With several processes, the process's first worker then packs all gradients and the totals
/// into one flat buffer, sums it over the processes with one
/// [`ProcessGroup::all_reduce_sum`], and — with several devices — broadcasts the result to the
/// process's other workers.
pub(crate) struct Reduction<'a> {
    /// This worker among the process's devices, when there are several.
    peer: Option<PeerId>,
    /// The processes, when there are several: `Some` on the process's first worker only.
    processes: Option<&'a dyn ProcessGroup>,
    /// Whether the sum spans several processes.
    across_processes: bool,
}

impl<'a> Reduction<'a> {
    /// The reduction of worker `local` of `devices` in this process, joining the process's
    /// burn-collective group when there are several devices: the first call of every worker,
    /// so that a worker failing later can always wake the others ([`abandon`]).
    pub(crate) fn join<B: AutodiffBackend>(
        local: usize,
        devices: usize,
        device: &B::Device,
        across_processes: bool,
    ) -> Result<Self, TrainError> {
        let peer = (devices > 1).then_some(PeerId(local as u32));
        if let Some(peer) = peer {
            let config = CollectiveConfig::default().with_num_devices(devices);
            collective::register::<B::InnerBackend>(peer, device.clone(), config)
                .map_err(collective_error)?;
        }
        Ok(Self {
            peer,
            processes: None,
            across_processes,
        })
    }

    /// This reduction on the process's first worker, which sums with the other `processes`.
    pub(crate) fn leading(self, processes: &'a dyn ProcessGroup) -> Self {
        Self {
            processes: self.across_processes.then_some(processes),
            ..self
        }
    }

    /// Sums `grads` (gradients of `model`) and `totals` over all workers of all processes.
    ///
    /// A worker alone keeps its totals as they are, on the device. Several workers must agree
    /// on the stop request every step, so they read the summed totals back: one host sync a
    /// step, besides the exchange itself.
    pub(crate) fn sum<B: AutodiffBackend>(
        &self,
        model: &UNet<B>,
        mut grads: GradientsParams,
        totals: Totals<B::InnerBackend>,
    ) -> Result<(GradientsParams, Totals<B::InnerBackend>), TrainError> {
        if self.peer.is_none() && !self.across_processes {
            return Ok((grads, totals));
        }
        let mut totals = totals_tensor(totals);
        if let Some(peer) = self.peer {
            let mut all_reduce = |tensor: Tensor<B::InnerBackend, 1>| {
                collective::all_reduce::<B::InnerBackend>(
                    peer,
                    tensor.into_primitive().tensor(),
                    ReduceOperation::Sum,
                )
                .map(|sum| Tensor::from_primitive(TensorPrimitive::Float(sum)))
                .map_err(collective_error)
            };
            map_gradients(model, &mut grads, &mut all_reduce)?;
            totals = all_reduce(totals)?;
        }
        if let Some(processes) = self.processes {
            (grads, totals) = sum_over_processes(model, grads, totals, processes)?;
        }
        if let (Some(peer), true) = (self.peer, self.across_processes) {
            let lead = self.processes.is_some();
            let mut broadcast = |tensor: Tensor<B::InnerBackend, 1>| {
                let sent = lead.then(|| tensor.into_primitive().tensor());
                collective::broadcast::<B::InnerBackend>(peer, sent)
                    .map(|tensor| Tensor::from_primitive(TensorPrimitive::Float(tensor)))
                    .map_err(collective_error)
            };
            map_gradients(model, &mut grads, &mut broadcast)?;
            totals = broadcast(totals)?;
        }
        let stop = totals
            .clone()
            .narrow(0, 1, 1)
            .into_data()
            .to_vec::<f32>()
            .map_err(|error| TrainError::Distributed(format!("{error:?}")))?[0];
        Ok((
            grads,
            Totals {
                loss: totals.narrow(0, 0, 1),
                stop: stop > 0.5,
            },
        ))
    }

    /// Leaves the process's collective group at the end of a run.
    pub(crate) fn leave<B: AutodiffBackend>(self) -> Result<(), TrainError> {
        match self.peer {
            Some(peer) => {
                collective::finish_collective::<B::InnerBackend>(peer).map_err(collective_error)
            }
            None => Ok(()),
        }
    }
}

/// Wakes every worker of this process waiting in (or later entering) a collective operation
/// with an error, so that one worker's failure stops the others instead of leaving them
/// waiting for it forever (burn-collective has no timeouts).
pub(crate) fn abandon<B: AutodiffBackend>() {
    collective::reset_collective::<B::InnerBackend>();
}

/// The loss and the stop flag as a tensor of two numbers on the loss's device.
fn totals_tensor<B: Backend>(totals: Totals<B>) -> Tensor<B, 1> {
    let device = totals.loss.device();
    let stop = if totals.stop { 1.0f32 } else { 0.0 };
    let stop = Tensor::from_data(TensorData::new(vec![stop], [1]), &device);
    Tensor::cat(vec![totals.loss, stop], 0)
}

/// Sums the gradients and totals over the processes: one device-to-host copy of everything,
/// one all-reduce, one copy back.
fn sum_over_processes<B: AutodiffBackend>(
    model: &UNet<B>,
    mut grads: GradientsParams,
    totals: Tensor<B::InnerBackend, 1>,
    processes: &dyn ProcessGroup,
) -> Result<(GradientsParams, Tensor<B::InnerBackend, 1>), TrainError> {
    let device = totals.device();
    let mut parts = Vec::new();
    map_gradients(model, &mut grads, &mut |gradient| {
        parts.push(gradient.clone());
        Ok(gradient)
    })?;
    parts.push(totals);
    let mut values = Tensor::cat(parts, 0)
        .into_data()
        .to_vec::<f32>()
        .map_err(|error| TrainError::Distributed(format!("{error:?}")))?;
    processes.all_reduce_sum(&mut values);
    let len = values.len();
    let summed = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(values, [len]), &device);
    let mut offset = 0;
    map_gradients(model, &mut grads, &mut |gradient| {
        let count = gradient.shape().num_elements();
        offset += count;
        Ok(summed.clone().narrow(0, offset - count, count))
    })?;
    Ok((grads, summed.narrow(0, offset, 2)))
}

/// A function applied to one gradient, flattened.
type GradientMap<'f, B> = dyn FnMut(Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> + 'f;

/// Replaces the gradient g of every parameter of `model` that has one, in the module's order
/// (the same in every replica and every process), by `f(g)` (flattened, reshaped back).
fn map_gradients<B: AutodiffBackend>(
    model: &UNet<B>,
    grads: &mut GradientsParams,
    f: &mut GradientMap<'_, B::InnerBackend>,
) -> Result<(), TrainError> {
    let mut visitor = GradientMapper {
        grads,
        f,
        error: None,
    };
    model.visit(&mut visitor);
    visitor.error.map_or(Ok(()), Err)
}

struct GradientMapper<'g, 'f, B: Backend> {
    grads: &'g mut GradientsParams,
    f: &'g mut GradientMap<'f, B>,
    error: Option<TrainError>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradientMapper<'_, '_, B::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.error.is_some() {
            return;
        }
        let Some(gradient) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let shape = gradient.shape();
        match (self.f)(gradient.reshape([-1])) {
            Ok(mapped) => self
                .grads
                .register::<B::InnerBackend, D>(param.id, mapped.reshape(shape)),
            Err(error) => self.error = Some(error),
        }
    }
}

/// A burn-collective failure as a [`TrainError`].
fn collective_error(error: collective::CollectiveError) -> TrainError {
    TrainError::Collective(format!("{error:?}"))
}
