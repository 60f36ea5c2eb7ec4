//! SiLU (Hendrycks & Gimpel 2016; Elfwing et al. 2018), y = x·σ(x) with σ(x) = 1/(1 + e⁻ˣ), and
//! its derivative dy/dx = σ(x)·(1 + x·(1 − σ(x))).
//!
//! Flex kernel: the input is split into chunks of [`parallel::CHUNK`](crate::parallel::CHUNK)
//! elements over rayon's threads; each chunk is mapped by `rten-vecmath`'s SIMD SiLU (forward)
//! or sigmoid followed by the derivative's multiply-adds (backward). The backward keeps x, not
//! y, so nothing is recomputed but σ.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, activation};

/// SiLU of every element: x·σ(x). Kiln's kernel on Flex and `Autodiff<Flex>` (with its backward);
/// burn's `activation::silu` elsewhere.
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    {
        use crate::route::{self, Route};
        match route::backend_of::<B>(x.dtype()) {
            Route::Flex => {
                let y = flex::forward(&crate::parallel::contiguous(
                    route::into_primitive::<B, D, _>(x),
                ));
                return route::from_primitive(y);
            }
            Route::AutodiffFlex => {
                return route::from_primitive(flex::autodiff(route::into_primitive::<B, D, _>(x)));
            }
            Route::Burn => {}
        }
    }
    activation::silu(x)
}

#[cfg(feature = "flex")]
mod flex {
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn_flex::{Flex, FlexTensor};
    use rten_simd::SimdUnaryOp;
    use rten_vecmath::{Sigmoid, Silu};

    use crate::parallel::{CHUNK, contiguous, flex_tensor, par_rows, values};
    use crate::route::AutodiffFlexTensor;

    /// y = x·σ(x) for a contiguous `f32` tensor.
    pub(super) fn forward(x: &FlexTensor) -> FlexTensor {
        let input = values(x);
        let output = par_rows(input.len(), CHUNK, |index, chunk| {
            let start = index * CHUNK;
            Silu {}.map(&input[start..start + chunk.len()], chunk)
        });
        flex_tensor(output, x.layout().shape().clone())
    }

    /// dL/dx = g·σ(x)·(1 + x·(1 − σ(x))) for contiguous `f32` tensors x and g = dL/dy.
    pub(super) fn backward(x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
        let (input, grad_out) = (values(x), values(grad));
        let output = par_rows(input.len(), CHUNK, |index, chunk| {
            let range = index * CHUNK..index * CHUNK + chunk.len();
            let sigmoid = Sigmoid {}.map(&input[range.clone()], chunk);
            for ((s, &x), &g) in sigmoid
                .iter_mut()
                .zip(&input[range.clone()])
                .zip(&grad_out[range])
            {
                *s = g * *s * (1.0 + x * (1.0 - *s));
            }
            sigmoid
        });
        flex_tensor(output, x.layout().shape().clone())
    }

    /// The SiLU node of burn's autodiff graph; its state is the (contiguous) input.
    #[derive(Debug)]
    struct SiluBackward;

    impl Backward<Flex, 1> for SiluBackward {
        type State = FlexTensor;

        fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let x = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                backward(&x, &contiguous(grad))
            });
        }
    }

    /// SiLU on `Autodiff<Flex>`: the forward kernel, and [`SiluBackward`] when x needs a gradient.
    pub(super) fn autodiff(x: AutodiffFlexTensor) -> AutodiffFlexTensor {
        let input = contiguous(x.primitive.clone());
        let output = forward(&input);
        match SiluBackward
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(input, output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}
