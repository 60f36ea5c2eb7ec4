//! Where a feature network's weights come from: named f32 tensors, from a PyTorch `.pth` file or
//! anything else that can name them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;

use crate::MetricsError;

/// Named weight tensors, handed out one at a time as a network is built.
pub trait WeightSource {
    /// The values of tensor `name`, row-major, which must have `shape`.
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, MetricsError>;
}

/// The tensors of a PyTorch state dict saved by `torch.save` (the zip format of PyTorch ≥ 1.6
/// and the legacy one), read with burn-store's pickle reader. Values of any float type are
/// converted to f32.
pub struct PthWeights {
    path: PathBuf,
    tensors: HashMap<String, TensorSnapshot>,
}

impl PthWeights {
    /// Reads the state dict's table of tensors (their values are read when asked for).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetricsError> {
        let path = path.as_ref().to_path_buf();
        let unreadable = |reason: String| MetricsError::WeightFile {
            path: path.clone(),
            reason,
        };
        if !path.is_file() {
            return Err(unreadable("no such file".into()));
        }
        let reader = PytorchReader::new(&path).map_err(|error| unreadable(error.to_string()))?;
        Ok(Self {
            tensors: reader.into_tensors(),
            path,
        })
    }

    /// The names of the tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

impl WeightSource for PthWeights {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, MetricsError> {
        let snapshot = self
            .tensors
            .get(name)
            .ok_or_else(|| MetricsError::MissingWeight {
                name: name.into(),
                source_name: self.path.display().to_string(),
            })?;
        if snapshot.shape.as_slice() != shape {
            return Err(MetricsError::WeightShape {
                name: name.into(),
                expected: shape.to_vec(),
                found: snapshot.shape.to_vec(),
            });
        }
        let unreadable = |reason: String| MetricsError::WeightFile {
            path: self.path.clone(),
            reason: format!("{name}: {reason}"),
        };
        snapshot
            .to_data()
            .map_err(|error| unreadable(format!("{error:?}")))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|error| unreadable(format!("{error:?}")))
    }
}
