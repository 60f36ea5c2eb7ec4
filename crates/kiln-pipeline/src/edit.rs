//! Editing real images with a trained model: inpainting (RePaint), image-to-image (SDEdit),
//! inversion (DDIM's or DPM-Solver++'s) and the morph between two inverted images (see
//! docs/editing.md).
//!
//! Each edit checks its settings before the model runs: a box that leaves the image or has no
//! area, a mask of another size, fewer than two frames or no results at all are
//! [`PipelineError`]s naming the setting.

use std::path::Path;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use kiln_sampler::{
    Ddim, DdimConfig, Ddpm, DdpmConfig, DpmSolver, DpmSolverConfig, InversionMethod, InversionStep,
    Resampling, SampleClipping, Sampler, SigmaSpacing, StepEvent, VarianceType, image_to_image,
    inpaint, invert, sample, slerp,
};
use rand::{SeedableRng, rngs::StdRng};

use crate::{PipelineError, SamplingModel, pixels};

/// The sampler steps of an edit and the seed of all its noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditSettings {
    /// Sampler steps: DDPM for inpainting, DDIM for everything else.
    pub steps: usize,
    /// The seed of every random draw.
    pub seed: u64,
}

/// How [`SamplingModel::invert`] finds the noise an image comes from, and so which
/// deterministic sampler [`SamplingModel::decode`] takes that noise back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inversion {
    /// DDIM's steps undone one by one ([`kiln_sampler::invert`]: plain, one model call a
    /// step, or exact, solved by fixed-point iteration), decoded by DDIM.
    Ddim(InversionMethod),
    /// DPM-Solver++ of this multistep order (1–3) over steps uniform in λ = log(α/σ), run from
    /// the image up ([`DpmSolver::inverse`]) and decoded by the same solver run down: one model
    /// call a step (one fewer for the inversion, which starts at the image's own level) and a
    /// closer round trip than plain DDIM's in as many (docs/editing.md).
    DpmSolverPlusPlus {
        /// The multistep order.
        order: usize,
    },
}

impl Inversion {
    /// The DPM-Solver++ both directions use.
    fn dpm_solver(order: usize) -> DpmSolverConfig {
        DpmSolverConfig {
            solver_order: order,
            sigma_spacing: SigmaSpacing::Exponential,
            ..DpmSolverConfig::default()
        }
    }
}

