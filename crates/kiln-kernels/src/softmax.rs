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
pub(crate) use flex::{ShiftedExp, SoftmaxGradient, row_max};

#[cfg(feature = "flex")]
mod flex {
    use std::mem::MaybeUninit;

    use burn_flex::FlexTensor;
    use rten_simd::functional::simd_apply;
    use rten_simd::ops::{BitOps, NumOps};
    use rten_simd::{Isa, Simd, SimdOp, SimdUnaryOp};
    use rten_vecmath::{Exp, MaxNum, Softmax as SimdSoftmax};

    use crate::parallel::{assume_init, flex_tensor, par_rows, values};
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
                SoftmaxGradient::new(&softmax[range.clone()], &grad_out[range], out).dispatch()
            });
            flex_tensor(output, s.layout().shape().clone())
        }
    }

    /// The vector–Jacobian product of softmax on one row, s ⊙ (g − ⟨g, s⟩) for s the softmax
    /// and g = dL/ds, written into `out`: a SIMD dot product in four independent accumulators,
    /// then one SIMD pass (a plain `iter().sum()` is one dependent chain of scalar additions).
    pub(crate) struct SoftmaxGradient<'s, 'o> {
        softmax: &'s [f32],
        grad: &'s [f32],
        out: &'o mut [MaybeUninit<f32>],
    }

    impl<'s, 'o> SoftmaxGradient<'s, 'o> {
        /// The product for `softmax` and `grad` into `out`, all three of one length.
        pub(crate) fn new(
            softmax: &'s [f32],
            grad: &'s [f32],
            out: &'o mut [MaybeUninit<f32>],
        ) -> Self {
            assert!(softmax.len() == grad.len() && grad.len() == out.len());
            Self { softmax, grad, out }
        }
    }

    impl<'o> SimdOp for SoftmaxGradient<'_, 'o> {
        type Output = &'o mut [f32];

        #[inline(always)]
        fn eval<I: Isa>(self, isa: I) -> Self::Output {
            let ops = isa.f32();
            let lanes = ops.len();
            let (s, g) = (self.softmax, self.grad);
            let whole = s.len() - s.len() % lanes;
            let mut sums = [ops.zero(); 4];
            for (index, start) in (0..whole).step_by(lanes).enumerate() {
                let sum = &mut sums[index % 4];
                *sum = ops.mul_add(ops.load(&s[start..]), ops.load(&g[start..]), *sum);
            }
            let [a, b, c, d] = sums;
            let tail: f32 = s[whole..].iter().zip(&g[whole..]).map(|(s, g)| s * g).sum();
            let dot = ops.sum(ops.add(ops.add(a, b), ops.add(c, d))) + tail;
            let splat = ops.splat(dot);
            for start in (0..whole).step_by(lanes) {
                let value = ops.mul(ops.load(&s[start..]), ops.sub(ops.load(&g[start..]), splat));
                ops.store_uninit(value, &mut self.out[start..]);
            }
            for ((out, &s), &g) in self.out[whole..]
                .iter_mut()
                .zip(&s[whole..])
                .zip(&g[whole..])
            {
                out.write(s * (g - dot));
            }
            // SAFETY: the SIMD loop wrote every element before `whole`, the scalar loop the rest.
            unsafe { assume_init(self.out) }
        }
    }

    /// maxⱼ xⱼ of a row (SIMD; −∞ for an empty row).
    pub(crate) fn row_max(row: &[f32]) -> f32 {
        MaxNum::new(row).dispatch()
    }

    /// xᵢ ← exp(xᵢ − `offset`) over a row in place, returning Σᵢ exp(xᵢ − offset): with
    /// offset maxⱼ xⱼ the numerator and denominator of softmax, with offset
    /// m + ln Σⱼ exp(xⱼ − m) softmax itself.
    pub(crate) struct ShiftedExp<'a> {
        row: &'a mut [f32],
        offset: f32,
    }

    impl<'a> ShiftedExp<'a> {
        /// exp(x − `offset`) of `row`, in place.
        pub(crate) fn new(row: &'a mut [f32], offset: f32) -> Self {
            Self { row, offset }
        }
    }

    impl SimdOp for ShiftedExp<'_> {
        type Output = f32;

        #[inline(always)]
        fn eval<I: Isa>(self, isa: I) -> f32 {
            let ops = isa.f32();
            let lanes = ops.len();
            let whole = self.row.len() - self.row.len() % lanes;
            let (body, tail) = self.row.split_at_mut(whole);
            let offset = ops.splat(self.offset);
            let mut sum = ops.zero();
            simd_apply::<_, _, _, 2>(
                ops,
                body,
                // Inlined into `eval`, so that the ISA's target features reach the `exp`.
                #[inline(always)]
                |x| {
                    let y = Exp::apply(isa, ops.sub(x, offset));
                    sum = ops.add(sum, y);
                    y
                },
            );
            let mut total: f32 = sum.to_array().into_iter().sum();
            for x in tail {
                *x = (*x - self.offset).exp();
                total += *x;
            }
            total
        }
    }
}
