//! Editing real images with any sampler: image-to-image (SDEdit), inpainting (RePaint) and
//! spherical interpolation of noise (for morphs between inverted images, see [`crate::invert`]).
//!
//! Both editors place a real image x_0 at a sampler's step i by the forward process,
//! x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε at the step's timestep t (ᾱ_t = 1/(1 + σ(t)²), σ interpolated
//! as [`NoiseSchedule::sigma_at`] does for fractional timesteps), divided by
//! [`Sampler::model_input_scale`] for samplers whose state is x_0 + σ ε.

use burn::tensor::{ElementConversion, Tensor, TensorData, backend::Backend};
use kiln_forward::standard_normal;
use kiln_schedule::NoiseSchedule;
use rand::Rng;

use crate::error::check_range;
use crate::sampler::{StepEvent, alpha_cumprod_at, linear, sample, sample_from, step_once};
use crate::{Denoiser, Sampler, SamplerError};

/// ᾱ of the sampler's state before step `index` (1, the clean data, after the last step).
fn level<B: Backend, const D: usize, S: Sampler<B, D>>(
    sampler: &S,
    schedule: &NoiseSchedule,
    index: usize,
) -> f64 {
    sampler
        .timesteps()
        .get(index)
        .map_or(1.0, |&timestep| alpha_cumprod_at(schedule, timestep))
}

/// The sampler's state scale before step `index` (1 after the last step).
fn state_scale<B: Backend, const D: usize, S: Sampler<B, D>>(sampler: &S, index: usize) -> f64 {
    if index < sampler.timesteps().len() {
        sampler.model_input_scale(index)
    } else {
        1.0
    }
}

/// `data` noised with `noise` to the sampler's state before step `index`.
fn noised_state<B: Backend, const D: usize, S: Sampler<B, D>>(
    sampler: &S,
    schedule: &NoiseSchedule,
    index: usize,
    data: &Tensor<B, D>,
    noise: &Tensor<B, D>,
) -> Tensor<B, D> {
    let alpha = level(sampler, schedule, index);
    let scale = state_scale(sampler, index);
    linear(
        data,
        alpha.sqrt() / scale,
        noise,
        (1.0 - alpha).sqrt() / scale,
    )
}

/// Image-to-image translation by SDEdit (Meng et al. 2022): `image` is noised to the level of
/// `strength` ∈ [0, 1] and sampled from there, so the result keeps the image's coarse layout
/// and takes the model's details.
///
/// The sampler's model calls at timesteps below strength · T run (T training timesteps: on
/// the usual grids the last ⌊N · strength⌋ of N steps, as diffusers' `strength`), starting
/// from `image` noised to the first of them that can begin a trajectory (the first call of a
/// Heun, DPM2 or DPM-Solver++ SDE step, the start of a PNDM step). Strength 0 returns `image`; strength 1 ignores it and
/// samples from the noise, exactly as [`sample`] does. The noise is drawn from `rng` first,
/// then the sampler's own randomness.
pub fn image_to_image<B, const D: usize, S, M, R>(
    sampler: &mut S,
    denoiser: &M,
    schedule: &NoiseSchedule,
    image: Tensor<B, D>,
    strength: f64,
    rng: &mut R,
    on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError>
where
    B: Backend,
    S: Sampler<B, D>,
    M: Denoiser<B, D>,
    R: Rng + ?Sized,
{
    check_range("strength", strength, 0.0..=1.0, "a strength in [0, 1]")?;
    let below = strength * schedule.num_timesteps() as f64;
    let steps = sampler.timesteps().len();
    let Some(first) = sampler.timesteps().iter().position(|&t| t < below) else {
        return Ok(image);
    };
    let noise = standard_normal::<B, D>(image.dims(), rng, &image.device());
    if first == 0 {
        return sample(sampler, denoiser, noise, rng, on_step);
    }
    let Some(start) = (first..steps).find(|&index| sampler.restart(index).is_ok()) else {
        return Ok(image);
    };
    let state = noised_state(sampler, schedule, start, &image, &noise);
    sample_from(sampler, denoiser, state, start, rng, on_step)
}

/// RePaint's resampling (Lugmayr et al. 2022, §4.2): after every `jump_length` steps, go back
/// `jump_length` steps by the forward process and take them again, `repeats` times in all,
/// so the generated region has time to agree with the known one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resampling {
    /// Steps between jumps back, and the length of each jump (RePaint's j).
    pub jump_length: usize,
    /// How many times each stretch of steps is taken (RePaint's r; 1 is no resampling).
    pub repeats: usize,
}

