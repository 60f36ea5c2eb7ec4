//! The training loop end to end on a small synthetic dataset at 16×16: the loss goes down,
//! a stopped and resumed run ends bit-identical to an uninterrupted one, a killed checkpoint
//! write leaves the previous checkpoint in charge, resuming with another config fails, two
//! devices in threads train like one, a failing worker stops the run without a hang, runs
//! that end in pure noise (rectified flow, zero terminal SNR) train and sample, and so does
//! one that learns its variance.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, Flex};
use kiln_forward::Prediction;
use kiln_pipeline::{
    Damage, Generation, LATEST, NamedRun, RunFolder, SamplerName, load_for_sampling,
};
use kiln_sampler::VarianceType;
use kiln_schedule::TimestepSpacing;
use kiln_train::{ImageFolder, RunOptions, TrainConfig, TrainError, TrainEvent, check_run, train};
use kiln_unet::UNetConfig;

type B = Autodiff<Flex>;

mod common;
mod runs;

use runs::{config, final_weights};

/// A fresh scratch folder for this target's test `name`.
fn scratch(name: &str) -> PathBuf {
    common::scratch("training", name)
}

/// The discs in a fresh folder for test `test`.
fn discs(test: &str) -> ImageFolder {
    let dir = scratch(&format!("{test}-data"));
    runs::write_discs(&dir);
    runs::load_discs(&dir)
}

/// Trains into `out`, stopping after `stop_after` steps (the flag is set as step
/// `stop_after − 1` ends, so step `stop_after`'s exchange carries the request); returns the
/// losses of the steps it ran.
fn run(
    config: &TrainConfig,
    data: &ImageFolder,
    out: &Path,
    resume: bool,
    stop_after: Option<u64>,
) -> Result<Vec<f64>, TrainError> {
    run_on(config, data, out, resume, stop_after, 1, |_| {})
}

