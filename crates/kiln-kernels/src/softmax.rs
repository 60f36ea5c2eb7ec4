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
        return crate::unary::apply::<flex::Softmax, B, D>(x, |x| activation::softmax(x, dim));
    }
    activation::softmax(x, dim)
}

#[cfg(feature = "flex")]
mod flex {
    use burn_flex::FlexTensor;
    use rten_simd::SimdOp;
    use rten_vecmath::Softmax as SimdSoftmax;

    use crate::parallel::{flex_tensor, par_rows, values, write_all};
    use crate::unary::UnaryKernel;

    /// Length of the last dimension.
    fn row_len(x: &FlexTensor) -> usize {
        let shape = x.layout().shape();
        shape[shape.num_dims() - 1]
    }

    /// The softmax kernels along the last dimension; the backward pass keeps s.
    #[derive(Debug)]
    pub(super) struct Softmax;

    impl UnaryKernel for Softmax {
        const KEEPS_OUTPUT: bool = true;

        /// Softmax of every row.
        fn forward(x: &FlexTensor) -> FlexTensor {
            let (input, row) = (values(x), row_len(x));
            let output = par_rows(input.len(), row, |index, out| {
                SimdSoftmax::new(&input[index * row..(index + 1) * row], out).dispatch()
            });
            flex_tensor(output, x.layout().shape().clone())
        }

        /// sᵢ·(gᵢ − Σⱼ gⱼ sⱼ) on every row.
        fn backward(s: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
            let (softmax, grad_out, row) = (values(s), values(grad), row_len(s));
            let output = par_rows(softmax.len(), row, |index, out| {
                let range = index * row..(index + 1) * row;
                let (s, g) = (&softmax[range.clone()], &grad_out[range]);
                let dot: f32 = s.iter().zip(g).map(|(s, g)| s * g).sum();
                write_all(out, s.iter().zip(g).map(|(&s, &g)| s * (g - dot)))
            });
            flex_tensor(output, s.layout().shape().clone())
        }
    }
}
