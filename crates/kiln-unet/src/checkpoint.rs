//! Kiln's own UNet checkpoints: one safetensors file holding the weights (burn's parameter
//! names) and the [`UNetConfig`] as JSON in the file's metadata, so a checkpoint describes itself.

use std::fs;
use std::path::{Path, PathBuf};

use burn::config::{Config, config_to_json};
use burn::tensor::backend::Backend;
use burn_store::{ApplyResult, ModuleSnapshot, SafetensorsStore};
use safetensors::SafeTensors;

use crate::{UNet, UNetConfig, UNetError};

/// The metadata key under which the configuration is stored.
const CONFIG_KEY: &str = "kiln_unet_config";

/// Writes `model` and its `config` to `path` atomically: into a temporary file beside it,
/// then renamed over `path`, so an interrupted save never leaves a half-written checkpoint.
pub fn save_checkpoint<B: Backend>(
    model: &UNet<B>,
    config: &UNetConfig,
    path: &Path,
) -> Result<(), UNetError> {
    let io_error = |path: &Path, message: String| UNetError::Io {
        path: path.display().to_string(),
        message,
    };
    let temporary = temporary_path(path);
    let mut store =
        SafetensorsStore::from_file(&temporary).metadata(CONFIG_KEY, config_to_json(config));
    model
        .save_into(&mut store)
        .map_err(|error| io_error(&temporary, error.to_string()))?;
    fs::rename(&temporary, path).map_err(|error| io_error(path, error.to_string()))
}

/// Reads a checkpoint written by [`save_checkpoint`]: its configuration, and the module built
/// from it on `device` with the stored weights. Nothing is drawn from burn's backend RNG (the
/// module is built by [`UNetConfig::init_for_loading`]).
pub fn load_checkpoint<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(UNetConfig, UNet<B>), UNetError> {
    let config = read_config(path)?;
    let model = load_weights(config.init_for_loading::<B>(device)?, path)?;
    Ok((config, model))
}

/// Loads the weights of the checkpoint at `path` into `model`, which must have the same
/// architecture: a mismatch is an error naming the first mismatched tensor and both shapes.
pub fn load_weights<B: Backend>(mut model: UNet<B>, path: &Path) -> Result<UNet<B>, UNetError> {
    let mut store = SafetensorsStore::from_file(path)
        .validate(false)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|error| UNetError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    })?;
    match first_problem(&result) {
        Some(problem) => Err(UNetError::Weights {
            path: path.display().to_string(),
            problem,
        }),
        None => Ok(model),
    }
}

/// The first thing wrong with a load: an error (a shape or type mismatch), a tensor of the
/// module that the file lacks, or a tensor of the file that has no place in the module.
pub(crate) fn first_problem(result: &ApplyResult) -> Option<String> {
    // burn-store lists a norm's `weight`/`bias` as unused even when it applied them as
    // `gamma`/`beta` (burn-store 0.21, `ApplyResult::unused`); only the rest are unused.
    let applied_as = |path: &str| {
        let alias = path
            .strip_suffix(".weight")
            .map(|stem| format!("{stem}.gamma"))
            .or_else(|| {
                path.strip_suffix(".bias")
                    .map(|stem| format!("{stem}.beta"))
            });
        alias.is_some_and(|alias| result.applied.contains(&alias))
    };
    result
        .errors
        .first()
        .map(ToString::to_string)
        .or_else(|| {
            result
                .missing
                .first()
                .map(|(name, _)| format!("no tensor for {name}"))
        })
        .or_else(|| {
            result
                .unused
                .iter()
                .find(|path| !applied_as(path))
                .map(|path| format!("tensor {path} has no place in the model"))
        })
}

/// The configuration stored in a checkpoint's metadata.
pub fn read_config(path: &Path) -> Result<UNetConfig, UNetError> {
    let bad = |message: String| UNetError::Io {
        path: path.display().to_string(),
        message,
    };
    let bytes = fs::read(path).map_err(|error| bad(error.to_string()))?;
    let (_, metadata) =
        SafeTensors::read_metadata(&bytes).map_err(|error| bad(error.to_string()))?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|entries| entries.get(CONFIG_KEY))
        .ok_or_else(|| {
            bad(format!(
                "no {CONFIG_KEY} metadata: not a Kiln UNet checkpoint"
            ))
        })?;
    UNetConfig::load_binary(json.as_bytes()).map_err(|error| bad(error.to_string()))
}

/// `path` with `.tmp` appended to its file name.
pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