/// [`run`] with the batch split over `devices` copies of the CPU device, passing every event
/// to `on_event` too.
fn run_on(
    config: &TrainConfig,
    data: &ImageFolder,
    out: &Path,
    resume: bool,
    stop_after: Option<u64>,
    devices: usize,
    mut on_event: impl FnMut(&TrainEvent<'_>),
) -> Result<Vec<f64>, TrainError> {
    let _turn = common::my_turn();
    let stop = AtomicBool::new(false);
    // Log points every 3 steps, mid-epoch too. A stop request is seen at a log point: with one
    // every step, a run asked to stop after step k stops there (set as step k − 1 is reported).
    let options = RunOptions {
        log_every: if stop_after.is_some() { 1 } else { 3 },
        ..RunOptions::new(out, resume, &stop)
    };
    let mut losses = Vec::new();
    train::<B>(
        config,
        data,
        &vec![Default::default(); devices],
        options,
        |event| {
            on_event(&event);
            if let TrainEvent::Step { step, loss, .. } = event {
                losses.push(loss);
                if Some(step + 1) == stop_after {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        },
    )?;
    Ok(losses)
}

/// [`run`] to the end, returning the losses and each step's (step, log point).
fn run_with_log_points(
    config: &TrainConfig,
    data: &ImageFolder,
    out: &Path,
    resume: bool,
) -> (Vec<f64>, Vec<(u64, u64)>) {
    let mut log_points = Vec::new();
    let losses = run_on(config, data, out, resume, None, 1, |event| {
        if let TrainEvent::Step {
            step, log_point, ..
        } = *event
        {
            log_points.push((step, log_point));
        }
    })
    .unwrap();
    (losses, log_points)
}

#[test]
fn loss_goes_down_and_resume_is_bit_identical() {
    let data = discs("resume");
    let config = config(6); // 4 steps per epoch, 24 steps.

    let straight = scratch("straight");
    let (losses, log_points) = run_with_log_points(&config, &data, &straight, false);
    assert_eq!(losses.len(), 24);
    // Each step is reported at the next log point: every 3 steps and at every epoch's end.
    let expected_log_points = [
        3, 3, 3, 4, 6, 6, 8, 8, 9, 12, 12, 12, 15, 15, 15, 16, 18, 18, 20, 20, 21, 24, 24, 24,
    ];
    let steps = 1..=24;
    assert_eq!(
        log_points,
        steps.zip(expected_log_points).collect::<Vec<_>>()
    );
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (early, late) = (mean(&losses[..4]), mean(&losses[20..]));
    assert!(late < 0.7 * early, "loss {early} -> {late}");
    assert!(straight.join("progress.png").is_file());
    assert!(straight.join("loss.png").is_file());
    assert!(straight.join("samples/epoch-0006.png").is_file());
    let csv = fs::read_to_string(straight.join("loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 25);

    // Stopped after step 7 (mid-epoch), then resumed to the end.
    let split = scratch("split");
    let first = run(&config, &data, &split, false, Some(7)).unwrap();
    assert_eq!(first.len(), 7);
    assert_eq!(first, losses[..7]);
    let (rest, resumed_log_points) = run_with_log_points(&config, &data, &split, true);
    assert_eq!(rest, losses[7..]);
    assert_eq!(resumed_log_points, log_points[7..]);
    let (a, b) = (final_weights(&straight), final_weights(&split));
    assert_eq!(a[0].len(), 144);
    assert!(a[0] == b[0], "trained weights differ");
    assert!(a[1] == b[1], "EMA weights differ");
    let csv_split = fs::read_to_string(split.join("loss.csv")).unwrap();
    assert_eq!(csv_split, csv);

    // Only the newest 3 checkpoints are kept (steps 8, 16, 24 and the stop at 7 were written).
    let kept = fs::read_dir(split.join("checkpoints"))
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("step-")
        })
        .count();
    assert_eq!(kept, 3);
}

/// A rectified-flow run (`flow_prediction` on `rectified_flow`) trains, and its folder loads
/// back as a flow model on that schedule, whose samples are finite.
#[test]
fn a_rectified_flow_run_trains_and_samples() {
    let config = config(6)
        .with_prediction("flow_prediction".into())
        .with_beta_schedule("rectified_flow".into());
    trains_and_samples_from_pure_noise("flow", &config, Prediction::Flow);
}

/// A v-prediction run on the linear schedule rescaled to zero terminal SNR (Lin et al. 2023)
/// trains, and its folder loads back with that schedule, whose samples are finite.
#[test]
fn a_zero_terminal_snr_run_trains_and_samples() {
    let config = config(6)
        .with_prediction("v_prediction".into())
        .with_rescale_betas_zero_snr(Some(true));
    trains_and_samples_from_pure_noise("zero-snr", &config, Prediction::V);
}

/// Trains `config`, whose schedule ends in pure noise (ᾱ_{T−1} = 0), in the scratch folder
/// `name`: its grids start from the last timestep, its loss goes down, and its folder loads
/// back with `prediction` and the config's schedule and draws finite samples in 4 DDIM steps.
fn trains_and_samples_from_pure_noise(name: &str, config: &TrainConfig, prediction: Prediction) {
    let data = discs(name);
    assert_eq!(config.sample_run().spacing, Some(TimestepSpacing::Trailing));
    let out = scratch(name);
    let losses = run(config, &data, &out, false, None).unwrap();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (early, late) = (mean(&losses[..4]), mean(&losses[20..]));
    assert!(late < 0.7 * early, "loss {early} -> {late}");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&out, &device).unwrap();
    assert_eq!(loaded.prediction, prediction);
    assert_eq!(loaded.schedule, config.schedule().unwrap());
    assert_eq!(loaded.schedule.alphas_cumprod()[999], 0.0);
    let run = NamedRun {
        spacing: Some(TimestepSpacing::Trailing),
        ..NamedRun::new(SamplerName::Ddim, 4, true)
    };
    let images = loaded
        .generate(Generation::with_run(run, 2, 16), &device, |_| {})
        .unwrap();
    let values: Vec<f32> = images.into_data().to_vec().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
}

/// A run that learns its variance (`learned_range`, the hybrid loss of Nichol & Dhariwal 2021)
/// trains, its loss (L_simple + the bound's term) goes down, and its folder loads back as a
/// model that learns its variance, which DDPM samples with by default.
#[test]
fn a_learned_variance_run_trains_and_ddpm_samples_with_its_variance() {
    let data = discs("learned-variance");
    let mut config = config(6).with_variance_type(Some("learned_range".into()));
    config.unet.out_channels = 2;
    let out = scratch("learned-variance");
    let losses = run(&config, &data, &out, false, None).unwrap();
    assert!(losses.iter().all(|loss| loss.is_finite()));
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (early, late) = (mean(&losses[..4]), mean(&losses[20..]));
    assert!(late < 0.7 * early, "loss {early} -> {late}");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&out, &device).unwrap();
    assert!(loaded.model.learns_variance());
    let ddpm = |variance| -> Vec<f32> {
        let run = NamedRun {
            variance,
            ..NamedRun::new(SamplerName::Ddpm, 10, true)
        };
        let images = loaded
            .generate(Generation::with_run(run, 2, 16), &device, |_| {})
            .unwrap();
        images.into_data().to_vec().unwrap()
    };
    let learned = ddpm(None);
    assert!(learned.iter().all(|v| v.is_finite()));
    assert_eq!(learned, ddpm(Some(VarianceType::LearnedRange)));
    assert_ne!(learned, ddpm(Some(VarianceType::FixedSmall)));
}

#[test]
fn a_killed_write_leaves_the_previous_checkpoint_latest() {
    let data = discs("killed");
    let out = scratch("killed");
    run(&config(2), &data, &out, false, None).unwrap();
    let checkpoints = out.join("checkpoints");
    let complete = RunFolder::new(&out).latest_checkpoint().unwrap().unwrap();
    assert!(complete.ends_with("step-00000008"));

    // A write killed mid-way leaves a partial folder and, killed later, a stale pointer file.
    let partial = checkpoints.join(".step-00000012.partial");
    fs::create_dir_all(&partial).unwrap();
    fs::write(partial.join("model.bin"), b"half").unwrap();
    fs::write(checkpoints.join(format!("{LATEST}.partial")), b"step-000").unwrap();
    assert_eq!(
        RunFolder::new(&out).latest_checkpoint().unwrap().unwrap(),
        complete
    );
    // A deletion of an old checkpoint killed mid-way leaves a hidden folder, not a checkpoint.
    let deleting = checkpoints.join(".step-00000004.deleting");
    fs::create_dir_all(&deleting).unwrap();
    fs::write(deleting.join("optimizer.bin"), b"rest").unwrap();
    assert_eq!(check_run(&out).unwrap().len(), 1);

    // The run resumes from the complete checkpoint and writes its next one over the debris.
    run(&config(3), &data, &out, true, None).unwrap();
    let newest = RunFolder::new(&out).latest_checkpoint().unwrap().unwrap();
    assert!(newest.ends_with("step-00000012"));
    assert!(!partial.exists() && !deleting.exists());

    // The run folder is what face_sample reads: the newest EMA weights and the training size.
    let loaded = load_for_sampling::<Flex>(&out, &Default::default()).unwrap();
    assert_eq!(loaded.image_size, Some(16));
    assert_eq!(loaded.config, UNetConfig::tiny(1));
}

/// Ways a file of a checkpoint gets damaged.
fn truncate(path: &Path) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

fn empty(path: &Path) {
    fs::write(path, b"").unwrap();
}

fn flip_a_bit(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

/// A checkpoint as written before checksums were recorded, damaged: only loading finds it.
fn forget_checksums_and_truncate(path: &Path) {
    let state = path.with_file_name("state.json");
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("files").unwrap();
    fs::write(&state, serde_json::to_vec(&json).unwrap()).unwrap();
    truncate(path);
}

/// A way to damage a checkpoint: the file, the damage, a word of the message it must give,
/// and whether the checksums find it without loading the checkpoint.
struct Case {
    file: &'static str,
    damage: fn(&Path),
    symptom: &'static str,
    by_checksum: bool,
}

impl Case {
    fn new(
        file: &'static str,
        damage: fn(&Path),
        symptom: &'static str,
        by_checksum: bool,
    ) -> Self {
        Self {
            file,
            damage,
            symptom,
            by_checksum,
        }
    }
}

#[test]
fn a_damaged_newest_checkpoint_is_named_and_the_run_resumes_from_the_one_before() {
    // A checkpoint every epoch (4 steps); an uninterrupted run of 3 epochs to compare with.
    let every_epoch = |epochs| config(epochs).with_checkpoint_every_epochs(1);
    let data = discs("damaged");
    let straight = scratch("damaged-straight");
    run(&every_epoch(3), &data, &straight, false, None).unwrap();
    let expected = final_weights(&straight);
    let out = scratch("damaged");
    run(&every_epoch(2), &data, &out, false, None).unwrap();

    // Each case damages the newest checkpoint of the same run, which then resumes from the one
    // before and trains to step 12 again.
    let cases = [
        Case::new("model.bin", truncate, "bytes", true),
        Case::new("optimizer.bin", empty, "0 bytes", true),
        Case::new("ema.safetensors", flip_a_bit, "SHA-256 differs", true),
        Case::new("state.json", truncate, "not a checkpoint state", true),
        Case::new(
            "model.bin",
            forget_checksums_and_truncate,
            "does not decode",
            false,
        ),
    ];
    for (index, case) in cases.into_iter().enumerate() {
        let Case {
            file,
            damage,
            symptom,
            by_checksum,
        } = case;
        let newest = RunFolder::new(&out).latest_checkpoint().unwrap().unwrap();
        let previous_step = if index == 0 { 4 } else { 8 };
        damage(&newest.join(file));

        if by_checksum {
            let health = check_run(&out).unwrap();
            let found = health[0].verdict.as_ref().unwrap_err();
            assert!(health[0].latest && health[0].path == newest);
            assert_eq!(found.file, file, "case {index}: {found}");
            assert!(found.problem.contains(symptom), "case {index}: {found}");
            let older = health[1].verdict.as_ref().unwrap();
            assert_eq!(older.step, previous_step);
        }

        let mut skipped = Vec::new();
        let losses = run_on(&every_epoch(3), &data, &out, true, None, 1, |event| {
            if let TrainEvent::SkippedCheckpoint {
                path,
                damage,
                set_aside,
            } = event
            {
                skipped.push((
                    path.to_path_buf(),
                    Damage::clone(damage),
                    set_aside.to_path_buf(),
                ));
            }
        })
        .unwrap();
        assert_eq!(losses.len(), 12 - previous_step as usize, "case {index}");
        let [(path, damage, set_aside)] = &skipped[..] else {
            panic!("case {index}: {skipped:?}");
        };
        assert_eq!((path, damage.file.as_str()), (&newest, file));
        assert!(damage.problem.contains(symptom), "case {index}: {damage}");
        assert!(set_aside.join(file).exists(), "case {index}: kept aside");
        assert_eq!(final_weights(&out), expected, "case {index}");
    }
}

#[test]
fn resuming_with_another_config_names_the_difference() {
    let data = discs("mismatch");
    let out = scratch("mismatch");
    run(&config(1), &data, &out, false, None).unwrap();
    let changed = config(2).with_learning_rate(5e-4);
    let error = run(&changed, &data, &out, true, None).unwrap_err();
    // The checkpoint's value first, then this run's.
    let expected = format!(
        "learning_rate: the checkpoint has {}, this run has 0.0005",
        config(1).learning_rate
    );
    assert!(
        matches!(&error, TrainError::ConfigMismatch { difference, .. } if *difference == expected),
        "{error}"
    );
    // A fresh run into a folder that holds one is refused rather than overwriting it.
    let error = run(&config(1), &data, &out, false, None).unwrap_err();
    assert!(error.to_string().contains("already holds a run"), "{error}");
}

/// A stop request makes a log point of its own: with log points further apart than the run,
/// the step that stops it mid-epoch is still read, reported and checkpointed.
#[test]
fn a_stop_request_is_a_log_point() {
    let data = discs("stop-log-point");
    let out = scratch("stop-log-point");
    let _turn = common::my_turn();
    // Set before the first step, so step 0 (of 4 per epoch) carries the request.
    let stop = AtomicBool::new(true);
    let options = RunOptions {
        log_every: 1000,
        ..RunOptions::new(&out, false, &stop)
    };
    let mut reported = Vec::new();
    let summary = train::<B>(&config(2), &data, &[Default::default()], options, |event| {
        if let TrainEvent::Step {
            step, log_point, ..
        } = event
        {
            reported.push((step, log_point));
        }
    })
    .unwrap();
    assert!(summary.interrupted && summary.steps == 1, "{summary:?}");
    assert_eq!(reported, [(1, 1)]);
    assert!(summary.checkpoint.is_some());
}

#[test]
fn two_devices_in_threads_train_like_one_and_so_do_micro_batches() {
    let data = discs("split-devices");
    // Stopped after 5 steps (mid-epoch: a checkpoint is written on the stop request).
    let config = config(2);
    let plain = two_devices_and_micro_batches_match_one(&data, &config, "plain");
    // Input perturbation draws a second normal per value: each worker skips the others' too.
    let perturbed = config.clone().with_input_perturbation(Some(0.1));
    let perturbed = two_devices_and_micro_batches_match_one(&data, &perturbed, "perturbed");
    assert_ne!(plain, perturbed);
    // So does the noise offset, one shift per image and channel (three channels here, so
    // that the shifts' layout and skips count channels).
    let rgb_dir = scratch("split-devices-rgb-data");
    runs::write_discs(&rgb_dir);
    let mut offset = config.clone().with_noise_offset(Some(0.1));
    (offset.unet.in_channels, offset.unet.out_channels) = (3, 3);
    let rgb = runs::load_discs_as(&rgb_dir, 3);
    two_devices_and_micro_batches_match_one(&rgb, &offset, "offset");
    // Dropout masks are keyed by each image's place in the batch, not drawn by each worker.
    let mut dropout = config.clone();
    dropout.unet.dropout = 0.3;
    let dropout = two_devices_and_micro_batches_match_one(&data, &dropout, "dropout");
    assert_ne!(plain, dropout);

    let error = run_on(
        &config,
        &data,
        &scratch("three-devices"),
        false,
        None,
        3,
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(error, TrainError::BatchSplit { .. }), "{error}");
}

/// Five steps of `config` on one device, on two and with four micro-batches: the same losses
/// and, on two devices, the same weights. Returns the losses on one device.
fn two_devices_and_micro_batches_match_one(
    data: &ImageFolder,
    config: &TrainConfig,
    name: &str,
) -> Vec<f64> {
    let one = scratch(&format!("one-device-{name}"));
    let whole = run(config, data, &one, false, Some(5)).unwrap();
    let two = scratch(&format!("two-devices-{name}"));
    let split = run_on(config, data, &two, false, Some(5), 2, |_| {}).unwrap();
    let accumulated = run(
        &config.clone().with_grad_accumulation(4),
        data,
        &scratch(&format!("accumulated-{name}")),
        false,
        Some(5),
    )
    .unwrap();
    for split in [&split, &accumulated] {
        assert_eq!(split.len(), 5);
        for (a, b) in whole.iter().zip(split) {
            assert!((a - b).abs() < 1e-4 * a.abs(), "{whole:?} vs {split:?}");
        }
    }
    let (a, b) = (final_weights(&one), final_weights(&two));
    let (trained, ema) = (
        runs::max_difference(&a[0], &b[0]),
        runs::max_difference(&a[1], &b[1]),
    );
    println!("{name}: two devices vs one after 5 steps: max |Δ| trained {trained:e}, EMA {ema:e}");
    assert!(trained <= 1e-5 && ema <= 1e-5, "{trained} {ema}");
    whole
}

#[test]
fn a_failing_worker_stops_the_others_and_the_last_checkpoint_stays_latest() {
    let data = discs("failing-worker");
    let out = scratch("failing-worker");
    let config = config(2).with_checkpoint_every_epochs(1);
    // The first worker's event handler panics during step 6, while the second worker
    // computes its shard of step 7 and then waits for the first in the gradient exchange.
    let error = run_on(&config, &data, &out, false, None, 2, |event| {
        if let TrainEvent::Step { step: 6, .. } = event {
            panic!("lost the device");
        }
    })
    .unwrap_err();
    assert!(
        matches!(&error, TrainError::WorkerPanicked { worker: 0, message } if message == "lost the device"),
        "{error}"
    );
    let latest = RunFolder::new(&out).latest_checkpoint().unwrap().unwrap();
    assert!(latest.ends_with("step-00000004"), "{}", latest.display());
    let health = check_run(&out).unwrap();
    assert!(health.iter().all(|checkpoint| checkpoint.verdict.is_ok()));
    // The run resumes from there on the same two devices (so the collective group was left
    // usable), and on one.
    let rest = run_on(&config, &data, &out, true, None, 2, |_| {}).unwrap();
    assert_eq!(rest.len(), 4);
}

#[test]
fn a_diverging_run_stops_with_the_step_and_writes_no_checkpoint() {
    let data = discs("diverging");
    let out = scratch("diverging");
    let config = config(2)
        .with_learning_rate(1e30)
        .with_warmup_steps(1)
        .with_max_grad_norm(None);
    let error = run(&config, &data, &out, false, None).unwrap_err();
    let TrainError::NonFiniteLoss { step, loss, .. } = error else {
        panic!("{error}");
    };
    assert!(!loss.is_finite() && (1..8).contains(&step), "{step} {loss}");
    assert_eq!(RunFolder::new(&out).latest_checkpoint().unwrap(), None);
}
