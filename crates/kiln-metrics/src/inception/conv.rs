//! Inception's unit: convolution (no bias), batch norm (ε = 10⁻³), ReLU — torchvision's
//! `BasicConv2d` — with the batch norm folded into the convolution when the weights are loaded.

use burn::tensor::activation::relu;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::{MetricsError, WeightSource};

/// `BatchNorm2d`'s ε in torchvision's `BasicConv2d`.
const BATCH_NORM_EPSILON: f64 = 1e-3;

/// A convolution's shape: channels, kernel, stride and the padding of each axis.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConvShape {
    pub input: usize,
    pub output: usize,
    pub kernel: [usize; 2],
    pub stride: usize,
    pub padding: [usize; 2],
}

impl ConvShape {
    /// A `k × k` convolution with stride 1 and no padding.
    pub fn square(input: usize, output: usize, k: usize) -> Self {
        Self {
            input,
            output,
            kernel: [k, k],
            stride: 1,
            padding: [0, 0],
        }
    }

    /// With padding `padding` on both sides of each axis.
    pub fn padded(self, padding: [usize; 2]) -> Self {
        Self { padding, ..self }
    }

    /// With stride `stride`.
    pub fn strided(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// A `1 × k` convolution (or `k × 1` when `transposed`) that keeps the size.
    pub fn line(input: usize, output: usize, k: usize, transposed: bool) -> Self {
        let (kernel, padding) = if transposed {
            ([k, 1], [k / 2, 0])
        } else {
            ([1, k], [0, k / 2])
        };
        Self {
            input,
            output,
            kernel,
            stride: 1,
            padding,
        }
    }
}

/// ReLU(BN(W ∗ x)) as one convolution: BN(y) = γ (y − μ) / √(σ² + ε) + β, so with
/// s = γ / √(σ² + ε) the unit is ReLU((s W) ∗ x + (β − s μ)) (folded in f64).
#[derive(Debug, Clone)]
pub(super) struct BasicConv<B: Backend> {
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    options: ConvOptions<2>,
}

impl<B: Backend> BasicConv<B> {
    /// `{name}.conv.weight` and `{name}.bn.{weight, bias, running_mean, running_var}`.
    pub fn load(
        source: &mut dyn WeightSource,
        name: &str,
        shape: ConvShape,
        device: &B::Device,
    ) -> Result<Self, MetricsError> {
        let ConvShape {
            input,
            output,
            kernel: [kh, kw],
            stride,
            padding,
        } = shape;
        let weight_shape = [output, input, kh, kw];
        let mut tensor =
            |suffix: &str, shape: &[usize]| source.tensor(&format!("{name}.{suffix}"), shape);
        let weight = tensor("conv.weight", &weight_shape)?;
        let gamma = tensor("bn.weight", &[output])?;
        let beta = tensor("bn.bias", &[output])?;
        let mean = tensor("bn.running_mean", &[output])?;
        let variance = tensor("bn.running_var", &[output])?;

        let scale: Vec<f64> = (0..output)
            .map(|o| f64::from(gamma[o]) / (f64::from(variance[o]) + BATCH_NORM_EPSILON).sqrt())
            .collect();
        let per_output = input * kh * kw;
        let folded: Vec<f32> = weight
            .iter()
            .enumerate()
            .map(|(i, &w)| (f64::from(w) * scale[i / per_output]) as f32)
            .collect();
        let bias: Vec<f32> = (0..output)
            .map(|o| (f64::from(beta[o]) - f64::from(mean[o]) * scale[o]) as f32)
            .collect();
        Ok(Self {
            weight: Tensor::from_data(TensorData::new(folded, weight_shape), device),
            bias: Tensor::from_data(TensorData::new(bias, [output]), device),
            options: ConvOptions::new([stride, stride], padding, [1, 1], 1),
        })
    }

    /// `[n, input, h, w]` → `[n, output, h', w']`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        relu(kiln_kernels::conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            self.options.clone(),
        ))
    }
}

/// The units of one branch, applied in turn.
pub(super) fn chain<B: Backend>(units: &[BasicConv<B>], x: Tensor<B, 4>) -> Tensor<B, 4> {
    units.iter().fold(x, |x, unit| unit.forward(x))
}
