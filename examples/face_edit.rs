//! Edits real photos with a trained model: fill in a covered part (inpainting), redraw a photo
//! partly (image-to-image), morph one face into another, or check that a face comes back
//! through inversion. Each writes one PNG strip.
//!
//! ```text
//! cargo run --release --example face_edit -- --checkpoint runs/faces \
//!     --inpaint assets/faces/s7/1.png --box 8,14,16,10 --out inpaint.png
//! cargo run --release --example face_edit -- --checkpoint runs/faces \
//!     --img2img assets/faces/s7/1.png --strength 0.5 --out img2img.png
//! cargo run --release --example face_edit -- --checkpoint runs/faces \
//!     --interpolate assets/faces/s7/1.png assets/faces/s12/1.png --frames 8 --out morph.png
//! cargo run --release --example face_edit -- --checkpoint runs/faces \
//!     --reconstruct assets/faces/s7/1.png --out reconstruct.png
//! ```
//!
//! Photos are centre-cropped and resized to the model's training size. Inpainting samples with
//! DDPM (RePaint, resampling with `--jump`/`--repeats`) and shows the photo, its known part
//! and `--count` fillings; image-to-image samples with DDIM and shows the photo and `--count`
//! results; the morph inverts both photos (exactly with DDIM, or as `--inversion` says) and
//! shows `--frames` frames along the slerp between their noises (the first and last are the
//! photos again); reconstruction shows the photo and its plain and exact DDIM inversions and
//! its DPM-Solver++(2M) inversion sampled back. See docs/editing.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::{ElementConversion, Tensor, backend::Backend};
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::pipeline::edit::{box_mask, image_mask};
use kiln::pipeline::{
    EditSettings, Inversion, PipelineError, PixelBox, SamplingModel, load_for_sampling, pixels,
};
use kiln::sampler::{InversionMethod, InversionStep, Resampling};

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/exit.rs"]
mod exit;

/// Edits photos with a trained diffusion model.
#[derive(Parser, Debug)]
#[command(group = clap::ArgGroup::new("edit").required(true))]
struct Args {
    /// A face_train run folder, a checkpoint folder, a Kiln UNet .safetensors file or a
    /// diffusers model folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Fill in part of this photo (the part given by --mask or --box).
    #[arg(long, group = "edit")]
    inpaint: Option<PathBuf>,
    /// For --inpaint: a mask image of the photo's size, white where the photo is kept.
    #[arg(long, conflicts_with = "area")]
    mask: Option<PathBuf>,
    /// For --inpaint: the rectangle to fill, as x,y,width,height in model pixels.
    #[arg(long = "box", value_delimiter = ',', id = "area")]
    area: Vec<usize>,
    /// For --inpaint: RePaint's jump length (steps between jumps back).
    #[arg(long, default_value_t = 10)]
    jump: usize,
    /// For --inpaint: how many times each stretch of steps is taken (1: no resampling).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Redraw this photo from partly noised (SDEdit).
    #[arg(long, group = "edit")]
    img2img: Option<PathBuf>,
    /// For --img2img: the noise level in [0, 1] to redraw from (0: the photo, 1: a new face).
    #[arg(long, default_value_t = 0.5)]
    strength: f64,
    /// Morph between two photos through their inverted noises.
    #[arg(long, group = "edit", num_args = 2, value_names = ["A", "B"])]
    interpolate: Vec<PathBuf>,
    /// For --interpolate: frames, both photos included.
    #[arg(long, default_value_t = 8)]
    frames: usize,
    /// Invert this photo (DDIM plain and exact, DPM-Solver++(2M)) and sample it back.
    #[arg(long, group = "edit")]
    reconstruct: Option<PathBuf>,
    /// For --interpolate: how to invert the photos (and decode the frames). --reconstruct
    /// shows plain, exact and dpm++2m.
    #[arg(long, value_enum, default_value_t = InversionChoice::Exact)]
    inversion: InversionChoice,
    /// Sampler steps (DDPM for inpainting, DDIM or the inversion's sampler otherwise).
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Fixed-point iterations of exact inversion.
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// Results per edit (inpainting and image-to-image).
    #[arg(long, default_value_t = 4)]
    count: usize,
    /// Seed of all noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// flex, ndarray, wgpu[:N] or cuda[:N] (GPU backends need `--features wgpu|cuda`).
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    /// The PNG strip to write.
    #[arg(long, default_value = "edit.png")]
    out: PathBuf,
}

/// The inversions `--inversion` names.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum InversionChoice {
    /// DDIM, each step undone by fixed-point iteration (--iterations more model calls a step).
    Exact,
    /// DDIM, each step undone with the model's output at its start (diffusers' inversion).
    Plain,
    /// DPM-Solver++(2M) over λ-uniform steps, run up and back down.
    #[value(name = "dpm++2m")]
    DpmPlusPlus2m,
    /// DPM-Solver++(3M) over λ-uniform steps.
    #[value(name = "dpm++3m")]
    DpmPlusPlus3m,
}

impl InversionChoice {
    /// The pipeline's inversion, with exact inversion's `iterations`.
    fn inversion(self, iterations: usize) -> Inversion {
        match self {
            Self::Exact => Inversion::Ddim(InversionMethod::Exact { iterations }),
            Self::Plain => Inversion::Ddim(InversionMethod::Plain),
            Self::DpmPlusPlus2m => Inversion::DpmSolverPlusPlus { order: 2 },
            Self::DpmPlusPlus3m => Inversion::DpmSolverPlusPlus { order: 3 },
        }
    }
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let args = Args::parse();
    exit::exit_code(run_on(args.device, Editing(args)))
}

