//! Kiln: diffusion models for [burn](https://burn.dev).
//!
//! This facade re-exports the member crates, each generic over burn's `Backend`:
//! - [`schedule`] (`kiln-schedule`): β schedules and every table derived from them;
//! - [`forward`] (`kiln-forward`): the forward process on tensors, prediction targets and
//!   loss weights;
//! - [`sampler`] (`kiln-sampler`): the `Denoiser` trait, the samplers (DDPM, DDIM, PNDM,
//!   Euler, Euler ancestral, Heun, DPM-Solver and DPM-Solver++, UniPC), editing, inversion, guidance and an
//!   exact Gaussian-mixture denoiser for testing them;
//! - [`unet`] (`kiln-unet`): the noise-prediction UNet, diffusers checkpoint import and Kiln's
//!   own self-describing checkpoints;
//! - [`pipeline`] (`kiln-pipeline`): using a trained model: load a run, a checkpoint or a
//!   diffusers folder, the samplers by name, generation with or without guidance, editing;
//!   [`pixels`] (images to tensors in [−1, 1] and back) is its module;
//! - [`train`] (`kiln-train`): image-folder datasets, the training loop with EMA and
//!   checkpoints, sample grids;
//! - [`metrics`] (`kiln-metrics`): sample quality over any feature extractor: Fréchet distance,
//!   KID, precision and recall, memorisation;
//! - [`distill`] (`kiln-distill`): few-step students of a trained model (progressive
//!   distillation's rounds, consistency distillation);
//!
//! and adds what the examples and benches share: [`device`] (pick a backend by name at run
//! time), [`npy`] (arrays to and from NumPy files), [`timing`] (median wall times) and, with a
//! GPU backend, `gpu_cache` (where compiled and autotuned kernels are kept between runs).
//!
//! Backends are Cargo features: `flex` (default, pure-Rust CPU), `ndarray`, `wgpu` (Vulkan,
//! Metal, DX12, WebGPU) and `cuda`.

#![warn(missing_docs)]

pub mod device;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod gpu_cache;
pub mod npy;
pub mod timing;

pub use kiln_distill as distill;
pub use kiln_forward as forward;
pub use kiln_kernels as kernels;
pub use kiln_metrics as metrics;
pub use kiln_pipeline as pipeline;
pub use kiln_pipeline::pixels;
pub use kiln_sampler as sampler;
pub use kiln_schedule as schedule;
pub use kiln_train as train;
pub use kiln_unet as unet;
