//! Multi-head self-attention (Vaswani et al. 2017, eq. 1) on packed projections. For every batch
//! element and head, with Q, K, V the head's `t × d` blocks of the projections:
//!
//! ```text
//! S = c·Q Kᵀ,  P = softmax(S) (row-wise),  O = P V                       (c = 1/√d usually)
//! dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = c·dS K,  dK = c·dSᵀ Q
//! ```
//!
//! The input is what one linear layer with the three projections side by side gives: `qkv` of
//! shape `[b, t, 3·c]`, Q in the first c columns, K in the next c, V in the last, head h in
//! columns h·d … (h + 1)·d − 1 of each. The output is `[b, t, c]` with the heads side by side, ready
//! for the output projection — no reshapes or transposes into `[b, h, t, d]` and back.
//!
//! Flex kernel: batch elements are spread over rayon's threads, and each goes through its heads
//! on one t × t buffer per thread: S is computed by one `gemm` product reading Q and K in place
//! (strided, Kᵀ through strides), turned row by row into E = exp(S − max) with SIMD passes, and
//! multiplied by V into the head's columns of the output, whose rows are then divided by E's row
//! sums. No scores tensor, and P never leaves the thread's cache: the forward pass keeps only
//! each row's log-sum-exp lse = max + ln Σ exp(S − max), from which the backward pass recomputes
//! P = exp(S − lse) (the recomputation of FlashAttention, Dao et al. 2022) instead of keeping
//! b·h·t² probabilities. The backward pass needs three t × t buffers per thread and writes dQ, dK
//! and dV into their columns of one `[b, t, 3·c]` gradient.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::softmax;

/// softmax(Q Kᵀ·`scale`) V per head, for `qkv` of shape `[b, t, 3·c]` (Q, K and V side by side,
/// each split into `heads` heads of c/`heads` channels); the result is `[b, t, c]`, heads side by
/// side. Kiln's kernel on Flex and `Autodiff<Flex>` (with its backward); burn's ops otherwise.
/// c must be a multiple of `heads`.
pub fn multi_head_attention<B: Backend>(
    qkv: Tensor<B, 3>,
    heads: usize,
    scale: f64,
) -> Tensor<B, 3> {
    #[cfg(feature = "flex")]
    let qkv = match flex::attention(qkv, heads, scale) {
        Ok(out) => return out,
        Err(qkv) => qkv,
    };
    with_burn_ops(qkv, heads, scale)
}

/// [`multi_head_attention`] with burn's ops: split, move the heads forward, two batched matmuls
/// around the softmax, and back.
fn with_burn_ops<B: Backend>(qkv: Tensor<B, 3>, heads: usize, scale: f64) -> Tensor<B, 3> {
    let [batch, tokens, width] = qkv.dims();
    let channels = width / 3;
    let split = |part: usize| -> Tensor<B, 4> {
        qkv.clone()
            .narrow(2, part * channels, channels)
            .reshape([batch, tokens, heads, channels / heads])
            .swap_dims(1, 2)
    };
    let (q, k, v) = (split(0), split(1), split(2));
    softmax(q.matmul(k.transpose()).mul_scalar(scale), 3)
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, tokens, channels])
}

#[cfg(feature = "flex")]
mod flex {
    use std::sync::Arc;

    use burn::tensor::backend::Backend;
    use burn::tensor::{Shape, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;
    use rten_simd::SimdOp;

    use crate::gemm::{Matrix, matmul, matmul_into};
    use crate::parallel::{contiguous, flex_tensor, values};
    use crate::route::{self, AutodiffFlexTensor, Route};
    use crate::softmax::{ShiftedExp, SoftmaxGradient, row_max};

    /// Kiln's attention when the backend, dtype and shape allow it; `qkv` back otherwise.
    pub(super) fn attention<B: Backend>(
        qkv: Tensor<B, 3>,
        heads: usize,
        scale: f64,
    ) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
        let Some(layout) = Heads::new(qkv.dims(), heads, scale) else {
            return Err(qkv);
        };
        match route::backend_of::<B>(qkv.dtype()) {
            Route::Flex => {
                let qkv = contiguous(route::into_primitive::<B, 3, FlexTensor>(qkv));
                let (out, _) = forward(&layout, values(&qkv));
                Ok(route::from_primitive(flex_tensor(
                    out,
                    layout.output_shape(),
                )))
            }
            Route::AutodiffFlex => {
                let qkv = route::into_primitive::<B, 3, AutodiffFlexTensor>(qkv);
                Ok(route::from_primitive(autodiff(layout, qkv)))
            }
            Route::Burn => Err(qkv),
        }
    }

    /// The sizes of one attention: `batch` elements of `tokens` tokens, `heads` heads of `dim`
    /// channels each, and the score scale.
    #[derive(Debug, Clone, Copy)]
    struct Heads {
        batch: usize,
        tokens: usize,
        heads: usize,
        dim: usize,
        scale: f32,
    }

