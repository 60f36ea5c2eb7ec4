//! A distillation's teacher, loaded and checked against the run.

use std::path::Path;

use burn::tensor::backend::Backend;
use kiln_pipeline::{SamplingModel, load_for_sampling};

use crate::{TrainConfig, TrainError};

/// The teacher at `path` on `device`, which must have the run's UNet and schedule (a
/// [`crate::Distillation`]'s student starts from its weights and steps on its timesteps).
pub(crate) fn load_teacher<B: Backend>(
    config: &TrainConfig,
    path: &str,
    device: &B::Device,
) -> Result<SamplingModel<B>, TrainError> {
    let teacher = load_for_sampling::<B>(Path::new(path), device)?;
    let mismatch = |problem: &str| TrainError::Teacher {
        path: path.into(),
        problem: problem.into(),
    };
    if teacher.config != config.unet {
        return Err(mismatch("its UNet differs from the run's"));
    }
    if teacher.schedule.alphas_cumprod() != config.schedule()?.alphas_cumprod() {
        return Err(mismatch("its noise schedule differs from the run's"));
    }
    Ok(teacher)
}
