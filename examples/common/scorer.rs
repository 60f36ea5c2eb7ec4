//! How the examples score samples: in InceptionV3's features when its weights are found
//! (`--inception-weights` or `KILN_INCEPTION_WEIGHTS`), else in the bundled face encoder's.

use std::error::Error;
use std::path::Path;

use burn::tensor::{Tensor, backend::Backend};
use kiln::metrics::{
    Evaluator, FaceEncoder, FidInception, MetricsError, QualityConfig, SampleScorer,
    inception_weights,
};
use kiln::train::{DatasetError, ImageFolder};

/// Images per batch through a feature network.
const EVAL_BATCH: usize = 50;

/// A scorer and the name of its feature space.
pub struct Scoring {
    pub scorer: Box<dyn SampleScorer>,
    pub space: &'static str,
}

/// A scorer against the real `training` images (and `held_out` ones, the scale of the
/// memorisation rate).
pub fn scorer<B: Backend>(
    training: &ImageFolder,
    held_out: Option<&ImageFolder>,
    weights: Option<&Path>,
    device: &B::Device,
) -> Result<Scoring, Box<dyn Error>> {
    let training = unit_batches(training, device)?;
    let held_out = held_out
        .map(|folder| unit_batches(folder, device))
        .transpose()?;
    let config = QualityConfig::default();
    Ok(match inception_weights(weights) {
        Ok(weights) => {
            let inception = FidInception::<B>::from_pth(&weights, device)?;
            Scoring {
                scorer: Box::new(Evaluator::new(inception, training, held_out, config)?),
                space: "InceptionV3 (pool3)",
            }
        }
        Err(MetricsError::NoInceptionWeights { .. }) => {
            let encoder = FaceEncoder::<B>::bundled(device)?;
            Scoring {
                scorer: Box::new(Evaluator::new(encoder, training, held_out, config)?),
                space: "the bundled face encoder",
            }
        }
        Err(error) => return Err(error.into()),
    })
}

/// Images generated in [−1, 1] as the scorer takes them: in [0, 1].
pub fn in_unit_range<B: Backend>(images: Tensor<B, 4>) -> Tensor<B, 4> {
    ((images + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// Every image of `folder` in batches, in [0, 1], on `device`.
fn unit_batches<B: Backend>(
    folder: &ImageFolder,
    device: &B::Device,
) -> Result<Vec<Tensor<B, 4>>, DatasetError> {
    let indices: Vec<usize> = (0..folder.len()).collect();
    indices
        .chunks(EVAL_BATCH)
        .map(|batch| {
            Ok(in_unit_range(folder.batch(
                batch,
                &vec![false; batch.len()],
                device,
            )?))
        })
        .collect()
}
