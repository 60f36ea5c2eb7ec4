//! How close each sampler's samples come to the data, step count by step count, with the exact
//! denoiser of a Gaussian mixture standing in for a perfectly trained model.
//!
//! ```text
//! cargo run --release --example sampler_accuracy
//! cargo run --release --example sampler_accuracy -- --mixture "0.5:-1,0:0.01;0.5:1,0:0.01" --steps 5,10,20
//! cargo run --release --example sampler_accuracy -- --mixture-json mixture.json --write-samples out/
//! ```
//!
//! Prints a table of sliced Wasserstein-2 distances (128 random directions) between each
//! sampler's samples and as many exact draws from the mixture, with the distance between two
//! independent exact draws as the noise floor: a sampler at the floor is as good as exact.
//! Every sampler uses `trailing` timesteps (so all start from pure noise at t = T − 1) and its
//! diffusers defaults otherwise.
//!
//! With `--noise-path`, only the SDE and ancestral samplers that take one run, each seeded once for all step
//! counts, and a second table gives the root-mean-square distance of each run's points to the
//! same points in the most steps: how far one seed's samples move as the steps change
//! (`cargo run --release --example sampler_accuracy -- --noise-path brownian --steps 10,20,50,200`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use clap::Parser;
use kiln::device::{BackendTask, DeviceSpec, run_on};
use kiln::forward::standard_normal;
use kiln::npy;
use kiln::pipeline::{NamedRun, SamplerName, sample_by_name};
use kiln::sampler::{GaussianMixture, NoisePath, SigmaSpacing, sliced_wasserstein_2};
use kiln::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use rand::{SeedableRng, rngs::StdRng};
use serde::Deserialize;

#[path = "common/names.rs"]
mod names;

/// Measures every sampler against the exact denoiser of a Gaussian mixture.
#[derive(Parser, Debug)]
struct Args {
    /// The mixture as `weight:mean,mean,…:variance` components separated by `;`.
    #[arg(long, default_value = "0.3:-1,0.5:0.04;0.7:0.8,-0.4:0.09")]
    mixture: String,
    /// A JSON file {"weights": [..], "means": [[..], ..], "variances": [..]}; overrides
    /// --mixture.
    #[arg(long)]
    mixture_json: Option<PathBuf>,
    /// The β schedule (linear, scaled_linear, squaredcos_cap_v2, sigmoid).
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// T, the number of training timesteps.
    #[arg(long, default_value_t = 1000)]
    timesteps: usize,
    /// Step counts, comma-separated.
    #[arg(long, default_value = "5,10,20,50,100,1000", value_delimiter = ',')]
    steps: Vec<usize>,
    /// Samplers, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_parser = names::by_name::<SamplerName>(&SamplerName::NAMES, SamplerName::ALIASES.map(|(alias, _)| alias)))]
    samplers: Vec<SamplerName>,
    /// Place the noise levels of the samplers that step through σ in this spacing instead of
    /// at the grid's timesteps (karras, exponential, beta); the other samplers are left out.
    #[arg(long, value_parser = names::by_name::<SigmaSpacing>(&SigmaSpacing::NAMES, []))]
    sigmas: Option<SigmaSpacing>,
    /// Run the samplers that take a noise path (dpm++2m_sde, dpm++sde, euler_a, dpm2_a) with their Brownian
    /// noise drawn step by step (sequential) or read off a Brownian tree (brownian), seeding
    /// each sampler once for all step counts, and print how far each run's points lie from
    /// the same points in the most steps; the other samplers are left out.
    #[arg(long, value_parser = names::by_name::<NoisePath>(&NoisePath::NAMES, []))]
    noise_path: Option<NoisePath>,
    /// Points per sampler.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Seed of the initial noise, the exact draws and (with each sampler's name and step
    /// count) the samplers' own noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Initial noise to use instead of drawing it: a `[count, d]` array as .npy or JSON
    /// (a list of rows).
    #[arg(long)]
    noise: Option<PathBuf>,
    /// Write each sampler's final samples to this folder as `<sampler>_<steps>.npy`.
    #[arg(long)]
    write_samples: Option<PathBuf>,
    /// Write samples as JSON (a list of rows) instead of .npy.
    #[arg(long)]
    json: bool,
    /// flex, ndarray, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
}

