//! The Brownian increments of the SDE samplers: drawn as the steps go, or read off one path
//! per trajectory from a virtual Brownian tree.

use std::str::FromStr;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use kiln_forward::standard_normal;
use kiln_schedule::NoiseSchedule;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::SamplerError;

/// Where an SDE sampler's noise comes from.
///
/// A step from σ to σ' < σ of a reverse SDE in σ-space adds noise made of the increments of a
/// Brownian motion W in σ, normalised to w(σ → σ') = (W(σ') − W(σ))/√(σ − σ') ~ N(0, I). Both
/// paths give every run the same law; they differ in what one seed means across grids.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoisePath {
    /// Each increment drawn from the caller's RNG when the step takes it, independent of those
    /// before: what diffusers' `DPMSolverMultistepScheduler` does. Runs of different step counts from one seed
    /// draw different paths, so their samples differ by more than the steps' error.
    #[default]
    Sequential,
    /// One path per trajectory, read off a virtual Brownian tree (Li et al. 2020, "Scalable
    /// Gradients for Stochastic Differential Equations", §4) seeded by one `u64` from the
    /// caller's RNG at the trajectory's first noise: k-diffusion's `BrownianTreeNoiseSampler`,
    /// which its `sample_dpmpp_sde` and `sample_dpmpp_2m_sde` take by default and diffusers'
    /// `DPMSolverSDEScheduler` queries. The tree spans the schedule's σ (and the grid's, where
    /// they reach beyond), so W(σ) depends on the seed and σ only, not on the grid: runs of any
    /// step count or σ spacing from one seed follow one path and their samples converge to one
    /// as the steps grow (strongly, not only in law). Each increment costs the tree's depth
    /// plus 2 host draws of the sample's size (22 over a 1000-step linear schedule) where
    /// [`NoisePath::Sequential`] costs one. The draws come from rand's `StdRng`, so a rand
    /// release that changes that generator changes the path.
    BrownianTree,
}

