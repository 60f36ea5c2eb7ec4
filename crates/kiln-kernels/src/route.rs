//! The one place where an op learns whether its backend is `Flex` or `Autodiff<Flex>`.
//!
//! A `Tensor<B, D>` holds `B::FloatTensorPrimitive`; when `B` *is* `Flex`, that primitive *is* a
//! [`FlexTensor`], and [`cast`] moves it across the type boundary by [`TypeId`] (no `unsafe`, no
//! copy). The ops call [`backend_of`] first and then convert with [`into_primitive`] and
//! [`from_primitive`], which cannot fail for the backend [`backend_of`] named.

use std::any::{Any, TypeId};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_autodiff::Autodiff;
use burn_flex::Flex;

/// The primitive of an `Autodiff<Flex>` float tensor: a Flex tensor and its graph node.
pub(crate) type AutodiffFlexTensor =
    <Autodiff<Flex> as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive;

/// Which of Kiln's kernel sets a backend gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `Flex`: the kernels run directly.
    Flex,
    /// `Autodiff<Flex>`: the kernels run with their hand-written backward.
    AutodiffFlex,
    /// Any other backend or dtype: burn's own ops.
    Burn,
}

/// The route for tensors of backend `B` holding `dtype` (Kiln's kernels are `f32` only).
pub(crate) fn backend_of<B: Backend>(dtype: DType) -> Route {
    let backend = TypeId::of::<B>();
    if dtype != DType::F32 {
        Route::Burn
    } else if backend == TypeId::of::<Flex>() {
        Route::Flex
    } else if backend == TypeId::of::<Autodiff<Flex>>() {
        Route::AutodiffFlex
    } else {
        Route::Burn
    }
}

/// Whether `B` is `Flex` or `Autodiff<Flex>`, whatever the dtype.
pub(crate) fn is_flex<B: Backend>() -> bool {
    let backend = TypeId::of::<B>();
    backend == TypeId::of::<Flex>() || backend == TypeId::of::<Autodiff<Flex>>()
}

/// `value` as a `T`, when `S` and `T` are the same type; `value` back otherwise.
fn cast<S: 'static, T: 'static>(value: S) -> Result<T, S> {
    let mut slot = Some(value);
    let moved = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take);
    match (moved, slot) {
        (Some(target), _) => Ok(target),
        (None, Some(source)) => Err(source),
        (None, None) => unreachable!("a value is either moved or left in its slot"),
    }
}

/// The primitive `P` inside `tensor`, for the `P` that [`backend_of`] said `B` uses.
pub(crate) fn into_primitive<B: Backend, const D: usize, P: 'static>(tensor: Tensor<B, D>) -> P {
    match cast(tensor.into_primitive().tensor()) {
        Ok(primitive) => primitive,
        Err(_) => unreachable!("route::backend_of chose the primitive type of this backend"),
    }
}

/// A `Tensor<B, D>` around `primitive`, for the `P` that [`backend_of`] said `B` uses.
pub(crate) fn from_primitive<B: Backend, const D: usize, P: 'static>(primitive: P) -> Tensor<B, D> {
    match cast::<P, B::FloatTensorPrimitive>(primitive) {
        Ok(primitive) => Tensor::from_primitive(TensorPrimitive::Float(primitive)),
        Err(_) => unreachable!("route::backend_of chose the primitive type of this backend"),
    }
}