#[derive(Deserialize)]
struct MixtureFile {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    variances: Vec<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let device = args.device;
    match run_on(device, Table(args)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

struct Table(Args);

impl BackendTask for Table {
    type Output = Result<(), Error>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let args = self.0;
        let beta = BetaSchedule::from_name(&args.schedule)
            .ok_or_else(|| format!("unknown schedule {:?}", args.schedule))?;
        let schedule = NoiseSchedule::new(&beta, args.timesteps)?;
        let oracle = mixture(&args, schedule.clone())?;
        let dims = oracle.dims();
        let mut rng = StdRng::seed_from_u64(args.seed);
        let exact = values(oracle.sample_data::<B>(args.count, &mut rng, &device));
        let floor = values(oracle.sample_data::<B>(args.count, &mut rng, &device));
        let noise = match &args.noise {
            Some(path) => read_points::<B>(path, args.count, dims, &device)?,
            None => standard_normal::<B, 2>([args.count, dims], &mut rng, &device),
        };
        let distance = |points: &[f32]| {
            let mut directions = StdRng::seed_from_u64(args.seed + 1);
            sliced_wasserstein_2(points, &exact, dims, 128, &mut directions).unwrap_or(f64::NAN)
        };
        let samplers = if args.samplers.is_empty() {
            SamplerName::ALL.to_vec()
        } else {
            args.samplers.clone()
        };
        let samplers: Vec<SamplerName> = samplers
            .into_iter()
            .filter(|sampler| {
                !args.sigmas.is_some_and(SigmaSpacing::is_spaced) || sampler.takes_sigma_spacing()
            })
            .filter(|sampler| args.noise_path.is_none() || sampler.takes_noise_path())
            .collect();
        let finest = args.steps.iter().copied().max().unwrap_or(0);
        let mut moves = Vec::new();

        print!("{:<12}", "sampler");
        for steps in &args.steps {
            print!("{:>10}", steps);
        }
        println!();
        for sampler in samplers {
            print!("{:<12}", sampler.to_string());
            let mut runs = Vec::new();
            for &steps in &args.steps {
                let run = NamedRun {
                    spacing: Some(TimestepSpacing::Trailing),
                    sigma_spacing: args.sigmas,
                    noise_path: args.noise_path.unwrap_or_default(),
                    ..NamedRun::new(sampler, steps, false)
                };
                // With a noise path, one seed for all step counts, so a tree is one path.
                let mut rng = run_rng(args.seed, sampler, args.noise_path.map_or(steps, |_| 0));
                let result =
                    sample_by_name(run, &schedule, &oracle, noise.clone(), &mut rng, |_| {});
                match result {
                    Ok(samples) => {
                        let samples = values(samples);
                        print!("{:>10.4}", distance(&samples));
                        if let Some(folder) = &args.write_samples {
                            let path = folder.join(format!("{sampler}_{steps}"));
                            write_points(&path, &samples, dims, args.json)?;
                        }
                        runs.push((steps, Some(samples)));
                    }
                    Err(error) => {
                        print!(
                            "{:>10}",
                            format!("({error})").chars().take(9).collect::<String>()
                        );
                        runs.push((steps, None));
                    }
                }
            }
            println!();
            moves.push((sampler, runs));
        }
        println!(
            "{:<12}{:>10.4}  (two independent exact draws)",
            "floor",
            distance(&floor)
        );
        if args.noise_path.is_some() {
            println!("\nRMS distance to the same points in {finest} steps");
            for (sampler, runs) in &moves {
                print!("{:<12}", sampler.to_string());
                let reference = runs.iter().find(|(steps, _)| *steps == finest);
                for (_, samples) in runs {
                    match (samples, reference) {
                        (Some(samples), Some((_, Some(reference)))) => {
                            print!("{:>10.4}", rms_distance(samples, reference, dims));
                        }
                        _ => print!("{:>10}", "-"),
                    }
                }
                println!();
            }
        }
        Ok(())
    }
}

/// √(mean over points of ‖a − b‖²) between two sets of the same points, `dims` each.
fn rms_distance(a: &[f32], b: &[f32], dims: usize) -> f64 {
    let squared: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    (squared / (a.len() / dims.max(1)) as f64).sqrt()
}

/// The RNG of a stochastic sampler's fresh noise in one run: seeded by --seed, the sampler's
/// name and the step count (through FNV-1a, stable across Rust versions), so that each entry
/// of the table comes out the same whichever samplers run beside it.
fn run_rng(seed: u64, sampler: SamplerName, steps: usize) -> StdRng {
    let key = format!("{seed}/{sampler}/{steps}");
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    StdRng::seed_from_u64(hash)
}

/// The mixture from --mixture-json or --mixture.
fn mixture(args: &Args, schedule: NoiseSchedule) -> Result<GaussianMixture, Error> {
    let file = match &args.mixture_json {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        None => parse_mixture(&args.mixture)?,
    };
    Ok(GaussianMixture::new(
        file.weights,
        file.means,
        file.variances,
        schedule,
    )?)
}

fn parse_mixture(spec: &str) -> Result<MixtureFile, Error> {
    let mut file = MixtureFile {
        weights: vec![],
        means: vec![],
        variances: vec![],
    };
    for component in spec.split(';') {
        let parts: Vec<&str> = component.split(':').collect();
        let [weight, mean, variance] = parts[..] else {
            return Err(format!("component {component:?} is not weight:mean,…:variance").into());
        };
        file.weights.push(weight.trim().parse()?);
        file.means.push(
            mean.split(',')
                .map(|m| m.trim().parse())
                .collect::<Result<_, _>>()?,
        );
        file.variances.push(variance.trim().parse()?);
    }
    Ok(file)
}

fn values(points: Tensor<impl Backend, 2>) -> Vec<f32> {
    points.into_data().to_vec().unwrap_or_default()
}

/// Reads `[count, dims]` points from .npy or JSON.
fn read_points<B: Backend>(
    path: &Path,
    count: usize,
    dims: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>, Error> {
    let (values, shape) = if path.extension().is_some_and(|e| e == "npy") {
        npy::read(path)?
    } else {
        let rows: Vec<Vec<f32>> = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let shape = [rows.len(), rows.first().map_or(0, Vec::len)];
        (rows.into_iter().flatten().collect(), shape)
    };
    if shape != [count, dims] {
        return Err(format!(
            "{}: shape {shape:?}, expected [{count}, {dims}]",
            path.display()
        )
        .into());
    }
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

fn write_points(path: &Path, values: &[f32], dims: usize, json: bool) -> Result<(), Error> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    if json {
        let rows: Vec<&[f32]> = values.chunks(dims).collect();
        std::fs::write(path.with_extension("json"), serde_json::to_string(&rows)?)?;
    } else {
        npy::write(
            &path.with_extension("npy"),
            values,
            values.len() / dims,
            dims,
        )?;
    }
    Ok(())
}
