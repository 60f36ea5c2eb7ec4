//! A safe front for the `gemm` crate's matrix product on `f32` slices.

use gemm::Parallelism;

/// A read-only matrix view: element (i, j) is `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Matrix<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// dst = a·b (`accumulate` false) or dst + a·b (`accumulate` true), with `dst` row-major
/// `a.rows × b.cols`, on the calling thread unless `threads` asks for rayon.
pub(crate) fn matmul(dst: &mut [f32], a: Matrix, b: Matrix, accumulate: bool, threads: bool) {
    product(dst, a, b, 1.0, accumulate, threads);
}

/// dst = scale·a·b, with `dst` row-major `a.rows × b.cols`, on the calling thread.
pub(crate) fn matmul_scaled(dst: &mut [f32], a: Matrix, b: Matrix, scale: f32) {
    product(dst, a, b, scale, false, false);
}

/// dst = scale·a·b, plus the old dst when `accumulate`.
fn product(dst: &mut [f32], a: Matrix, b: Matrix, scale: f32, accumulate: bool, threads: bool) {
    assert!(a.cols == b.rows && dst.len() == a.rows * b.cols && a.in_bounds() && b.in_bounds());
    let parallelism = if threads {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the assert above keeps every index of the three matrices inside its slice, and
    // `dst` is borrowed mutably so it aliases neither input.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}
