//! Dropout (Srivastava et al. 2014), inverted as in every framework: in training each element is
//! kept with probability q = 1 − p and scaled by 1/q, y = x·m/q with m ~ Bernoulli(q), so that
//! E[y] = x; outside training y = x. Its vector–Jacobian product is dL/dx = g·m/q.
//!
//! Flex kernel: the mask is never stored. A 60-bit key is drawn from the backend's random number
//! generator (so `Backend::seed` fixes it, as it fixes burn's dropout), and element i is kept
//! when the SplitMix64 output function (Steele, Lea & Flood 2014) of key + (i + 1)·γ, read as a
//! 53-bit fraction, is below q. Each element's draw depends on its index only, so the input is
//! split into [`CHUNK`](crate::parallel::CHUNK)-element chunks over rayon's threads and the mask
//! is the same for any thread count; the backward recomputes it from the key. burn 0.21's
//! dropout draws a full tensor of Bernoulli floats one at a time on one thread
//! (`TensorData::random`), multiplies, scales, and keeps the mask tensor for the backward.

use burn::nn::Dropout;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `module`'s dropout of `x`: in training (an autodiff backend) each element kept with
/// probability 1 − p and scaled by 1/(1 − p), else zeroed; `x` itself otherwise. Kiln's kernel
/// on `Autodiff<Flex>` (with its backward); burn's `Dropout::forward` elsewhere. The two draw
/// different masks from the same seed.
pub fn dropout<B: Backend, const D: usize>(module: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::dropout(module.prob, x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    module.forward(x)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Int, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn_flex::{Flex, FlexTensor};

    use crate::parallel::{CHUNK, contiguous, flex_tensor, par_rows, values, write_all};
    use crate::route::{self, AutodiffFlexTensor, Route};

    /// Kiln's dropout when the backend is `Autodiff<Flex>` with `f32` tensors and p is in
    /// (0, 1]; `x` back otherwise.
    pub(super) fn dropout<B: Backend, const D: usize>(
        prob: f64,
        x: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        let applies = prob > 0.0 && prob <= 1.0;
        if !applies || route::backend_of::<B>(x.dtype()) != Route::AutodiffFlex {
            return Err(x);
        }
        let mask = Mask::draw::<B>(&x.device(), 1.0 - prob);
        let x = route::into_primitive::<B, D, AutodiffFlexTensor>(x);
        Ok(route::from_primitive(autodiff(mask, x)))
    }

    /// One dropout mask: its key and the keep probability q.
    #[derive(Debug, Clone, Copy)]
    struct Mask {
        key: u64,
        keep: f64,
    }

    impl Mask {
        /// A mask with a 60-bit key drawn from the backend's generator: two draws of 30 bits
        /// (integer tensors may be `i32`).
        fn draw<B: Backend>(device: &B::Device, keep: f64) -> Self {
            const HALF: u32 = 30;
            let range = Distribution::Uniform(0.0, f64::from(1u32 << HALF));
            let halves = Tensor::<B, 1, Int>::random([2], range, device).into_data();
            let key = halves
                .iter::<i64>()
                .fold(0u64, |key, half| key << HALF | half as u64);
            Self { key, keep }
        }

        /// Whether element `index` is kept: SplitMix64's output function of
        /// key + (index + 1)·γ, its top 53 bits compared with q·2⁵³.
        fn keeps(&self, index: usize) -> bool {
            const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut z = self
                .key
                .wrapping_add((index as u64).wrapping_add(1).wrapping_mul(GAMMA));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 11) as f64) < self.keep * 2f64.powi(53)
        }

        /// t·m/q for every element of the contiguous `f32` tensor `t` (x forward, g backward).
        fn apply(&self, t: &FlexTensor) -> FlexTensor {
            let input = values(t);
            let scale = (1.0 / self.keep) as f32;
            let output = par_rows(input.len(), CHUNK, |index, chunk| {
                let start = index * CHUNK;
                let kept = input[start..start + chunk.len()].iter().enumerate();
                let masked = kept.map(|(i, &v)| {
                    if self.keeps(start + i) {
                        v * scale
                    } else {
                        0.0
                    }
                });
                write_all(chunk, masked)
            });
            flex_tensor(output, t.layout().shape().clone())
        }
    }

    /// The dropout node of burn's autodiff graph; its state is the mask.
    #[derive(Debug)]
    struct DropoutNode;

    impl Backward<Flex, 1> for DropoutNode {
        type State = Mask;

        fn backward(self, ops: Ops<Mask, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let mask = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                mask.apply(&contiguous(grad))
            });
        }
    }

    /// Dropout on `Autodiff<Flex>`: the masked x, and its node when x needs a gradient.
    fn autodiff(mask: Mask, x: AutodiffFlexTensor) -> AutodiffFlexTensor {
        let output = mask.apply(&contiguous(x.primitive.clone()));
        match DropoutNode
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(mask, output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}
