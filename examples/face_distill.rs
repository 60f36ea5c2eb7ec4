//! Distils a trained face model into a student that samples in a few steps, starting from the
//! teacher's weights, by one of three methods:
//!
//! - `--method progressive` (Salimans & Ho 2022): each round trains a student to take one DDIM
//!   step where the teacher takes two, so the steps halve from `--from-steps` down to
//!   `--to-steps`. Each round is a run folder of its own, `OUT/steps-N` for the student of N
//!   steps, and the next round's teacher.
//! - `--method consistency` (Song et al. 2023): a progressive round of 100 steps into 50 makes
//!   the teacher predict v (`OUT/steps-50`), then `OUT/consistency` trains a consistency model
//!   on its DDIM grid of 10 (`kiln::train::CONSISTENCY_GRID`); it samples with TCD (γ = 0:
//!   deterministic steps along its trajectory) or LCM on that grid in 1 to 10 steps (its grids
//!   in `--to-steps`, with TCD).
//! - `--method trajectory` (Zheng et al. 2024): the same round into v, then
//!   `OUT/trajectory` trains a trajectory consistency model on the same grid, whose answers
//!   jump to points of the trajectory drawn below the pair instead of to its end; it samples
//!   with TCD (γ = 0) as well, and unlike the consistency student gets better with more
//!   steps: on the bundled faces it is the better of the two from 4 steps on, the
//!   consistency student in 2 (docs/distillation.md).
//!
//! ```text
//! cargo run --release --example face_distill -- --from runs/faces --to-steps 4
//! cargo run --release --example face_sample -- --checkpoint runs/faces-distill/steps-4
//! cargo run --release --example face_distill -- --from runs/faces --method consistency
//! cargo run --release --example face_sample -- --checkpoint runs/faces-distill/consistency
//! ```
//!
//! face_sample reads how a student samples from its run (DDIM in 4 steps on the `trailing`
//! grid; TCD with γ = 0 in `--to-steps` steps on the grid of 10); its flags change any of it
//! (`--steps 8`, `--sampler lcm`).
//!
//! Every run has face_train's checkpoints, grids (drawn with the student's sampler), loss log
//! and `--resume`. The progressive students predict v (Salimans & Ho's choice: an
//! ε-predicting student's x̂ = (z − σ ε̂)/α blows up at high noise, where a few-step sampler
//! starts). A consistency student must also start as a model whose x̂ is already an answer,
//! which distillation sharpens: started from ε weights, a v student answers noise, which its
//! self-consistency loss cannot tell from faces at high noise; hence the round into v first,
//! whose one DDIM step is two of the teacher's (docs/distillation.md). Finished runs are
//! skipped; a run that was stopped continues with `--resume`.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Parser;
use kiln::device::{DeviceSpec, MultiDeviceTask, run_on_all};
use kiln::pipeline::RunFolder;
use kiln::train::{
    Distillation, ImageFolder, ImageFolderOptions, Labels, RunOptions, TrainConfig, read_state,
    train,
};

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/bundled.rs"]
mod bundled;
#[path = "common/exit.rs"]
mod exit;
#[path = "common/progress.rs"]
mod progress;

use progress::Progress;

/// Distils a face_train run into a student that samples in a few steps.
#[derive(Parser, Debug)]
struct Args {
    /// The teacher: a face_train run folder.
    #[arg(long, default_value = "runs/faces")]
    from: PathBuf,
    /// Where the rounds' run folders go (`steps-N` for the student of N steps).
    #[arg(long, default_value = "runs/faces-distill")]
    out: PathBuf,
    /// `progressive` (rounds that halve the DDIM steps), `consistency` or `trajectory` (a
    /// round into v, then one run).
    #[arg(long, default_value = "progressive", value_parser = ["progressive", "consistency", "trajectory"])]
    method: String,
    /// Progressive: the teacher's DDIM steps; the first student takes half as many.
    #[arg(long, default_value_t = 64)]
    from_steps: usize,
    /// Progressive: the last student's DDIM steps (`--from-steps` halved a whole number of
    /// times). Consistency and trajectory: the TCD steps of the run's grids.
    #[arg(long, default_value_t = 4)]
    to_steps: usize,
    /// Passes over the data in each round (progressive: 10 by default; consistency and
    /// trajectory: 20, for the round into v and for the consistency or trajectory run).
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate of each run (AdamW, decayed along a cosine).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Steps of linear learning-rate warm-up in each run.
    #[arg(long, default_value_t = 10)]
    warmup_steps: usize,
    /// The training images (default: the bundled faces, which the teacher trained on).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Continue a stopped run.
    #[arg(long)]
    resume: bool,
    /// The device: flex (CPU), ndarray, wgpu, cuda (cuda:N for another GPU).
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let args = Args::parse();
    let device = args.device;
    exit::exit_code(run_on_all(&[device], Distilling { args }))
}

struct Distilling {
    args: Args,
}

