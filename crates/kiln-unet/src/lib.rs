//! The noise-prediction UNet of Ho et al. 2020 and Nichol & Dhariwal 2021, laid out exactly as
//! diffusers' `UNet2DModel` so that its checkpoints map onto it one tensor at a time.
//!
//! ```text
//! x ─ conv_in ─┬─ down level 0 ─┬─ … ─ down level L−1 ─ mid (res, attn, res) ─ up level L−1 ─ … ─ up level 0 ─ norm, SiLU, conv_out ─ output
//!              └── skip connections: every down resnet/attention/downsampler output feeds an up resnet ──┘
//! t ─ sinusoidal embedding ─ MLP ─(+ class embedding)─ added to (or scale-shifting) every resnet
//! ```
//!
//! Each level has `layers_per_block` residual blocks (GroupNorm, SiLU, 3×3 conv, time embedding,
//! GroupNorm, SiLU, dropout, 3×3 conv, skip), optional multi-head self-attention after each, and
//! a stride-2 conv (down) or nearest ×2 + conv (up) between levels. [`UNetConfig`] holds the
//! architecture; [`UNet`] is the module.

#![warn(missing_docs)]

mod attention;
mod checkpoint;
mod config;
mod diffusers;
mod embedding;
mod error;
mod norm;
mod preset;
mod resample;
mod resnet;
mod unet;

pub use attention::AttentionBlock;
pub use checkpoint::{load_checkpoint, load_weights, read_config, save_checkpoint};
pub use config::UNetConfig;
pub use diffusers::{load_diffusers, save_diffusers};
pub use embedding::{TimestepEmbedding, sinusoidal_embedding};
pub use error::UNetError;
pub use preset::UNetPreset;
pub use resample::{Downsample, Upsample};
pub use resnet::ResnetBlock;
pub use unet::{DownLevel, MidBlock, UNet, UpLevel};
