//! Trains a diffusion UNet on a folder of face photos and watches faces emerge.
//!
//! ```text
//! cargo run --release --example face_train                      # the bundled faces, CPU
//! cargo run --release --features cuda --example face_train -- --data ~/faces --channels 3 \
//!     --image-size 64 --preset faces64 --epochs 50 --device cuda
//! cargo run --release --example face_train -- --resume           # continue runs/faces
//! cargo run --release --example face_train -- --labels folders --out runs/people
//! cargo run --release --example face_train -- --hold-out 2 --eval-every 10   # FD/KID as it trains
//! cargo build --release --features mpi --example face_train        # then, across processes:
//! mpirun -np 2 target/release/examples/face_train --distributed mpi --out runs/faces-mpi
//! ```
//!
//! With `--labels folders` each image's class is its folder (the bundled faces' `s1` … `s40`
//! are 40 people) and the model learns classifier-free guidance: sample one person with
//! `face_sample --checkpoint runs/people --class s7 --guidance 3`.
//!
//! Writes into `--out` (default `runs/faces`): `samples/epoch-NNNN.png` (16 samples from the
//! EMA weights with a fixed seed, so successive grids show the same faces improving),
//! `progress.png` (all grids side by side), `loss.csv` and `loss.png`, and `checkpoints/` (continue with
//! `--resume`; sample with `face_sample --checkpoint runs/faces`; verify with `--check`).
//! With `--eval-every N`, also `metrics.csv` and `metrics.png`: every N epochs the EMA model
//! draws `--eval-count` samples with `--eval-sampler` in `--eval-steps` steps, scored against the training
//! images (and the `--hold-out` images, for the memorisation rate) in the bundled face
//! encoder's features, or InceptionV3's with `--inception-weights`.
//! Ctrl-C saves a checkpoint before exiting. With `--distributed mpi` every process trains its
//! share of each batch, rank 0 alone prints and writes, and a process that fails ends the job.
//! See docs/training.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Parser;
use kiln::device::{DeviceSpec, MultiDeviceTask, run_on_all};
use kiln::metrics::IdentitySplit;
use kiln::pipeline::SamplerName;
use kiln::train::{
    ClassConditioning, DEFAULT_LOG_EVERY, DatasetError, Evaluation, ImageFolder,
    ImageFolderOptions, Labels, LoadEvent, ProcessGroup, RunOptions, SingleProcess,
    TimestepDensity, TrainConfig, check_run, train,
};
use kiln::unet::UNetPreset;

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/bundled.rs"]
mod bundled;
#[path = "common/exit.rs"]
mod exit;
#[path = "common/names.rs"]
mod names;
#[path = "common/progress.rs"]
mod progress;
#[path = "common/scorer.rs"]
mod scorer;

use progress::Progress;

