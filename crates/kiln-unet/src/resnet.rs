use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};
use kiln_kernels::{dropout, silu};

use crate::norm::{add_per_channel, group_norm, scale_shift};
use crate::resample::{conv, conv3x3};

/// A residual block with time conditioning (Ho et al. 2020, Appendix B; diffusers'
/// `ResnetBlock2D` with `pre_norm`):
///
/// ```text
/// h = conv1(SiLU(norm1(x)))
/// h = norm2(h + proj(SiLU(e)))                                       (additive)
///   | norm2(h)·(1 + scale) + shift,  [scale, shift] = proj(SiLU(e))  (scale-shift)
/// y = shortcut(x) + conv2(dropout(SiLU(h)))
/// ```
///
/// where e is the time (and class) embedding and the shortcut is a 1×1 conv when the channel
/// count changes.
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    /// GroupNorm on the input.
    pub norm1: GroupNorm<B>,
    /// First 3×3 convolution.
    pub conv1: Conv2d<B>,
    /// Projection of the time embedding to the output channels (twice them for scale-shift).
    pub time_emb_proj: Linear<B>,
    /// GroupNorm after the first convolution.
    pub norm2: GroupNorm<B>,
    /// Dropout before the second convolution.
    pub dropout: Dropout,
    /// Second 3×3 convolution.
    pub conv2: Conv2d<B>,
    /// 1×1 convolution on the skip path when the channel count changes.
    pub conv_shortcut: Option<Conv2d<B>>,
    scale_shift: bool,
}

/// The widths and settings of one [`ResnetBlock`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResnetSpec {
    pub input: usize,
    pub output: usize,
    pub time_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub dropout: f64,
    pub scale_shift: bool,
}

impl<B: Backend> ResnetBlock<B> {
    pub(crate) fn new(spec: ResnetSpec, device: &B::Device) -> Self {
        let norm = |channels| {
            GroupNormConfig::new(spec.groups, channels)
                .with_epsilon(spec.eps)
                .init(device)
        };
        let projected = if spec.scale_shift {
            2 * spec.output
        } else {
            spec.output
        };
        Self {
            norm1: norm(spec.input),
            conv1: conv3x3(spec.input, spec.output, 1, device),
            time_emb_proj: LinearConfig::new(spec.time_channels, projected).init(device),
            norm2: norm(spec.output),
            dropout: DropoutConfig::new(spec.dropout).init(),
            conv2: conv3x3(spec.output, spec.output, 1, device),
            conv_shortcut: (spec.input != spec.output)
                .then(|| Conv2dConfig::new([spec.input, spec.output], [1, 1]).init(device)),
            scale_shift: spec.scale_shift,
        }
    }

    /// `[batch, input, h, w]` and the `[batch, time_channels]` embedding → `[batch, output, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>, embedding: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = conv(&self.conv1, silu(group_norm(&self.norm1, x.clone())));
        let projected = self.time_emb_proj.forward(silu(embedding));
        let h = if self.scale_shift {
            let half = projected.dims()[1] / 2;
            let scale = projected.clone().narrow(1, 0, half);
            let shift = projected.narrow(1, half, half);
            scale_shift(group_norm(&self.norm2, h), scale, shift)
        } else {
            group_norm(&self.norm2, add_per_channel(h, projected))
        };
        let h = conv(&self.conv2, dropout(&self.dropout, silu(h)));
        let skip = match &self.conv_shortcut {
            Some(shortcut) => conv(shortcut, x),
            None => x,
        };
        skip + h
    }
}
