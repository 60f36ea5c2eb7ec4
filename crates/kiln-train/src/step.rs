//! One optimizer step's randomness and one worker's share of its gradients.

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use kiln_forward::{ForwardProcess, LossWeighting, Prediction, standard_normal};
use kiln_kernels::{DropoutKey, mix, with_dropout_key};
use kiln_pipeline::SamplingModel;
use kiln_unet::UNet;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

use crate::dataset::ImageFolder;
use crate::distilling::Distiller;
use crate::resident::DeviceImages;
use crate::{TrainConfig, TrainError};

/// Everything random about one optimizer step, drawn from an RNG seeded with (seed, step) in
/// this order: the images (from the epoch's order), a mirror flag and a timestep per image,
/// for a class-conditional run a label-dropout flag per image, for trajectory consistency
/// distillation a landing per image; the noise comes from `rng` afterwards, shard by shard,
/// and the noise offset's and the input perturbation's from streams of their own, also shard
/// by shard.
pub(crate) struct StepDraws {
    indices: Vec<usize>,
    flips: Vec<bool>,
    timesteps: Vec<usize>,
    /// Class labels after dropout, for a class-conditional run.
    labels: Option<Vec<i64>>,
    /// Where each image's answers land, for trajectory consistency distillation (else empty).
    landings: Vec<f64>,
    rng: StdRng,
    /// The noise offset's per-channel shifts ([`TrainConfig::noise_offset`]).
    offset: Option<ScaledNoise>,
    /// The input perturbation's γ ξ ([`TrainConfig::input_perturbation`]).
    perturbation: Option<ScaledNoise>,
}

/// Extra noise of one kind, s·N(0, I): its scale s and a stream of normal draws of its own,
/// seeded with (seed, step), apart from the step's `rng` so that each shard's ε and extra noise
/// are the slices of the whole batch's.
struct ScaledNoise {
    scale: f64,
    rng: StdRng,
}

impl ScaledNoise {
    /// The extra noise of scale `scale` (none without one) of step `step` of the run seeded
    /// with `seed`, from `stream`.
    fn for_step(scale: Option<f64>, seed: u64, stream: u64, step: u64) -> Option<Self> {
        scale.map(|scale| Self {
            scale,
            rng: StdRng::seed_from_u64(mix(seed ^ stream, step)),
        })
    }

    /// The next `dims` values, scaled, on `device`.
    fn draw<B: Backend>(&mut self, dims: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
        standard_normal::<B, 4>(dims, &mut self.rng, device).mul_scalar(self.scale)
    }

    /// Skips the next `count` values, another worker's.
    fn skip(&mut self, count: usize) {
        skip_normals(&mut self.rng, count);
    }
}

impl StepDraws {
    /// The draws of 0-based step `step`, whose images come from the epoch's `permutation`.
    /// With a `distiller`, the timesteps are those it trains the student at.
    pub(crate) fn for_step(
        config: &TrainConfig,
        data: &ImageFolder,
        distiller: Option<&Distiller>,
        step: u64,
        steps_per_epoch: u64,
        permutation: &[usize],
    ) -> Result<Self, TrainError> {
        let first = (step % steps_per_epoch) as usize * config.batch_size;
        let indices: Vec<usize> = (first..first + config.batch_size)
            .map(|position| permutation[position % data.len()])
            .collect();
        let mut rng = StdRng::seed_from_u64(mix(config.seed, step));
        let flips: Vec<bool> = (0..config.batch_size)
            .map(|_| config.random_flip && rng.random_bool(0.5))
            .collect();
        let timesteps: Vec<usize> = match distiller {
            None => config.draw_timesteps(config.batch_size, &mut rng)?,
            Some(distiller) => {
                let student = distiller.student_timesteps();
                (0..config.batch_size)
                    .map(|_| student[rng.random_range(0..student.len())] as usize)
                    .collect()
            }
        };
        let image_labels = data.labels_of(&indices)?.unwrap_or_default();
        let labels: Option<Vec<i64>> = config.classes.as_ref().map(|classes| {
            let null = classes.names.len();
            image_labels
                .into_iter()
                .map(|label| {
                    let dropped = rng.random_bool(classes.label_dropout);
                    (if dropped { null } else { label }) as i64
                })
                .collect()
        });
        let landings = match distiller {
            Some(distiller) => distiller.draw_landings(&timesteps, &mut rng)?,
            None => Vec::new(),
        };
        Ok(Self {
            indices,
            flips,
            timesteps,
            labels,
            landings,
            rng,
            offset: ScaledNoise::for_step(config.noise_offset, config.seed, OFFSET_STREAM, step),
            perturbation: ScaledNoise::for_step(
                config.input_perturbation,
                config.seed,
                PERTURBATION_STREAM,
                step,
            ),
        })
    }
}