/// Trains a diffusion model (a UNet predicting the noise) on a folder of images, writing
/// sample grids, a loss log and resumable checkpoints.
#[derive(Parser, Debug)]
struct Args {
    /// Folder of training images, searched recursively (JPEG, PNG, WebP, BMP, PNM). Default:
    /// the 400 bundled grayscale faces.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Fail on the first unreadable image instead of skipping it with a warning.
    #[arg(long)]
    strict: bool,
    /// Class labels: none (an unconditional model) or folders (each image's class is the
    /// folder under --data that holds it; the model then learns classifier-free guidance).
    #[arg(long, default_value = "none")]
    labels: Labels,
    /// With labels: the probability of training an image as unconditional (label dropout).
    #[arg(long, default_value_t = 0.1)]
    label_dropout: f64,
    /// Training images are centre-cropped to a square and resized to this size.
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    /// 1 (grayscale) or 3 (RGB). Default: 1 for the bundled faces, 3 otherwise.
    #[arg(long)]
    channels: Option<usize>,
    /// The UNet: faces32 (CPU demo: 32, 64, 128 channels, attention at 8×8), tiny (32, 64),
    /// faces64 (64, 128, 256, 256; a GPU model), cifar10 (the 35.7 M DDPM CIFAR-10 UNet) or
    /// celebahq256 (the DDPM CelebA-HQ 256×256 UNet).
    #[arg(long, default_value = "faces32", value_parser = names::by_name::<UNetPreset>(&UNetPreset::NAMES, []))]
    preset: UNetPreset,
    /// Passes over the data.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Images per optimizer step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Split each batch into this many micro-batches (gradients summed): the same step with
    /// less memory.
    #[arg(long, default_value_t = 1)]
    grad_accumulation: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 100)]
    warmup_steps: usize,
    /// The learning rate after the warm-up: cosine (down to 0 at the last step, as diffusers'
    /// training scripts) or constant.
    #[arg(long, default_value = "cosine", value_parser = ["constant", "cosine"])]
    lr_schedule: String,
    /// Clip the gradient norm to this value (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Cap of the EMA decay.
    #[arg(long, default_value_t = 0.995)]
    ema_decay: f64,
    /// What the model predicts: epsilon, sample, v_prediction or flow_prediction (rectified
    /// flow's velocity ε − x_0; with --beta-schedule rectified_flow, rectified flow itself).
    #[arg(long, default_value = "epsilon")]
    prediction: String,
    /// β schedule: linear, scaled_linear, squaredcos_cap_v2, sigmoid or rectified_flow.
    #[arg(long, default_value = "linear")]
    beta_schedule: String,
    /// Rescale the β schedule to zero terminal SNR (Lin et al. 2023), so that the model trains
    /// at the pure noise sampling starts from; needs --prediction v_prediction (or sample).
    #[arg(long)]
    rescale_betas_zero_snr: bool,
    /// The variance of the reverse steps: fixed_small, or learned_range, which the model
    /// learns beside its prediction with the hybrid loss of Nichol & Dhariwal 2021 (its UNet
    /// gets twice the image's channels out; DDPM then samples with it).
    #[arg(long, default_value = "fixed_small", value_parser = ["fixed_small", "learned_range"])]
    variance_type: String,
    /// Min-SNR-γ loss weighting (5 is the paper's choice); off by default.
    #[arg(long)]
    min_snr_gamma: Option<f64>,
    /// Input perturbation γ (Ning et al. 2023; diffusers' --input_perturbation): the model is
    /// shown x_t noised with ε + γ ξ and learns ε's target, against exposure bias (0.1 is the
    /// paper's choice); off by default.
    #[arg(long)]
    input_perturbation: Option<f64>,
    /// Offset noise s (Guttenberg 2023; diffusers' --noise_offset): one N(0, s²) shift per
    /// image and channel added to the noise, so the model learns to change whole images'
    /// brightness (Guttenberg used 0.1); off by default.
    #[arg(long)]
    noise_offset: Option<f64>,
    /// How each image's training timestep is drawn: uniform, logit_normal (SD3's choice for
    /// rectified flow), mode or cosmap (Esser et al. 2024, §3.1; a noise level t ∈ [0, 1]
    /// becomes timestep ⌊t·T⌋). Default: logit_normal for rectified flow (--prediction
    /// flow_prediction --beta-schedule rectified_flow), else uniform.
    #[arg(long, value_parser = ["uniform", "logit_normal", "mode", "cosmap"])]
    timestep_density: Option<String>,
    /// logit_normal: the mean of the normal whose sigmoid is t (positive: toward noise).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    logit_mean: f64,
    /// logit_normal: its standard deviation.
    #[arg(long, default_value_t = 1.0)]
    logit_std: f64,
    /// mode: how strongly the middle noise levels are favoured (negative: the ends).
    #[arg(long, default_value_t = 1.29, allow_negative_numbers = true)]
    mode_scale: f64,
    /// Write a sample grid every this many epochs.
    #[arg(long, default_value_t = 10)]
    sample_every: usize,
    /// Save a checkpoint every this many epochs.
    #[arg(long, default_value_t = 10)]
    checkpoint_every: usize,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    keep_checkpoints: usize,
    /// Read the losses back from the device every this many steps (and at every epoch's end):
    /// the steps in between never wait for a GPU, and the progress line moves in these jumps.
    #[arg(long, default_value_t = DEFAULT_LOG_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    log_every: u64,
    /// Seed of the initial weights, data order, noise and sample grids.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: flex (CPU), ndarray, wgpu[:N] or cuda[:N] (GPU backends need
    /// `--features wgpu` or `--features cuda`).
    #[arg(long, default_value = "flex", conflicts_with = "devices")]
    device: DeviceSpec,
    /// Several devices of one backend for data-parallel training, e.g. cuda:0,cuda:1.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<DeviceSpec>,
    /// Train across processes: none, or mpi (one process per `mpirun`/`srun` task, each with
    /// its --device or --devices; needs `--features mpi`).
    #[arg(long, default_value = "none", value_parser = ["none", "mpi"])]
    distributed: String,
    /// Keep the last this many images of each folder under --data (in path order) out of
    /// training (the bundled faces with 2: 8.png and 9.png of each person, the photos the face
    /// encoder did not train on either); the evaluations measure memorisation against them.
    #[arg(long, default_value_t = 0)]
    hold_out: usize,
    /// Score the EMA model's samples every this many epochs (and after the last) into
    /// metrics.csv and metrics.png: Fréchet distance, KID, precision, recall, memorisation.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Samples drawn per evaluation.
    #[arg(long, default_value_t = 1000)]
    eval_count: usize,
    /// The sampler of the evaluations' samples.
    #[arg(long, default_value = "ddim", value_parser = names::by_name::<SamplerName>(&SamplerName::NAMES, SamplerName::ALIASES.map(|(alias, _)| alias)))]
    eval_sampler: SamplerName,
    /// Sampler steps of the evaluations' samples.
    #[arg(long, default_value_t = 10)]
    eval_steps: usize,
    /// pytorch-fid's InceptionV3 weights (pt_inception-2015-12-05-*.pth) for the evaluations
    /// (default: KILN_INCEPTION_WEIGHTS, else the bundled face encoder).
    #[arg(long, requires = "eval_every")]
    inception_weights: Option<PathBuf>,
    /// The run folder.
    #[arg(long, default_value = "runs/faces")]
    out: PathBuf,
    /// Continue the run in --out from its newest intact checkpoint (a damaged newer one is
    /// renamed `step-NNNNNNNN.damaged` with a warning).
    #[arg(long)]
    resume: bool,
    /// Verify every checkpoint of the run in --out against its checksums, list each as intact
    /// or damaged, and exit (status 1 if any is damaged); trains nothing.
    #[arg(long, conflicts_with = "resume")]
    check: bool,
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let args = Args::parse();
    if args.check {
        return check(&args.out);
    }
    let devices = if args.devices.is_empty() {
        vec![args.device]
    } else {
        args.devices.clone()
    };
    let processes = match processes(&args.distributed) {
        Ok(processes) => processes,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run_on_all(
        &devices,
        Training {
            args,
            processes: &*processes,
        },
    );
    let code = exit::exit_code(outcome);
    if code != ExitCode::SUCCESS && processes.size() > 1 {
        // The other processes may be waiting for this one in an exchange: end them all.
        processes.abort(1);
    }
    code
}

