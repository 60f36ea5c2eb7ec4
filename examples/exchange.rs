//! Times one training step's gradient exchange for a UNet preset: what data-parallel training
//! adds to every step (docs/training.md, "Several GPUs, several machines").
//!
//! ```text
//! cargo run --release --example exchange -- --preset faces64 --threads 2
//! cargo build --release --features mpi --example exchange
//! mpirun -np 2 target/release/examples/exchange --preset faces64 --distributed mpi
//! ```
//!
//! With `--threads N`, N threads on the CPU device sum a gradient per parameter with
//! burn-collective's all-reduce, one call per parameter in a fixed order, as the trainer's
//! workers do; for comparison it also times what the alternative design would cost — one
//! AdamW step on one replica followed by a broadcast of every parameter from it — against the
//! AdamW step that every replica takes in parallel instead. With `--distributed mpi`, the
//! processes sum one flat buffer of all parameters with one `MPI_Allreduce`, as the trainer's
//! processes do. Prints medians over the repeats, after one warm-up.

use std::process::ExitCode;
use std::sync::Barrier;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use clap::Parser;
use kiln::timing::median_time;
use kiln::train::ProcessGroup;
use kiln::unet::{UNet, UNetConfig, UNetPreset};

#[path = "common/names.rs"]
mod names;

/// Times the gradient exchange of one training step.
#[derive(Parser, Debug)]
struct Args {
    /// The UNet (3 channels).
    #[arg(long, default_value = "faces32", value_parser = names::by_name::<UNetPreset>(&UNetPreset::NAMES, []))]
    preset: UNetPreset,
    /// Threads exchanging with burn-collective (ignored with --distributed mpi).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// none, or mpi (needs `--features mpi` and `mpirun`).
    #[arg(long, default_value = "none", value_parser = ["none", "mpi"])]
    distributed: String,
    /// Timed exchanges.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.preset.config(3);
    let device = Default::default();
    let model = match config.init::<Flex>(&device) {
        Ok(model) => model,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut sizes = TensorSizes(Vec::new());
    model.visit(&mut sizes);
    let sizes = sizes.0;
    let parameters: usize = sizes.iter().sum();
    let megabytes = parameters as f64 * 4.0 / 1e6;
    let (median, how) = match args.distributed.as_str() {
        "mpi" => match processes() {
            Ok(processes) => {
                let mut buffer = vec![1.0f32; parameters];
                let median = median_time(args.repeats, || processes.all_reduce_sum(&mut buffer));
                if processes.rank() != 0 {
                    return ExitCode::SUCCESS;
                }
                (
                    median,
                    format!("MPI_Allreduce over {} processes", processes.size()),
                )
            }
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            let broadcast = threads(&sizes, args.threads, args.repeats, Exchange::Broadcast);
            let step = adamw_step(&config, args.repeats);
            let steps = std::thread::scope(|scope| {
                let replicas: Vec<_> = (0..args.threads)
                    .map(|_| scope.spawn(|| adamw_step(&config, args.repeats)))
                    .collect();
                replicas
                    .into_iter()
                    .map(|replica| replica.join().expect("replica"))
                    .max()
            })
            .expect("at least one thread");
            println!(
                "{}: one AdamW step {:.2} ms + broadcast from it to {} threads {:.2} ms, \
                 or an AdamW step on each of the {} threads at once {:.2} ms (medians)",
                args.preset,
                step.as_secs_f64() * 1e3,
                args.threads,
                broadcast.as_secs_f64() * 1e3,
                args.threads,
                steps.as_secs_f64() * 1e3
            );
            (
                threads(&sizes, args.threads, args.repeats, Exchange::AllReduce),
                format!("burn-collective all-reduce over {} threads", args.threads),
            )
        }
    };
    println!(
        "{}: {parameters} parameters in {} tensors ({megabytes:.1} MB), {how}: median {:.2} ms",
        args.preset,
        sizes.len(),
        median.as_secs_f64() * 1e3
    );
    ExitCode::SUCCESS
}

/// The number of values of each float parameter, in the module's order.
struct TensorSizes(Vec<usize>);

impl ModuleVisitor<Flex> for TensorSizes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Flex, D>>) {
        self.0.push(param.shape().num_elements());
    }
}

/// The MPI job this process belongs to.
fn processes() -> Result<Box<dyn ProcessGroup>, Box<dyn std::error::Error>> {
    #[cfg(feature = "mpi")]
    return Ok(Box::new(kiln::train::MpiProcesses::init()?));
    #[cfg(not(feature = "mpi"))]
    Err("--distributed mpi needs a build with `--features mpi`".into())
}

/// A collective operation between threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// Every thread gets the sum of every thread's tensor.
    AllReduce,
    /// Every thread gets thread 0's tensor.
    Broadcast,
}

/// The median time for `count` threads to exchange one tensor per entry of `sizes`.
fn threads(sizes: &[usize], count: usize, repeats: usize, exchange: Exchange) -> Duration {
    let start = Barrier::new(count);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..count)
            .map(|index| {
                let start = &start;
                scope.spawn(move || {
                    let device = Default::default();
                    let peer = PeerId(index as u32);
                    let config = CollectiveConfig::default().with_num_devices(count);
                    collective::register::<Flex>(peer, device, config).expect("register");
                    let gradients: Vec<Tensor<Flex, 1>> = sizes
                        .iter()
                        .map(|&size| Tensor::ones([size], &device))
                        .collect();
                    start.wait();
                    let median = median_time(repeats, || {
                        for gradient in &gradients {
                            let tensor = gradient.clone().into_primitive().tensor();
                            let result = match exchange {
                                Exchange::AllReduce => collective::all_reduce::<Flex>(
                                    peer,
                                    tensor,
                                    ReduceOperation::Sum,
                                ),
                                Exchange::Broadcast => collective::broadcast::<Flex>(
                                    peer,
                                    (index == 0).then_some(tensor),
                                ),
                            };
                            drop(result.expect("exchange"));
                        }
                    });
                    collective::finish_collective::<Flex>(peer).expect("finish");
                    median
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("worker"))
            .max()
            .expect("at least one thread")
    })
}

/// The median time of one AdamW step of a freshly initialised `config` model on the CPU, with
/// gradients of ones.
fn adamw_step(config: &UNetConfig, repeats: usize) -> Duration {
    type Trained = Autodiff<Flex>;
    let device = Default::default();
    let mut model = config.init::<Trained>(&device).expect("a valid preset");
    let mut optimizer = AdamWConfig::new().init::<Trained, UNet<Trained>>();
    let mut ones = OnesGradients(GradientsParams::new());
    model.visit(&mut ones);
    let gradients = ones.0;
    median_time(repeats, || {
        let mut again = GradientsParams::new();
        model.visit(&mut CopyGradients(&gradients, &mut again));
        model = optimizer.step(1e-4, model.clone(), again);
    })
}

/// Gradients of ones for every float parameter.
struct OnesGradients(GradientsParams);

impl ModuleVisitor<Autodiff<Flex>> for OnesGradients {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Autodiff<Flex>, D>>) {
        let ones = Tensor::<Flex, D>::ones(param.shape(), &Default::default());
        self.0.register::<Flex, D>(param.id, ones);
    }
}

/// A copy of the first gradients into the second (sharing the tensors' buffers).
struct CopyGradients<'a>(&'a GradientsParams, &'a mut GradientsParams);

impl ModuleVisitor<Autodiff<Flex>> for CopyGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Autodiff<Flex>, D>>) {
        if let Some(gradient) = self.0.get::<Flex, D>(param.id) {
            self.1.register::<Flex, D>(param.id, gradient);
        }
    }
}
