//! The training loop (Ho et al. 2020, Algorithm 1, with the usual refinements).
//!
//! Optimizer step k (0-based) of a run with seed s:
//!
//! ```text
//! draw, from an RNG seeded with (s, k): a mirror flag per image, t ~ U{0, …, T−1},
//!   for a class-conditional run a label-dropout flag per image (c_i ← ∅ with probability p),
//!   and ε ~ N(0, I)
//! x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε                            (kiln-forward)
//! L = 1/B Σ_i w(t_i) · mean over pixels of (f_θ(x_t, t, c)_i − target_i)²
//! lr_k = lr · min(1, (k + 1)/warm-up);  AdamW step on ∇L (global norm clipped);  EMA update
//! ```
//!
//! where the target is ε, x_0 or v and w is 1 or min-SNR-γ ([`crate::TrainConfig`]). Images
//! are visited in a fresh random order each epoch (seeded with (s, epoch)). Because every draw
//! is seeded from the step number (dropout included, through the backend's seed), a run
//! resumed from a checkpoint continues with exactly the numbers it would have drawn.
//!
//! With several devices each micro-batch is split between them; their gradients are moved to
//! the first device and summed there before the optimizer step (synchronous data
//! parallelism).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{
    AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer,
    grad_clipping::GradientClippingConfig,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use kiln_forward::{ForwardProcess, LossWeighting, Prediction, standard_normal};
use kiln_sampler::GuidanceConfig;
use kiln_schedule::NoiseSchedule;
use kiln_unet::UNet;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::checkpoint::{self, TrainState};
use crate::dataset::ImageFolder;
use crate::ema::Ema;
use crate::integrity::Damage;
use crate::sampling::{Condition, Generation, SamplerName, generate};
use crate::{TrainConfig, TrainError};
use crate::{pixels, plot};

/// Where a run writes, and how it may be stopped.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// The run folder: `checkpoints/`, `samples/`, `loss.csv`, `progress.png`.
    pub out: &'a Path,
    /// Continue from the latest checkpoint in `out` (which must exist). Without it, `out` must
    /// not hold checkpoints yet, so an earlier run is never overwritten.
    pub resume: bool,
    /// Set (for example from a Ctrl-C handler) to stop after the current step with a
    /// checkpoint.
    pub stop: &'a AtomicBool,
}

/// What a run reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent<'a> {
    /// Training is about to begin.
    Started {
        /// The step it starts from (0, or the resumed checkpoint's).
        step: u64,
        /// Steps the run will have done at the end.
        total_steps: u64,
        /// Optimizer steps per epoch.
        steps_per_epoch: u64,
        /// The checkpoint it resumed from.
        resumed_from: Option<&'a Path>,
    },
    /// An optimizer step finished.
    Step {
        /// Steps done, this one included.
        step: u64,
        /// Steps the run will have done at the end.
        total_steps: u64,
        /// The epoch (0-based) of this step.
        epoch: usize,
        /// The step's loss.
        loss: f64,
        /// The learning rate used.
        learning_rate: f64,
        /// Training images per second over this step.
        images_per_second: f64,
    },
    /// A damaged checkpoint was passed over when resuming (the run continues from an older,
    /// intact one) and renamed out of the way, not deleted.
    SkippedCheckpoint {
        /// The checkpoint folder as it was named.
        path: &'a Path,
        /// The damaged file and what is wrong with it.
        damage: &'a Damage,
        /// Where it was moved (`step-NNNNNNNN.damaged`).
        set_aside: &'a Path,
    },
    /// A grid of samples from the EMA model was written.
    Sampled {
        /// The epoch just finished (1-based count).
        epoch: usize,
        /// The PNG.
        path: &'a Path,
    },
    /// A checkpoint was written.
    Saved {
        /// Steps done.
        step: u64,
        /// The checkpoint folder.
        path: &'a Path,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Steps done.
    pub steps: u64,
    /// Whether it stopped early on request.
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// The sample grids written by this run, in order.
    pub grids: Vec<PathBuf>,
    /// All sample grids of the run side by side (`progress.png`), written at the end.
    pub montage: Option<PathBuf>,
    /// The loss of every step of the run as a picture (`loss.png`, see
    /// [`crate::plot::loss_curve`]), written at the end.
    pub loss_curve: Option<PathBuf>,
}

