//! Scaled dot-product attention (Vaswani et al. 2017, eq. 1) for every batch element and head:
//!
//! ```text
//! S = c·Q Kᵀ,  P = softmax(S) (row-wise),  O = P V            (Q: t×d, K, V: s×d, c = 1/√d)
//! dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = c·dS K,  dK = c·dSᵀ Q
//! ```
//!
//! Flex kernel: the `b·h` heads are spread over rayon's threads; each head's S is computed by one
//! `gemm` product straight into its slot of P (t×s), turned into P in place by `rten-vecmath`'s SIMD
//! softmax row by row, and multiplied by V — no scores tensor, no separate scale, exp, sum or
//! divide pass, and no copy of Kᵀ (the products read it through strides). The backward pass keeps
//! Q, K, V and P and needs one t×s scratch per thread. Under burn's ops the same takes two batched
//! matmuls, a scale and the five-op softmax, each with its own output and backward node.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::softmax;

/// softmax(Q Kᵀ·`scale`) V for `q` of shape `[b, h, t, d]` and `k`, `v` of shape `[b, h, s, d]`.
/// Kiln's kernel on Flex and `Autodiff<Flex>` (with its backward); burn's ops otherwise.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: f64,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (q, k, v) = match flex::attention(q, k, v, scale) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    softmax(q.matmul(k.transpose()).mul_scalar(scale), 3).matmul(v)
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
    use rten_vecmath::Softmax;

    use crate::gemm::{Matrix, matmul, matmul_scaled};
    use crate::node::register_gradients;
    use crate::parallel::{contiguous, flex_tensor, values};
    use crate::route::{self, AutodiffFlexTensor, Route};

    type Inputs<B> = (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>);

    /// Kiln's attention when the backend, dtype and shapes allow it; the inputs back otherwise.
    pub(super) fn attention<B: Backend>(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        scale: f64,
    ) -> Result<Tensor<B, 4>, Inputs<B>> {
        let Some(heads) = Heads::new(q.dims(), k.dims(), v.dims(), scale) else {
            return Err((q, k, v));
        };
        match route::backend_of::<B>(q.dtype()) {
            Route::Flex => {
                let [q, k, v] =
                    [q, k, v].map(|t| contiguous(route::into_primitive::<B, 4, FlexTensor>(t)));
                let (out, _) = forward(&heads, values(&q), values(&k), values(&v));
                Ok(route::from_primitive(flex_tensor(
                    out,
                    heads.shape(heads.queries),
                )))
            }
            Route::AutodiffFlex => {
                let [q, k, v] = [q, k, v].map(route::into_primitive::<B, 4, AutodiffFlexTensor>);
                Ok(route::from_primitive(autodiff(heads, q, k, v)))
            }
            Route::Burn => Err((q, k, v)),
        }
    }

    /// The sizes of one attention: `count` = b·h heads of `queries` × `keys` scores over
    /// `dim`-wide vectors, and the score scale.
    #[derive(Debug, Clone, Copy)]
    struct Heads {
        batch: usize,
        heads: usize,
        queries: usize,
        keys: usize,
        dim: usize,
        scale: f32,
    }

    impl Heads {
        fn new(q: [usize; 4], k: [usize; 4], v: [usize; 4], scale: f64) -> Option<Self> {
            let [batch, heads, queries, dim] = q;
            let fits = k == v && k[0] == batch && k[1] == heads && k[3] == dim;
            (fits && batch * heads * queries * k[2] * dim > 0).then_some(Self {
                batch,
                heads,
                queries,
                keys: k[2],
                dim,
                scale: scale as f32,
            })
        }

        fn count(&self) -> usize {
            self.batch * self.heads
        }

        fn shape(&self, tokens: usize) -> Shape {
            Shape::new([self.batch, self.heads, tokens, self.dim])
        }

        /// Head `i`'s `tokens × dim` matrix in a `[b, h, tokens, d]` buffer.
        fn matrix<'a>(&self, data: &'a [f32], i: usize, tokens: usize) -> Matrix<'a> {
            let len = tokens * self.dim;
            Matrix::row_major(&data[i * len..(i + 1) * len], tokens, self.dim)
        }
    }

    /// O and P (every head's t×s softmax, kept for the backward pass).
    fn forward(h: &Heads, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let scores = h.queries * h.keys;
        let mut out = vec![0.0f32; h.count() * h.queries * h.dim];
        let mut probabilities = vec![0.0f32; h.count() * scores];
        out.par_chunks_mut(h.queries * h.dim)
            .zip(probabilities.par_chunks_mut(scores))
            .enumerate()
            .for_each(|(i, (out, p))| {
                let (q, k) = (h.matrix(q, i, h.queries), h.matrix(k, i, h.keys));
                matmul_scaled(p, q, k.t(), h.scale);
                for row in p.chunks_exact_mut(h.keys) {
                    Softmax::new_mut(row).dispatch();
                }
                let p = Matrix::row_major(p, h.queries, h.keys);
                matmul(out, p, h.matrix(v, i, h.keys), false, false);
            });
        (out, probabilities)
    }

    /// dQ, dK and dV from Q, K, V, P and dO.
    fn backward(h: &Heads, saved: &Saved, grad: &[f32]) -> [FlexTensor; 3] {
        let (q, k, v) = (values(&saved.q), values(&saved.k), values(&saved.v));
        let (query_len, key_len) = (h.queries * h.dim, h.keys * h.dim);
        let mut dq = vec![0.0f32; h.count() * query_len];
        let mut dk = vec![0.0f32; h.count() * key_len];
        let mut dv = vec![0.0f32; h.count() * key_len];
        dq.par_chunks_mut(query_len)
            .zip(dk.par_chunks_mut(key_len))
            .zip(dv.par_chunks_mut(key_len))
            .enumerate()
            .for_each_init(Vec::new, |scratch, (i, ((dq, dk), dv))| {
                let p_values = &saved.probabilities[i * h.queries * h.keys..][..h.queries * h.keys];
                let p = Matrix::row_major(p_values, h.queries, h.keys);
                let d_out = h.matrix(grad, i, h.queries);
                matmul(dv, p.t(), d_out, false, false);
                scratch.resize(h.queries * h.keys, 0.0);
                matmul(scratch, d_out, h.matrix(v, i, h.keys).t(), false, false);
                for (d_row, p_row) in scratch
                    .chunks_exact_mut(h.keys)
                    .zip(p_values.chunks_exact(h.keys))
                {
                    let dot: f32 = d_row.iter().zip(p_row).map(|(d, p)| d * p).sum();
                    d_row
                        .iter_mut()
                        .zip(p_row)
                        .for_each(|(d, &p)| *d = p * (*d - dot));
                }
                let d_scores = Matrix::row_major(scratch, h.queries, h.keys);
                matmul_scaled(dq, d_scores, h.matrix(k, i, h.keys), h.scale);
                matmul_scaled(dk, d_scores.t(), h.matrix(q, i, h.queries), h.scale);
            });
        [
            flex_tensor(dq, h.shape(h.queries)),
            flex_tensor(dk, h.shape(h.keys)),
            flex_tensor(dv, h.shape(h.keys)),
        ]
    }

    /// The attention node of burn's autodiff graph, with parents Q, K and V.
    #[derive(Debug)]
    struct AttentionBackward;

    /// What the backward pass needs: the sizes, Q, K, V and P.
    #[derive(Debug, Clone)]
    struct Saved {
        heads: Heads,
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        probabilities: std::sync::Arc<Vec<f32>>,
    }

    impl Backward<Flex, 3> for AttentionBackward {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = contiguous(grads.consume::<Flex>(&ops.node));
            let gradients = backward(&ops.state.heads, &ops.state, values(&grad));
            let parents = ops.parents.map(|parent| parent.map(|node| node.id));
            register_gradients(parents, gradients.map(Some), grads);
        }
    }

    /// Attention on `Autodiff<Flex>`: the forward kernel, and [`AttentionBackward`] when any input
    /// needs a gradient.
    fn autodiff(
        heads: Heads,
        q: AutodiffFlexTensor,
        k: AutodiffFlexTensor,
        v: AutodiffFlexTensor,
    ) -> AutodiffFlexTensor {
        let [q_values, k_values, v_values] = [&q, &k, &v].map(|t| contiguous(t.primitive.clone()));
        let (out, probabilities) = forward(
            &heads,
            values(&q_values),
            values(&k_values),
            values(&v_values),
        );
        let out = flex_tensor(out, heads.shape(heads.queries));
        let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
        match AttentionBackward
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let saved = Saved {
                    heads,
                    q: q_values,
                    k: k_values,
                    v: v_values,
                    probabilities: std::sync::Arc::new(probabilities),
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