impl NoisePath {
    /// The names [`FromStr`] accepts, in the order of the variants.
    pub const NAMES: [&'static str; 2] = ["sequential", "brownian"];
}

impl FromStr for NoisePath {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "sequential" => Ok(Self::Sequential),
            "brownian" => Ok(Self::BrownianTree),
            _ => Err(format!(
                "unknown noise path {name:?}; expected one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// The log-width ln(r/l) below which a tree node [l, r] is a leaf: two σ within a relative
/// 10⁻⁵ of each other may share a leaf and its bridge draw, and the increment between them is
/// then smaller than Brownian; no sampler steps that finely.
const LEAF_LOG_WIDTH: f64 = 1e-5;

/// A virtual Brownian tree over the noise levels [low, high], 0 < low < high: W(low) = 0,
/// W(high) = √(high − low) z, and the value at the geometric middle m = √(l r) of each node's
/// interval [l, r] drawn from the Brownian bridge between its ends,
///
/// ```text
/// W(m) = W(l) + (m − l)/(r − l) · (W(r) − W(l)) + √((m − l)(r − m)/(r − l)) · z,
/// ```
///
/// with z ~ N(0, I) from an RNG keyed by the tree's seed and the node's place, so that a node
/// has one value however it is reached. A query descends to the leaf that holds σ and
/// bridges from the leaf's ends to σ the same way. The nodes have exactly the law of a
/// Brownian motion's values, and given them the bridges in distinct leaves are independent,
/// so queries in distinct leaves have exactly the joint law of W. Splitting in log σ makes
/// the leaves as fine relative to σ near σ_min as near σ_max.
#[derive(Debug, Clone)]
struct BrownianTree {
    seed: u64,
    low: f64,
    high: f64,
    /// Levels below the root; the leaves are at this level.
    depth: u32,
}

impl BrownianTree {
    fn new(seed: u64, (low, high): (f64, f64)) -> Self {
        let levels = ((high / low).ln() / LEAF_LOG_WIDTH).log2().ceil();
        Self {
            seed,
            low,
            high,
            depth: levels.clamp(1.0, 31.0) as u32,
        }
    }

    /// W(`sigma`) over `count` independent coordinates; `sigma` is clamped to [low, high].
    fn value(&self, sigma: f64, count: usize) -> Vec<f64> {
        let sigma = sigma.clamp(self.low, self.high);
        let (mut left, mut right) = (self.low, self.high);
        let mut w_left = vec![0.0; count];
        let mut w_right: Vec<f64> = self
            .normals(u64::MAX, count)
            .map(|z| (self.high - self.low).sqrt() * z)
            .collect();
        let mut index = 0;
        for level in 0..self.depth {
            let middle = (left * right).sqrt();
            let w_middle = self.bridge((left, &w_left), (right, &w_right), middle, (level, index));
            if sigma < middle {
                (right, w_right, index) = (middle, w_middle, 2 * index);
            } else {
                (left, w_left, index) = (middle, w_middle, 2 * index + 1);
            }
        }
        self.bridge(
            (left, &w_left),
            (right, &w_right),
            sigma,
            (self.depth, index),
        )
    }

    /// W at `at` in [l, r] drawn from the bridge between W(l) and W(r), with the draw of
    /// `node` (its level and index within the level).
    fn bridge(
        &self,
        (left, w_left): (f64, &[f64]),
        (right, w_right): (f64, &[f64]),
        at: f64,
        (level, index): (u32, u64),
    ) -> Vec<f64> {
        let width = right - left;
        let (along, spread) = (
            (at - left) / width,
            ((at - left) * (right - at) / width).sqrt(),
        );
        let key = (u64::from(level) << 32) | index;
        w_left
            .iter()
            .zip(w_right)
            .zip(self.normals(key, w_left.len()))
            .map(|((&l, &r), z)| l + along * (r - l) + spread * z)
            .collect()
    }

    /// `count` standard normals from the RNG keyed by the seed and `key`.
    fn normals(&self, key: u64, count: usize) -> impl Iterator<Item = f64> {
        let mut seed = [0; 32];
        seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&key.to_le_bytes());
        StandardNormal
            .sample_iter(StdRng::from_seed(seed))
            .take(count)
    }
}

/// One trajectory's normalised Brownian increments along a [`NoisePath`].
#[derive(Debug, Clone)]
pub(crate) struct BrownianNoise {
    path: NoisePath,
    /// The σ range of the tree: all the σ the sampler visits, and the schedule's.
    range: (f64, f64),
    /// The trajectory's tree, seeded at its first increment.
    tree: Option<BrownianTree>,
    /// The last value read off the tree, W(σ) at σ, the next step's start.
    last: Option<(f64, Vec<f64>)>,
}

impl BrownianNoise {
    /// Noise along `path` for a sampler `sampler` that visits the noise levels `sigmas` of
    /// `schedule`; a tree needs them finite.
    pub(crate) fn new(
        sampler: &'static str,
        path: NoisePath,
        sigmas: &[f64],
        schedule: &NoiseSchedule,
    ) -> Result<Self, SamplerError> {
        let (low, high) = sigmas
            .iter()
            .chain(schedule.sigmas())
            .filter(|&&sigma| sigma > 0.0 && sigma.is_finite())
            .fold((f64::INFINITY, 0.0_f64), |(low, high), &sigma| {
                (low.min(sigma), high.max(sigma))
            });
        let visits_infinity = sigmas.iter().any(|sigma| sigma.is_infinite());
        if path == NoisePath::BrownianTree && (visits_infinity || low >= high) {
            return Err(SamplerError::Incompatible {
                sampler,
                reason: "a Brownian tree needs finite noise levels σ > 0 (a zero-terminal-SNR \
                         schedule's last σ is infinite); start below it or take the sequential \
                         noise path",
            });
        }
        Ok(Self {
            path,
            range: (low, high),
            tree: None,
            last: None,
        })
    }

    /// Ends the trajectory: the next increment starts a new one (and a new tree).
    pub(crate) fn restart(&mut self) {
        self.tree = None;
        self.last = None;
    }

    /// w(σ → σ') = (W(σ') − W(σ))/√(σ − σ') for σ = `sigma` > σ' = `sigma_next`, shaped as
    /// `shape` (zero for σ' = σ along a tree).
    pub(crate) fn increment<B: Backend, const D: usize, R: Rng + ?Sized>(
        &mut self,
        (sigma, sigma_next): (f64, f64),
        shape: [usize; D],
        device: &B::Device,
        rng: &mut R,
    ) -> Tensor<B, D> {
        if self.path == NoisePath::Sequential {
            return standard_normal(shape, rng, device);
        }
        debug_assert!(
            sigma >= sigma_next,
            "a step up in σ: {sigma} to {sigma_next}"
        );
        let count = shape.iter().product();
        let range = self.range;
        let tree = self
            .tree
            .get_or_insert_with(|| BrownianTree::new(rng.next_u64(), range));
        let start = match self.last.take() {
            Some((at, values)) if at == sigma && values.len() == count => values,
            _ => tree.value(sigma, count),
        };
        let end = tree.value(sigma_next, count);
        let scale = if sigma > sigma_next {
            (sigma - sigma_next).sqrt().recip()
        } else {
            0.0
        };
        let values: Vec<f32> = start
            .iter()
            .zip(&end)
            .map(|(&from, &to)| ((to - from) * scale) as f32)
            .collect();
        self.last = Some((sigma_next, end));
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const COUNT: usize = 100_000;

    fn tree() -> BrownianTree {
        BrownianTree::new(7, (0.01, 157.0))
    }

    fn variance(values: impl Iterator<Item = f64>) -> f64 {
        values.map(|v| v * v).sum::<f64>() / COUNT as f64
    }

    /// Increments over [σ', σ] have variance σ − σ', disjoint ones are uncorrelated, and a
    /// value depends on the seed and σ only.
    #[test]
    fn tree_values_have_the_law_of_a_brownian_motion() {
        let tree = tree();
        let sigmas = [157.0, 80.0, 3.0, 2.9, 0.05, 0.0101];
        let values: Vec<Vec<f64>> = sigmas.iter().map(|&s| tree.value(s, COUNT)).collect();
        for (pair, w) in sigmas.windows(2).zip(values.windows(2)) {
            let span = pair[0] - pair[1];
            let measured = variance(w[0].iter().zip(&w[1]).map(|(a, b)| a - b)) / span;
            assert!((measured - 1.0).abs() < 0.03, "{pair:?}: {measured}");
        }
        for w in values.windows(3) {
            let (d0, d1): (Vec<f64>, Vec<f64>) = (0..COUNT)
                .map(|i| (w[0][i] - w[1][i], w[1][i] - w[2][i]))
                .unzip();
            let scale = (variance(d0.iter().copied()) * variance(d1.iter().copied())).sqrt();
            let correlation =
                d0.iter().zip(&d1).map(|(a, b)| a * b).sum::<f64>() / COUNT as f64 / scale;
            assert!(correlation.abs() < 0.02, "{correlation}");
        }
        assert_eq!(
            tree.value(3.0, 10),
            BrownianTree::new(7, (0.01, 157.0)).value(3.0, 10)
        );
        assert_ne!(
            tree.value(3.0, 10),
            BrownianTree::new(8, (0.01, 157.0)).value(3.0, 10)
        );
        assert!(tree.value(0.01, 10).iter().all(|&w| w == 0.0));
    }

    /// A step's increment through a midpoint is the whole step's, whatever the grid.
    #[test]
    fn increments_add_up_along_one_path() {
        let device = Default::default();
        let shape = [4, 50];
        let walk = |sigmas: &[f64]| {
            let mut noise = BrownianNoise {
                path: NoisePath::BrownianTree,
                range: (0.01, 157.0),
                tree: None,
                last: None,
            };
            let mut rng = StdRng::seed_from_u64(3);
            sigmas
                .windows(2)
                .map(|pair| {
                    let w: Tensor<Flex, 2> =
                        noise.increment((pair[0], pair[1]), shape, &device, &mut rng);
                    w.mul_scalar((pair[0] - pair[1]).sqrt())
                })
                .reduce(|a, b| a + b)
                .unwrap()
        };
        let direct = walk(&[20.0, 0.5]);
        let through = walk(&[20.0, 7.3, 1.1, 0.5]);
        direct.into_data().assert_approx_eq::<f32>(
            &through.into_data(),
            burn::tensor::Tolerance::absolute(1e-4),
        );
        let zero: Tensor<Flex, 2> = walk(&[2.0, 2.0]);
        assert_eq!(zero.abs().max().into_scalar(), 0.0);
    }
}