/// What the loss is made of, set up once per run and worker: what the model outputs and how
/// its errors are weighed, and on the worker's device the forward process, the training
/// images and, for a distillation, the teacher.
pub(crate) struct Objective<B: AutodiffBackend> {
    pub(crate) kind: LossKind,
    pub(crate) process: ForwardProcess<B>,
    pub(crate) images: DeviceImages<B::InnerBackend>,
    pub(crate) distillation: Option<(Distiller, SamplingModel<B::InnerBackend>)>,
    pub(crate) device: B::Device,
}

/// One worker among all the run's workers (every device of every process): it takes the
/// shards `index`, `index + count`, `index + 2·count`, … of each step's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) index: usize,
    pub(crate) count: usize,
}

/// This worker's share of one optimizer step's loss and its gradients, on its device.
///
/// The batch is cut into micro-batches (gradient accumulation), each into one shard per
/// worker; shard p belongs to worker p mod W. The noise of every shard is drawn in order from
/// the step's RNG, and its noise offset and input perturbation from their own streams (a
/// worker draws its own shards and skips the others'), so W workers together see exactly the
/// numbers one worker
/// with the whole batch would; so do the dropout masks of Kiln's CPU kernel, keyed by the step
/// and each image's place in the batch ([`with_dropout_key`]). Each shard's loss is divided
/// by the whole batch size, so the workers' losses and gradients add up to the step's. The
/// loss stays on the device: reading it back would wait for the backward pass (the trainer
/// reads the losses of many steps at once).
pub(crate) fn gradients<B: AutodiffBackend>(
    model: &UNet<B>,
    config: &TrainConfig,
    objective: &Objective<B>,
    place: Place,
    mut draws: StepDraws,
    step: u64,
) -> Result<(GradientsParams, Tensor<B::InnerBackend, 1>), TrainError> {
    let Objective { images, device, .. } = objective;
    let micro_batch = config.batch_size / config.grad_accumulation;
    let shard = micro_batch / place.count;
    let shard_values = shard * images.image_len();
    let shard_channels = shard * images.channels();
    // Kiln's dropout kernel keys its masks by the step and each image's place in the batch
    // (below); burn's dropout, on other backends, draws from the backend's generator. Seeding
    // it blocks until burn-fusion has launched the queued operations (burn-fusion 0.21,
    // `backend.rs`: `client.sync`), so it is seeded only where there is dropout.
    let dropout_key = mix(config.seed ^ DROPOUT_STREAM, step);
    if config.unet.dropout > 0.0 {
        B::seed(device, dropout_key.wrapping_add(place.index as u64));
    }
    let mut accumulator = GradientsAccumulator::<UNet<B>>::new();
    let mut part_losses = Vec::new();
    for part in 0..config.batch_size / shard {
        if part % place.count != place.index {
            skip_normals(&mut draws.rng, shard_values);
            if let Some(offset) = draws.offset.as_mut() {
                offset.skip(shard_channels);
            }
            if let Some(perturbation) = draws.perturbation.as_mut() {
                perturbation.skip(shard_values);
            }
            continue;
        }
        let range = part * shard..(part + 1) * shard;
        let x0 = Tensor::from_inner(
            images.batch(&draws.indices[range.clone()], &draws.flips[range.clone()])?,
        );
        let mut noise = standard_normal::<B, 4>(x0.dims(), &mut draws.rng, device);
        if let Some(offset) = draws.offset.as_mut() {
            noise = offset_noise(noise, offset.draw(per_channel(x0.dims()), device));
        }
        let part_labels = draws.labels.as_ref().map(|labels| {
            let part = labels[range.clone()].to_vec();
            Tensor::<B, 1, Int>::from_data(TensorData::new(part, [shard]), device)
        });
        let perturbation = draws
            .perturbation
            .as_mut()
            .map(|perturbation| perturbation.draw(x0.dims(), device));
        let drawn = ShardDraws {
            x0,
            noise,
            perturbation,
            timesteps: &draws.timesteps[range.clone()],
            landings: draws.landings.get(range.clone()).unwrap_or_default(),
            labels: part_labels,
        };
        let pass = DropoutKey {
            key: dropout_key,
            first_item: range.start,
        };
        let loss = with_dropout_key(pass, || shard_loss(model, objective, drawn))?
            .div_scalar(config.batch_size as f64);
        part_losses.push(loss.clone().inner());
        accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
    }
    Ok((accumulator.grads(), Tensor::cat(part_losses, 0).sum()))
}