struct Editing(Args);

type Outcome<T = ()> = Result<T, Box<dyn std::error::Error>>;

impl BackendTask for Editing {
    type Output = Outcome;

    fn run<B: Backend>(self, device: B::Device) -> Outcome {
        let args = self.0;
        let loaded = load_for_sampling::<B>(&args.checkpoint, &device)?;
        let size = loaded
            .image_size
            .ok_or("this checkpoint does not record its image size")?;
        let edit = Edit {
            args: &args,
            loaded: &loaded,
            size,
            device: &device,
        };
        let tiles = if let Some(photo) = &args.inpaint {
            edit.inpaint(photo)?
        } else if let Some(photo) = &args.img2img {
            edit.image_to_image(photo)?
        } else if let [a, b] = args.interpolate.as_slice() {
            edit.morph(a, b)?
        } else if let Some(photo) = &args.reconstruct {
            edit.reconstruct(photo)?
        } else {
            return Err(
                "choose an edit: --inpaint, --img2img, --interpolate or --reconstruct".into(),
            );
        };
        let count = tiles.dims()[0];
        pixels::save(&pixels::grid(tiles, count, 2)?, &args.out)?;
        println!("wrote {}", args.out.display());
        Ok(())
    }
}

/// One edit's settings and model.
struct Edit<'a, B: Backend> {
    args: &'a Args,
    loaded: &'a SamplingModel<B>,
    size: usize,
    device: &'a B::Device,
}

impl<B: Backend> Edit<'_, B> {
    fn photo(&self, path: &Path) -> Result<Tensor<B, 4>, PipelineError> {
        self.loaded.photo(path, self.size, self.device)
    }

    fn settings(&self) -> EditSettings {
        EditSettings {
            steps: self.args.steps,
            seed: self.args.seed,
        }
    }

    /// The photo, its known part (the rest grey) and the fillings.
    fn inpaint(&self, path: &Path) -> Outcome<Tensor<B, 4>> {
        let photo = self.photo(path)?;
        let mask = match (&self.args.mask, self.args.area.as_slice()) {
            (Some(file), _) => image_mask(file, photo.dims()[1], self.device)?,
            (None, &[x, y, width, height]) => {
                let area = PixelBox {
                    x,
                    y,
                    width,
                    height,
                };
                box_mask(photo.dims(), area, self.device)?
            }
            _ => return Err("--inpaint needs --mask FILE or --box x,y,width,height".into()),
        };
        let resampling = Resampling {
            jump_length: self.args.jump,
            repeats: self.args.repeats,
        };
        let filled = self.loaded.inpaint(
            photo.clone(),
            mask.clone(),
            self.args.count,
            resampling,
            self.settings(),
            |event| eprint!("\rinpainting: step {}/{}", event.index + 1, event.steps),
        )?;
        eprintln!();
        // The unknown part shows as mid-grey (0).
        let known = photo.clone() * mask;
        Ok(Tensor::cat(vec![photo, known, filled], 0))
    }

    /// The photo and the redrawn versions.
    fn image_to_image(&self, path: &Path) -> Outcome<Tensor<B, 4>> {
        let photo = self.photo(path)?;
        let redrawn = self.loaded.image_to_image(
            photo.clone(),
            self.args.count,
            self.args.strength,
            self.settings(),
            |event| eprint!("\rimage-to-image: step {}/{}", event.index + 1, event.steps),
        )?;
        eprintln!();
        Ok(Tensor::cat(vec![photo, redrawn], 0))
    }

    /// The frames of the morph from photo `a` to photo `b`.
    fn morph(&self, a: &Path, b: &Path) -> Outcome<Tensor<B, 4>> {
        let inversion = self.args.inversion.inversion(self.args.iterations);
        let frames = self.loaded.interpolate(
            self.photo(a)?,
            self.photo(b)?,
            self.args.frames,
            inversion,
            self.settings(),
            progress("inverting"),
        )?;
        eprintln!();
        Ok(frames)
    }

    /// The photo, sampled back from its plain and its exact DDIM inversion and from its
    /// DPM-Solver++(2M) inversion.
    fn reconstruct(&self, path: &Path) -> Outcome<Tensor<B, 4>> {
        let photo = self.photo(path)?;
        let mut tiles = vec![photo.clone()];
        for choice in [
            InversionChoice::Plain,
            InversionChoice::Exact,
            InversionChoice::DpmPlusPlus2m,
        ] {
            let inversion = choice.inversion(self.args.iterations);
            let noise = self.loaded.invert(
                photo.clone(),
                inversion,
                self.args.steps,
                progress("inverting"),
            )?;
            let back = self
                .loaded
                .decode(noise, inversion, self.settings(), |_| {})?;
            eprintln!();
            let error: f32 = (back.clone() - photo.clone())
                .powi_scalar(2)
                .mean()
                .sqrt()
                .into_scalar()
                .elem();
            println!("{inversion:?}: RMS difference from the photo {error:.2e} (pixel range 2)");
            tiles.push(back);
        }
        Ok(Tensor::cat(tiles, 0))
    }
}

/// A progress line for the steps of an inversion.
fn progress(what: &'static str) -> impl FnMut(InversionStep) {
    move |step| eprint!("\r{what}: step {}/{}", step.done, step.steps)
}
