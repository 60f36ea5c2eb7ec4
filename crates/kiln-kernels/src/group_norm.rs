//! GroupNorm (Wu & He 2018, eq. 1–4): for x of shape `[b, c, h, w]` split into G groups of c/G
//! channels, with μ and σ² the mean and (biased) variance of each (batch element, group),
//!
//! ```text
//! x̂ = (x − μ)·r,  r = 1/√(σ² + ε)        y = γ_c·x̂ + β_c
//! ```
//!
//! and, for g = dL/dy and n = (c/G)·h·w elements per group,
//!
//! ```text
//! dL/dβ_c = Σ_{b,h,w} g                   dL/dγ_c = Σ_{b,h,w} g·x̂
//! dL/dx   = r·(γ_c·g − (1/n)·Σ_group γ·g − x̂·(1/n)·Σ_group γ·g·x̂)
//! ```
//!
//! Flex kernel: a contiguous `[b, c, h, w]` tensor is `b·c` rows of `h·w` pixels, and a group is
//! c/G consecutive rows. Every pass is over rows in parallel (rayon); the per-group statistics
//! between passes are a few hundred numbers combined on the calling thread. Forward: row sums →
//! μ, row sums of (x − μ)² → r, then y = x·a_c + b_c with a_c = r·γ_c and b_c = β_c − μ·a_c.
//! Backward: row sums of g and g·x → the group sums and dL/dγ, dL/dβ, then
//! dL/dx = g·(r·γ_c) + x·k₁ + k₀ with k₁, k₀ constant per group.
//!
//! The fallback for other backends computes the same on `[b·c, h·w]` rows with burn's ops: its
//! `GroupNorm` broadcasts γ and β over a middle dimension, which Flex does about 100× slower
//! than a last-dimension broadcast.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// GroupNorm of `x` (`[b, c, h, w]`) in `groups` groups with `epsilon`, then γ·x̂ + β per channel
/// when `affine` = (γ, β) (each `[c]`) is given. Kiln's kernel on Flex and `Autodiff<Flex>` (with
/// its backward) when `affine` is given; burn's ops otherwise. `groups` must divide `c`.
pub fn group_norm<B: Backend>(
    x: Tensor<B, 4>,
    groups: usize,
    affine: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    epsilon: f64,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, affine) = match affine {
        Some((gamma, beta)) => match flex::group_norm(x, groups, gamma, beta, epsilon) {
            Ok(y) => return y,
            Err((x, gamma, beta)) => (x, Some((gamma, beta))),
        },
        None => (x, None),
    };
    with_burn_ops(x, groups, affine, epsilon)
}

/// [`group_norm`] with burn's ops, on `[b·c, h·w]` rows so that γ and β broadcast along the last
/// dimension.
fn with_burn_ops<B: Backend>(
    x: Tensor<B, 4>,
    groups: usize,
    affine: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    epsilon: f64,
) -> Tensor<B, 4> {
    let [batch, channels, height, width] = x.dims();
    let grouped: Tensor<B, 3> = x.reshape([batch, groups, channels / groups * height * width]);
    let centred = grouped.clone() - grouped.mean_dim(2);
    let variance = centred.clone().square().mean_dim(2);
    let normalised = centred / variance.add_scalar(epsilon).sqrt();
    let rows: Tensor<B, 2> = normalised.reshape([batch * channels, height * width]);
    let per_row = |values: Tensor<B, 1>| -> Tensor<B, 2> {
        values
            .reshape([1, channels])
            .repeat_dim(0, batch)
            .reshape([batch * channels, 1])
    };
    let rows = match affine {
        Some((gamma, beta)) => rows * per_row(gamma) + per_row(beta),
        None => rows,
    };
    rows.reshape([batch, channels, height, width])
}

