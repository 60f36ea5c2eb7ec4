//! Improved precision and recall (Kynkäänniemi et al. 2019).

use crate::distances::{kth_neighbour_distances, share_covered};
use crate::{Features, MetricsError};

/// Precision, recall and their harmonic mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    /// The share of generated samples inside the real manifold: fidelity.
    pub precision: f64,
    /// The share of real samples inside the generated manifold: diversity.
    pub recall: f64,
    /// 2PR/(P + R) (with the denominator at least 10⁻⁵, as torch-fidelity).
    pub f_score: f64,
}

/// Improved precision and recall (Kynkäänniemi et al. 2019, §2): each set's manifold is the
/// union of balls around its samples, each ball's radius the distance to the sample's k-th
/// nearest neighbour in its own set (k = 3 in the paper). Precision is the share of generated
/// samples inside the real manifold (within the radius of at least one real sample, boundary
/// included), recall the share of real samples inside the generated manifold; as
/// torch-fidelity's `prc` metric.
pub fn precision_recall(
    generated: &Features,
    real: &Features,
    k: usize,
) -> Result<PrecisionRecall, MetricsError> {
    generated.check_comparable(real)?;
    if k == 0 {
        return Err(MetricsError::OutOfRange {
            name: "the neighbourhood size k",
            value: 0.0,
            expected: "at least 1",
        });
    }
    let needed = k.saturating_add(1);
    generated.check_len("precision and recall with this k", needed)?;
    real.check_len("precision and recall with this k", needed)?;
    let precision = share_covered(generated, real, &kth_neighbour_distances(real, k));
    let recall = share_covered(real, generated, &kth_neighbour_distances(generated, k));
    let f_score = 2.0 * precision * recall / (precision + recall).max(1e-5);
    Ok(PrecisionRecall {
        precision,
        recall,
        f_score,
    })
}
