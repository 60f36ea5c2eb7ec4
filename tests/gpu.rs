//! Kiln on a GPU backend, each result checked against the same computation on Flex (the CPU).
//!
//! The device under test is named by `KILN_TEST_DEVICE` (`wgpu` when unset; `cuda:0` on an
//! NVIDIA machine, see `scripts/gpu_check.sh`). Where its backend is not compiled in or the
//! machine has no such device, every test prints one line saying why and passes, unless
//! `KILN_TEST_DEVICE_REQUIRED=1`, which turns that line into a failure: `.ci/run` sets it and
//! runs these tests on Mesa's software Vulkan driver (lavapipe), so CI exercises the wgpu path
//! on every change.
//!
//! ```text
//! cargo test --release --features wgpu --test gpu                      # wgpu, if there is an adapter
//! KILN_TEST_DEVICE=cuda:0 cargo test --release --features cuda --test gpu
//! ```
//!
//! Shapes are few and small: a software driver compiles a shader for every new shape.
//!
//! One test is not a comparison: it counts the times a training run makes the host wait for
//! the device (on Flex, then on the device under test) and checks that only the log points do.

use std::fs;
use std::future::Future;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burn::backend::ir::{BackendIr, OperationIr, TensorId, TensorIr};
use burn::backend::router::{
    BackendRouter, MultiBackendBridge, RouterTensor, Runner, RunnerChannel, RunnerClient,
    get_client,
};
use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::backend::{DTypeUsageSet, ExecutionError};
use burn::tensor::{DType, Device, Int, Shape, Tensor, TensorData};
use kiln::device::{BackendTask, DeviceError, DeviceSpec, run_on};
use kiln::forward::standard_normal;
use kiln::pipeline::{NamedRun, RunFolder, SamplerName, sample_by_name};
use kiln::sampler::{
    Ddim, DdimConfig, Ddpm, DdpmConfig, GaussianMixture, GuidanceConfig, Guided, InversionMethod,
    Resampling, SampleClipping, image_to_image, inpaint, invert, sample,
};
use kiln::schedule::{BetaSchedule, NoiseSchedule};
use kiln::train::{
    DeviceImages, ImageFolder, ImageFolderOptions, Labels, RunOptions, TrainConfig, TrainEvent,
    train,
};
use kiln::unet::{UNet, UNetConfig, load_checkpoint, save_checkpoint};
use rand::{SeedableRng, rngs::StdRng};

type Cpu = Flex;

/// burn's backend RNG (initial weights) is global to the process, and a software GPU gains
/// nothing from two tests at once: the tests take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn my_turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The device under test (`KILN_TEST_DEVICE`, `wgpu` by default).
fn device_under_test() -> DeviceSpec {
    match std::env::var("KILN_TEST_DEVICE") {
        Ok(name) => name
            .parse()
            .unwrap_or_else(|error| panic!("KILN_TEST_DEVICE: {error}")),
        Err(_) => DeviceSpec::Wgpu(None),
    }
}

