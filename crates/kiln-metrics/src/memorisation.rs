//! How many generated samples copy a training sample.

use crate::distances::nearest;
use crate::{Features, MetricsError};

/// The share of generated samples counted as memorised, and the distance below which a sample
/// counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memorisation {
    /// The share of generated samples nearer to a training sample than `threshold`.
    pub rate: f64,
    /// τ, the rule's threshold.
    pub threshold: f64,
}

/// The memorisation rate of `generated` against the `training` set, with the threshold taken
/// from `held_out` real samples of the same kind that were not trained on.
///
/// The rule: let d(x) be the distance from x to its nearest training sample. Real samples the
/// model never saw give the distances d(h) at which genuinely new data lies; τ is their
/// `quantile` (linear interpolation between order statistics, as `numpy.quantile`; 0 is the
/// smallest). A generated sample g is memorised when d(g) < τ: nearer to a training sample
/// than (all but a `quantile` share of) new real data. With `quantile` 0 no held-out sample
/// itself would count, and a model that returns its training images counts 100 %.
pub fn memorisation_rate(
    generated: &Features,
    training: &Features,
    held_out: &Features,
    quantile: f64,
) -> Result<Memorisation, MetricsError> {
    generated.check_comparable(training)?;
    held_out.check_comparable(training)?;
    training.check_len("a memorisation rate's training set", 1)?;
    held_out.check_len("a memorisation rate's held-out set", 1)?;
    generated.check_len("a memorisation rate", 1)?;
    if !(0.0..=1.0).contains(&quantile) {
        return Err(MetricsError::OutOfRange {
            name: "the memorisation quantile",
            value: quantile,
            expected: "a value in [0, 1]",
        });
    }
    let mut natural = nearest(held_out, training);
    natural.sort_by(f64::total_cmp);
    let position = quantile * (natural.len() - 1) as f64;
    let (below, fraction) = (position.floor() as usize, position.fract());
    let above = (below + 1).min(natural.len() - 1);
    let threshold = natural[below] + fraction * (natural[above] - natural[below]);
    let nearest_generated = nearest(generated, training);
    let copies = nearest_generated.iter().filter(|&&d| d < threshold).count();
    Ok(Memorisation {
        rate: copies as f64 / generated.len() as f64,
        threshold,
    })
}
