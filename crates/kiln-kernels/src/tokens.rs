//! A feature map as a sequence of pixel tokens and back, for attention over pixels:
//!
//! ```text
//! tokens[b, i·W + j, c] = x[b, c, i, j]        ([B, C, H, W] ↔ [B, H·W, C])
//! ```
//!
//! Each direction's gradient is the other direction applied to the incoming gradient.
//!
//! With burn's ops this is a reshape and a swap of two dimensions: a strided view. Every op that
//! reads it afterwards on burn's Flex backend pays for the view — the linear layers copy it, a
//! reshape of it copies it, and in the backward pass the gradients that arrive as views are added
//! up element by element through strided iterators on one thread. Flex kernel: one transpose
//! into a new contiguous tensor, per batch element on rayon's threads, in 16 × 16 tiles so that
//! both the reads and the writes stay within a few cache lines per tile; under autodiff one graph
//! node whose backward is the opposite transpose, again contiguous.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `[b, c, h, w]` → `[b, h·w, c]`: the pixels of a feature map as tokens of `c` channels, in
/// row-major pixel order. Contiguous on Flex and `Autodiff<Flex>` (Kiln's kernel); burn's
/// reshape and `swap_dims` on every other backend.
pub fn pixels_to_tokens<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, channels, height, width] = x.dims();
    let pixels = height * width;
    #[cfg(feature = "flex")]
    let x = match flex::transposed(x, [batch, channels, pixels], [batch, pixels, channels]) {
        Ok(tokens) => return tokens,
        Err(x) => x,
    };
    x.reshape([batch, channels, pixels]).swap_dims(1, 2)
}

/// `[b, h·w, c]` → `[b, c, h, w]`, the inverse of [`pixels_to_tokens`]. Contiguous on Flex and
/// `Autodiff<Flex>` (Kiln's kernel); burn's `swap_dims` and reshape on every other backend.
///
/// # Panics
/// If the token count is not `height · width` (as burn's reshape would).
pub fn tokens_to_pixels<B: Backend>(x: Tensor<B, 3>, height: usize, width: usize) -> Tensor<B, 4> {
    let [batch, tokens, channels] = x.dims();
    assert_eq!(
        tokens,
        height * width,
        "{tokens} tokens are not a {height}×{width} feature map"
    );
    #[cfg(feature = "flex")]
    let x = match flex::transposed(
        x,
        [batch, tokens, channels],
        [batch, channels, height, width],
    ) {
        Ok(pixels) => return pixels,
        Err(x) => x,
    };
    x.swap_dims(1, 2).reshape([batch, channels, height, width])
}

#[cfg(feature = "flex")]
mod flex {
    use burn::tensor::backend::Backend;
    use burn::tensor::{Shape, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn_flex::{Flex, FlexTensor};

    use crate::parallel::{assume_init, contiguous, flex_tensor, par_rows, transpose_into, values};
    use crate::route::{self, AutodiffFlexTensor, Route};

    /// `x` seen as `[batch, rows, cols]`, transposed per batch element and shaped as `shape`, by
    /// Kiln's kernel; `x` back when the backend or dtype is not Flex `f32`.
    pub(super) fn transposed<B: Backend, const D: usize, const E: usize>(
        x: Tensor<B, D>,
        [batch, rows, cols]: [usize; 3],
        shape: [usize; E],
    ) -> Result<Tensor<B, E>, Tensor<B, D>> {
        let matrices = Matrices { batch, rows, cols };
        match route::backend_of::<B>(x.dtype()) {
            Route::Flex => {
                let x = contiguous(route::into_primitive::<B, D, FlexTensor>(x));
                Ok(route::from_primitive(matrices.transpose(&x, shape)))
            }
            Route::AutodiffFlex => {
                let x = route::into_primitive::<B, D, AutodiffFlexTensor>(x);
                Ok(route::from_primitive(autodiff(matrices, x, shape)))
            }
            Route::Burn => Err(x),
        }
    }

    /// `batch` row-major `rows × cols` matrices, one after the other.
    #[derive(Debug, Clone, Copy)]
    struct Matrices {
        batch: usize,
        rows: usize,
        cols: usize,
    }

    impl Matrices {
        /// The same matrices transposed, `cols × rows` each.
        fn transposed(self) -> Self {
            Self {
                rows: self.cols,
                cols: self.rows,
                ..self
            }
        }

        /// Every matrix of `x` transposed, as a tensor of `shape`.
        fn transpose<const E: usize>(self, x: &FlexTensor, shape: [usize; E]) -> FlexTensor {
            let (source, Self { rows, cols, .. }) = (values(x), self);
            let plane = rows * cols;
            let out = par_rows(self.batch * plane, plane, |b, out| {
                transpose_into(&source[b * plane..], [rows, cols], cols, out, rows);
                // SAFETY: the transpose wrote entry (col, row) of the output for every (row, col).
                unsafe { assume_init(out) }
            });
            flex_tensor(out, Shape::new(shape))
        }
    }

    /// The transpose's node of burn's autodiff graph: the gradient is transposed back.
    #[derive(Debug)]
    struct TransposeBackward;

    /// The forward pass's matrices and its input's shape.
    #[derive(Debug, Clone)]
    struct Saved {
        matrices: Matrices,
        input_shape: Shape,
    }

    impl Backward<Flex, 1> for TransposeBackward {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let Saved {
                matrices,
                input_shape,
            } = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                let back = matrices.transposed();
                let grad = contiguous(grad);
                let out = back.transpose(&grad, [back.batch, back.rows, back.cols]);
                out.reshape(input_shape)
            });
        }
    }

    /// The transpose on `Autodiff<Flex>`, with its node when `x` needs a gradient.
    fn autodiff<const E: usize>(
        matrices: Matrices,
        x: AutodiffFlexTensor,
        shape: [usize; E],
    ) -> AutodiffFlexTensor {
        let input = contiguous(x.primitive.clone());
        let out = matrices.transpose(&input, shape);
        match TransposeBackward
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input_shape = input.layout().shape().clone();
                prep.finish(
                    Saved {
                        matrices,
                        input_shape,
                    },
                    out,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