/// The processes of the run for `--distributed`.
fn processes(distributed: &str) -> Result<Box<dyn ProcessGroup>, Box<dyn std::error::Error>> {
    match distributed {
        #[cfg(feature = "mpi")]
        "mpi" => Ok(Box::new(kiln::train::MpiProcesses::init()?)),
        #[cfg(not(feature = "mpi"))]
        "mpi" => Err("--distributed mpi needs a build with `--features mpi`".into()),
        _ => Ok(Box::new(SingleProcess)),
    }
}

/// `--check`: one line per checkpoint, newest first.
fn check(out: &std::path::Path) -> ExitCode {
    let checkpoints = match check_run(out) {
        Ok(checkpoints) => checkpoints,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if checkpoints.is_empty() {
        eprintln!(
            "error: no checkpoints in {}",
            out.join("checkpoints").display()
        );
        return ExitCode::FAILURE;
    }
    let mut damaged = 0;
    for checkpoint in &checkpoints {
        let latest = if checkpoint.latest { " (latest)" } else { "" };
        match &checkpoint.verdict {
            Ok(state) => println!(
                "intact   {}{latest}: step {}",
                checkpoint.path.display(),
                state.step
            ),
            Err(damage) => {
                damaged += 1;
                println!("damaged  {}{latest}: {damage}", checkpoint.path.display());
            }
        }
    }
    if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Training<'p> {
    args: Args,
    processes: &'p dyn ProcessGroup,
}

impl MultiDeviceTask for Training<'_> {
    type Output = Result<(), Box<dyn std::error::Error>>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output {
        let Training { args, processes } = self;
        // Only the first process talks; the others report nothing but their errors.
        let talks = processes.rank() == 0;
        let data_dir = args
            .data
            .clone()
            .unwrap_or_else(|| bundled::BUNDLED_FACES.into());
        let channels = args
            .channels
            .unwrap_or(if args.data.is_none() { 1 } else { 3 });
        let started = Instant::now();
        // Holding images out of each folder needs the folders as labels.
        let options = ImageFolderOptions {
            image_size: args.image_size as u32,
            channels,
            strict: args.strict,
            labels: if args.hold_out > 0 {
                Labels::Folders
            } else {
                args.labels
            },
        };
        let data = ImageFolder::load(&data_dir, options, |event| match event {
            _ if !talks => {}
            LoadEvent::Progress { done, total } => {
                eprint!("\rloading {}: {done}/{total} images", data_dir.display());
            }
            LoadEvent::Skipped(file) => {
                eprintln!(
                    "\nwarning: skipped {}: {}",
                    file.path.display(),
                    file.reason
                );
            }
            LoadEvent::Misnamed {
                path,
                content,
                extension,
            } => {
                eprintln!(
                    "\nwarning: {} is {content:?} named as {extension:?}; read as {content:?}",
                    path.display()
                );
            }
        })?;
        let (data, held_out) = hold_out(data, args.hold_out, args.labels)?;
        if talks {
            report_data(&data, &data_dir, channels, args.image_size, started);
            if let Some(held_out) = &held_out {
                eprintln!("held out {} images", held_out.len());
            }
        }
        let config = train_config(&args, channels, data.class_names());
        // Rank 0 alone evaluates.
        let scorer = match args.eval_every {
            Some(_) if talks => {
                let weights = args.inception_weights.as_deref();
                let scorer::Scoring { scorer, space } =
                    scorer::scorer::<B>(&data, held_out.as_ref(), weights, &devices[0])?;
                eprintln!("evaluating in {space}'s features");
                Some(scorer)
            }
            _ => None,
        };

        let stop = progress::stop_on_ctrl_c()?;
        let run = RunOptions {
            processes,
            log_every: args.log_every,
            evaluation: args
                .eval_every
                .zip(scorer.as_deref())
                .map(|(every_epochs, scorer)| Evaluation {
                    every_epochs,
                    count: args.eval_count,
                    sampler: args.eval_sampler,
                    steps: args.eval_steps,
                    scorer,
                }),
            ..RunOptions::new(&args.out, args.resume, &stop)
        };
        let mut progress = Progress::new(config.epochs);
        let summary = train::<Autodiff<B>>(&config, &data, &devices, run, |event| {
            if talks {
                progress.show(&event)
            }
        })
        .map_err(|error| match processes.size() {
            1 => error.to_string(),
            _ => format!("rank {}: {error}", processes.rank()),
        })?;
        if !talks {
            return Ok(());
        }
        eprintln!();
        if summary.interrupted {
            println!(
                "stopped at step {}; continue with --resume --out {}",
                summary.steps,
                args.out.display()
            );
        } else {
            println!("done: {} steps in {:.1?}", summary.steps, started.elapsed());
        }
        if let Some(montage) = summary.montage {
            println!("training progression: {}", montage.display());
        }
        if let Some(curve) = summary.loss_curve {
            println!("loss curve: {}", curve.display());
        }
        if let Some(curve) = summary.metrics_curve {
            println!("FD curve: {}", curve.display());
        }
        Ok(())
    }
}