/// One value per image and channel of a tensor of `dims`.
fn per_channel([images, channels, ..]: [usize; 4]) -> [usize; 4] {
    [images, channels, 1, 1]
}

/// Offset noise ([`TrainConfig::noise_offset`]): `noise` plus one shift per image and channel,
/// `shifts` (s η, of shape `[images, channels, 1, 1]`), broadcast over its pixels.
fn offset_noise<B: Backend>(noise: Tensor<B, 4>, shifts: Tensor<B, 4>) -> Tensor<B, 4> {
    noise + shifts
}

/// What one shard's loss is computed from: its clean images, their noise ε, the input
/// perturbation γ ξ where there is one, timesteps, landings (trajectory consistency
/// distillation) and class labels.
struct ShardDraws<'a, B: Backend> {
    x0: Tensor<B, 4>,
    noise: Tensor<B, 4>,
    perturbation: Option<Tensor<B, 4>>,
    timesteps: &'a [usize],
    landings: &'a [f64],
    labels: Option<Tensor<B, 1, Int>>,
}

/// The loss of the `drawn` shard's images, summed over them: the denoising loss of the model's output at
/// their x_t, or a distillation's loss against its teacher.
fn shard_loss<B: AutodiffBackend>(
    model: &UNet<B>,
    objective: &Objective<B>,
    drawn: ShardDraws<'_, B>,
) -> Result<Tensor<B, 1>, TrainError> {
    let ShardDraws {
        x0,
        noise,
        perturbation,
        timesteps,
        landings,
        labels,
    } = drawn;
    let count = timesteps.len();
    match &objective.distillation {
        None => {
            let t = timesteps.iter().map(|&t| t as f32).collect();
            let t = Tensor::<B, 1>::from_data(TensorData::new(t, [count]), &objective.device);
            let noised = Noised::new(&objective.process, x0, noise, perturbation, timesteps)?;
            let output = model.forward(noised.noisy.clone(), t, labels)?;
            Ok(denoising_loss(&objective.process, objective.kind, noised, output)?.sum())
        }
        Some((distiller, teacher)) => {
            let prediction = objective.kind.prediction;
            let loss = distiller.loss(
                model, prediction, teacher, x0, noise, timesteps, landings, labels,
            )?;
            Ok(loss.mul_scalar(count as f64))
        }
    }
}

/// Clean images, their noise ε (whose target the model learns) and the noised images x_t at
/// their timesteps.
pub(crate) struct Noised<'a, B: Backend> {
    pub(crate) x0: Tensor<B, 4>,
    pub(crate) noise: Tensor<B, 4>,
    pub(crate) noisy: Tensor<B, 4>,
    pub(crate) timesteps: &'a [usize],
}

