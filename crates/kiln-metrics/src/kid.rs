//! The kernel distance between two feature sets (KID when the features are Inception's).

use faer::Mat;
use rand::Rng;
use rand::seq::index::sample;

use crate::{Features, MetricsError};

/// The polynomial kernel k(x, y) = (γ xᵀy + c)^degree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolynomialKernel {
    /// The degree (3 for KID).
    pub degree: i32,
    /// γ; `None` is 1/d for d-dimensional features.
    pub gamma: Option<f64>,
    /// The constant c (1 for KID).
    pub coef0: f64,
}

impl Default for PolynomialKernel {
    /// KID's kernel (Bińkowski et al. 2018, §3): (xᵀy/d + 1)³.
    fn default() -> Self {
        Self {
            degree: 3,
            gamma: None,
            coef0: 1.0,
        }
    }
}

impl PolynomialKernel {
    /// Checks that this is a kernel (positive semi-definite, finite): degree ≥ 1, γ finite and
    /// positive where given, c finite and at least 0.
    pub fn check(&self) -> Result<(), MetricsError> {
        let problem = if self.degree < 1 {
            Some(("the kernel's degree", f64::from(self.degree), "at least 1"))
        } else if let Some(gamma) = self
            .gamma
            .filter(|gamma| !(gamma.is_finite() && *gamma > 0.0))
        {
            Some(("the kernel's gamma", gamma, "finite and positive"))
        } else if !(self.coef0.is_finite() && self.coef0 >= 0.0) {
            Some(("the kernel's coef0", self.coef0, "finite and at least 0"))
        } else {
            None
        };
        match problem {
            Some((name, value, expected)) => Err(MetricsError::OutOfRange {
                name,
                value,
                expected,
            }),
            None => Ok(()),
        }
    }

    /// The Gram matrix K_ij = k(x_i, y_j) of the rows of `x` and `y`.
    pub fn gram(&self, x: &Features, y: &Features) -> Mat<f64> {
        let gamma = self.gamma.unwrap_or(1.0 / x.dims() as f64);
        let mut k = x.matrix() * y.matrix().transpose();
        for j in 0..k.ncols() {
            for i in 0..k.nrows() {
                k[(i, j)] = (gamma * k[(i, j)] + self.coef0).powi(self.degree);
            }
        }
        k
    }
}

/// The unbiased estimate of the squared maximum mean discrepancy between the distributions
/// of the rows of `x` and of `y`, both of m samples (Gretton et al. 2012, eq. 3, as
/// torch-fidelity's `mmd2` with `mmd_est="unbiased"`):
///
/// ```text
/// MMD²_u = 1/(m(m−1)) Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] − 2/m² Σ_{i,j} k(x_i, y_j)
/// ```
pub fn mmd2_unbiased(
    x: &Features,
    y: &Features,
    kernel: &PolynomialKernel,
) -> Result<f64, MetricsError> {
    kernel.check()?;
    x.check_comparable(y)?;
    x.check_len("an unbiased MMD", 2)?;
    if x.len() != y.len() {
        return Err(MetricsError::Sizes {
            a: x.len(),
            b: y.len(),
        });
    }
    let m = x.len() as f64;
    let off_diagonal = |k: Mat<f64>| {
        let total: f64 = (0..k.ncols())
            .map(|j| (0..k.nrows()).map(|i| k[(i, j)]).sum::<f64>())
            .sum();
        let diagonal: f64 = (0..k.nrows()).map(|i| k[(i, i)]).sum();
        total - diagonal
    };
    let cross = kernel.gram(x, y);
    let cross: f64 = (0..cross.ncols())
        .map(|j| (0..cross.nrows()).map(|i| cross[(i, j)]).sum::<f64>())
        .sum();
    let within = off_diagonal(kernel.gram(x, x)) + off_diagonal(kernel.gram(y, y));
    Ok(within / (m * (m - 1.0)) - 2.0 * cross / (m * m))
}

/// How KID averages the MMD over random subsets (torch-fidelity's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KidConfig {
    /// Subsets drawn.
    pub subsets: usize,
    /// Samples in each subset, drawn without replacement from each set.
    pub subset_size: usize,
    /// The kernel.
    pub kernel: PolynomialKernel,
}

impl Default for KidConfig {
    /// 100 subsets of 1,000 samples with the cubic kernel.
    fn default() -> Self {
        Self {
            subsets: 100,
            subset_size: 1000,
            kernel: PolynomialKernel::default(),
        }
    }
}

/// The kernel inception distance: the mean and the (population) standard deviation of
/// [`mmd2_unbiased`] over subsets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kid {
    /// The mean over subsets.
    pub mean: f64,
    /// The standard deviation over subsets (`np.std`, 1/n).
    pub std: f64,
}

/// KID (Bińkowski et al. 2018) between `generated` and `real`, as torch-fidelity computes it:
/// `config.subsets` times, `config.subset_size` samples are drawn without replacement from
/// each set (with `rng`) and their [`mmd2_unbiased`] taken. With one subset as large as both
/// sets, the result is the MMD of the whole sets, torch-fidelity's to the last digits.
pub fn kernel_inception_distance(
    generated: &Features,
    real: &Features,
    config: &KidConfig,
    rng: &mut impl Rng,
) -> Result<Kid, MetricsError> {
    config.kernel.check()?;
    if config.subsets == 0 {
        return Err(MetricsError::OutOfRange {
            name: "KID subsets",
            value: 0.0,
            expected: "at least 1",
        });
    }
    let size = config.subset_size;
    generated.check_len("KID's subsets", size.max(2))?;
    real.check_len("KID's subsets", size.max(2))?;
    let subsets: Vec<[Vec<usize>; 2]> = (0..config.subsets)
        .map(|_| {
            let a = sample(rng, generated.len(), size).into_vec();
            let b = sample(rng, real.len(), size).into_vec();
            [a, b]
        })
        .collect();
    kid_over_subsets(generated, real, &subsets, &config.kernel)
}

/// KID over given subsets: `subsets[s] = [rows of generated, rows of real]`.
pub fn kid_over_subsets(
    generated: &Features,
    real: &Features,
    subsets: &[[Vec<usize>; 2]],
    kernel: &PolynomialKernel,
) -> Result<Kid, MetricsError> {
    kernel.check()?;
    if subsets.is_empty() {
        return Err(MetricsError::OutOfRange {
            name: "KID subsets",
            value: 0.0,
            expected: "at least 1",
        });
    }
    let mmds = subsets
        .iter()
        .map(|[a, b]| mmd2_unbiased(&generated.select(a)?, &real.select(b)?, kernel))
        .collect::<Result<Vec<f64>, _>>()?;
    let count = mmds.len().max(1) as f64;
    let mean = mmds.iter().sum::<f64>() / count;
    let variance = mmds.iter().map(|m| (m - mean) * (m - mean)).sum::<f64>() / count;
    Ok(Kid {
        mean,
        std: variance.sqrt(),
    })
}
