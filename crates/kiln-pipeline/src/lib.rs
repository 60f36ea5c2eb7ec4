//! Using a trained diffusion UNet with burn: load it, pick a sampler by name, generate, guide
//! and edit.
//!
//! - [`load_for_sampling`]: a `face_train` run folder (its newest checkpoint, verified against
//!   its checksums), one of its checkpoints, a Kiln UNet `.safetensors` file, or a diffusers
//!   model or pipeline folder with its scheduler config, as a [`SamplingModel`], which
//!   [`SamplingModel::save_diffusers`] saves as a diffusers pipeline folder (`DDPMPipeline`);
//! - [`UNetDenoiser`]: a kiln-unet [`UNet`](kiln_unet::UNet) as kiln-sampler's
//!   [`Denoiser`](kiln_sampler::Denoiser) and
//!   [`ClassConditional`](kiln_sampler::ClassConditional) model, the glue between the two
//!   crates;
//! - [`SamplerName`]: the samplers by the names users type, with diffusers' default settings
//!   ([`sample_by_name`] runs one over any denoiser);
//! - [`generate`] / [`SamplingModel::generate`]: images from seeded noise, unconditionally or
//!   guided towards classes ([`Condition`], classifier-free guidance);
//! - [`edit`]: inpainting, image-to-image, inversion (DDIM's or DPM-Solver++'s) and the morph
//!   between two images;
//! - [`pixels`]: images to tensors in [−1, 1] and back, grids and montages;
//! - [`RunFolder`]: the layout of a run folder, which kiln-train writes and this crate reads,
//!   and [`verify_checkpoint`], its checksums.
//!
//! It depends on kiln-schedule, kiln-forward, kiln-sampler and kiln-unet, never on kiln-train.
//! The library never prints: long operations take a progress callback.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use kiln_pipeline::{Condition, Generation, SamplerName, load_for_sampling, pixels};
//!
//! let device = Default::default();
//! let loaded = load_for_sampling::<Flex>("runs/faces".as_ref(), &device)?;
//! let generation = Generation {
//!     seed: 7,
//!     condition: Condition::Unconditional,
//!     ..Generation::new(SamplerName::DpmSolver, 20, 16, loaded.image_size.unwrap_or(32))
//! };
//! let images = loaded.generate(generation, &device, |_| {})?;
//! pixels::save(&pixels::grid(images, 4, 2)?, "samples.png".as_ref())?;
//! # Ok::<(), kiln_pipeline::PipelineError>(())
//! ```

#![warn(missing_docs)]

mod denoiser;
mod diffusers;
pub mod edit;
mod error;
mod generate;
mod integrity;
mod load;
mod model;
pub mod pixels;
mod run_folder;
mod samplers;

pub use denoiser::UNetDenoiser;
pub use edit::{EditSettings, Inversion, PixelBox};
pub use error::{Damage, PipelineError};
pub use generate::{Condition, Generation, generate};
pub use integrity::{FileDigest, StateFile, verify_checkpoint};
pub use load::load_for_sampling;
pub use model::SamplingModel;
pub use run_folder::{
    CHECKPOINT_FILES, DAMAGED_SUFFIX, EMA_FILE, LATEST, MODEL_FILE, OPTIMIZER_FILE, RunFolder,
    STATE_FILE, checkpoint_name, step_of,
};
pub use samplers::{NamedRun, SamplerName, sample_by_name};