impl MultiDeviceTask for Distilling {
    type Output = Result<(), Box<dyn Error>>;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output {
        let Distilling { args } = self;
        let stages = stages(&args)?;
        let stop = progress::stop_on_ctrl_c()?;
        let started = Instant::now();
        let mut data: Option<ImageFolder> = None;
        for stage in &stages {
            let Stage {
                teacher, out, name, ..
            } = stage;
            let config = stage_config(&args, stage)?;
            let data = match &mut data {
                Some(data) => data,
                None => data.insert(load_data(&args, &config)?),
            };
            let total_steps = (data.len() / config.batch_size).max(1) as u64 * config.epochs as u64;
            match RunFolder::new(out).latest_checkpoint()? {
                Some(latest) if read_state(&latest)?.step >= total_steps => {
                    eprintln!("{name}: done before, in {}", out.display());
                }
                latest => {
                    eprintln!(
                        "{name}: teacher {}, student {}",
                        teacher.display(),
                        out.display()
                    );
                    let resume = latest.is_some() && args.resume;
                    let mut progress = Progress::new(config.epochs);
                    let options = RunOptions::new(out, resume, &stop);
                    let summary =
                        train::<Autodiff<B>>(&config, data, &devices, options, |event| {
                            progress.show(&event)
                        })?;
                    eprintln!();
                    if summary.interrupted {
                        println!(
                            "stopped at step {} of {name}; continue with --resume",
                            summary.steps
                        );
                        return Ok(());
                    }
                }
            }
        }
        let student = &stages[stages.len() - 1].out;
        println!(
            "done in {:.1?}; sample with: face_sample --checkpoint {}",
            started.elapsed(),
            student.display(),
        );
        Ok(())
    }
}

/// One training run of a distillation: a student distilled from `teacher` into `out`.
struct Stage {
    teacher: PathBuf,
    out: PathBuf,
    /// What the run is, for the terminal.
    name: String,
    /// The run's distillation.
    distillation: Distillation,
}

/// The runs of the distillation `args` asks for, each the next one's teacher: the progressive
/// rounds, or a round into 50 steps (the teacher in v) and the consistency or trajectory run.
fn stages(args: &Args) -> Result<Vec<Stage>, Box<dyn Error>> {
    let consistency = args.method != "progressive";
    let rounds = if consistency {
        vec![V_ROUND_STEPS]
    } else {
        student_steps(args.from_steps, args.to_steps)?
    };
    let mut teacher = args.from.clone();
    let mut stages = Vec::new();
    for steps in rounds {
        let out = args.out.join(format!("steps-{steps}"));
        stages.push(Stage {
            teacher: teacher.clone(),
            out: out.clone(),
            name: format!("round to {steps} steps (teacher {} steps)", 2 * steps),
            distillation: Distillation::new(teacher.display().to_string(), steps),
        });
        teacher = out;
    }
    if consistency {
        stages.push(Stage {
            distillation: Distillation::new(teacher.display().to_string(), args.to_steps)
                .with_method(Some(args.method.clone())),
            teacher,
            out: args.out.join(&args.method),
            name: match args.method.as_str() {
                "trajectory" => "trajectory consistency distillation",
                _ => "consistency distillation",
            }
            .into(),
        });
    }
    Ok(stages)
}

/// The steps of the progressive round that makes a consistency run's teacher predict v.
const V_ROUND_STEPS: usize = 50;

/// The students' steps, `from / 2` down to `to`, halving each round.
fn student_steps(from: usize, to: usize) -> Result<Vec<usize>, Box<dyn Error>> {
    let mut rounds = Vec::new();
    let mut steps = from;
    while steps > to && steps.is_multiple_of(2) {
        steps /= 2;
        rounds.push(steps);
    }
    if steps != to || rounds.is_empty() || to == 0 {
        return Err(format!(
            "--from-steps {from} must be --to-steps {to} doubled one or more times"
        )
        .into());
    }
    Ok(rounds)
}

/// The run of `stage`: the teacher's run, with v-prediction, this run's length and learning
/// rate, and the distillation (without the teacher's input perturbation, which a student's
/// run refuses).
fn stage_config(args: &Args, stage: &Stage) -> Result<TrainConfig, Box<dyn Error>> {
    let teacher = &stage.teacher;
    let latest = RunFolder::new(teacher)
        .latest_checkpoint()?
        .ok_or_else(|| {
            format!(
                "{} holds no checkpoint to distil (train it with face_train first)",
                teacher.display()
            )
        })?;
    let teacher_config = read_state(&latest)?.config;
    let epochs = args.epochs.unwrap_or(match args.method.as_str() {
        "progressive" => 10,
        _ => 20,
    });
    let sample_every = teacher_config.sample_every_epochs.min(epochs);
    Ok(teacher_config
        .with_prediction("v_prediction".into())
        .with_distillation(Some(stage.distillation.clone()))
        .with_input_perturbation(None)
        .with_noise_offset(None)
        .with_epochs(epochs)
        .with_learning_rate(args.lr)
        .with_warmup_steps(args.warmup_steps)
        .with_lr_schedule(Some("cosine".into()))
        .with_sample_every_epochs(sample_every)
        .with_checkpoint_every_epochs(epochs))
}

/// The training images, as the teacher's run took them.
fn load_data(args: &Args, config: &TrainConfig) -> Result<ImageFolder, Box<dyn Error>> {
    let folder = args
        .data
        .clone()
        .unwrap_or_else(|| bundled::BUNDLED_FACES.into());
    let options = ImageFolderOptions {
        image_size: config.image_size as u32,
        channels: config.unet.in_channels,
        strict: false,
        labels: match config.classes {
            Some(_) => Labels::Folders,
            None => Labels::None,
        },
    };
    let data = ImageFolder::load(&folder, options, |_| {})?;
    eprintln!("loaded {} images from {}", data.len(), folder.display());
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_halve_the_steps_down_to_the_last() {
        assert_eq!(student_steps(64, 4).unwrap(), [32, 16, 8, 4]);
        assert_eq!(student_steps(2, 1).unwrap(), [1]);
        for (from, to) in [(64, 5), (4, 4), (3, 1), (8, 0), (4, 8)] {
            assert!(student_steps(from, to).is_err(), "{from} → {to}");
        }
    }
}