/// Trains a UNet on `data` according to `config`, on `devices` (the first holds the model;
/// the others share each batch), writing into `options.out`.
///
/// Each optimizer step is `StepDraws::for_step` (its randomness), `gradients` (forward and
/// backward over the shards, summed on the first device), the AdamW step and the EMA update;
/// `Bookkeeping::after_step` then writes grids and checkpoints, and a stop request ends the
/// run after it.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    data: &ImageFolder,
    devices: &[B::Device],
    options: RunOptions<'_>,
    mut on_event: impl FnMut(TrainEvent<'_>),
) -> Result<TrainSummary, TrainError> {
    let main_device = check_inputs(config, data, devices)?;
    let checkpoints = options.out.join("checkpoints");
    let samples = options.out.join("samples");
    for folder in [&checkpoints, &samples] {
        fs::create_dir_all(folder).map_err(|error| TrainError::io(folder, error))?;
    }
    let optimizer_config = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(
            config
                .max_grad_norm
                .map(|norm| GradientClippingConfig::Norm(norm as f32)),
        );
    let new_optimizer = || optimizer_config.init::<B, UNet<B>>();
    let Start {
        mut model,
        mut optimizer,
        mut ema,
        step: start,
        resumed_from,
    } = start::<B, _>(
        config,
        data,
        &checkpoints,
        options.resume,
        main_device,
        new_optimizer,
        &mut on_event,
    )?;

    let schedule = config.schedule()?;
    let prediction = config.prediction()?;
    let objective = Objective {
        prediction,
        weighting: config.weighting(),
        processes: devices
            .iter()
            .map(|device| ForwardProcess::new(schedule.clone(), device))
            .collect(),
    };
    let steps_per_epoch = (data.len() / config.batch_size).max(1) as u64;
    let total_steps = steps_per_epoch * config.epochs as u64;
    let mut books = Bookkeeping {
        config,
        images: data.len(),
        schedule: &schedule,
        prediction,
        checkpoints: &checkpoints,
        samples: &samples,
        log: LossLog::open(&options.out.join("loss.csv"), start)?,
        steps_per_epoch,
        total_steps,
        summary: TrainSummary {
            steps: start,
            interrupted: false,
            checkpoint: None,
            grids: Vec::new(),
            montage: None,
            loss_curve: None,
        },
    };
    on_event(TrainEvent::Started {
        step: start,
        total_steps,
        steps_per_epoch,
        resumed_from: resumed_from.as_deref(),
    });

    let mut order: Option<(usize, Vec<usize>)> = None;
    for step in start..total_steps {
        let began = Instant::now();
        let epoch = (step / steps_per_epoch) as usize;
        if order.as_ref().is_none_or(|(cached, _)| *cached != epoch) {
            order = Some((epoch, epoch_order(config.seed, epoch, data.len())));
        }
        let (_, permutation) = order.as_ref().expect("just set");
        let draws = StepDraws::for_step(config, data, step, steps_per_epoch, permutation);
        let (grads, loss) = gradients(&model, config, data, devices, &objective, draws, step)?;
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss { step, epoch, loss });
        }
        let warmup = (step + 1) as f64 / config.warmup_steps.max(1) as f64;
        let learning_rate = config.learning_rate * warmup.min(1.0);
        model = optimizer.step(learning_rate, model, grads);
        ema.update(&model, step);
        books.log.append(step, epoch, loss, learning_rate)?;
        books.summary.steps = step + 1;
        on_event(TrainEvent::Step {
            step: step + 1,
            total_steps,
            epoch,
            loss,
            learning_rate,
            images_per_second: config.batch_size as f64 / began.elapsed().as_secs_f64(),
        });
        let stop = options.stop.load(Ordering::SeqCst);
        books.after_step(
            step,
            stop,
            &model,
            &optimizer,
            &ema,
            main_device,
            &mut on_event,
        )?;
        if stop {
            books.summary.interrupted = true;
            break;
        }
    }
    books.finish(options.out)
}

