//! A safe front for the `gemm` crate's matrix product on `f32` slices.

use std::mem::MaybeUninit;

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
        Self::strided(data, rows, cols, cols)
    }

    /// A `rows × cols` matrix whose rows start `row_stride` elements apart (a block of columns
    /// of a wider row-major matrix).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
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
        span(self.rows, self.cols, self.row_stride, self.col_stride) <= self.data.len()
    }
}

/// The elements a `rows × cols` matrix with these strides reaches, from its first.
fn span(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    }
}

/// dst = a·b (`accumulate` false) or dst + a·b (`accumulate` true), with `dst` row-major
/// `a.rows × b.cols`, on the calling thread unless `threads` asks for rayon.
pub(crate) fn matmul(dst: &mut [f32], a: Matrix, b: Matrix, accumulate: bool, threads: bool) {
    assert_eq!(dst.len(), a.rows * b.cols, "dst holds the product exactly");
    product(
        dst.as_mut_ptr(),
        dst.len(),
        b.cols,
        a,
        b,
        1.0,
        accumulate,
        threads,
    );
}

/// dst = scale·a·b, with `dst` a `a.rows × b.cols` matrix whose rows start `dst_row_stride`
/// elements apart, on the calling thread unless `threads` asks for rayon. `dst` may be memory
/// never written: the product's entries are written without being read (no zero-filling
/// first), and the entries between its rows are left as they are.
pub(crate) fn matmul_into(
    dst: &mut [MaybeUninit<f32>],
    dst_row_stride: usize,
    a: Matrix,
    b: Matrix,
    scale: f32,
    threads: bool,
) {
    let len = dst.len();
    product(
        dst.as_mut_ptr().cast(),
        len,
        dst_row_stride,
        a,
        b,
        scale,
        false,
        threads,
    );
}

/// dst = scale·a·b, plus the old dst when `accumulate`, for `dst` the `dst_len` elements from
/// `dst` on (read only when `accumulate`).
#[allow(clippy::too_many_arguments)]
fn product(
    dst: *mut f32,
    dst_len: usize,
    dst_row_stride: usize,
    a: Matrix,
    b: Matrix,
    scale: f32,
    accumulate: bool,
    threads: bool,
) {
    assert!(a.cols == b.rows && a.in_bounds() && b.in_bounds());
    assert!(span(a.rows, b.cols, dst_row_stride, 1) <= dst_len && b.cols <= dst_row_stride.max(1));
    let parallelism = if threads {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index of the three matrices inside its slice (`dst`
    // points at `dst_len` writable elements, borrowed mutably by the caller, so it aliases
    // neither input), rows of `dst` do not overlap (its row stride is at least its width), and
    // gemm reads `dst` only when `accumulate` (its `read_dst`), which `matmul_into` never sets.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            1,
            dst_row_stride as isize,
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