#[cfg(feature = "flex")]
mod flex {
    use burn::tensor::backend::Backend;
    use burn::tensor::{Shape, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;
    use rten_simd::SimdOp;
    use rten_vecmath::{Sum, SumSquareSub};

    use crate::node::register_gradients;
    use crate::parallel::{CHUNK, contiguous, flex_tensor, par_rows, values, write_all};
    use crate::route::{self, AutodiffFlexTensor, Route};

    type Inputs<B> = (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>);

    /// Kiln's GroupNorm when `B` is Flex or `Autodiff<Flex>` with `f32` tensors; the inputs back
    /// otherwise.
    pub(super) fn group_norm<B: Backend>(
        x: Tensor<B, 4>,
        groups: usize,
        gamma: Tensor<B, 1>,
        beta: Tensor<B, 1>,
        epsilon: f64,
    ) -> Result<Tensor<B, 4>, Inputs<B>> {
        let [_, channels, height, width] = x.dims();
        let usable = groups > 0
            && channels % groups == 0
            && height * width > 0
            && gamma.dims() == [channels]
            && beta.dims() == [channels];
        let layout = Grouping::new(&x, groups, epsilon);
        match route::backend_of::<B>(x.dtype()) {
            Route::Flex if usable => {
                let [x, gamma, beta] = [
                    route::into_primitive::<B, 4, FlexTensor>(x),
                    route::into_primitive::<B, 1, FlexTensor>(gamma),
                    route::into_primitive::<B, 1, FlexTensor>(beta),
                ]
                .map(contiguous);
                let (y, _) = forward(&layout, &x, values(&gamma), values(&beta));
                Ok(route::from_primitive(y))
            }
            Route::AutodiffFlex if usable => {
                let y = autodiff(
                    layout,
                    route::into_primitive::<B, 4, AutodiffFlexTensor>(x),
                    route::into_primitive::<B, 1, AutodiffFlexTensor>(gamma),
                    route::into_primitive::<B, 1, AutodiffFlexTensor>(beta),
                );
                Ok(route::from_primitive(y))
            }
            _ => Err((x, gamma, beta)),
        }
    }

    /// The shape of one GroupNorm: `[batch, channels, pixels]` in `groups` groups, and ε.
    #[derive(Debug, Clone, Copy)]
    struct Grouping {
        batch: usize,
        channels: usize,
        pixels: usize,
        groups: usize,
        epsilon: f64,
    }

    impl Grouping {
        fn new<B: Backend>(x: &Tensor<B, 4>, groups: usize, epsilon: f64) -> Self {
            let [batch, channels, height, width] = x.dims();
            Self {
                batch,
                channels,
                pixels: height * width,
                groups,
                epsilon,
            }
        }

        /// Elements in one (batch element, group).
        fn group_len(&self) -> usize {
            self.channels / self.groups * self.pixels
        }

        /// The group of row `row` (a row is one batch element's channel).
        fn group_of(&self, row: usize) -> usize {
            row / (self.channels / self.groups)
        }
    }

    /// Per-row reductions of `f(row index, row's values)` in parallel, rows grouped into tasks of
    /// about [`CHUNK`] elements.
    fn row_sums<F: Fn(usize, &[f32]) -> T + Sync, T: Send>(
        x: &[f32],
        pixels: usize,
        f: F,
    ) -> Vec<T> {
        x.par_chunks(pixels)
            .with_min_len((CHUNK / pixels).max(1))
            .enumerate()
            .map(|(row, values)| f(row, values))
            .collect()
    }

    /// Σ aᵢ·bᵢ in sixteen independent lanes (vectorised, and more accurate than one running sum).
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0.0f32; 16];
        let (a_chunks, b_chunks) = (a.chunks_exact(16), b.chunks_exact(16));
        let tail: f32 = a_chunks
            .remainder()
            .iter()
            .zip(b_chunks.remainder())
            .map(|(a, b)| a * b)
            .sum();
        for (a, b) in a_chunks.zip(b_chunks) {
            for ((lane, a), b) in lanes.iter_mut().zip(a).zip(b) {
                *lane += a * b;
            }
        }
        lanes.iter().sum::<f32>() + tail
    }

    /// Combines per-row sums into per-group sums divided by the group length.
    fn group_means(layout: &Grouping, row_values: &[f32]) -> Vec<f32> {
        let per_group = layout.channels / layout.groups;
        row_values
            .chunks(per_group)
            .map(|rows| rows.iter().map(|&v| v as f64).sum::<f64>() / layout.group_len() as f64)
            .map(|mean| mean as f32)
            .collect()
    }

    /// y, and the statistics (μ, r) per (batch element, group) kept for the backward pass.
    fn forward(
        layout: &Grouping,
        x: &FlexTensor,
        gamma: &[f32],
        beta: &[f32],
    ) -> (FlexTensor, Statistics) {
        let input = values(x);
        let pixels = layout.pixels;
        let means = group_means(
            layout,
            &row_sums(input, pixels, |_, row| Sum::new(row).dispatch()),
        );
        let squares = row_sums(input, pixels, |index, row| {
            let mean = means[layout.group_of(index)];
            SumSquareSub::new(row, mean).dispatch()
        });
        let reciprocal_std: Vec<f32> = group_means(layout, &squares)
            .into_iter()
            .map(|variance| 1.0 / (variance as f64 + layout.epsilon).sqrt() as f32)
            .collect();
        let output = par_rows(input.len(), pixels, |row, out| {
            let (group, channel) = (layout.group_of(row), row % layout.channels);
            let scale = reciprocal_std[group] * gamma[channel];
            let shift = beta[channel] - means[group] * scale;
            let x = &input[row * pixels..(row + 1) * pixels];
            write_all(out, x.iter().map(|&x| x * scale + shift))
        });
        let y = flex_tensor(output, x.layout().shape().clone());
        (
            y,
            Statistics {
                means,
                reciprocal_std,
            },
        )
    }

    /// μ and r = 1/√(σ² + ε) of every (batch element, group), in that order.
    #[derive(Debug, Clone)]
    struct Statistics {
        means: Vec<f32>,
        reciprocal_std: Vec<f32>,
    }

    /// dL/dx, dL/dγ and dL/dβ from the input, γ, the statistics and g = dL/dy.
    fn backward(
        layout: &Grouping,
        x: &FlexTensor,
        gamma: &[f32],
        stats: &Statistics,
        grad: &FlexTensor,
    ) -> [FlexTensor; 3] {
        let (input, grad_out) = (values(x), values(grad));
        let (pixels, channels) = (layout.pixels, layout.channels);
        // Per row: Σ g and Σ g·x.
        let sums = row_sums(grad_out, pixels, |row, g| {
            let x = &input[row * pixels..(row + 1) * pixels];
            (Sum::new(g).dispatch(), dot(g, x))
        });
        let mut grad_gamma = vec![0.0f64; channels];
        let mut grad_beta = vec![0.0f64; channels];
        // Per group: A = Σ γ·g and C = Σ γ·g·x̂ (x̂ = (x − μ)·r).
        let mut group_a = vec![0.0f64; layout.batch * layout.groups];
        let mut group_c = vec![0.0f64; layout.batch * layout.groups];
        for (row, &(sum_g, sum_gx)) in sums.iter().enumerate() {
            let (group, channel) = (layout.group_of(row), row % channels);
            let (mean, r) = (
                stats.means[group] as f64,
                stats.reciprocal_std[group] as f64,
            );
            let sum_g_xhat = r * (sum_gx as f64 - mean * sum_g as f64);
            grad_beta[channel] += sum_g as f64;
            grad_gamma[channel] += sum_g_xhat;
            group_a[group] += gamma[channel] as f64 * sum_g as f64;
            group_c[group] += gamma[channel] as f64 * sum_g_xhat;
        }
        let n = layout.group_len() as f64;
        let output = par_rows(input.len(), pixels, |row, out| {
            let start = row * pixels;
            let (group, channel) = (layout.group_of(row), row % channels);
            let (mean, r) = (
                stats.means[group] as f64,
                stats.reciprocal_std[group] as f64,
            );
            // dL/dx = r·γ·g − r·A/n − (x − μ)·r²·C/n = g·scale + x·k1 + k0
            let scale = (r * gamma[channel] as f64) as f32;
            let k1 = -r * r * group_c[group] / n;
            let k0 = (-mean * k1 - r * group_a[group] / n) as f32;
            let k1 = k1 as f32;
            let rows = grad_out[start..start + pixels]
                .iter()
                .zip(&input[start..start + pixels]);
            write_all(out, rows.map(|(&g, &x)| g * scale + x * k1 + k0))
        });
        let vector = |v: Vec<f64>| {
            flex_tensor(
                v.into_iter().map(|v| v as f32).collect(),
                Shape::new([channels]),
            )
        };
        [
            flex_tensor(output, x.layout().shape().clone()),
            vector(grad_gamma),
            vector(grad_beta),
        ]
    }

    /// The GroupNorm node of burn's autodiff graph, with parents x, γ and β.
    #[derive(Debug)]
    struct GroupNormBackward;

    /// What the backward pass needs: the layout, x, γ and the statistics.
    #[derive(Debug, Clone)]
    struct Saved {
        layout: Grouping,
        x: FlexTensor,
        gamma: FlexTensor,
        stats: Statistics,
    }

    impl Backward<Flex, 3> for GroupNormBackward {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let saved = ops.state;
            let grad = contiguous(grads.consume::<Flex>(&ops.node));
            let gradients = backward(
                &saved.layout,
                &saved.x,
                values(&saved.gamma),
                &saved.stats,
                &grad,
            );
            let parents = ops.parents.map(|parent| parent.map(|node| node.id));
            register_gradients(parents, gradients.map(Some), grads);
        }
    }

    /// GroupNorm on `Autodiff<Flex>`: the forward kernel, and [`GroupNormBackward`] when any input
    /// needs a gradient.
    fn autodiff(
        layout: Grouping,
        x: AutodiffFlexTensor,
        gamma: AutodiffFlexTensor,
        beta: AutodiffFlexTensor,
    ) -> AutodiffFlexTensor {
        let input = contiguous(x.primitive.clone());
        let gamma_values = contiguous(gamma.primitive.clone());
        let beta_values = contiguous(beta.primitive.clone());
        let (y, stats) = forward(&layout, &input, values(&gamma_values), values(&beta_values));
        match GroupNormBackward
            .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = Saved {
                    layout,
                    x: input,
                    gamma: gamma_values,
                    stats,
                };
                prep.finish(saved, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
