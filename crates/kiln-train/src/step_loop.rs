//! A worker's loop over the run's steps, and what the first worker of a process does besides:
//! the stop flag, the log points and, on rank 0, the EMA and the books.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use kiln_forward::ForwardProcess;
use kiln_unet::UNet;

use crate::TrainError;
use crate::bookkeeping::{Bookkeeping, Trained};
use crate::ema::Ema;
use crate::options::TrainEvent;
use crate::pending::PendingLosses;
use crate::reduction::{Reduction, Totals};
use crate::resident::DeviceImages;
use crate::run::{Done, Run};
use crate::step::{LossKind, Objective, StepDraws, epoch_order, gradients};
use crate::teacher::load_teacher;

/// What the worker on the calling thread does besides training: it reads the stop flag, reads
/// the losses back at the log points, reports events and (on rank 0) keeps the EMA and the
/// books.
pub(crate) struct Lead<'a, B: AutodiffBackend, F> {
    pub(crate) stop: &'a AtomicBool,
    pub(crate) log_every: u64,
    pub(crate) losses: PendingLosses<B::InnerBackend>,
    pub(crate) keeper: Option<Keeper<'a, B>>,
    pub(crate) on_event: F,
}

/// Rank 0's share: the EMA of the weights, and the books written from it.
pub(crate) struct Keeper<'a, B: AutodiffBackend> {
    pub(crate) ema: Ema<B, UNet<B>>,
    pub(crate) books: Bookkeeping<'a>,
}

impl<B: AutodiffBackend, F: FnMut(TrainEvent<'_>)> Lead<'_, B, F> {
    /// Reads the pending losses of `run` back, checks them, reports them and logs them.
    fn log(&mut self, run: &Run<'_>) -> Result<(), TrainError> {
        let (steps, images_per_second) = self.losses.read(run.config.batch_size)?;
        let log_point = steps.last().map_or(0, |last| last.step + 1);
        for logged in steps {
            (self.on_event)(TrainEvent::Step {
                step: logged.step + 1,
                log_point,
                total_steps: run.total_steps,
                epoch: logged.epoch,
                loss: logged.loss,
                learning_rate: logged.learning_rate,
                images_per_second,
            });
            if let Some(keeper) = self.keeper.as_mut() {
                keeper.books.log(&logged)?;
            }
        }
        Ok(())
    }
}

/// Worker `local`'s loop over the run's steps, with its replica `model` and `optimizer` on
/// `device`; `lead` on the calling thread's worker.
pub(crate) fn run_steps<B, O, F>(
    run: &Run<'_>,
    local: usize,
    mut model: UNet<B>,
    mut optimizer: O,
    device: &B::Device,
    reduction: Reduction<'_>,
    mut lead: Option<&mut Lead<'_, B, F>>,
) -> Result<Done, TrainError>
where
    B: AutodiffBackend,
    O: Optimizer<UNet<B>, B>,
    F: FnMut(TrainEvent<'_>),
{
    let config = run.config;
    let distillation = match (&run.distillation, &config.distillation) {
        (Some(distiller), Some(distillation)) => Some((
            distiller.clone(),
            load_teacher::<B::InnerBackend>(config, &distillation.teacher, device)?,
        )),
        _ => None,
    };
    let objective = Objective {
        kind: LossKind {
            prediction: run.prediction,
            weighting: config.weighting(),
            learns_variance: config.learns_variance()?,
        },
        process: ForwardProcess::new(run.schedule.clone(), device),
        images: DeviceImages::new(run.data, device),
        distillation,
        device: device.clone(),
    };
    let place = run.place(local);
    let mut done = Done {
        steps: run.start,
        interrupted: false,
    };
    let mut order: Option<(usize, Vec<usize>)> = None;
    for step in run.start..run.total_steps {
        let epoch = (step / run.steps_per_epoch) as usize;
        if order.as_ref().is_none_or(|(cached, _)| *cached != epoch) {
            order = Some((epoch, epoch_order(config.seed, epoch, run.data.len())));
        }
        let (_, permutation) = order.as_ref().expect("just set");
        let draws = StepDraws::for_step(
            config,
            run.data,
            run.distillation.as_ref(),
            step,
            run.steps_per_epoch,
            permutation,
        )?;
        let (grads, loss) =
            run.compute::<B, _>(|| gradients(&model, config, &objective, place, draws, step))?;
        let stop = run.rank == 0
            && lead
                .as_ref()
                .is_some_and(|lead| lead.stop.load(Ordering::SeqCst));
        let (grads, totals) = reduction.sum(&model, grads, Totals { loss, stop })?;
        let learning_rate = config.learning_rate_at(step, run.total_steps)?;
        model = run.compute::<B, _>(|| optimizer.step(learning_rate, model, grads));
        done.steps = step + 1;
        if let Some(lead) = lead.as_deref_mut() {
            lead.losses.push(step, epoch, learning_rate, totals.loss);
            let log_point = (step + 1).is_multiple_of(lead.log_every)
                || (step + 1).is_multiple_of(run.steps_per_epoch)
                || step + 1 == run.total_steps
                || totals.stop;
            if log_point {
                lead.log(run)?;
            }
            if let Some(keeper) = lead.keeper.as_mut() {
                keeper.ema.update(&model, step);
                let trained = Trained {
                    model: &model,
                    optimizer: &optimizer,
                    ema: keeper.ema.model(),
                };
                keeper
                    .books
                    .after_step(step, totals.stop, trained, device, &mut lead.on_event)?;
            }
        }
        if totals.stop {
            done.interrupted = true;
            break;
        }
    }
    reduction.leave::<B>()?;
    Ok(done)
}