/// Checks the run's settings against the data and the devices; returns the first device.
fn check_inputs<'d, D>(
    config: &TrainConfig,
    data: &ImageFolder,
    devices: &'d [D],
) -> Result<&'d D, TrainError> {
    config.validate()?;
    let main_device = devices.first().ok_or(TrainError::NoDevices)?;
    let micro_batch = config.batch_size / config.grad_accumulation;
    if !micro_batch.is_multiple_of(devices.len()) {
        return Err(TrainError::BatchSplit {
            micro_batch,
            devices: devices.len(),
        });
    }
    if let Some(classes) = &config.classes
        && data.class_names() != classes.names.as_slice()
    {
        return Err(TrainError::Config {
            field: "classes".into(),
            problem: format!(
                "the run's classes are [{}], the data's [{}] (load it with labels from folders)",
                classes.names.join(", "),
                data.class_names().join(", ")
            ),
        });
    }
    if data.channels() != config.unet.in_channels || data.image_size() != config.image_size {
        return Err(TrainError::Config {
            field: "image_size".into(),
            problem: format!(
                "the data is {}×{}×{}, the model takes {}×{}×{}",
                data.channels(),
                data.image_size(),
                data.image_size(),
                config.unet.in_channels,
                config.image_size,
                config.image_size
            ),
        });
    }
    Ok(main_device)
}

/// Where a run starts: a new model, or the newest intact checkpoint's state.
struct Start<B: AutodiffBackend, O> {
    model: UNet<B>,
    optimizer: O,
    ema: Ema<B, UNet<B>>,
    step: u64,
    resumed_from: Option<PathBuf>,
}

