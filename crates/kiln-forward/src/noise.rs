use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A tensor of independent N(0, 1) draws of the given shape, drawn on the host from `rng` and
/// uploaded to `device`, so that one seed gives the same tensor on every backend.
pub fn standard_normal<B: Backend, const D: usize>(
    shape: [usize; D],
    rng: &mut (impl Rng + ?Sized),
    device: &B::Device,
) -> Tensor<B, D> {
    let count = shape.iter().product();
    let values: Vec<f32> = StandardNormal.sample_iter(&mut *rng).take(count).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}
