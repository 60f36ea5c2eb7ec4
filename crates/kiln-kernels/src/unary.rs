//! What Kiln's one-input kernels (SiLU, softmax) share: picking the kernel for the backend, and
//! the autodiff node that runs a kernel's backward from one kept tensor.

use std::marker::PhantomData;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn_flex::{Flex, FlexTensor};

use crate::parallel::contiguous;
use crate::route::{self, AutodiffFlexTensor, Route};

/// A one-input op with a Flex kernel for its value and its vector–Jacobian product.
pub(crate) trait UnaryKernel: core::fmt::Debug + Send + 'static {
    /// Whether the backward pass needs the output (true) or the input (false).
    const KEEPS_OUTPUT: bool;

    /// The op on a contiguous `f32` tensor.
    fn forward(x: &FlexTensor) -> FlexTensor;

    /// dL/dx from the kept tensor (see [`UnaryKernel::KEEPS_OUTPUT`]) and g = dL/dy, both
    /// contiguous `f32`.
    fn backward(kept: &FlexTensor, grad: &FlexTensor) -> FlexTensor;
}

/// `K` on `x` when the backend is Flex or `Autodiff<Flex>` with `f32` tensors; `fallback(x)`
/// (burn's op) otherwise.
pub(crate) fn apply<K: UnaryKernel, B: Backend, const D: usize>(
    x: Tensor<B, D>,
    fallback: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    match route::backend_of::<B>(x.dtype()) {
        Route::Flex => {
            let x = contiguous(route::into_primitive::<B, D, FlexTensor>(x));
            route::from_primitive(K::forward(&x))
        }
        Route::AutodiffFlex => {
            route::from_primitive(autodiff::<K>(route::into_primitive::<B, D, _>(x)))
        }
        Route::Burn => fallback(x),
    }
}

/// The node of burn's autodiff graph for kernel `K`; its state is the kept tensor.
#[derive(Debug)]
struct Node<K>(PhantomData<K>);

impl<K: UnaryKernel> Backward<Flex, 1> for Node<K> {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let kept = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            K::backward(&kept, &contiguous(grad))
        });
    }
}

/// `K` on `Autodiff<Flex>`: the forward kernel, and its node when x needs a gradient.
fn autodiff<K: UnaryKernel>(x: AutodiffFlexTensor) -> AutodiffFlexTensor {
    let input = contiguous(x.primitive.clone());
    let output = K::forward(&input);
    match Node::<K>(PhantomData)
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let kept = if K::KEEPS_OUTPUT {
                output.clone()
            } else {
                input
            };
            prep.finish(kept, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}