/// `data` without the last `count` images of each folder, and those images (none when `count`
/// is 0); the training images keep their folders as labels only when `labels` asks for them.
fn hold_out(
    data: ImageFolder,
    count: usize,
    labels: Labels,
) -> Result<(ImageFolder, Option<ImageFolder>), DatasetError> {
    let Some(folders) = data.labels().filter(|_| count > 0) else {
        return Ok((data, None));
    };
    let split = IdentitySplit::new(folders, count);
    let held_out = data.subset(&split.held_out)?.without_labels();
    let training = data.subset(&split.train)?;
    Ok(match labels {
        Labels::Folders => (training, Some(held_out)),
        Labels::None => (training.without_labels(), Some(held_out)),
    })
}

/// One line about the loaded data, and the classes if it has any.
fn report_data(
    data: &ImageFolder,
    folder: &std::path::Path,
    channels: usize,
    image_size: usize,
    started: Instant,
) {
    eprintln!(
        "\nloaded {} images ({channels}×{image_size}×{image_size}) from {} in {:.1?}{}",
        data.len(),
        folder.display(),
        started.elapsed(),
        match data.skipped().len() {
            0 => String::new(),
            n => format!("; skipped {n} unreadable files"),
        }
    );
    if !data.class_names().is_empty() {
        eprintln!(
            "{} classes: {}",
            data.class_names().len(),
            data.class_names().join(" ")
        );
    }
}

