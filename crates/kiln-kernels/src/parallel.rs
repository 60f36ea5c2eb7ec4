//! Buffers for the kernels: contiguous `f32` views of Flex tensors, new Flex tensors, and output
//! vectors filled in parallel chunks without first being zeroed.

use std::mem::MaybeUninit;

use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

/// Elements handed to one rayon task by the elementwise kernels: 16 Ki `f32` (64 KiB, half of a
/// typical L2) keeps each task's input and output in cache and gives a 32×32×32×16 activation
/// 32 tasks to balance over the threads.
pub(crate) const CHUNK: usize = 16 * 1024;

/// `tensor` as a contiguous `f32` tensor (a copy only when its layout is strided or offset).
pub(crate) fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The elements of a contiguous `f32` tensor (see [`contiguous`]).
pub(crate) fn values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("kernels take tensors made contiguous f32 by `contiguous`")
}

/// A contiguous `f32` Flex tensor of `shape` holding `values`.
pub(crate) fn flex_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// A vector of `len` elements made of rows of `row` elements (the last may be shorter), each
/// written by `fill(index, row)`, which must initialise every element of its row and return it.
/// Rows are handed to rayon's threads in groups of about [`CHUNK`] elements.
pub(crate) fn par_rows<F>(len: usize, row: usize, fill: F) -> Vec<f32>
where
    F: for<'a> Fn(usize, &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] + Sync,
{
    par_rows_with(len, row, || (), |_, index, part| fill(index, part))
}

/// [`par_rows`] where `fill` also gets a scratch value of its thread's, made by `scratch()` once
/// per group of rows handed to a thread (a buffer reused across rows, say).
pub(crate) fn par_rows_with<S, I, F>(len: usize, row: usize, scratch: I, fill: F) -> Vec<f32>
where
    I: Fn() -> S + Sync + Send,
    F: for<'a> Fn(&mut S, usize, &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] + Sync,
{
    let row = row.max(1);
    let rows_per_task = (CHUNK / row).max(1);
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(row * rows_per_task)
        .enumerate()
        .for_each_init(scratch, |scratch, (task, rows)| {
            for (index, part) in rows.chunks_mut(row).enumerate() {
                let (start, expected) = (part.as_ptr() as usize, part.len());
                let written = fill(scratch, task * rows_per_task + index, part);
                assert!(
                    written.as_ptr() as usize == start && written.len() == expected,
                    "a row's fill must initialise the whole row"
                );
            }
        });
    // SAFETY: every row of the first `len` elements was initialised by `fill`, as the assert in
    // each task checked (a panic there propagates before this line).
    unsafe { values.set_len(len) };
    values
}

/// Writes `values` into `out` element by element and returns `out` as initialised; `values` must
/// yield at least `out.len()` elements.
pub(crate) fn write_all(
    out: &mut [MaybeUninit<f32>],
    values: impl Iterator<Item = f32>,
) -> &mut [f32] {
    let mut written = 0;
    for (slot, value) in out.iter_mut().zip(values) {
        slot.write(value);
        written += 1;
    }
    assert_eq!(
        written,
        out.len(),
        "write_all needs a value for every element"
    );
    // SAFETY: all `out.len()` elements were written in the loop, as the assert checked.
    unsafe { assume_init(out) }
}

/// `slice` as initialised values.
///
/// # Safety
/// Every element of `slice` must have been written.
pub(crate) unsafe fn assume_init(slice: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller guarantees that every
    // element is initialised.
    unsafe { &mut *(slice as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A slot of an output buffer that a kernel writes once: an `f32` of an initialised buffer, or a
/// `MaybeUninit<f32>` of one never written.
pub(crate) trait Slot {
    /// Stores `value`.
    fn set(&mut self, value: f32);
}

impl Slot for f32 {
    fn set(&mut self, value: f32) {
        *self = value;
    }
}

impl Slot for MaybeUninit<f32> {
    fn set(&mut self, value: f32) {
        self.write(value);
    }
}

/// Writes the transpose of the `rows × cols` matrix in `source` (row i from `i·source_stride`)
/// into `out` (row j from `j·out_stride`), in square tiles of 16 so that a tile's reads and its
/// writes each stay within a few cache lines.
pub(crate) fn transpose_into<S: Slot>(
    source: &[f32],
    [rows, cols]: [usize; 2],
    source_stride: usize,
    out: &mut [S],
    out_stride: usize,
) {
    const TILE: usize = 16;
    for row_start in (0..rows).step_by(TILE) {
        for col_start in (0..cols).step_by(TILE) {
            for row in row_start..(row_start + TILE).min(rows) {
                let values =
                    &source[row * source_stride..][col_start..(col_start + TILE).min(cols)];
                for (col, &value) in (col_start..).zip(values) {
                    out[col * out_stride + row].set(value);
                }
            }
        }
    }
}