/// A rectangle of pixels: `width` × `height` from column `x`, row `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelBox {
    /// The first column.
    pub x: usize,
    /// The first row.
    pub y: usize,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl<B: Backend> SamplingModel<B> {
    /// The photo at `path` as a `[1, channels, size, size]` tensor in [−1, 1]: centre-cropped
    /// to a square, resized to `size`, checked against the model.
    pub fn photo(
        &self,
        path: &Path,
        size: usize,
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, PipelineError> {
        let image = pixels::center_square(&pixels::open(path)?, Some(size as u32));
        let channels = self.model.in_channels();
        let x = pixels::to_tensor::<B>(&image, channels, device)?.unsqueeze_dim(0);
        self.model.check_input_shape(&x)?;
        Ok(x)
    }

    /// `count` fillings of the part of `photo` (`[1, C, H, W]`) where `mask` is 0 (1: kept),
    /// sampled with DDPM (with the model's variance where it learns one) and RePaint's
    /// `resampling` (Lugmayr et al. 2022).
    pub fn inpaint(
        &self,
        photo: Tensor<B, 4>,
        mask: Tensor<B, 4>,
        count: usize,
        resampling: Resampling,
        settings: EditSettings,
        on_step: impl FnMut(StepEvent<'_, B, 4>),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        if mask.dims() != photo.dims() {
            return Err(PipelineError::edit(
                "mask",
                format!(
                    "{:?} pixels; the photo is {:?} at the model's size",
                    &mask.dims()[2..],
                    &photo.dims()[2..]
                ),
            ));
        }
        let photos = self.repeat(photo, count)?;
        let config = DdpmConfig {
            variance_type: VarianceType::default_for(self.model.learns_variance()),
            ..DdpmConfig::default()
        };
        let mut ddpm = Ddpm::new(config, &self.schedule, settings.steps)?;
        Ok(inpaint(
            &mut ddpm,
            &self.denoiser(),
            &self.schedule,
            photos,
            mask.repeat_dim(0, count),
            Some(resampling),
            &mut StdRng::seed_from_u64(settings.seed),
            on_step,
        )?)
    }

    /// `count` redrawings of `photo` (`[1, C, H, W]`) from noise level `strength` ∈ [0, 1]
    /// with DDIM (SDEdit, Meng et al. 2022).
    pub fn image_to_image(
        &self,
        photo: Tensor<B, 4>,
        count: usize,
        strength: f64,
        settings: EditSettings,
        on_step: impl FnMut(StepEvent<'_, B, 4>),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        let photos = self.repeat(photo, count)?;
        Ok(image_to_image(
            &mut self.ddim(settings.steps)?,
            &self.denoiser(),
            &self.schedule,
            photos,
            strength,
            &mut StdRng::seed_from_u64(settings.seed),
            on_step,
        )?)
    }

    /// The noise that `inversion`'s deterministic sampler in `steps` steps takes to `images`;
    /// [`Self::decode`] with the same `inversion` and steps takes it back.
    pub fn invert(
        &self,
        images: Tensor<B, 4>,
        inversion: Inversion,
        steps: usize,
        mut on_step: impl FnMut(InversionStep),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        self.model.check_input_shape(&images)?;
        let denoiser = self.denoiser();
        let noise = match inversion {
            Inversion::Ddim(method) => {
                invert(&self.ddim(steps)?, &denoiser, images, method, on_step)?
            }
            Inversion::DpmSolverPlusPlus { order } => {
                let config = Inversion::dpm_solver(order);
                let mut inverse = DpmSolver::inverse(config, &self.schedule, steps)?;
                // Each step reaches the next call's level, the last where sampling starts.
                let start = DpmSolver::<B, 4>::new(config, &self.schedule, steps)?.timesteps()[0];
                let reached: Vec<f64> = inverse.timesteps()[1..]
                    .iter()
                    .copied()
                    .chain([start])
                    .collect();
                // The ODE solver draws nothing from the generator.
                let mut rng = StdRng::seed_from_u64(0);
                sample(&mut inverse, &denoiser, images, &mut rng, |event| {
                    on_step(InversionStep {
                        done: event.index + 1,
                        steps: event.steps,
                        timestep: reached[event.index],
                        residual: None,
                    })
                })?
            }
        };
        Ok(noise)
    }

    /// `inversion`'s deterministic sampler from `noise` (x_T) to images: the inverse of
    /// [`Self::invert`] with the same `inversion` and `settings.steps` as its steps (other
    /// steps decode along another grid, away from the inverted images).
    pub fn decode(
        &self,
        noise: Tensor<B, 4>,
        inversion: Inversion,
        settings: EditSettings,
        on_step: impl FnMut(StepEvent<'_, B, 4>),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        self.model.check_input_shape(&noise)?;
        let mut rng = StdRng::seed_from_u64(settings.seed);
        let denoiser = self.denoiser();
        let images = match inversion {
            Inversion::Ddim(_) => {
                let mut ddim = self.ddim(settings.steps)?;
                sample(&mut ddim, &denoiser, noise, &mut rng, on_step)?
            }
            Inversion::DpmSolverPlusPlus { order } => {
                let config = Inversion::dpm_solver(order);
                let mut solver = DpmSolver::new(config, &self.schedule, settings.steps)?;
                sample(&mut solver, &denoiser, noise, &mut rng, on_step)?
            }
        };
        Ok(images)
    }

    /// `frames` images (at least 2) morphing from `a` to `b` (each `[1, C, H, W]`): both are
    /// inverted by `inversion`, their noises joined by spherical interpolation ([`slerp`]) and
    /// each point decoded; the first and last frames are the images again, up to the
    /// inversion's error.
    pub fn interpolate(
        &self,
        a: Tensor<B, 4>,
        b: Tensor<B, 4>,
        frames: usize,
        inversion: Inversion,
        settings: EditSettings,
        on_inversion: impl FnMut(InversionStep),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        if frames < 2 {
            return Err(PipelineError::edit(
                "frames",
                format!("{frames}; a morph has at least 2 (its two ends)"),
            ));
        }
        if a.dims() != b.dims() || a.dims()[0] != 1 {
            return Err(PipelineError::edit(
                "the images to morph",
                format!(
                    "{:?} and {:?}; expected one image each, of one shape",
                    a.dims(),
                    b.dims()
                ),
            ));
        }
        let ends = Tensor::cat(vec![a, b], 0);
        let noise = self.invert(ends, inversion, settings.steps, on_inversion)?;
        let (first, last) = (noise.clone().narrow(0, 0, 1), noise.narrow(0, 1, 1));
        let path = (0..frames)
            .map(|k| slerp(first.clone(), last.clone(), k as f64 / (frames - 1) as f64))
            .collect::<Result<Vec<_>, _>>()?;
        self.decode(Tensor::cat(path, 0), inversion, settings, |_| {})
    }

    /// DDIM for editing: deterministic, x̂_0 unclipped, so that inversion undoes it.
    fn ddim(&self, steps: usize) -> Result<Ddim, PipelineError> {
        let config = DdimConfig {
            clipping: SampleClipping::thresholding_only(None),
            ..DdimConfig::default()
        };
        Ok(Ddim::new(config, &self.schedule, steps)?)
    }

    /// `count` copies of `photo` along the batch, at least one.
    fn repeat(&self, photo: Tensor<B, 4>, count: usize) -> Result<Tensor<B, 4>, PipelineError> {
        let [_, channels, height, width] = photo.dims();
        self.model.check_shape([count, channels, height, width])?;
        Ok(photo.repeat_dim(0, count))
    }
}

/// An inpainting mask of shape `dims` (`[batch, C, H, W]`): 0 inside `area` (the part to fill),
/// 1 elsewhere, the same for every sample. The box must lie inside the image and have an area.
pub fn box_mask<B: Backend>(
    dims: [usize; 4],
    area: PixelBox,
    device: &B::Device,
) -> Result<Tensor<B, 4>, PipelineError> {
    let [batch, channels, height, width] = dims;
    let PixelBox {
        x,
        y,
        width: w,
        height: h,
    } = area;
    if w == 0 || h == 0 {
        return Err(PipelineError::edit(
            "box",
            format!("{w}×{h} pixels has no area to fill"),
        ));
    }
    if w > width.saturating_sub(x) || h > height.saturating_sub(y) {
        return Err(PipelineError::edit(
            "box",
            format!(
                "{w}×{h} pixels from column {x}, row {y} reach outside the {width}×{height} image"
            ),
        ));
    }
    let values: Vec<f32> = (0..channels * height * width)
        .map(|i| {
            let (row, column) = ((i / width) % height, i % width);
            let inside = (x..x + w).contains(&column) && (y..y + h).contains(&row);
            if inside { 0.0 } else { 1.0 }
        })
        .collect();
    let one = Tensor::from_data(
        TensorData::new(values, [1, channels, height, width]),
        device,
    );
    Ok(one.repeat_dim(0, batch))
}

/// An inpainting mask from the image at `path`: white (1) where the photo is kept, black (0)
/// where it is filled; `channels` as the model's.
pub fn image_mask<B: Backend>(
    path: &Path,
    channels: usize,
    device: &B::Device,
) -> Result<Tensor<B, 4>, PipelineError> {
    let image = pixels::open(path)?;
    let mask = pixels::to_tensor::<B>(&image, channels, device)?;
    // Pixels in [−1, 1] to [0, 1].
    Ok(mask.add_scalar(1.0).div_scalar(2.0).unsqueeze_dim(0))
}