/// A new run (seeded weights, a fresh optimizer), or with `resume` the newest intact checkpoint
/// in `checkpoints`, checked against `config` and `data`.
fn start<B: AutodiffBackend, O: Optimizer<UNet<B>, B>>(
    config: &TrainConfig,
    data: &ImageFolder,
    checkpoints: &Path,
    resume: bool,
    device: &B::Device,
    new_optimizer: impl Fn() -> O,
    on_event: &mut impl FnMut(TrainEvent<'_>),
) -> Result<Start<B, O>, TrainError> {
    let latest = checkpoint::latest_checkpoint(checkpoints)?;
    match (resume, latest) {
        (true, _) => {
            let (latest, restored) = checkpoint::restore_newest_intact::<B, _>(
                checkpoints,
                new_optimizer,
                device,
                |path, damage, set_aside| {
                    on_event(TrainEvent::SkippedCheckpoint {
                        path,
                        damage,
                        set_aside,
                    })
                },
            )?;
            if let Some(difference) = restored.state.config.first_difference(config) {
                return Err(TrainError::ConfigMismatch {
                    path: latest,
                    difference,
                });
            }
            if restored.state.images != data.len() {
                return Err(TrainError::DataMismatch {
                    path: latest,
                    expected: restored.state.images,
                    found: data.len(),
                });
            }
            Ok(Start {
                ema: Ema::from_average(restored.ema, config.ema_decay),
                step: restored.state.step,
                model: restored.model,
                optimizer: restored.optimizer,
                resumed_from: Some(latest),
            })
        }
        (false, Some(latest)) => Err(TrainError::io(
            latest,
            "this folder already holds a run; resume it or choose another output folder",
        )),
        (false, None) => {
            B::seed(device, config.seed);
            let model = config.unet.init::<B>(device)?;
            Ok(Start {
                ema: Ema::new(&model, config.ema_decay),
                model,
                optimizer: new_optimizer(),
                step: 0,
                resumed_from: None,
            })
        }
    }
}

/// Everything random about one optimizer step, drawn from an RNG seeded with (seed, step) in
/// this order: the images (from the epoch's order), a mirror flag and a timestep per image,
/// for a class-conditional run a label-dropout flag per image; the noise comes from `rng`
/// afterwards, shard by shard.
struct StepDraws {
    indices: Vec<usize>,
    flips: Vec<bool>,
    timesteps: Vec<usize>,
    /// Class labels after dropout, for a class-conditional run.
    labels: Option<Vec<i64>>,
    rng: StdRng,
}

impl StepDraws {
    fn for_step(
        config: &TrainConfig,
        data: &ImageFolder,
        step: u64,
        steps_per_epoch: u64,
        permutation: &[usize],
    ) -> Self {
        let first = (step % steps_per_epoch) as usize * config.batch_size;
        let indices: Vec<usize> = (first..first + config.batch_size)
            .map(|position| permutation[position % data.len()])
            .collect();
        let mut rng = StdRng::seed_from_u64(mix(config.seed, step));
        let flips: Vec<bool> = (0..config.batch_size)
            .map(|_| config.random_flip && rng.random_bool(0.5))
            .collect();
        let timesteps: Vec<usize> = (0..config.batch_size)
            .map(|_| rng.random_range(0..config.num_train_timesteps))
            .collect();
        let labels: Option<Vec<i64>> = config.classes.as_ref().map(|classes| {
            let null = classes.names.len();
            data.labels_of(&indices)
                .unwrap_or_default()
                .into_iter()
                .map(|label| {
                    let dropped = rng.random_bool(classes.label_dropout);
                    (if dropped { null } else { label }) as i64
                })
                .collect()
        });
        Self {
            indices,
            flips,
            timesteps,
            labels,
            rng,
        }
    }
}

/// What the loss is made of, set up once per run: the target kind, the loss weighting and the
/// forward process on each device.
struct Objective<B: Backend> {
    prediction: Prediction,
    weighting: LossWeighting,
    processes: Vec<ForwardProcess<B>>,
}

/// The gradients of one optimizer step's loss, summed on the first device, and the loss.
///
/// The batch is cut into micro-batches (gradient accumulation), each split into one shard per
/// device; each shard's forward and backward run on its device with a replica of the model,
/// and its gradients move to the first device. Every part's loss stays on the first device
/// until the end: reading it back per part would make every device wait for the previous one.
fn gradients<B: AutodiffBackend>(
    model: &UNet<B>,
    config: &TrainConfig,
    data: &ImageFolder,
    devices: &[B::Device],
    objective: &Objective<B>,
    mut draws: StepDraws,
    step: u64,
) -> Result<(GradientsParams, f64), TrainError> {
    let main_device = &devices[0];
    let Objective {
        prediction,
        weighting,
        processes,
    } = objective;
    let (prediction, weighting) = (*prediction, *weighting);
    let micro_batch = config.batch_size / config.grad_accumulation;
    let shard = micro_batch / devices.len();
    for (index, device) in devices.iter().enumerate() {
        B::seed(
            device,
            mix(config.seed ^ DROPOUT_STREAM, step) + index as u64,
        );
    }
    let mut accumulator = GradientsAccumulator::<UNet<B>>::new();
    let mut part_losses = Vec::new();
    for part in 0..config.batch_size / shard {
        let device_index = part % devices.len();
        let (device, process) = (&devices[device_index], &processes[device_index]);
        let range = part * shard..(part + 1) * shard;
        let x0 = data.batch::<B>(
            &draws.indices[range.clone()],
            &draws.flips[range.clone()],
            device,
        );
        let noise = standard_normal::<B, 4>(x0.dims(), &mut draws.rng, device);
        let part_labels = draws.labels.as_ref().map(|labels| {
            let part = labels[range.clone()].to_vec();
            Tensor::<B, 1, Int>::from_data(TensorData::new(part, [shard]), device)
        });
        let t = &draws.timesteps[range];
        let noisy = process.q_sample(x0.clone(), t, noise.clone())?;
        let target = process.target(prediction, x0, noise, t)?;
        let weights = process.loss_weights(weighting, prediction, t)?;
        let replica = if device_index == 0 {
            model.clone()
        } else {
            model.clone().fork(device)
        };
        let t_tensor = Tensor::<B, 1>::from_data(
            TensorData::new(t.iter().map(|&t| t as f32).collect(), [shard]),
            device,
        );
        let output = replica.forward(noisy, t_tensor, part_labels)?;
        let per_image: Tensor<B, 1> = (output - target)
            .powi_scalar(2)
            .flatten::<2>(1, 3)
            .mean_dim(1)
            .squeeze_dim(1);
        let loss = (per_image * weights)
            .sum()
            .div_scalar(config.batch_size as f64);
        part_losses.push(loss.clone().inner().to_device(main_device));
        let grads = GradientsParams::from_grads(loss.backward(), &replica);
        let grads = if device_index == 0 {
            grads
        } else {
            grads.to_device(main_device, model)
        };
        accumulator.accumulate(model, grads);
    }
    let loss = Tensor::cat(part_losses, 0)
        .sum()
        .into_scalar()
        .elem::<f64>();
    Ok((accumulator.grads(), loss))
}

/// What a run writes besides the weights' updates: the loss log, sample grids, checkpoints and
/// the summary.
struct Bookkeeping<'a> {
    config: &'a TrainConfig,
    images: usize,
    schedule: &'a NoiseSchedule,
    prediction: Prediction,
    checkpoints: &'a Path,
    samples: &'a Path,
    log: LossLog,
    steps_per_epoch: u64,
    total_steps: u64,
    summary: TrainSummary,
}

