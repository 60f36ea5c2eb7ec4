use std::path::PathBuf;

use kiln_sampler::SamplerError;
use kiln_unet::UNetError;
use thiserror::Error;

use crate::pixels::PixelError;

/// Everything that can stop loading a model, generating or editing.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// A file or folder could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A checkpoint failed verification or could not be loaded.
    #[error("checkpoint {path} is damaged: {damage}")]
    DamagedCheckpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// The damaged file and what is wrong with it.
        damage: Damage,
    },
    /// A recorded setting (a run's `state.json`, a diffusers `scheduler_config.json`) that
    /// Kiln cannot sample with, or a model's setting that a diffusers folder cannot hold.
    #[error("{path}: unsupported {field} {value:?}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The setting's name in that file.
        field: String,
        /// Its value.
        value: String,
    },
    /// A recorded setting that contradicts another in its file (`trained_betas` of another
    /// length than `num_train_timesteps`) or the model beside it (`variance_type =
    /// "learned_range"` for a UNet whose output holds no variance).
    #[error("{path}: {problem}")]
    Inconsistent {
        /// The file that holds the setting.
        path: PathBuf,
        /// The two things that disagree.
        problem: String,
    },
    /// A class asked for by a name (or number) the model does not have.
    #[error(
        "no class {name:?}; the model has {classes} classes: give a name such as {example:?} or a number below {classes}"
    )]
    UnknownClass {
        /// The name asked for.
        name: String,
        /// The model's number of classes.
        classes: usize,
        /// The first class's name.
        example: String,
    },
    /// An edit's setting that cannot be carried out: a box outside the image, too few
    /// frames, a mask of another size.
    #[error("{setting}: {problem}")]
    Edit {
        /// The setting, as the edit's field names it.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The model refused its input or the settings (see [`UNetError`]).
    #[error(transparent)]
    UNet(#[from] UNetError),
    /// A sampler's settings or run.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// Reading or writing an image.
    #[error(transparent)]
    Pixels(#[from] PixelError),
}

impl PipelineError {
    /// A [`PipelineError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.into(),
            message: error.to_string(),
        }
    }

    /// A [`PipelineError::Edit`] naming `setting`.
    pub(crate) fn edit(setting: &'static str, problem: impl Into<String>) -> Self {
        Self::Edit {
            setting,
            problem: problem.into(),
        }
    }
}

/// What is wrong with a checkpoint: the first damaged file and how.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{file}: {problem}")]
pub struct Damage {
    /// The file's name inside the checkpoint folder.
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Damage {
    /// `file` is damaged: `problem`.
    pub fn new(file: &str, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            problem: problem.into(),
        }
    }
}