/// Runs `task` on the device under test, or says in one line why it cannot (and fails if
/// `KILN_TEST_DEVICE_REQUIRED=1`).
fn on_device_under_test<T: BackendTask<Output = ()>>(test: &str, task: T) {
    let _turn = my_turn();
    let spec = device_under_test();
    if let Err(error) = run_on(spec, task) {
        let required = std::env::var("KILN_TEST_DEVICE_REQUIRED").is_ok_and(|value| value == "1");
        assert!(!required, "{test} on {spec}: {error}");
        println!("skipped {test}: {error}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gpu-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every float parameter of a module, in module order, as one vector.
#[derive(Default)]
struct Flatten(Vec<f32>);

impl<B: Backend> ModuleVisitor<B> for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.extend(values(param.val()));
    }
}

fn flatten<B: Backend>(model: &UNet<B>) -> Vec<f32> {
    let mut all = Flatten::default();
    model.visit(&mut all);
    all.0
}

/// The tiny UNet at 16×16, batch 2, forward: unconditional with additive time conditioning,
/// and class-conditional with scale-shift conditioning. The weights are made on the CPU and
/// travel to the device through a Kiln checkpoint file.
#[test]
fn unet_forward_matches_flex() {
    on_device_under_test("unet_forward_matches_flex", ForwardMatches);
}

struct ForwardMatches;

impl BackendTask for ForwardMatches {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) {
        let dir = scratch("forward");
        let configs = [
            UNetConfig::tiny(3),
            UNetConfig::tiny(3)
                .with_scale_shift(true)
                .with_num_class_embeds(Some(5)),
        ];
        for (index, config) in configs.into_iter().enumerate() {
            let cpu = Default::default();
            Cpu::seed(&cpu, 11 + index as u64);
            let model = config.init::<Cpu>(&cpu).unwrap();
            let file = dir.join(format!("model-{index}.safetensors"));
            save_checkpoint(&model, &config, &file).unwrap();
            let (_, on_device) = load_checkpoint::<B>(&file, &device).unwrap();

            let mut rng = StdRng::seed_from_u64(index as u64);
            let x = standard_normal::<Cpu, 4>([2, 3, 16, 16], &mut rng, &cpu);
            let t = [17.0f32, 802.0];
            let labels = config.num_class_embeds.map(|_| [1i64, 4]);
            let expected = values(
                model
                    .forward(
                        x.clone(),
                        Tensor::from_floats(t, &cpu),
                        labels.map(|l| Tensor::<Cpu, 1, Int>::from_ints(l, &cpu)),
                    )
                    .unwrap(),
            );
            let got = values(
                on_device
                    .forward(
                        Tensor::from_data(x.into_data(), &device),
                        Tensor::from_floats(t, &device),
                        labels.map(|l| Tensor::<B, 1, Int>::from_ints(l, &device)),
                    )
                    .unwrap(),
            );
            let diff = max_abs_diff(&expected, &got);
            println!("UNet config {index}: max |Δ| = {diff:.1e}");
            assert!(diff <= 1e-4, "config {index}: max |Δ| = {diff:e}");
        }
    }
}

/// Every sampler Kiln offers by name, 4 steps (PNDM's fewest) on the exact denoiser of a
/// Gaussian mixture, from the same noise (and, for the stochastic ones, the same random draws).
#[test]
fn every_sampler_matches_flex_on_the_mixture() {
    on_device_under_test("every_sampler_matches_flex_on_the_mixture", SamplersMatch);
}

struct SamplersMatch;

impl BackendTask for SamplersMatch {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) {
        let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
        let oracle = GaussianMixture::new(
            vec![0.3, 0.7],
            vec![vec![-1.0, 0.5, 0.2], vec![0.8, -0.4, 0.0]],
            vec![0.04, 0.09],
            schedule,
        )
        .unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let noise = values(standard_normal::<Cpu, 2>([8, 3], &mut rng, &cpu()));
        for sampler in SamplerName::ALL {
            let expected = sample_mixture::<Cpu>(&oracle, sampler, &noise, &cpu());
            let got = sample_mixture::<B>(&oracle, sampler, &noise, &device);
            let diff = max_abs_diff(&expected, &got);
            println!("{sampler}: max |Δ| = {diff:.1e}");
            assert!(diff <= 1e-4, "{sampler}: max |Δ| = {diff:e}");
        }
    }
}

/// Guided sampling, DDIM inversion, image-to-image and inpainting on the mixture oracle (one
/// class per component), from the same noise and images as on the CPU.
#[test]
fn guidance_and_editing_match_flex_on_the_mixture() {
    on_device_under_test("guidance_and_editing_match_flex_on_the_mixture", EditsMatch);
}

struct EditsMatch;

impl BackendTask for EditsMatch {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) {
        let expected = edits::<Cpu>(&cpu());
        let got = edits::<B>(&device);
        for ((name, expected), (_, got)) in expected.iter().zip(&got) {
            assert!(got.iter().all(|v| v.is_finite()), "{name}: {got:?}");
            let diff = max_abs_diff(expected, got);
            println!("{name}: max |Δ| = {diff:.1e}; first point {:?}", &got[..3]);
            assert!(diff <= 1e-4, "{name}: max |Δ| = {diff:e}");
        }
    }
}

