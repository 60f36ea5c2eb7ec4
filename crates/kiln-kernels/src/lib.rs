//! Kiln's own CPU kernels, as an extension of burn's Flex backend.
//!
//! burn 0.21's Flex backend wraps its convolutions in layout copies and computes their input
//! gradient through a scalar col2im, computes `exp` and `sigmoid` one scalar at a time on one
//! thread, splits softmax into five ops under autodiff, and applies GroupNorm's γ and β with a
//! slow middle-dimension broadcast (`docs/performance-history.md` has the profile). This crate
//! replaces the ops a UNet is made of with its own kernels:
//!
//! | op | forward | backward |
//! | --- | --- | --- |
//! | [`multi_head_attention`] | per head of packed Q, K, V: c·QKᵀ into a per-thread buffer, exp(S − max) in place, E·V (`gemm`, strided) divided by the row sums; keeps the row log-sum-exps | P recomputed as exp(S − lse); dV = PᵀdO, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = c·dS K, dK = c·dSᵀQ |
//! | [`conv2d`] | per image: im2col, then W·X̃ (`gemm`) | dW = Σ dY·X̃ᵀ (stride 1: one product per run of taps along a kernel row, over the padded image stored pixel-major); dx = dY convolved with the turned W (stride 1), col2im(Wᵀ·dY) otherwise |
//! | [`silu`] | x·σ(x), SIMD `exp` | g·σ(x)·(1 + x·(1 − σ(x))) |
//! | [`dropout`] | x·m/(1 − p), the mask m hashed from a key (drawn, or its pass's: [`with_dropout_key`]) and each element's index | g·m/(1 − p), m recomputed from the key |
//! | [`cat_channels`] | each image's two channel blocks copied side by side | dy's two blocks copied into two contiguous tensors |
//! | [`pixels_to_tokens`], [`tokens_to_pixels`] | `[b, c, h, w]` ↔ `[b, h·w, c]` transposed into a contiguous tensor in 16 × 16 tiles | the opposite transpose |
//! | [`softmax`] (last dimension) | one pass per row, SIMD `exp` | s ⊙ (g − ⟨g, s⟩) per row |
//! | [`group_norm`] | mean and variance per (batch, group), then the affine map | the closed-form gradient of all three inputs |
//!
//! [`mix`], the hash behind the dropout masks, is exported too: Kiln's trainer derives its
//! other seeds (each step's, each epoch's) with it.
//!
//! Each runs on images, heads, rows or chunks of a contiguous `f32` buffer split over rayon's
//! threads, with the `gemm` crate's products and `rten-vecmath`'s SIMD `exp` and sums (AVX-512,
//! AVX2 or NEON chosen at run time). Each file's doc comment gives the op's math, layout and
//! blocking.
//!
//! # How an op picks its kernel
//! Every op is a function generic over `B: Backend`, so a model written with them (Kiln's UNet)
//! runs unchanged on any backend. When `B` is `Flex` or `Autodiff<Flex>` and the tensor is
//! `f32`, the op runs Kiln's kernel (under autodiff with the hand-written backward registered as
//! one node of burn's graph); on every other backend (wgpu, CUDA, ndarray, a user's own) and
//! dtype it runs burn's own ops, exactly as the model did before. The choice is made by type
//! ([`std::any::TypeId`]) in one place, `route.rs`: stable Rust has no specialisation, and a
//! trait bound such as `B: KilnBackend` would have to be implemented for every backend a user
//! brings, which the orphan rule forbids for backends the user does not own.
//!
//! # Threads
//! The kernels split their work over the current rayon pool. A program gets the most from them
//! by running its model's work on a worker thread ([`on_worker_thread`], which gives each
//! calling thread a pool of its own); Kiln's trainer and sampler do so.
//!
//! The kernels are checked against burn's ops, values and gradients, on random inputs with
//! awkward shapes (`tests/kernels.rs`).

#![warn(missing_docs)]

mod attention;
mod concat;
mod conv;
mod dropout;
#[cfg(feature = "flex")]
mod gemm;
mod group_norm;
mod mix;
#[cfg(feature = "flex")]
mod node;
#[cfg(feature = "flex")]
mod parallel;
#[cfg(feature = "flex")]
mod route;
mod silu;
mod softmax;
mod threads;
mod tokens;
#[cfg(feature = "flex")]
mod unary;

pub use attention::multi_head_attention;
pub use concat::cat_channels;
pub use conv::conv2d;
pub use dropout::{DropoutKey, dropout, with_dropout_key};
pub use group_norm::group_norm;
pub use mix::mix;
pub use silu::silu;
pub use softmax::softmax;
pub use threads::on_worker_thread;
pub use tokens::{pixels_to_tokens, tokens_to_pixels};
