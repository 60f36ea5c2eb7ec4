//! Euclidean distances between feature vectors, a block of rows at a time, so that comparing
//! sets of n and m samples holds O(m) distances at once rather than n × m.

use faer::Mat;

use crate::Features;

/// The most distances one block holds (2²² f64, 32 MiB).
const BLOCK_VALUES: usize = 1 << 22;

/// Calls `visit(block)` for consecutive blocks of the rows of `x`, in order, `block` holding
/// ‖x_i − y_j‖ for its rows i of `x` and every row j of `y`, at most [`BLOCK_VALUES`] of them.
pub(crate) fn distance_blocks(x: &Features, y: &Features, visit: impl FnMut(&Mat<f64>)) {
    let rows = (BLOCK_VALUES / y.len().max(1)).max(1);
    distance_blocks_of(x, y, rows, visit);
}

/// [`distance_blocks`] with `rows` rows of `x` a block. Distances are ‖x‖² + ‖y‖² − 2xᵀy
/// (clamped at 0 before the root), the expansion torch's `cdist` uses for large inputs.
fn distance_blocks_of(x: &Features, y: &Features, rows: usize, mut visit: impl FnMut(&Mat<f64>)) {
    let squares = |m: faer::MatRef<'_, f64>| -> Vec<f64> {
        (0..m.nrows())
            .map(|i| (0..m.ncols()).map(|j| m[(i, j)] * m[(i, j)]).sum())
            .collect()
    };
    let (xm, ym) = (x.matrix(), y.matrix());
    let (xx, yy) = (squares(xm), squares(ym));
    for first in (0..xm.nrows()).step_by(rows) {
        let count = rows.min(xm.nrows() - first);
        let xy = xm.subrows(first, count) * ym.transpose();
        let block = Mat::from_fn(count, ym.nrows(), |i, j| {
            (xx[first + i] + yy[j] - 2.0 * xy[(i, j)]).max(0.0).sqrt()
        });
        visit(&block);
    }
}

/// Each row's distance to its k-th nearest neighbour among the rows of `set`: the (k + 1)-th
/// smallest distance of the row, its own zero being the first (torch-fidelity's
/// `kthvalue(k + 1)`). Needs k < `set.len()`.
pub(crate) fn kth_neighbour_distances(set: &Features, k: usize) -> Vec<f64> {
    let mut radii = Vec::with_capacity(set.len());
    distance_blocks(set, set, |block| {
        for i in 0..block.nrows() {
            let mut row: Vec<f64> = (0..block.ncols()).map(|j| block[(i, j)]).collect();
            let (_, kth, _) = row.select_nth_unstable_by(k, f64::total_cmp);
            radii.push(*kth);
        }
    });
    radii
}

/// The share of the rows of `x` within `radii[j]` of some row j of `y` (boundary included).
pub(crate) fn share_covered(x: &Features, y: &Features, radii: &[f64]) -> f64 {
    let mut covered = 0;
    distance_blocks(x, y, |block| {
        covered += (0..block.nrows())
            .filter(|&i| (0..block.ncols()).any(|j| block[(i, j)] <= radii[j]))
            .count();
    });
    covered as f64 / x.len() as f64
}

/// Each row of `x`'s distance to its nearest row of `y`.
pub(crate) fn nearest(x: &Features, y: &Features) -> Vec<f64> {
    let mut nearest = Vec::with_capacity(x.len());
    distance_blocks(x, y, |block| {
        nearest.extend((0..block.nrows()).map(|i| {
            (0..block.ncols())
                .map(|j| block[(i, j)])
                .fold(f64::INFINITY, f64::min)
        }));
    });
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_any_height_give_the_same_distances() {
        let values: Vec<f64> = (0..37 * 3)
            .map(|i| ((i * 7919) % 101) as f64 / 10.0)
            .collect();
        let (x, y) = (
            Features::new(&values, 3).unwrap(),
            Features::new(&values[..23 * 3], 3).unwrap(),
        );
        let collect = |rows| {
            let mut all = Vec::new();
            distance_blocks_of(&x, &y, rows, |block| {
                all.extend((0..block.nrows()).flat_map(|i| (0..23).map(move |j| block[(i, j)])));
            });
            all
        };
        let whole = collect(1000);
        assert_eq!(whole.len(), 37 * 23);
        assert_eq!(collect(5), whole);
        assert_eq!(collect(1), whole);
        // Row 4 of x is row 4 of y.
        assert_eq!(whole[4 * 23 + 4], 0.0);
    }
}