/// Each edit's result on `device`, by name.
fn edits<B: Backend>(device: &B::Device) -> Vec<(&'static str, Vec<f32>)> {
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    let oracle = GaussianMixture::new(
        vec![0.3, 0.7],
        vec![vec![-1.0, 0.5, 0.2], vec![0.8, -0.4, 0.0]],
        vec![0.04, 0.09],
        schedule.clone(),
    )
    .unwrap();
    let data = Tensor::<B, 2>::from_data(
        TensorData::new(
            values(oracle.sample_data::<Cpu>(8, &mut StdRng::seed_from_u64(2), &cpu())),
            [8, 3],
        ),
        device,
    );
    let noise = standard_normal::<B, 2>([8, 3], &mut StdRng::seed_from_u64(3), device);
    let unclipped = DdimConfig {
        clipping: SampleClipping::thresholding_only(None),
        ..DdimConfig::default()
    };
    let mut ddim = Ddim::new(unclipped, &schedule, 10).unwrap();
    let rng = || StdRng::seed_from_u64(4);
    let guided = Guided::new::<B, 2>(
        &oracle,
        vec![0, 1, 0, 1, 0, 1, 0, 1],
        GuidanceConfig::new(3.0),
    )
    .unwrap();
    let guided = sample(&mut ddim, &guided, noise, &mut rng(), |_| {}).unwrap();
    let inverted = invert(
        &ddim,
        &oracle,
        data.clone(),
        InversionMethod::Exact { iterations: 3 },
        |_| {},
    )
    .unwrap();
    let redrawn = image_to_image(
        &mut ddim,
        &oracle,
        &schedule,
        data.clone(),
        0.5,
        &mut rng(),
        |_| {},
    )
    .unwrap();
    let mask = Tensor::<B, 2>::from_data(
        TensorData::new((0..8).flat_map(|_| [1.0f32, 0.0, 0.0]).collect(), [8, 3]),
        device,
    );
    let mut ddpm = Ddpm::new(DdpmConfig::default(), &schedule, 10).unwrap();
    let resampling = Resampling {
        jump_length: 2,
        repeats: 2,
    };
    let filled = inpaint(
        &mut ddpm,
        &oracle,
        &schedule,
        data,
        mask,
        Some(resampling),
        &mut rng(),
        |_| {},
    )
    .unwrap();
    vec![
        ("guided DDIM, w = 3", values(guided)),
        ("exact DDIM inversion", values(inverted)),
        ("image-to-image", values(redrawn)),
        ("inpainting with resampling", values(filled)),
    ]
}

/// 4 steps of `sampler` on `oracle` from `noise` (8 points), on `device`.
fn sample_mixture<B: Backend>(
    oracle: &GaussianMixture,
    sampler: SamplerName,
    noise: &[f32],
    device: &B::Device,
) -> Vec<f32> {
    let run = NamedRun::new(sampler, 4, true);
    let noise = Tensor::<B, 2>::from_data(TensorData::new(noise.to_vec(), [8, 3]), device);
    let mut rng = StdRng::seed_from_u64(5);
    let x0 = sample_by_name(run, oracle.schedule(), oracle, noise, &mut rng, |_| {}).unwrap();
    values(x0)
}

fn cpu() -> Device<Cpu> {
    Default::default()
}

/// The 10 bundled photos of one person, at 16×16.
fn faces() -> ImageFolder {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/faces/s1");
    let options = ImageFolderOptions {
        image_size: 16,
        channels: 1,
        strict: true,
        labels: Labels::None,
    };
    ImageFolder::load(&folder, options, |_| {}).unwrap()
}

/// 10 images in batches of 3: 3 optimizer steps per epoch, a checkpoint after each epoch.
fn training_config(epochs: usize) -> TrainConfig {
    TrainConfig::new(UNetConfig::tiny(1), 16)
        .with_epochs(epochs)
        .with_batch_size(3)
        .with_learning_rate(1e-3)
        .with_warmup_steps(2)
        .with_sample_every_epochs(100)
        .with_sample_count(2)
        .with_sample_steps(2)
        .with_checkpoint_every_epochs(1)
        .with_seed(7)
}

