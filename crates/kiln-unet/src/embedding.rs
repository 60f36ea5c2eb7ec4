use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use kiln_kernels::silu;

/// The sinusoidal embedding of timesteps (Vaswani et al. 2017, §3.5, as used by Ho et al.
/// 2020), `[batch]` → `[batch, dim]`, in diffusers' `UNet2DModel` layout (cosines first,
/// `flip_sin_to_cos = True`, `freq_shift = 0`):
///
/// ```text
/// ω_i = 10000^{−i/(dim/2)},   e(t) = [cos(t ω_0), …, cos(t ω_{dim/2−1}), sin(t ω_0), …, sin(t ω_{dim/2−1})]
/// ```
///
/// An odd `dim` gets a final zero. Timesteps may be fractional.
pub fn sinusoidal_embedding<B: Backend>(timesteps: Tensor<B, 1>, dim: usize) -> Tensor<B, 2> {
    let half = dim / 2;
    let device = timesteps.device();
    let [batch] = timesteps.dims();
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let frequencies = Tensor::<B, 2>::from_data(TensorData::new(frequencies, [1, half]), &device);
    let angles = timesteps.reshape([batch, 1]) * frequencies;
    let mut parts = vec![angles.clone().cos(), angles.sin()];
    if dim % 2 == 1 {
        parts.push(Tensor::zeros([batch, 1], &device));
    }
    Tensor::cat(parts, 1)
}

/// The MLP on the sinusoidal embedding: Linear, SiLU, Linear (diffusers' `TimestepEmbedding`).
#[derive(Module, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    /// From the sinusoidal width to the embedding width.
    pub linear_1: Linear<B>,
    /// From the embedding width to itself.
    pub linear_2: Linear<B>,
}

impl<B: Backend> TimestepEmbedding<B> {
    /// An MLP from `input` to `output` channels.
    pub fn new(input: usize, output: usize, device: &B::Device) -> Self {
        Self {
            linear_1: LinearConfig::new(input, output).init(device),
            linear_2: LinearConfig::new(output, output).init(device),
        }
    }

    /// `[batch, input]` → `[batch, output]`.
    pub fn forward(&self, embedding: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear_2
            .forward(silu(self.linear_1.forward(embedding)))
    }
}
