//! Dropout (Srivastava et al. 2014), inverted as in every framework: in training each element is
//! kept with probability q = 1 − p and scaled by 1/q, y = x·m/q with m ~ Bernoulli(q), so that
//! E[y] = x; outside training y = x. Its vector–Jacobian product is dL/dx = g·m/q.
//!
//! Flex kernel: the mask is never stored. A mask has a 64-bit key k, and element i is kept when
//! [`mix`](crate::mix)(k, i), SplitMix64's output function of k + (i + 1)·γ (Steele, Lea &
//! Flood 2014), read as a 53-bit fraction, is below q. The key is drawn from the backend's
//! random number generator (so `Backend::seed` fixes it, as it fixes burn's dropout), or given
//! by the pass it belongs to ([`with_dropout_key`]). Each element's draw depends on its index
//! only, so the input is split into [`CHUNK`](crate::parallel::CHUNK)-element chunks over
//! rayon's threads and the mask is the same for any thread count; the backward recomputes it
//! from the key. burn 0.21's dropout draws a full tensor of Bernoulli floats one at a time on
//! one thread (`TensorData::random`), multiplies, scales, and keeps the mask tensor for the
//! backward.

use std::cell::Cell;

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

/// The key of one pass's dropout masks, for [`with_dropout_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutKey {
    /// The pass's key K: its n-th mask (n = 0, 1, …) has the key [`mix`](crate::mix)(K, n).
    pub key: u64,
    /// Where the pass's batch starts in the batch it is a part of: item b (along dimension 0)
    /// of a tensor draws its elements as item `first_item` + b of that batch would.
    pub first_item: usize,
}

thread_local! {
    /// This thread's pass key and the number of masks drawn under it.
    static PASS: Cell<Option<(DropoutKey, u64)>> = const { Cell::new(None) };
}

/// Runs `f` with the dropout masks of Kiln's Flex kernel (feature `flex`) on this thread keyed
/// by `key` rather than drawn from the backend's generator: the n-th dropout inside `f` that
/// applies (on `Autodiff<Flex>`, p > 0) has the key [`mix`](crate::mix)(K, n) and numbers its
/// elements from item `first_item`'s, so element j of item b of an `s`-element-per-item tensor
/// is kept as element (first_item + b)·s + j.
///
/// So a batch cut into parts, each part's forward pass run inside `with_dropout_key` with the
/// same K and its own first item (the backward replays the masks the forward drew), draws
/// exactly the masks the whole batch would in one pass, whatever threads run the parts and in
/// whatever order; the backend's generator, one per process, cannot give that to threads that
/// draw at the same time. The previous key (or none) is back when `f` returns or unwinds.
/// burn's dropout, on every other backend or without the feature, draws from the backend's
/// generator still.
pub fn with_dropout_key<R>(key: DropoutKey, f: impl FnOnce() -> R) -> R {
    /// Puts the previous key back when dropped.
    struct Restore(Option<(DropoutKey, u64)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PASS.set(self.0);
        }
    }
    let _restore = Restore(PASS.replace(Some((key, 0))));
    f()
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

    use super::PASS;
    use crate::mix;
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
        let keep = 1.0 - prob;
        let mask = match next_pass_mask() {
            Some((key, first_item)) => {
                let items = x.dims()[0];
                let per_item = x.shape().num_elements().checked_div(items).unwrap_or(0);
                Mask {
                    key,
                    first: first_item * per_item,
                    keep,
                }
            }
            None => Mask::draw::<B>(&x.device(), keep),
        };
        let x = route::into_primitive::<B, D, AutodiffFlexTensor>(x);
        Ok(route::from_primitive(autodiff(mask, x)))
    }

    /// The key of the next mask of this thread's pass ([`with_dropout_key`]) and the pass's
    /// first item, counting the mask; `None` outside a pass.
    fn next_pass_mask() -> Option<(u64, usize)> {
        let (pass, drawn) = PASS.get()?;
        PASS.set(Some((pass, drawn + 1)));
        Some((mix(pass.key, drawn), pass.first_item))
    }

    /// One dropout mask: its key, the number of its first element, and the keep probability q.
    #[derive(Debug, Clone, Copy)]
    struct Mask {
        key: u64,
        first: usize,
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
            Self {
                key,
                first: 0,
                keep,
            }
        }

        /// Whether the tensor's element `index` is kept: the top 53 bits of mix(key, first +
        /// index) compared with q·2⁵³.
        fn keeps(&self, index: usize) -> bool {
            let bits = mix(self.key, (self.first + index) as u64) >> 11;
            (bits as f64) < self.keep * 2f64.powi(53)
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