impl<'a, B: Backend> Noised<'a, B> {
    /// `x0` noised at `timesteps` with `noise` ε, plus the input `perturbation` γ ξ where
    /// there is one: x_t is q_sample(x_0, t, ε + γ ξ) and the target stays ε's
    /// ([`TrainConfig::input_perturbation`]).
    pub(crate) fn new(
        process: &ForwardProcess<B>,
        x0: Tensor<B, 4>,
        noise: Tensor<B, 4>,
        perturbation: Option<Tensor<B, 4>>,
        timesteps: &'a [usize],
    ) -> Result<Self, TrainError> {
        let input_noise = match perturbation {
            Some(perturbation) => noise.clone() + perturbation,
            None => noise.clone(),
        };
        let noisy = process.q_sample(x0.clone(), timesteps, input_noise)?;
        Ok(Self {
            x0,
            noise,
            noisy,
            timesteps,
        })
    }
}

/// What the model is trained to output and how its errors are weighed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LossKind {
    pub(crate) prediction: Prediction,
    pub(crate) weighting: LossWeighting,
    /// The output holds v beside the prediction (`learned_range`).
    pub(crate) learns_variance: bool,
}

/// Each image's loss, shape `[batch]`, for the model's `output` at the `noised` images: the
/// weighted mean squared error of its prediction against the target (L_simple, Ho et al.
/// 2020, with min-SNR weights where asked), plus for a model that learns its variance the
/// bound term of the hybrid loss ([`variance_bound`]).
pub(crate) fn denoising_loss<B: Backend>(
    process: &ForwardProcess<B>,
    kind: LossKind,
    noised: Noised<'_, B>,
    output: Tensor<B, 4>,
) -> Result<Tensor<B, 1>, TrainError> {
    let Noised {
        x0,
        noise,
        noisy,
        timesteps,
    } = noised;
    let target = process.target(kind.prediction, x0.clone(), noise, timesteps)?;
    let weights = process.loss_weights(kind.weighting, kind.prediction, timesteps)?;
    let (output, bound) = if kind.learns_variance {
        let channels = x0.dims()[1];
        let v = output.clone().narrow(1, channels, channels);
        let output = output.narrow(1, 0, channels);
        let bound = variance_bound(
            process,
            kind.prediction,
            x0,
            noisy,
            timesteps,
            output.clone(),
            v,
        )?;
        (output, Some(bound))
    } else {
        (output, None)
    };
    let squared_error: Tensor<B, 1> = (output - target)
        .powi_scalar(2)
        .flatten::<2>(1, 3)
        .mean_dim(1)
        .squeeze_dim(1);
    let weighted = squared_error * weights;
    Ok(match bound {
        Some(bound) => weighted + bound,
        None => weighted,
    })
}