/// Inpainting by RePaint (Lugmayr et al. 2022): sampling from noise where, after every step,
/// the region `mask` marks as known (1) is replaced by `image` noised to the step's level,
///
/// ```text
/// x_{t'} ← m ⊙ (√ᾱ_{t'} x_0 + √(1 − ᾱ_{t'}) ε') + (1 − m) ⊙ x_{t'}
/// ```
///
/// so the unknown region (0) is generated to fit the known one; after the last step the known
/// region is `image` exactly. With `resampling`, stretches of steps are taken again after
/// jumping back by the forward process, x_{t''} = √(ᾱ_{t''}/ᾱ_{t'}) x_{t'} +
/// √(1 − ᾱ_{t''}/ᾱ_{t'}) z. `mask` has the shape of `image` (values in [0, 1] blend). All
/// noise comes from `rng`.
#[allow(clippy::too_many_arguments)]
pub fn inpaint<B, const D: usize, S, M, R>(
    sampler: &mut S,
    denoiser: &M,
    schedule: &NoiseSchedule,
    image: Tensor<B, D>,
    mask: Tensor<B, D>,
    resampling: Option<Resampling>,
    rng: &mut R,
    mut on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError>
where
    B: Backend,
    S: Sampler<B, D>,
    M: Denoiser<B, D>,
    R: Rng + ?Sized,
{
    if mask.dims() != image.dims() {
        return Err(SamplerError::ShapeMismatch {
            what: "mask",
            expected: image.dims().to_vec(),
            found: mask.dims().to_vec(),
        });
    }
    let Resampling {
        jump_length,
        repeats,
    } = resampling.unwrap_or(Resampling {
        jump_length: 1,
        repeats: 1,
    });
    check_range(
        "jump_length",
        jump_length as f64,
        1.0..=f64::MAX,
        "at least 1",
    )?;
    check_range("repeats", repeats as f64, 1.0..=f64::MAX, "at least 1")?;
    let steps = sampler.timesteps().len();
    let dims = image.dims();
    let device = image.device();
    let keep = mask.clone().neg().add_scalar(1.0);
    // Replaces the known region of a state before step `index`.
    let known = |sampler: &S, x: Tensor<B, D>, index: usize, rng: &mut R| {
        let data = if index == steps {
            image.clone()
        } else {
            let noise = standard_normal::<B, D>(dims, rng, &device);
            noised_state(sampler, schedule, index, &image, &noise)
        };
        mask.clone() * data + keep.clone() * x
    };

    sampler.restart(0)?;
    let noise = standard_normal::<B, D>(dims, rng, &device);
    let mut x = known(
        sampler,
        noise.mul_scalar(sampler.init_noise_sigma()),
        0,
        rng,
    );
    // How often the stretch ending at each step has been taken.
    let mut taken = vec![1usize; steps + 1];
    let mut index = 0;
    while index < steps {
        let (timestep, step) = step_once(sampler, denoiser, x, index, rng)?;
        on_step(StepEvent {
            index,
            steps,
            timestep,
            sample: &step.sample,
            denoised: &step.denoised,
        });
        index += 1;
        x = known(sampler, step.sample, index, rng);
        let back = index.saturating_sub(jump_length);
        if index % jump_length == 0 && taken[index] < repeats {
            taken[index] += 1;
            // Jump back to the state before step `back`, in VP scale.
            let ratio = level(sampler, schedule, back) / level(sampler, schedule, index);
            let vp = x.mul_scalar(state_scale(sampler, index));
            let z = standard_normal::<B, D>(dims, rng, &device);
            let vp = linear(&vp, ratio.sqrt(), &z, (1.0 - ratio).sqrt());
            x = vp.div_scalar(state_scale(sampler, back));
            sampler.restart(back)?;
            index = back;
        }
    }
    Ok(x)
}

/// Spherical linear interpolation (Shoemake 1985) between `a` and `b` at `weight` ∈ [0, 1],
/// per batch element:
///
/// ```text
/// slerp(a, b; w) = sin((1 − w) θ)/sin θ · a + sin(w θ)/sin θ · b,   cos θ = ⟨a, b⟩/(‖a‖ ‖b‖)
/// ```
///
/// Gaussian noise of many dimensions lies near a sphere, where a straight line between two
/// draws would pass through too-small norms; slerp stays on it, so each interpolated x_T is
/// a plausible starting noise. Nearly parallel inputs, and a zero one, are interpolated
/// linearly.
pub fn slerp<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
    weight: f64,
) -> Result<Tensor<B, D>, SamplerError> {
    check_range(
        "weight",
        weight,
        0.0..=1.0,
        "an interpolation weight in [0, 1]",
    )?;
    if a.dims() != b.dims() {
        return Err(SamplerError::ShapeMismatch {
            what: "second endpoint",
            expected: a.dims().to_vec(),
            found: b.dims().to_vec(),
        });
    }
    let batch = a.dims()[0];
    if a.dims().contains(&0) {
        return Err(SamplerError::OutOfRange {
            name: "endpoint size",
            value: 0.0,
            expected: "endpoints with at least one element per sample",
        });
    }
    let rows = |x: &Tensor<B, D>| x.clone().reshape([batch as i32, -1]);
    let host = |x: Tensor<B, 2>| -> Vec<f64> {
        x.into_data()
            .iter::<f32>()
            .map(|v| v.elem::<f64>())
            .collect()
    };
    let dot = host((rows(&a) * rows(&b)).sum_dim(1));
    let norm_a = host(rows(&a).powi_scalar(2).sum_dim(1));
    let norm_b = host(rows(&b).powi_scalar(2).sum_dim(1));
    let (mut on_a, mut on_b) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
    for i in 0..batch {
        let cosine = (dot[i] / (norm_a[i] * norm_b[i]).sqrt()).clamp(-1.0, 1.0);
        let theta = cosine.acos();
        // A zero endpoint has no direction (the cosine is NaN): linear, as for parallel ones.
        let (wa, wb) = if !theta.is_finite() || theta.sin().abs() < 1e-6 {
            (1.0 - weight, weight)
        } else {
            (
                ((1.0 - weight) * theta).sin() / theta.sin(),
                (weight * theta).sin() / theta.sin(),
            )
        };
        on_a.push(wa as f32);
        on_b.push(wb as f32);
    }
    let mut shape = [1; D];
    shape[0] = batch;
    let column = |values: Vec<f32>| {
        Tensor::<B, 1>::from_data(TensorData::new(values, [batch]), &a.device()).reshape(shape)
    };
    Ok(a.clone() * column(on_a) + b * column(on_b))
}
