//! Euclidean distances between feature vectors, and each vector's k-th nearest neighbour.

use faer::Mat;

use crate::Features;

/// D_ij = ‖x_i − y_j‖ for the rows of `x` and `y`, as ‖x‖² + ‖y‖² − 2xᵀy (clamped at 0 before
/// the root), the expansion torch's `cdist` uses for large inputs.
pub(crate) fn pairwise_distances(x: &Features, y: &Features) -> Mat<f64> {
    let squares = |f: &Features| -> Vec<f64> {
        let m = f.matrix();
        (0..m.nrows())
            .map(|i| (0..m.ncols()).map(|j| m[(i, j)] * m[(i, j)]).sum())
            .collect()
    };
    let (xx, yy) = (squares(x), squares(y));
    let xy = x.matrix() * y.matrix().transpose();
    Mat::from_fn(xy.nrows(), xy.ncols(), |i, j| {
        (xx[i] + yy[j] - 2.0 * xy[(i, j)]).max(0.0).sqrt()
    })
}

/// Each row's distance to its k-th nearest neighbour among the rows of `distances` (a square
/// matrix of a set against itself): the (k + 1)-th smallest of the row, the row's own zero
/// being the first (torch-fidelity's `kthvalue(k + 1)`).
pub(crate) fn kth_neighbour_distances(distances: &Mat<f64>, k: usize) -> Vec<f64> {
    (0..distances.nrows())
        .map(|i| {
            let mut row: Vec<f64> = (0..distances.ncols()).map(|j| distances[(i, j)]).collect();
            let (_, kth, _) = row.select_nth_unstable_by(k, f64::total_cmp);
            *kth
        })
        .collect()
}
