//! Two feature maps joined along the channels, as a UNet joins its up path with a skip
//! connection:
//!
//! ```text
//! y[b, c] = a[b, c]            for c < C_a
//! y[b, c] = s[b, c − C_a]      for C_a ≤ c < C_a + C_s
//! ```
//!
//! and backward da = dy[:, :C_a], ds = dy[:, C_a:].
//!
//! burn's `Tensor::cat` returns those two gradients as views into dy, which are not contiguous
//! (a gap between batch elements). On burn's Flex backend each view is then copied on one
//! thread by the next kernel that needs it whole, and where the skip connection's gradient is
//! added to the gradient it already has, the addition walks the view element by element through
//! a strided iterator on one thread. Flex kernel: the forward copies each batch element's two
//! blocks, and the backward copies dy's two blocks into two new contiguous tensors, per batch
//! element on rayon's threads.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `[b, C_a, h, w]` and `[b, C_s, h, w]` → `[b, C_a + C_s, h, w]`, as `Tensor::cat(vec![a, s],
/// 1)`. Kiln's kernel on Flex and `Autodiff<Flex>`, whose gradients are contiguous; burn's `cat`
/// on every other backend.
///
/// # Panics
/// If the batch or image sizes differ (as burn's `cat` would).
pub fn cat_channels<B: Backend>(a: Tensor<B, 4>, s: Tensor<B, 4>) -> Tensor<B, 4> {
    let (a_dims, s_dims) = (a.dims(), s.dims());
    assert!(
        a_dims[0] == s_dims[0] && a_dims[2..] == s_dims[2..],
        "cat_channels of {a_dims:?} and {s_dims:?}: only the channels may differ"
    );
    #[cfg(feature = "flex")]
    let (a, s) = match flex::cat(a, s) {
        Ok(joined) => return joined,
        Err(inputs) => inputs,
    };
    Tensor::cat(vec![a, s], 1)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::tensor::backend::Backend;
    use burn::tensor::{Shape, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind};
    use burn_flex::{Flex, FlexTensor};

    use crate::node::register_gradients;
    use crate::parallel::{assume_init, contiguous, flex_tensor, par_rows, values};
    use crate::route::{self, AutodiffFlexTensor, Route};

    /// The two inputs back, when the kernel does not apply.
    type Inputs<B> = (Tensor<B, 4>, Tensor<B, 4>);

    /// The sizes: batch, the channels of each input, and pixels per channel.
    #[derive(Debug, Clone, Copy)]
    struct Blocks {
        batch: usize,
        first: usize,
        second: usize,
        pixels: usize,
    }

    impl Blocks {
        fn first_len(&self) -> usize {
            self.first * self.pixels
        }

        fn second_len(&self) -> usize {
            self.second * self.pixels
        }

        /// The two inputs joined per batch element.
        fn join(&self, a: &[f32], s: &[f32], shape: Shape) -> FlexTensor {
            let (first, second) = (self.first_len(), self.second_len());
            let out = par_rows(self.batch * (first + second), first + second, |b, out| {
                let (head, tail) = out.split_at_mut(first);
                head.write_copy_of_slice(&a[b * first..][..first]);
                tail.write_copy_of_slice(&s[b * second..][..second]);
                // SAFETY: the two copies filled the whole row.
                unsafe { assume_init(out) }
            });
            flex_tensor(out, shape)
        }

        /// The `len` values from `offset` of each batch element's block of `joined`, as a new
        /// contiguous tensor of `shape`.
        fn part(&self, joined: &[f32], offset: usize, len: usize, shape: Shape) -> FlexTensor {
            let row = self.first_len() + self.second_len();
            let out = par_rows(self.batch * len, len, |b, out| {
                out.write_copy_of_slice(&joined[b * row + offset..][..len]);
                // SAFETY: the copy filled the whole row.
                unsafe { assume_init(out) }
            });
            flex_tensor(out, shape)
        }
    }

    /// Kiln's concatenation when the backend and dtype allow it; the inputs back otherwise.
    pub(super) fn cat<B: Backend>(
        a: Tensor<B, 4>,
        s: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, Inputs<B>> {
        let ([batch, first, height, width], [_, second, ..]) = (a.dims(), s.dims());
        let blocks = Blocks {
            batch,
            first,
            second,
            pixels: height * width,
        };
        let shape = Shape::new([batch, first + second, height, width]);
        match route::backend_of::<B>(a.dtype()) {
            Route::Flex if s.dtype() == a.dtype() => {
                let a = contiguous(route::into_primitive::<B, 4, FlexTensor>(a));
                let s = contiguous(route::into_primitive::<B, 4, FlexTensor>(s));
                Ok(route::from_primitive(blocks.join(
                    values(&a),
                    values(&s),
                    shape,
                )))
            }
            Route::AutodiffFlex if s.dtype() == a.dtype() => {
                let a = route::into_primitive::<B, 4, AutodiffFlexTensor>(a);
                let s = route::into_primitive::<B, 4, AutodiffFlexTensor>(s);
                Ok(route::from_primitive(autodiff(blocks, a, s, shape)))
            }
            _ => Err((a, s)),
        }
    }

    /// The concatenation's node of burn's autodiff graph, with parents a and s.
    #[derive(Debug)]
    struct CatBackward;

    /// What the backward pass needs: the sizes and the inputs' shapes.
    #[derive(Debug, Clone)]
    struct Saved {
        blocks: Blocks,
        shapes: [Shape; 2],
    }

    impl Backward<Flex, 2> for CatBackward {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let Saved { blocks, shapes } = ops.state;
            let grad = contiguous(grads.consume::<Flex>(&ops.node));
            let [first, second] = ops.parents.map(|parent| parent.map(|node| node.id));
            let [first_shape, second_shape] = shapes;
            let joined = values(&grad);
            let da = first.map(|_| blocks.part(joined, 0, blocks.first_len(), first_shape));
            let ds = second.map(|_| {
                let (offset, len) = (blocks.first_len(), blocks.second_len());
                blocks.part(joined, offset, len, second_shape)
            });
            register_gradients([first, second], [da, ds], grads);
        }
    }

    /// The concatenation on `Autodiff<Flex>`, with its node when an input needs a gradient.
    fn autodiff(
        blocks: Blocks,
        a: AutodiffFlexTensor,
        s: AutodiffFlexTensor,
        shape: Shape,
    ) -> AutodiffFlexTensor {
        let (a_values, s_values) = (
            contiguous(a.primitive.clone()),
            contiguous(s.primitive.clone()),
        );
        let out = blocks.join(values(&a_values), values(&s_values), shape);
        match CatBackward
            .prepare::<NoCheckpointing>([a.node.clone(), s.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let shapes = [&a_values, &s_values].map(|t| t.layout().shape().clone());
                prep.finish(Saved { blocks, shapes }, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