/// Trains the run in `out` (continuing it if `resume`) on `device` until `epochs` epochs are
/// done; the losses of the steps it ran.
fn train_until<B: AutodiffBackend>(
    data: &ImageFolder,
    out: &Path,
    resume: bool,
    epochs: usize,
    device: &B::Device,
) -> Vec<f64> {
    let stop = AtomicBool::new(false);
    let options = RunOptions::new(out, resume, &stop);
    let mut losses = Vec::new();
    let config = training_config(epochs);
    train::<B>(
        &config,
        data,
        std::slice::from_ref(device),
        options,
        |event| {
            if let TrainEvent::Step { loss, .. } = event {
                losses.push(loss);
            }
        },
    )
    .unwrap();
    losses
}

/// The trained and the EMA weights of the latest checkpoint in `out`, read on the CPU.
fn checkpoint_weights(out: &Path) -> [Vec<f32>; 2] {
    let checkpoint = RunFolder::new(out).latest_checkpoint().unwrap().unwrap();
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let trained: UNet<Cpu> = training_config(1)
        .unet
        .init_for_loading(&cpu())
        .unwrap()
        .load_file(checkpoint.join("model"), &recorder, &cpu())
        .unwrap();
    let (_, ema) = load_checkpoint::<Cpu>(&checkpoint.join("ema.safetensors"), &cpu()).unwrap();
    [flatten(&trained), flatten(&ema)]
}

fn copy_run(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_run(&entry.path(), &to.join(entry.file_name()));
        } else {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// ‖a − b‖ / ‖b − start‖: how far two runs' weights are apart, as a fraction of how far
/// training moved them.
fn relative_divergence(a: &[f32], b: &[f32], start: &[f32]) -> f64 {
    let norm = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    norm(a, b) / norm(b, start)
}

/// The training images held on the device against the host's batches; three training steps
/// (forward, MSE, backward, clipped AdamW, EMA) on the device against
/// the same steps on the CPU, both resumed from one CPU checkpoint; then the device's
/// checkpoint resumes on the CPU.
#[test]
fn training_steps_match_flex_and_checkpoints_cross_backends() {
    on_device_under_test(
        "training_steps_match_flex_and_checkpoints_cross_backends",
        TrainingMatches,
    );
}

struct TrainingMatches;

impl BackendTask for TrainingMatches {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) {
        let root = scratch("training");
        let data = faces();

        // The training images held on the device give the host's batches to the bit.
        let (indices, flips) = ([9, 0, 4, 0], [true, false, false, true]);
        let on_device = DeviceImages::<B>::new(&data, &device)
            .batch(&indices, &flips)
            .unwrap();
        let on_host = data.batch::<Cpu>(&indices, &flips, &cpu()).unwrap();
        assert_eq!(values(on_device), values(on_host));

        let start = root.join("start");
        train_until::<Autodiff<Cpu>>(&data, &start, false, 1, &cpu());
        let start_weights = checkpoint_weights(&start);
        let (on_cpu, on_device) = (root.join("cpu"), root.join("device"));
        copy_run(&start, &on_cpu);
        copy_run(&start, &on_device);

        let expected = train_until::<Autodiff<Cpu>>(&data, &on_cpu, true, 2, &cpu());
        let got = train_until::<Autodiff<B>>(&data, &on_device, true, 2, &device);
        assert_eq!(got.len(), 3);
        for (step, (e, g)) in expected.iter().zip(&got).enumerate() {
            println!(
                "step {}: loss {g:.6} on the device, {e:.6} on the CPU",
                step + 4
            );
            assert!((e - g).abs() <= 1e-3, "step {}: loss {g} vs {e}", step + 4);
        }
        let (cpu_weights, device_weights) =
            (checkpoint_weights(&on_cpu), checkpoint_weights(&on_device));
        for (kind, index) in [("trained", 0), ("EMA", 1)] {
            let divergence = relative_divergence(
                &device_weights[index],
                &cpu_weights[index],
                &start_weights[index],
            );
            println!("{kind} weights: ‖device − cpu‖ = {divergence:.1e} ‖cpu − start‖");
            assert!(
                divergence <= 1e-3,
                "{kind} weights: ‖device − cpu‖ is {divergence:.2e} of ‖cpu − start‖"
            );
        }

        // The other way round: the device's checkpoint goes on training on the CPU.
        let expected = train_until::<Autodiff<Cpu>>(&data, &on_cpu, true, 3, &cpu());
        let got = train_until::<Autodiff<Cpu>>(&data, &on_device, true, 3, &cpu());
        for (step, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert!((e - g).abs() <= 1e-3, "step {}: loss {g} vs {e}", step + 7);
        }
    }
}

