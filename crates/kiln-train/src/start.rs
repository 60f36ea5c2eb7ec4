//! Where a run starts: its inputs checked, then a new model or the newest intact checkpoint,
//! on every process.

use std::path::PathBuf;

use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use kiln_pipeline::RunFolder;
use kiln_unet::UNet;

use crate::agreement::{check_same_start, share_start};
use crate::checkpoint;
use crate::dataset::ImageFolder;
use crate::ema::Ema;
use crate::options::{RunOptions, TrainEvent};
use crate::teacher::load_teacher;
use crate::{TrainConfig, TrainError};

/// Checks the run's settings against the data and the devices of all `processes` processes.
pub(crate) fn check_inputs<D>(
    config: &TrainConfig,
    data: &ImageFolder,
    devices: &[D],
    processes: usize,
) -> Result<(), TrainError> {
    config.validate()?;
    if devices.is_empty() {
        return Err(TrainError::NoDevices);
    }
    if data.is_empty() {
        return Err(TrainError::Config {
            field: "data".into(),
            problem: "the dataset has no images".into(),
        });
    }
    let micro_batch = config.batch_size / config.grad_accumulation;
    let workers = devices.len() * processes;
    if !micro_batch.is_multiple_of(workers) {
        return Err(TrainError::BatchSplit {
            micro_batch,
            devices: workers,
        });
    }
    if let Some(classes) = &config.classes
        && data.class_names() != classes.names.as_slice()
    {
        return Err(TrainError::Config {
            field: "classes".into(),
            problem: format!(
                "the run's classes are [{}], the data's [{}] (load it with labels from folders)",
                classes.names.join(", "),
                data.class_names().join(", ")
            ),
        });
    }
    if data.channels() != config.unet.in_channels || data.image_size() != config.image_size {
        return Err(TrainError::Config {
            field: "image_size".into(),
            problem: format!(
                "the data is {}×{}×{}, the model takes {}×{}×{}",
                data.channels(),
                data.image_size(),
                data.image_size(),
                config.unet.in_channels,
                config.image_size,
                config.image_size
            ),
        });
    }
    Ok(())
}

/// [`start`] on every process: rank 0 first (it alone sets damaged checkpoints aside), then
/// the others, which must arrive at rank 0's step.
pub(crate) fn start_everywhere<B: AutodiffBackend, O: Optimizer<UNet<B>, B>>(
    config: &TrainConfig,
    data: &ImageFolder,
    options: RunOptions<'_>,
    device: &B::Device,
    new_optimizer: impl Fn() -> O,
    on_event: &mut impl FnMut(TrainEvent<'_>),
) -> Result<Start<B, O>, TrainError> {
    let processes = options.processes;
    let folder = RunFolder::new(options.out);
    let mut here = || {
        start(
            config,
            data,
            &folder,
            options.resume,
            device,
            &new_optimizer,
            on_event,
        )
    };
    if processes.size() == 1 {
        return here();
    }
    let ours = (processes.rank() == 0).then(&mut here);
    let rank0 = ours.as_ref().map(|ours| match ours {
        Ok(start) => Ok(start.step),
        Err(error) => Err(error.to_string()),
    });
    let shared = share_start(processes, rank0);
    if let Some(ours) = ours {
        return ours;
    }
    let step = shared?;
    let ours = here()?;
    check_same_start(processes, ours.step, step)?;
    Ok(ours)
}

/// Where a run starts: a new model, or the newest intact checkpoint's state.
pub(crate) struct Start<B: AutodiffBackend, O> {
    pub(crate) model: UNet<B>,
    pub(crate) optimizer: O,
    pub(crate) ema: Ema<B, UNet<B>>,
    pub(crate) step: u64,
    pub(crate) resumed_from: Option<PathBuf>,
}

/// A new run (seeded weights, a fresh optimizer), or with `resume` the newest intact checkpoint
/// of the run in `folder`, checked against `config` and `data`.
fn start<B: AutodiffBackend, O: Optimizer<UNet<B>, B>>(
    config: &TrainConfig,
    data: &ImageFolder,
    folder: &RunFolder,
    resume: bool,
    device: &B::Device,
    new_optimizer: impl Fn() -> O,
    on_event: &mut impl FnMut(TrainEvent<'_>),
) -> Result<Start<B, O>, TrainError> {
    let latest = folder.latest_checkpoint()?;
    match (resume, latest) {
        (true, _) => {
            let (latest, restored) = checkpoint::restore_newest_intact::<B, _>(
                folder,
                new_optimizer,
                device,
                |path, damage, set_aside| {
                    on_event(TrainEvent::SkippedCheckpoint {
                        path,
                        damage,
                        set_aside,
                    })
                },
            )?;
            if let Some(difference) = config.first_difference(&restored.state.config) {
                return Err(TrainError::ConfigMismatch {
                    path: latest,
                    difference: difference.describe("the checkpoint", "this run"),
                });
            }
            if restored.state.images != data.len() {
                return Err(TrainError::DataMismatch {
                    path: latest,
                    expected: restored.state.images,
                    found: data.len(),
                });
            }
            Ok(Start {
                ema: Ema::from_average(restored.ema, config.ema_decay)?,
                step: restored.state.step,
                model: restored.model,
                optimizer: restored.optimizer,
                resumed_from: Some(latest),
            })
        }
        (false, Some(latest)) => Err(TrainError::io(
            latest,
            "this folder already holds a run; resume it or choose another output folder",
        )),
        (false, None) => {
            B::seed(device, config.seed);
            // A distillation's student starts as its teacher.
            let model = match &config.distillation {
                Some(distillation) => {
                    load_teacher::<B>(config, &distillation.teacher, device)?.model
                }
                None => config.unet.init::<B>(device)?,
            };
            Ok(Start {
                ema: Ema::new(&model, config.ema_decay)?,
                model,
                optimizer: new_optimizer(),
                step: 0,
                resumed_from: None,
            })
        }
    }
}