/// The run's configuration from the flags, class-conditional when the data has `classes`.
fn train_config(args: &Args, channels: usize, classes: &[String]) -> TrainConfig {
    let learns_variance = args.variance_type == "learned_range";
    let unet = args
        .preset
        .config(channels)
        .with_out_channels(if learns_variance {
            2 * channels
        } else {
            channels
        })
        .with_num_class_embeds((!classes.is_empty()).then_some(classes.len() + 1));
    let conditioning = (!classes.is_empty())
        .then(|| ClassConditioning::new(classes.to_vec()).with_label_dropout(args.label_dropout));
    let rectified_flow =
        args.prediction == "flow_prediction" && args.beta_schedule == "rectified_flow";
    let density = match (&args.timestep_density, rectified_flow) {
        (Some(density), _) => density.as_str(),
        (None, true) => "logit_normal",
        (None, false) => "uniform",
    };
    TrainConfig::new(unet, args.image_size)
        .with_classes(conditioning)
        .with_epochs(args.epochs)
        .with_batch_size(args.batch_size)
        .with_grad_accumulation(args.grad_accumulation)
        .with_learning_rate(args.lr)
        .with_warmup_steps(args.warmup_steps)
        .with_lr_schedule((args.lr_schedule != "constant").then(|| args.lr_schedule.clone()))
        .with_max_grad_norm((args.max_grad_norm > 0.0).then_some(args.max_grad_norm))
        .with_ema_decay(args.ema_decay)
        .with_prediction(args.prediction.clone())
        .with_beta_schedule(args.beta_schedule.clone())
        .with_rescale_betas_zero_snr(args.rescale_betas_zero_snr.then_some(true))
        .with_variance_type(Some(args.variance_type.clone()))
        .with_min_snr_gamma(args.min_snr_gamma)
        .with_input_perturbation(args.input_perturbation)
        .with_noise_offset(args.noise_offset)
        .with_timestep_density(Some(
            TimestepDensity::new(density.into())
                .with_logit_mean(args.logit_mean)
                .with_logit_std(args.logit_std)
                .with_mode_scale(args.mode_scale),
        ))
        .with_sample_every_epochs(args.sample_every)
        .with_checkpoint_every_epochs(args.checkpoint_every)
        .with_keep_checkpoints(args.keep_checkpoints)
        .with_seed(args.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheme of the timestep density `face_train` records for `flags`.
    fn scheme(flags: &[&str]) -> String {
        let args = Args::try_parse_from(std::iter::once(&"face_train").chain(flags)).unwrap();
        let config = train_config(&args, 1, &[]);
        config.timestep_density.expect("always recorded").scheme
    }

    #[test]
    fn rectified_flow_draws_logit_normal_timesteps_unless_told_otherwise() {
        let flow = [
            "--prediction",
            "flow_prediction",
            "--beta-schedule",
            "rectified_flow",
        ];
        assert_eq!(scheme(&flow), "logit_normal");
        assert_eq!(
            scheme(&[&flow[..], &["--timestep-density", "uniform"]].concat()),
            "uniform"
        );
        assert_eq!(
            scheme(&[&flow[..], &["--timestep-density", "mode"]].concat()),
            "mode"
        );
        // Velocity on another path, x_0 on rectified flow's path, and the default run: uniform.
        assert_eq!(scheme(&flow[..2]), "uniform");
        assert_eq!(
            scheme(&[&["--prediction", "sample"], &flow[2..]].concat()),
            "uniform"
        );
        assert_eq!(scheme(&[]), "uniform");
        assert_eq!(scheme(&["--timestep-density", "cosmap"]), "cosmap");
    }
}