/// A device the machine does not have is a `DeviceError` naming it, returned promptly.
#[test]
fn a_missing_device_is_a_clear_error() {
    let _turn = my_turn();
    let missing = match device_under_test() {
        DeviceSpec::Cuda(_) => DeviceSpec::Cuda(63),
        _ => DeviceSpec::Wgpu(Some(63)),
    };
    let began = Instant::now();
    match run_on(missing, ForwardMatches) {
        Err(DeviceError::Unavailable { device, reason }) => {
            assert_eq!(device, missing);
            assert!(!reason.is_empty());
            let message = DeviceError::Unavailable { device, reason }.to_string();
            assert!(message.contains(&missing.to_string()), "{message}");
        }
        Err(DeviceError::NotCompiled { .. }) => {
            println!("skipped a_missing_device_is_a_clear_error: {missing} is not compiled in");
        }
        other => panic!("{missing}: expected an error, got {other:?}"),
    }
    assert!(began.elapsed() < Duration::from_secs(60));
}

/// Training steps between two log points never make the host wait for the device: the
/// losses stay there until the log point reads them all at once (one wait), and the batches
/// are gathered from images held on the device. Counted on Flex and on the device under test.
#[test]
fn training_waits_for_the_device_only_at_log_points() {
    {
        let _turn = my_turn();
        waits_at_log_points::<Cpu>(cpu());
    }
    on_device_under_test(
        "training_waits_for_the_device_only_at_log_points",
        WaitsAtLogPoints,
    );
}

struct WaitsAtLogPoints;

impl BackendTask for WaitsAtLogPoints {
    type Output = ();

    /// The counting router needs the backend by name (`BackendIr`), which a task is not given:
    /// the device `run_on` probed is named again here.
    fn run<B: Backend>(self, _probed: B::Device) {
        match device_under_test() {
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu(index) => {
                use burn_wgpu::WgpuDevice;
                let device = index.map_or(WgpuDevice::DefaultDevice, WgpuDevice::DiscreteGpu);
                waits_at_log_points::<burn_wgpu::Wgpu>(device);
            }
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => {
                waits_at_log_points::<burn_cuda::Cuda>(burn_cuda::CudaDevice { index });
            }
            other => println!("{other}: counted on Flex only"),
        }
    }
}

/// Trains 10 steps (batch 1) on `device`, reading the losses back every 3 steps, and checks
/// that the host waited for the device exactly once between two log points.
fn waits_at_log_points<B: BackendIr>(device: B::Device) {
    let root = scratch(&format!(
        "waits-{}",
        B::name(&device).replace(['<', '>', ' '], "")
    ));
    let config = TrainConfig::new(UNetConfig::tiny(1), 16)
        .with_epochs(1)
        .with_batch_size(1)
        .with_warmup_steps(2)
        .with_sample_every_epochs(100)
        .with_sample_count(2)
        .with_sample_steps(2)
        .with_seed(7);
    let stop = AtomicBool::new(false);
    let options = RunOptions {
        log_every: 3,
        ..RunOptions::new(&root, false, &stop)
    };
    let waits = || {
        get_client::<CountWaits<B>>(&device)
            .waits
            .load(Ordering::SeqCst)
    };
    let mut reported = Vec::new();
    train::<Autodiff<BackendRouter<CountWaits<B>>>>(
        &config,
        &faces(),
        std::slice::from_ref(&device),
        options,
        |event| {
            if let TrainEvent::Step { step, .. } = event {
                reported.push((step, waits()));
            }
        },
    )
    .unwrap();
    let steps: Vec<u64> = reported.iter().map(|&(step, _)| step).collect();
    assert_eq!(steps, (1..=10).collect::<Vec<_>>());
    // Steps 1–3 are reported together after step 3, 4–6 after step 6, 7–9, then 10.
    let at_log_points: Vec<usize> = reported
        .chunks(3)
        .map(|batch| {
            assert!(
                batch.iter().all(|&(_, count)| count == batch[0].1),
                "{batch:?}"
            );
            batch[0].1
        })
        .collect();
    let between: Vec<usize> = at_log_points.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "{}: waits at the log points {at_log_points:?}",
        B::name(&device)
    );
    assert_eq!(between, [1, 1, 1], "waits between log points");
}