    impl Heads {
        fn new([batch, tokens, width]: [usize; 3], heads: usize, scale: f64) -> Option<Self> {
            let fits = heads > 0 && width % (3 * heads) == 0 && batch * tokens * width > 0;
            fits.then_some(Self {
                batch,
                tokens,
                heads,
                dim: width / 3 / heads,
                scale: scale as f32,
            })
        }

        /// c: the width of Q, K, V and the output.
        fn channels(&self) -> usize {
            self.heads * self.dim
        }

        fn output_shape(&self) -> Shape {
            Shape::new([self.batch, self.tokens, self.channels()])
        }

        /// Q (`part` 0), K (1) or V (2) of `head` inside one batch element's `[t, 3·c]` block.
        fn part<'a>(&self, block: &'a [f32], part: usize, head: usize) -> Matrix<'a> {
            let start = part * self.channels() + head * self.dim;
            Matrix::strided(&block[start..], self.tokens, self.dim, 3 * self.channels())
        }

        /// S = c·QKᵀ of `head` in one batch element's `[t, 3·c]` block, into `buffer` (t × t).
        fn scores<'a>(
            &self,
            block: &[f32],
            head: usize,
            buffer: &'a mut Vec<f32>,
        ) -> &'a mut [f32] {
            let len = self.tokens * self.tokens;
            buffer.clear();
            buffer.reserve(len);
            let (q, k) = (self.part(block, 0, head), self.part(block, 1, head));
            let scores = &mut buffer.spare_capacity_mut()[..len];
            matmul_into(
                scores,
                self.tokens,
                q,
                k.t(),
                self.scale,
                self.threads_inside(),
            );
            // SAFETY: the t × t product with row stride t wrote all `len` elements.
            unsafe { buffer.set_len(len) };
            buffer
        }

        /// Whether the products should use rayon inside (too few batch elements to spread).
        fn threads_inside(&self) -> bool {
            self.batch < rayon::current_num_threads()
        }
    }

    /// The output `[b, t, c]` and the log-sum-exps of the scores (`[b, h, t]`), from which the
    /// backward pass recomputes P.
    ///
    /// Per head, on the thread's t × t buffer: S = c·QKᵀ, then row by row m = max S and
    /// E = exp(S − m) in place with its sum l, then O = E·V into the head's columns and each
    /// row of O divided by its l — t·d divisions instead of normalising t² probabilities.
    fn forward(h: &Heads, qkv: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (tokens, channels) = (h.tokens, h.channels());
        let out_len = h.batch * tokens * channels;
        let mut out = Vec::with_capacity(out_len);
        let mut log_sums = vec![0.0f32; h.batch * h.heads * tokens];
        out.spare_capacity_mut()[..out_len]
            .par_chunks_mut(tokens * channels)
            .zip(log_sums.par_chunks_mut(h.heads * tokens))
            .enumerate()
            .for_each_init(Vec::new, |scores, (b, (out, log_sums))| {
                let block = &qkv[b * tokens * 3 * channels..][..tokens * 3 * channels];
                for head in 0..h.heads {
                    let exps = h.scores(block, head, scores);
                    let mut sums = Vec::with_capacity(tokens);
                    for row in exps.chunks_exact_mut(tokens) {
                        let max = row_max(row);
                        let sum = ShiftedExp::new(row, max).dispatch();
                        log_sums[head * tokens + sums.len()] = max + sum.ln();
                        sums.push(sum);
                    }
                    let exps = Matrix::row_major(exps, tokens, tokens);
                    let out = &mut out[head * h.dim..];
                    matmul_into(
                        out,
                        channels,
                        exps,
                        h.part(block, 2, head),
                        1.0,
                        h.threads_inside(),
                    );
                    for (row, sum) in out.chunks_mut(channels).zip(&sums) {
                        for value in &mut row[..h.dim] {
                            // SAFETY: the product just wrote the head's `dim` columns of every row.
                            let value = unsafe { value.assume_init_mut() };
                            *value /= sum;
                        }
                    }
                }
            });
        // SAFETY: every batch element's heads wrote their `dim` columns of every row of `out`
        // (together all `c` of them).
        unsafe { out.set_len(out_len) };
        (out, log_sums)
    }

    /// d`qkv` (`[b, t, 3·c]`) from `qkv`, the forward pass's log-sum-exps and dO (`[b, t, c]`).
    /// P is recomputed per head as exp(c·QKᵀ − lse) (FlashAttention's recomputation, Dao et al.
    /// 2022, §3.1), which costs one t × t product with inner size d and one exp pass instead of
    /// keeping b·h·t² probabilities between the passes.
    fn backward(h: &Heads, qkv: &[f32], log_sums: &[f32], grad: &[f32]) -> Vec<f32> {
        let (tokens, channels, dim) = (h.tokens, h.channels(), h.dim);
        let threads = h.threads_inside();
        let len = h.batch * tokens * 3 * channels;
        let mut d_qkv = Vec::with_capacity(len);
        d_qkv.spare_capacity_mut()[..len]
            .par_chunks_mut(tokens * 3 * channels)
            .enumerate()
            .for_each_init(Scratch::default, |scratch, (b, d_block)| {
                let block = &qkv[b * tokens * 3 * channels..][..tokens * 3 * channels];
                let grad = &grad[b * tokens * channels..][..tokens * channels];
                let log_sums = &log_sums[b * h.heads * tokens..];
                for head in 0..h.heads {
                    let log_sums = &log_sums[head * tokens..][..tokens];
                    let p = scratch.probabilities(h, block, head, log_sums);
                    let p = Matrix::row_major(p, tokens, tokens);
                    let d_out = Matrix::strided(&grad[head * dim..], tokens, dim, channels);
                    let (q, k, v) = (
                        h.part(block, 0, head),
                        h.part(block, 1, head),
                        h.part(block, 2, head),
                    );
                    let column = |part: usize| part * channels + head * dim;
                    matmul_into(
                        &mut d_block[column(2)..],
                        3 * channels,
                        p.t(),
                        d_out,
                        1.0,
                        threads,
                    );
                    let d_scores = scratch.score_gradient(d_out, v, threads);
                    let d_scores = Matrix::row_major(d_scores, tokens, tokens);
                    matmul_into(
                        &mut d_block[column(0)..],
                        3 * channels,
                        d_scores,
                        k,
                        h.scale,
                        threads,
                    );
                    matmul_into(
                        &mut d_block[column(1)..],
                        3 * channels,
                        d_scores.t(),
                        q,
                        h.scale,
                        threads,
                    );
                }
            });
        // SAFETY: for every batch element and head, dV, dQ and dK were written into the head's
        // `dim` columns of the V, Q and K parts of every row: all 3·c columns.
        unsafe { d_qkv.set_len(len) };
        d_qkv
    }

    /// A thread's t × t buffers for the backward pass: P, dP and dS.
    #[derive(Default)]
    struct Scratch {
        probabilities: Vec<f32>,
        d_probabilities: Vec<f32>,
        d_scores: Vec<f32>,
    }

    impl Scratch {
        /// P = exp(S − lse) of `head` (row by row, with the forward pass's `log_sums`).
        fn probabilities(
            &mut self,
            h: &Heads,
            block: &[f32],
            head: usize,
            log_sums: &[f32],
        ) -> &[f32] {
            let scores = h.scores(block, head, &mut self.probabilities);
            for (row, &log_sum) in scores.chunks_exact_mut(h.tokens).zip(log_sums) {
                ShiftedExp::new(row, log_sum).dispatch();
            }
            &self.probabilities
        }

        /// dS = P ⊙ (dP − rowsum(dP ⊙ P)) with dP = dO Vᵀ, for P the last
        /// [`Scratch::probabilities`].
        fn score_gradient(&mut self, d_out: Matrix, v: Matrix, threads: bool) -> &[f32] {
            let probabilities = &self.probabilities;
            let tokens = d_out.rows;
            self.d_probabilities.resize(tokens * tokens, 0.0);
            matmul(&mut self.d_probabilities, d_out, v.t(), false, threads);
            self.d_scores.clear();
            self.d_scores.reserve(tokens * tokens);
            let rows = self.d_scores.spare_capacity_mut()[..tokens * tokens].chunks_mut(tokens);
            for ((out, p), dp) in rows
                .zip(probabilities.chunks_exact(tokens))
                .zip(self.d_probabilities.chunks_exact(tokens))
            {
                SoftmaxGradient::new(p, dp, out).dispatch();
            }
            // SAFETY: the loop wrote every row of the t × t matrix.
            unsafe { self.d_scores.set_len(tokens * tokens) };
            &self.d_scores
        }
    }

    /// The attention node of burn's autodiff graph, with parent `qkv`.
    #[derive(Debug)]
    struct AttentionBackward;

    /// What the backward pass needs: the sizes, `qkv` and the scores' log-sum-exps.
    #[derive(Debug, Clone)]
    struct Saved {
        heads: Heads,
        qkv: FlexTensor,
        log_sums: Arc<Vec<f32>>,
    }

    impl Backward<Flex, 1> for AttentionBackward {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let Saved {
                heads,
                qkv,
                log_sums,
            } = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                let grad = contiguous(grad);
                let d_qkv = backward(&heads, values(&qkv), &log_sums, values(&grad));
                flex_tensor(d_qkv, qkv.layout().shape().clone())
            });
        }
    }

    /// Attention on `Autodiff<Flex>`: the forward kernel, and [`AttentionBackward`] when `qkv`
    /// needs a gradient.
    fn autodiff(heads: Heads, qkv: AutodiffFlexTensor) -> AutodiffFlexTensor {
        let values_in = contiguous(qkv.primitive.clone());
        let (out, log_sums) = forward(&heads, values(&values_in));
        let out = flex_tensor(out, heads.output_shape());
        match AttentionBackward
            .prepare::<NoCheckpointing>([qkv.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = Saved {
                    heads,
                    qkv: values_in,
                    log_sums: Arc::new(log_sums),
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