/// The bound term of the hybrid loss L_simple + λ L_vlb, λ = 0.001 (Nichol & Dhariwal 2021,
/// §3.1), per image: L_vlb = Σ_t L_t is estimated by T·L_t at each image's uniform timestep t,
/// so the term is T/1000 · L_t, with L_t in bits per dimension ([`ForwardProcess::vlb_terms`])
/// for the reverse step N(μ_θ, σ²_θ) of the model's prediction `output` and variance `v`. The
/// prediction's gradient is stopped there, so the bound trains the variance alone and
/// L_simple the mean, as in the paper.
fn variance_bound<B: Backend>(
    process: &ForwardProcess<B>,
    prediction: Prediction,
    x0: Tensor<B, 4>,
    noisy: Tensor<B, 4>,
    timesteps: &[usize],
    output: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> Result<Tensor<B, 1>, TrainError> {
    let predicted_x0 = process.convert(
        output.detach(),
        noisy.clone(),
        timesteps,
        prediction,
        Prediction::Sample,
    )?;
    let log_variance = process.learned_log_variance(v, timesteps)?;
    let bits = process.vlb_terms(x0, noisy, timesteps, predicted_x0, log_variance)?;
    let timestep_count = process.schedule().num_timesteps() as f64;
    Ok(bits.mul_scalar(timestep_count / 1000.0))
}

/// Advances `rng` past `count` standard normal draws, as [`standard_normal`] would.
fn skip_normals(rng: &mut StdRng, count: usize) {
    StandardNormal
        .sample_iter(rng)
        .take(count)
        .for_each(|_: f32| {});
}

/// Separates the dropout seeds from the data seeds of the same step.
const DROPOUT_STREAM: u64 = 0x6472_6f70_6f75_7421;
/// Separates the noise offset's shifts from the data seeds of the same step.
const OFFSET_STREAM: u64 = 0x6f66_6673_6574_2121;
/// Separates the input perturbation's noise from the data seeds of the same step.
const PERTURBATION_STREAM: u64 = 0x7065_7274_7572_6221;
/// Separates the epoch orders from the step seeds.
const ORDER_STREAM: u64 = 0x6f72_6465_7273_2121;

/// The order in which epoch `epoch` visits `len` images.
pub(crate) fn epoch_order(seed: u64, epoch: usize, len: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix(
        seed ^ ORDER_STREAM,
        epoch as u64,
    )));
    order
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use kiln_schedule::{BetaSchedule, NoiseSchedule};

    use super::*;
    use crate::dataset::pixel_value;

    type B = Autodiff<Flex>;

    /// Offset noise adds one shift per image and channel to each of its pixels.
    #[test]
    fn offset_noise_shifts_each_channel_of_each_image_as_a_whole() {
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(3);
        let noise = standard_normal::<B, 4>([2, 3, 4, 5], &mut rng, &device);
        let shifts = standard_normal::<B, 4>(per_channel(noise.dims()), &mut rng, &device);
        let values = |tensor: Tensor<B, 4>| -> Vec<f32> { tensor.into_data().to_vec().unwrap() };
        let moved = values(offset_noise(noise.clone(), shifts.clone()) - noise);
        let shifts = values(shifts);
        for (index, moved) in moved.into_iter().enumerate() {
            let shift = shifts[index / 20];
            assert!((moved - shift).abs() < 1e-6, "{index}: {moved} vs {shift}");
        }
    }

    /// Input perturbation moves the model's input by √(1 − ᾱ_t) γ ξ and keeps the targets of
    /// the unperturbed ε: an output of exactly ε, or of v = √ᾱ_t ε − √(1 − ᾱ_t) x_0, scores 0
    /// (Ning et al. 2023).
    #[test]
    fn input_perturbation_moves_the_input_and_keeps_the_target() {
        let device = Default::default();
        let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
        let alphas_cumprod = schedule.alphas_cumprod().to_vec();
        let process = ForwardProcess::<B>::new(schedule, &device);
        let mut rng = StdRng::seed_from_u64(7);
        let mut normal = || standard_normal::<B, 4>([2, 1, 4, 4], &mut rng, &device);
        let (x0, noise, xi) = (normal(), normal(), normal());
        let timesteps = [10, 700];
        let gamma = 0.1;
        let perturbed = || {
            let perturbation = Some(xi.clone().mul_scalar(gamma));
            Noised::new(
                &process,
                x0.clone(),
                noise.clone(),
                perturbation,
                &timesteps,
            )
            .unwrap()
        };
        let plain = Noised::new(&process, x0.clone(), noise.clone(), None, &timesteps).unwrap();

        let values = |tensor: Tensor<B, 4>| -> Vec<f32> { tensor.into_data().to_vec().unwrap() };
        let shift = values(perturbed().noisy - plain.noisy);
        for (index, (shift, xi)) in shift.into_iter().zip(values(xi.clone())).enumerate() {
            let alpha_bar = alphas_cumprod[timesteps[index / 16]];
            let want = (1.0 - alpha_bar).sqrt() * gamma * f64::from(xi);
            assert!((f64::from(shift) - want).abs() < 1e-6, "{shift} vs {want}");
        }
        let per_image = |coefficient: fn(f64) -> f64| {
            let values = timesteps.map(|t| coefficient(alphas_cumprod[t]) as f32);
            Tensor::<B, 4>::from_data(TensorData::new(values.to_vec(), [2, 1, 1, 1]), &device)
        };
        let v = noise.clone() * per_image(f64::sqrt) - x0.clone() * per_image(|a| (1.0 - a).sqrt());
        for (prediction, output) in [(Prediction::Epsilon, noise.clone()), (Prediction::V, v)] {
            let kind = LossKind {
                prediction,
                weighting: LossWeighting::Uniform,
                learns_variance: false,
            };
            let loss: f32 = denoising_loss(&process, kind, perturbed(), output)
                .unwrap()
                .max()
                .into_scalar();
            assert!(loss < 1e-12, "{prediction:?}: {loss}");
        }
    }

    /// The hybrid loss of a model that learns its variance is L_simple plus T/1000 times the
    /// bound's term in bits (λ = 0.001 on L_vlb ≈ T·L_t), and the bound reaches only v: the
    /// prediction's gradient is L_simple's alone (Nichol & Dhariwal 2021, §3.1).
    #[test]
    fn the_hybrid_loss_adds_the_bound_and_trains_the_variance_with_it_alone() {
        let device = Default::default();
        // T = 500, so that the bound's weight, T/1000, is not 1.
        let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 500).unwrap();
        let process = ForwardProcess::<B>::new(schedule, &device);
        let mut rng = StdRng::seed_from_u64(5);
        // 8-bit levels in [−1, 1], as the training images are.
        let levels: Vec<f32> = (0..32).map(|i| pixel_value((i * 37 % 256) as u8)).collect();
        let x0 = Tensor::<B, 4>::from_data(TensorData::new(levels, [2, 1, 4, 4]), &device);
        let noise = standard_normal::<B, 4>([2, 1, 4, 4], &mut rng, &device);
        let timesteps = [0, 400];
        let noisy = process
            .q_sample(x0.clone(), &timesteps, noise.clone())
            .unwrap();
        let noised = || Noised {
            x0: x0.clone(),
            noise: noise.clone(),
            noisy: noisy.clone(),
            timesteps: &timesteps,
        };
        let kind = |learns_variance| LossKind {
            prediction: Prediction::Epsilon,
            weighting: LossWeighting::Uniform,
            learns_variance,
        };
        let output = standard_normal::<B, 4>([2, 2, 4, 4], &mut rng, &device).require_grad();
        let hybrid = denoising_loss(&process, kind(true), noised(), output.clone()).unwrap();
        let prediction = output.clone().narrow(1, 0, 1).detach().require_grad();
        let simple = denoising_loss(&process, kind(false), noised(), prediction.clone()).unwrap();

        let predicted_x0 = process
            .convert(
                prediction.clone(),
                noisy.clone(),
                &timesteps,
                Prediction::Epsilon,
                Prediction::Sample,
            )
            .unwrap();
        let log_variance = process
            .learned_log_variance(output.clone().narrow(1, 1, 1), &timesteps)
            .unwrap();
        let bits = process
            .vlb_terms(
                x0.clone(),
                noisy.clone(),
                &timesteps,
                predicted_x0,
                log_variance,
            )
            .unwrap();
        let values = |tensor: Tensor<B, 1>| -> Vec<f32> { tensor.into_data().to_vec().unwrap() };
        let expected = values(simple.clone() + bits.mul_scalar(0.5));
        for (got, want) in values(hybrid.clone()).into_iter().zip(expected) {
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }

        let hybrid_gradients = hybrid.sum().backward();
        let simple_gradients = simple.sum().backward();
        let gradient = output.grad(&hybrid_gradients).unwrap();
        let prediction_gradient = gradient.clone().narrow(1, 0, 1);
        let expected = prediction.grad(&simple_gradients).unwrap();
        let gap: f32 = (prediction_gradient - expected).abs().max().into_scalar();
        assert!(gap < 1e-7, "the bound reached the prediction: {gap}");
        let variance_gradient: f32 = gradient.narrow(1, 1, 1).abs().max().into_scalar();
        assert!(variance_gradient > 1e-3, "{variance_gradient}");
    }
}
