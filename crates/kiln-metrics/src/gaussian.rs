//! The Gaussian a set of features is summarised by: its mean and covariance.

use faer::Mat;

use crate::{Features, MetricsError};

/// The sample mean μ and covariance Σ of a feature set, as pytorch-fid computes them
/// (`np.mean`, and `np.cov` with the unbiased 1/(n − 1)).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianStats {
    /// μ, one value a feature dimension.
    pub mean: Vec<f64>,
    /// Σ = 1/(n − 1) Σ_i (x_i − μ)(x_i − μ)ᵀ.
    pub covariance: Mat<f64>,
}

impl GaussianStats {
    /// The statistics of `features` (at least 2 samples).
    pub fn of(features: &Features) -> Result<Self, MetricsError> {
        features.check_len("a covariance", 2)?;
        let x = features.matrix();
        let (n, dims) = (x.nrows(), x.ncols());
        let mean: Vec<f64> = (0..dims)
            .map(|j| (0..n).map(|i| x[(i, j)]).sum::<f64>() / n as f64)
            .collect();
        let centred = Mat::from_fn(n, dims, |i, j| x[(i, j)] - mean[j]);
        let mut covariance = centred.transpose() * &centred;
        let scale = 1.0 / (n - 1) as f64;
        for j in 0..dims {
            for i in 0..dims {
                covariance[(i, j)] *= scale;
            }
        }
        Ok(Self { mean, covariance })
    }

    /// The dimension of the features.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// Checks that the covariance is square, of the mean's dimension, and that every value is
    /// finite (the fields are public: statistics may come from elsewhere).
    pub(crate) fn check(&self) -> Result<(), MetricsError> {
        let (rows, columns) = (self.covariance.nrows(), self.covariance.ncols());
        if rows != self.dims() || columns != self.dims() {
            return Err(MetricsError::Dimensions {
                a: self.dims(),
                b: rows.max(columns),
            });
        }
        let covariance = (0..columns).flat_map(|j| (0..rows).map(move |i| (i, j)));
        let values = self
            .mean
            .iter()
            .copied()
            .chain(covariance.map(|ij| self.covariance[ij]));
        match values.enumerate().find(|(_, v)| !v.is_finite()) {
            Some((index, value)) => Err(MetricsError::NotFinite {
                row: 0,
                index,
                value,
            }),
            None => Ok(()),
        }
    }
}
