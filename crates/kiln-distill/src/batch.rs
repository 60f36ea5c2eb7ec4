//! Per-sample coefficients over a batch, and the batch's size and shapes checked.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use kiln_sampler::SamplerError;

use crate::DistillError;

/// a_i x_i + b_i y_i for each sample i of the batch.
pub(crate) fn combine<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    a: &[f64],
    y: &Tensor<B, D>,
    b: &[f64],
) -> Tensor<B, D> {
    x.clone() * per_sample(a, &x.device()) + y.clone() * per_sample(b, &x.device())
}

/// `values` as a tensor of shape [n, 1, …, 1], to scale a batch sample by sample.
pub(crate) fn per_sample<B: Backend, const D: usize>(
    values: &[f64],
    device: &B::Device,
) -> Tensor<B, D> {
    let mut shape = [1; D];
    shape[0] = values.len();
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// One step index per sample of `batch`, which is not empty.
pub(crate) fn check_batch<B: Backend, const D: usize>(
    batch: &Tensor<B, D>,
    indices: &[usize],
) -> Result<(), DistillError> {
    let size = batch.dims()[0];
    if indices.len() == size && size > 0 {
        Ok(())
    } else {
        Err(DistillError::IndexCount {
            indices: indices.len(),
            batch: size,
        })
    }
}

/// The student's answers and their targets have one shape.
pub(crate) fn check_shapes<B: Backend, const D: usize>(
    student: &Tensor<B, D>,
    target: &Tensor<B, D>,
) -> Result<(), DistillError> {
    if student.dims() == target.dims() {
        Ok(())
    } else {
        Err(DistillError::ShapeMismatch {
            student: student.dims().to_vec(),
            target: target.dims().to_vec(),
        })
    }
}

/// An input (`what`, in words) has the shape of the batch it goes with (not one that would
/// broadcast to it).
pub(crate) fn check_input_shape<B: Backend, const D: usize>(
    what: &'static str,
    batch: &Tensor<B, D>,
    input: &Tensor<B, D>,
) -> Result<(), DistillError> {
    if input.dims() == batch.dims() {
        return Ok(());
    }
    Err(SamplerError::ShapeMismatch {
        what,
        expected: batch.dims().to_vec(),
        found: input.dims().to_vec(),
    }
    .into())
}
