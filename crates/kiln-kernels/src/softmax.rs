//! Softmax along the last dimension, sᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m) with m = maxⱼ xⱼ, and its
//! vector–Jacobian product dL/dxᵢ = sᵢ·(gᵢ − Σⱼ gⱼ sⱼ) for g = dL/ds.
//!
//! Flex kernel: rows of the contiguous input are handed to rayon's threads in groups of about
//! [`parallel::CHUNK`](crate::parallel::CHUNK) elements; each row is one call of `rten-vecmath`'s
//! SIMD softmax (max, exp-and-sum, scale). Under autodiff the op is one graph node that keeps
//! s, where burn's decomposition keeps five (max, subtract, exp, sum, divide).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, activation};

/// Softmax of `x` along `dim`. Kiln's kernel on Flex and `Autodiff<Flex>` (with its backward) when
/// `dim` is the last dimension; burn's `activation::softmax` otherwise.
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    if dim + 1 == D && x.dims()[dim] > 0 {
        use crate::route::{self, Route};
        match route::backend_of::<B>(x.dtype()) {
            Route::Flex => {
                let s = flex::forward(&crate::parallel::contiguous(
                    route::into_primitive::<B, D, _>(x),
                ));
                return route::from_primitive(s);
            }
            Route::AutodiffFlex => {
                return route::from_primitive(flex::autodiff(route::into_primitive::<B, D, _>(x)));
            }
            Route::Burn => {}
        }
    }
    activation::softmax(x, dim)
}

#[cfg(feature = "flex")]
mod flex {
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn_flex::{Flex, FlexTensor};
    use rten_simd::SimdOp;
    use rten_vecmath::Softmax;

    use crate::parallel::{contiguous, flex_tensor, par_rows, values, write_all};
    use crate::route::AutodiffFlexTensor;

    /// Length of the last dimension.
    fn row_len(x: &FlexTensor) -> usize {
        let shape = x.layout().shape();
        shape[shape.num_dims() - 1]
    }

    /// Softmax of every row of a contiguous `f32` tensor.
    pub(super) fn forward(x: &FlexTensor) -> FlexTensor {
        let (input, row) = (values(x), row_len(x));
        let output = par_rows(input.len(), row, |index, out| {
            Softmax::new(&input[index * row..(index + 1) * row], out).dispatch()
        });
        flex_tensor(output, x.layout().shape().clone())
    }

    /// sᵢ·(gᵢ − Σⱼ gⱼ sⱼ) on every row, for contiguous `f32` tensors s and g.
    pub(super) fn backward(s: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
        let (softmax, grad_out, row) = (values(s), values(grad), row_len(s));
        let output = par_rows(softmax.len(), row, |index, out| {
            let range = index * row..(index + 1) * row;
            let (s, g) = (&softmax[range.clone()], &grad_out[range]);
            let dot: f32 = s.iter().zip(g).map(|(s, g)| s * g).sum();
            write_all(out, s.iter().zip(g).map(|(&s, &g)| s * (g - dot)))
        });
        flex_tensor(output, s.layout().shape().clone())
    }

    /// The softmax node of burn's autodiff graph; its state is the output s.
    #[derive(Debug)]
    struct SoftmaxBackward;

    impl Backward<Flex, 1> for SoftmaxBackward {
        type State = FlexTensor;

        fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let s = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                backward(&s, &contiguous(grad))
            });
        }
    }

    /// Softmax on `Autodiff<Flex>`: the forward kernel, and [`SoftmaxBackward`] when x needs a
    /// gradient.
    pub(super) fn autodiff(x: AutodiffFlexTensor) -> AutodiffFlexTensor {
        let output = forward(&contiguous(x.primitive.clone()));
        match SoftmaxBackward
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(output.clone(), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}