impl Bookkeeping<'_> {
    /// After optimizer step `step` (0-based): a grid from the EMA model at the end of every
    /// `sample_every_epochs`-th epoch and of the last, and a checkpoint at the end of every
    /// `checkpoint_every_epochs`-th epoch, of the last, and on a `stop` request.
    #[allow(clippy::too_many_arguments)]
    fn after_step<B: AutodiffBackend, O: Optimizer<UNet<B>, B>>(
        &mut self,
        step: u64,
        stop: bool,
        model: &UNet<B>,
        optimizer: &O,
        ema: &Ema<B, UNet<B>>,
        device: &B::Device,
        on_event: &mut impl FnMut(TrainEvent<'_>),
    ) -> Result<(), TrainError> {
        let config = self.config;
        let finished_epoch = (step + 1).is_multiple_of(self.steps_per_epoch);
        let epochs_done = ((step + 1) / self.steps_per_epoch) as usize;
        let last = step + 1 == self.total_steps;
        if finished_epoch && (epochs_done.is_multiple_of(config.sample_every_epochs) || last) {
            let path = self.samples.join(format!("epoch-{epochs_done:04}.png"));
            write_grid(
                config,
                ema.model(),
                self.prediction,
                self.schedule,
                device,
                &path,
            )?;
            on_event(TrainEvent::Sampled {
                epoch: epochs_done,
                path: &path,
            });
            self.summary.grids.push(path);
        }
        if stop
            || (finished_epoch
                && (epochs_done.is_multiple_of(config.checkpoint_every_epochs) || last))
        {
            self.log.flush()?;
            let state = TrainState {
                config: config.clone(),
                step: step + 1,
                images: self.images,
            };
            let path = checkpoint::save(
                self.checkpoints,
                &state,
                model,
                optimizer,
                ema.model(),
                config.keep_checkpoints,
            )?;
            on_event(TrainEvent::Saved {
                step: step + 1,
                path: &path,
            });
            self.summary.checkpoint = Some(path);
        }
        Ok(())
    }

    /// Flushes the log and, after a whole run, writes `progress.png` and `loss.png` into `out`.
    fn finish(mut self, out: &Path) -> Result<TrainSummary, TrainError> {
        self.log.flush()?;
        if !self.summary.interrupted && self.summary.steps == self.total_steps {
            self.summary.montage = write_montage(self.samples, &out.join("progress.png"))?;
            self.summary.loss_curve = self.log.plot(&out.join("loss.png"))?;
        }
        Ok(self.summary)
    }
}

/// Separates the dropout seeds from the data seeds of the same step.
const DROPOUT_STREAM: u64 = 0x6472_6f70_6f75_7421;
/// Separates the epoch orders from the step seeds.
const ORDER_STREAM: u64 = 0x6f72_6465_7273_2121;

/// A 64-bit seed for stream position `index` of `seed` (SplitMix64's finaliser, so nearby
/// inputs give unrelated seeds).
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The order in which epoch `epoch` visits `len` images.
fn epoch_order(seed: u64, epoch: usize, len: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix(
        seed ^ ORDER_STREAM,
        epoch as u64,
    )));
    order
}

