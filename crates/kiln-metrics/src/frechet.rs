//! The Fréchet distance between two Gaussians (FID when the features are Inception's).

use faer::{Mat, Side};

use crate::{GaussianStats, MetricsError};

/// The Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Dowson & Landau
/// 1982; Heusel et al. 2017, eq. 6, as FID):
///
/// ```text
/// d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)
/// ```
///
/// The trace of the square root is taken as Σ_k √λ_k over the eigenvalues λ_k of the symmetric
/// Σ₁^½ Σ₂ Σ₁^½, which are those of Σ₁Σ₂ (similar matrices), from two symmetric
/// eigendecompositions in f64. pytorch-fid takes `scipy.linalg.sqrtm(Σ₁Σ₂)`, drops the
/// imaginary part that rounding leaves and, where the product is so singular that `sqrtm`
/// returns non-finite values, retries with 10⁻⁶ added to both diagonals. Here the eigenvalues
/// that rounding pushes below zero count as zero, which is what dropping the imaginary part of
/// their square roots does, and a singular product (fewer samples than dimensions) needs no
/// retry: the result is pytorch-fid's where its `sqrtm` succeeds.
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64, MetricsError> {
    a.check()?;
    b.check()?;
    if a.dims() != b.dims() {
        return Err(MetricsError::Dimensions {
            a: a.dims(),
            b: b.dims(),
        });
    }
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |m: &Mat<f64>| (0..m.nrows()).map(|i| m[(i, i)]).sum::<f64>();
    let root_a = psd_square_root(&a.covariance)?;
    let product = &root_a * &b.covariance * &root_a;
    let eigenvalues = product
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|_| MetricsError::Eigen(product.nrows()))?;
    let trace_root: f64 = eigenvalues.iter().map(|&l| l.max(0.0).sqrt()).sum();
    Ok(mean_term + trace(&a.covariance) + trace(&b.covariance) - 2.0 * trace_root)
}

/// The symmetric square root U diag(√max(λ, 0)) Uᵀ of a symmetric positive semi-definite
/// matrix with eigendecomposition U diag(λ) Uᵀ.
fn psd_square_root(matrix: &Mat<f64>) -> Result<Mat<f64>, MetricsError> {
    let n = matrix.nrows();
    let eigen = matrix
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| MetricsError::Eigen(n))?;
    let (u, s) = (eigen.U(), eigen.S().column_vector());
    let scaled = Mat::from_fn(n, n, |i, k| u[(i, k)] * s[k].max(0.0).sqrt());
    Ok(&scaled * u.transpose())
}
