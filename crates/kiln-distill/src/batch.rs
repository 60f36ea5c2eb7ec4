//! Per-sample coefficients over a batch, and the batch's size checked against its indices.

use burn::tensor::{Tensor, TensorData, backend::Backend};

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