/// Samples a grid from the EMA model with DDIM (x_0 kept in [−1, 1]) and the run's seed.
///
/// DDIM rather than a multistep solver: early in training the model's errors are large, and
/// DPM-Solver++ and UniPC amplify them into speckle where first-order DDIM with the same 20
/// steps gives clean faces (docs/training.md).
fn write_grid<B: Backend>(
    config: &TrainConfig,
    model: &UNet<B>,
    prediction: Prediction,
    schedule: &NoiseSchedule,
    device: &B::Device,
    path: &Path,
) -> Result<(), TrainError> {
    // A class-conditional run shows its classes in turn, sampled conditionally (w = 1).
    let condition = match &config.classes {
        None => Condition::Unconditional,
        Some(classes) => Condition::Classes {
            labels: (0..config.sample_count)
                .map(|i| i % classes.names.len())
                .collect(),
            guidance: GuidanceConfig::new(1.0),
        },
    };
    let generation = Generation {
        sampler: SamplerName::Ddim,
        steps: config.sample_steps,
        count: config.sample_count,
        image_size: config.image_size,
        seed: config.seed,
        clip: true,
        condition,
    };
    let images = generate(model, prediction, schedule, generation, device, |_| {})?;
    let columns = (config.sample_count as f64).sqrt().ceil() as usize;
    pixels::save(&pixels::grid(images, columns, 2)?, path)?;
    Ok(())
}

/// Lays every `epoch-*.png` grid in `samples` side by side (up to 8 per row) into `path`.
fn write_montage(samples: &Path, path: &Path) -> Result<Option<PathBuf>, TrainError> {
    let mut grids: Vec<PathBuf> = fs::read_dir(samples)
        .map_err(|error| TrainError::io(samples, error))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("epoch-") && name.ends_with(".png"))
        })
        .collect();
    if grids.is_empty() {
        return Ok(None);
    }
    grids.sort();
    let images = grids
        .iter()
        .map(|grid| pixels::open(grid))
        .collect::<Result<Vec<_>, _>>()?;
    pixels::save(&pixels::montage(&images, 8, 8)?, path)?;
    Ok(Some(path.to_path_buf()))
}

/// `loss.csv`: one line per optimizer step (`step,epoch,loss,learning_rate`).
struct LossLog {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl LossLog {
    /// Opens the log for a run starting at step `start`, keeping the lines of earlier steps
    /// (a resumed run drops those written after its checkpoint).
    fn open(path: &Path, start: u64) -> Result<Self, TrainError> {
        let io = |error: std::io::Error| TrainError::io(path, error);
        let mut kept = vec!["step,epoch,loss,learning_rate".to_string()];
        if start > 0 && path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            for line in reader.lines().skip(1) {
                let line = line.map_err(io)?;
                let step: Option<u64> = line.split(',').next().and_then(|s| s.parse().ok());
                if step.is_some_and(|step| step <= start) {
                    kept.push(line);
                }
            }
        }
        let mut writer = BufWriter::new(File::create(path).map_err(io)?);
        for line in &kept {
            writeln!(writer, "{line}").map_err(io)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Logs 0-based step `step` (written as the count of steps done).
    fn append(&mut self, step: u64, epoch: usize, loss: f64, lr: f64) -> Result<(), TrainError> {
        writeln!(self.writer, "{},{epoch},{loss},{lr}", step + 1)
            .map_err(|error| TrainError::io(&self.path, error))
    }

    /// Draws every loss in the log into `path`; `None` if there was nothing to draw.
    fn plot(&self, path: &Path) -> Result<Option<PathBuf>, TrainError> {
        let text =
            fs::read_to_string(&self.path).map_err(|error| TrainError::io(&self.path, error))?;
        let losses: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').nth(2)?.parse().ok())
            .collect();
        let Some(image) = plot::loss_curve(&losses, 800, 300) else {
            return Ok(None);
        };
        image
            .save(path)
            .map_err(|error| TrainError::io(path, error))?;
        Ok(Some(path.to_path_buf()))
    }

    fn flush(&mut self) -> Result<(), TrainError> {
        self.writer
            .flush()
            .map_err(|error| TrainError::io(&self.path, error))
    }
}
