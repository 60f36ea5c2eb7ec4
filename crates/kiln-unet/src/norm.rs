//! GroupNorm and per-channel conditioning computed with broadcasts along the last dimension
//! only.
//!
//! burn 0.21's Flex backend broadcasts a `[1, c, 1, 1]` tensor over `[b, c, h, w]` about 100×
//! slower than a same-shape operation (4.6 ms against 47 µs for 16×32×32×32 f32 on our CPU),
//! while a `[r, 1]` broadcast over `[r, n]` is fast. The per-channel conditioning here works on
//! `[b·c, h·w]` rows for that reason; GroupNorm itself is `kiln_kernels::group_norm` (a fused
//! kernel on Flex, the same row form with burn's ops elsewhere), fed with burn's `GroupNorm`
//! parameters so that checkpoints and diffusers import are unchanged.

use burn::nn::GroupNorm;
use burn::tensor::{Tensor, backend::Backend};

/// GroupNorm (Wu & He 2018) with `norm`'s groups, ε, γ and β:
/// y = (x − μ_g)/√(σ²_g + ε) · γ_c + β_c, with μ_g and σ²_g over each group's channels and pixels.
pub(crate) fn group_norm<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let affine = match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) => Some((gamma.val(), beta.val())),
        _ => None,
    };
    kiln_kernels::group_norm(x, norm.num_groups, affine, norm.epsilon)
}

/// x + v with one value per batch element and channel: `[b, c, h, w]` + `[b, c]`.
pub(crate) fn add_per_channel<B: Backend>(x: Tensor<B, 4>, v: Tensor<B, 2>) -> Tensor<B, 4> {
    let [batch, channels, height, width] = x.dims();
    let rows: Tensor<B, 2> = x.reshape([batch * channels, height * width]);
    (rows + v.reshape([batch * channels, 1])).reshape([batch, channels, height, width])
}

/// x·(1 + scale) + shift with one scale and shift per batch element and channel.
pub(crate) fn scale_shift<B: Backend>(
    x: Tensor<B, 4>,
    scale: Tensor<B, 2>,
    shift: Tensor<B, 2>,
) -> Tensor<B, 4> {
    let [batch, channels, height, width] = x.dims();
    let rows: Tensor<B, 2> = x.reshape([batch * channels, height * width]);
    let column = |v: Tensor<B, 2>| v.reshape([batch * channels, 1]);
    (rows * column(scale.add_scalar(1.0)) + column(shift)).reshape([batch, channels, height, width])
}
