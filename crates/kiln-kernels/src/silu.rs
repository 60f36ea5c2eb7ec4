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
    return crate::unary::apply::<flex::Silu, B, D>(x, activation::silu);
    #[cfg(not(feature = "flex"))]
    activation::silu(x)
}

#[cfg(feature = "flex")]
mod flex {
    use burn_flex::FlexTensor;
    use rten_simd::SimdUnaryOp;
    use rten_vecmath::{Sigmoid, Silu as SimdSilu};

    use crate::parallel::{CHUNK, flex_tensor, par_rows, values};
    use crate::unary::UnaryKernel;

    /// The SiLU kernels; the backward pass keeps x.
    #[derive(Debug)]
    pub(super) struct Silu;

    impl UnaryKernel for Silu {
        const KEEPS_OUTPUT: bool = false;

        /// y = x·σ(x).
        fn forward(x: &FlexTensor) -> FlexTensor {
            let input = values(x);
            let output = par_rows(input.len(), CHUNK, |index, chunk| {
                let start = index * CHUNK;
                SimdSilu {}.map(&input[start..start + chunk.len()], chunk)
            });
            flex_tensor(output, x.layout().shape().clone())
        }

        /// dL/dx = g·σ(x)·(1 + x·(1 − σ(x))).
        fn backward(x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
            let (input, grad_out) = (values(x), values(grad));
            let output = par_rows(input.len(), CHUNK, |index, chunk| {
                let range = index * CHUNK..index * CHUNK + chunk.len();
                let sigmoid = Sigmoid {}.map(&input[range.clone()], chunk);
                let inputs = input[range.clone()].iter().zip(&grad_out[range]);
                for (s, (&x, &g)) in sigmoid.iter_mut().zip(inputs) {
                    *s = g * *s * (1.0 + x * (1.0 - *s));
                }
                sigmoid
            });
            flex_tensor(output, x.layout().shape().clone())
        }
    }
}
