use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::module::linear;
use burn::tensor::{Tensor, backend::Backend};

use kiln_kernels::{multi_head_attention, pixels_to_tokens, tokens_to_pixels};

use crate::norm::group_norm;

/// Multi-head self-attention over the pixels of a feature map, with a residual connection
/// (Ho et al. 2020, Appendix B; diffusers' `Attention` as built by `AttnDownBlock2D`):
///
/// ```text
/// n = GroupNorm(x) as [b, h·w, c] (or x itself without the norm);  Q, K, V = n W_q, n W_k, n W_v split into heads of size d
/// y = x + (softmax(Q Kᵀ/√d) V, heads joined) W_out
/// ```
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    /// GroupNorm on the input (absent in the middle block of scale-shift models, as in
    /// diffusers' `UNetMidBlock2D`).
    pub group_norm: Option<GroupNorm<B>>,
    /// Query projection.
    pub to_q: Linear<B>,
    /// Key projection.
    pub to_k: Linear<B>,
    /// Value projection.
    pub to_v: Linear<B>,
    /// Output projection.
    pub to_out: Linear<B>,
    heads: usize,
}

impl<B: Backend> AttentionBlock<B> {
    /// Attention over `channels` channels in `heads` heads, normalised by GroupNorm of
    /// `groups` groups (with ε `eps`) unless `groups` is `None`.
    pub(crate) fn new(
        channels: usize,
        heads: usize,
        groups: Option<usize>,
        eps: f64,
        device: &B::Device,
    ) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: groups.map(|groups| {
                GroupNormConfig::new(groups, channels)
                    .with_epsilon(eps)
                    .init(device)
            }),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: linear(),
            heads,
        }
    }

    /// `[b, c, h, w]` → `[b, c, h, w]`. The pixels become tokens and back through
    /// `kiln_kernels`' transposes (contiguous on the CPU); Q, K and V come from one product with
    /// the three projections side by side, and `multi_head_attention` works on that packed
    /// result directly.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, channels, height, width] = x.dims();
        let normed = match &self.group_norm {
            Some(norm) => group_norm(norm, x.clone()),
            None => x.clone(),
        };
        let normed = pixels_to_tokens(normed);
        let projections = [&self.to_q, &self.to_k, &self.to_v];
        let weight = Tensor::cat(projections.map(|p| p.weight.val()).to_vec(), 1);
        let bias = projections.map(|p| match &p.bias {
            Some(bias) => bias.val(),
            None => Tensor::zeros([channels], &x.device()),
        });
        let qkv = linear(normed, weight, Some(Tensor::cat(bias.to_vec(), 0)));
        let scale = 1.0 / ((channels / self.heads) as f64).sqrt();
        let attended = multi_head_attention(qkv, self.heads, scale);
        let out = tokens_to_pixels(self.to_out.forward(attended), height, width);
        x + out
    }
}
