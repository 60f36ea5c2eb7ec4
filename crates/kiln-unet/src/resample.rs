use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, backend::Backend};

/// `conv.forward(x)` through `kiln_kernels::conv2d` (Kiln's kernel on Flex, burn's op elsewhere),
/// with the module's weight, bias, stride, dilation and groups. Padding other than `Valid` or
/// the same explicit amount on both sides of each axis (all the UNet uses) goes through
/// `conv.forward`.
pub(crate) fn conv<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return conv.forward(x),
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    let bias = conv.bias.as_ref().map(|bias| bias.val());
    kiln_kernels::conv2d(x, conv.weight.val(), bias, options)
}

/// A 3×3 convolution with padding 1 and the given stride.
pub(crate) fn conv3x3<B: Backend>(
    input: usize,
    output: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([input, output], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Halves the resolution with a stride-2 3×3 convolution (diffusers' `Downsample2D` with
/// `use_conv`, padding 1).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// The strided convolution.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Downsample<B> {
    pub(crate) fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            conv: conv3x3(channels, channels, 2, device),
        }
    }

    /// `[b, c, h, w]` → `[b, c, h/2, w/2]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv(&self.conv, x)
    }
}

/// Doubles the resolution: nearest-neighbour ×2, then a 3×3 convolution (diffusers'
/// `Upsample2D` with `use_conv`).
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    /// The convolution after upsampling.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Upsample<B> {
    pub(crate) fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            conv: conv3x3(channels, channels, 1, device),
        }
    }

    /// `[b, c, h, w]` → `[b, c, 2h, 2w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, height, width] = x.dims();
        let up = interpolate(
            x,
            [2 * height, 2 * width],
            InterpolateOptions::new(InterpolateMode::Nearest),
        );
        conv(&self.conv, up)
    }
}