/// A burn-router channel that runs every operation on `B` and counts the times the host
/// waits for the device: reads (`into_data`, `into_scalar`, transactions) and syncs.
///
/// Waits inside one of `B`'s own operations are not seen; burn's tensor operations used in
/// training make none.
#[derive(Clone)]
struct CountWaits<B>(PhantomData<B>);

/// [`CountWaits`]'s client: burn-router's direct runner and the count.
#[derive(Clone)]
struct CountingRunner<B: BackendIr> {
    runner: Runner<B>,
    waits: Arc<AtomicUsize>,
}

impl<B: BackendIr> RunnerChannel for CountWaits<B> {
    type Device = B::Device;
    type Bridge = OneBackend<B>;
    type Client = CountingRunner<B>;
    type FloatElem = B::FloatElem;
    type IntElem = B::IntElem;
    type BoolElem = B::BoolElem;

    fn name(device: &B::Device) -> String {
        format!("counted<{}>", B::name(device))
    }

    fn init_client(device: &B::Device) -> CountingRunner<B> {
        CountingRunner {
            runner: Runner::new(device.clone()),
            waits: Arc::default(),
        }
    }

    fn get_tensor_handle(tensor: &TensorIr, client: &CountingRunner<B>) -> B::Handle {
        client.runner.get_tensor_handle(tensor)
    }

    fn register_tensor(
        client: &CountingRunner<B>,
        handle: B::Handle,
        shape: Shape,
        dtype: DType,
    ) -> RouterTensor<CountingRunner<B>> {
        client
            .runner
            .register_tensor(handle, shape, dtype, client.clone())
    }
}

impl<B: BackendIr> RunnerClient for CountingRunner<B> {
    type Device = B::Device;

    fn register_op(&self, op: OperationIr) {
        self.runner.register_op(op);
    }

    fn read_tensor_async(
        &self,
        tensor: TensorIr,
    ) -> Pin<Box<dyn Future<Output = Result<TensorData, ExecutionError>> + Send>> {
        self.waits.fetch_add(1, Ordering::SeqCst);
        self.runner.read_tensor_async(tensor)
    }

    fn sync(&self) -> Result<(), ExecutionError> {
        self.waits.fetch_add(1, Ordering::SeqCst);
        self.runner.sync()
    }

    fn create_empty_handle(&self) -> TensorId {
        self.runner.create_empty_handle()
    }

    fn register_tensor_data(&self, data: TensorData) -> RouterTensor<Self> {
        let tensor = self.runner.register_tensor_data_desc(data);
        RouterTensor::new(tensor.id, tensor.shape, tensor.dtype, self.clone())
    }

    fn device(&self) -> B::Device {
        self.runner.device()
    }

    fn seed(&self, seed: u64) {
        self.runner.seed(seed);
    }

    fn dtype_usage(&self, dtype: DType) -> DTypeUsageSet {
        self.runner.dtype_usage(dtype)
    }
}

/// The bridge of a channel with one backend and one device: nothing ever moves.
struct OneBackend<B>(PhantomData<B>);

impl<B: BackendIr> MultiBackendBridge for OneBackend<B> {
    type TensorHandle = B::Handle;
    type Device = B::Device;

    fn change_backend_float(tensor: B::Handle, _: Shape, _: &B::Device) -> B::Handle {
        tensor
    }

    fn change_backend_int(tensor: B::Handle, _: Shape, _: &B::Device) -> B::Handle {
        tensor
    }

    fn change_backend_bool(tensor: B::Handle, _: Shape, _: &B::Device) -> B::Handle {
        tensor
    }
}
