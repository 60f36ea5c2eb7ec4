//! Training across processes with MPI: `mpirun -np 2` starts this test binary twice, each
//! process one rank of a run ([`rank_of_a_run`]), and the tests compare what they wrote with
//! one process training alone. Needs Open MPI (`mpirun`); built only with the `mpi` feature.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Autodiff, Flex};
use kiln_pipeline::RunFolder;
use kiln_train::{MpiProcesses, ProcessGroup, RunOptions, TrainConfig, TrainEvent, train};
use serde::{Deserialize, Serialize};

type B = Autodiff<Flex>;

mod common;
mod runs;

/// Set by the tests for the ranks `mpirun` starts: what the rank does, as JSON.
const RANK_TASK: &str = "KILN_TEST_MPI_TASK";

/// What one rank is asked to do.
#[derive(Serialize, Deserialize)]
struct RankTask {
    data: PathBuf,
    out: PathBuf,
    config: TrainConfig,
    /// A different learning rate on rank 1, to check that the ranks agree on the run.
    rank1_learning_rate: Option<f64>,
    resume: bool,
    stop_after: Option<u64>,
}

/// What one rank reports back (`rank-N.json` in the run folder's parent).
#[derive(Serialize, Deserialize, Debug)]
struct RankReport {
    error: Option<String>,
    steps: u64,
    losses: Vec<f64>,
    checkpoints_saved: usize,
}

/// One rank of a run: does nothing unless `mpirun` started it for one of the tests below.
#[test]
fn rank_of_a_run() {
    let Some(task) = env::var_os(RANK_TASK) else {
        return;
    };
    let task: RankTask = serde_json::from_str(task.to_str().unwrap()).unwrap();
    let processes = MpiProcesses::init().unwrap();
    let config = match (processes.rank(), task.rank1_learning_rate) {
        (1, Some(learning_rate)) => task.config.clone().with_learning_rate(learning_rate),
        _ => task.config.clone(),
    };
    let data = runs::load_discs(&task.data);
    let stop = AtomicBool::new(false);
    let options = RunOptions {
        processes: &processes,
        ..RunOptions::new(&task.out, task.resume, &stop)
    };
    let mut report = RankReport {
        error: None,
        steps: 0,
        losses: Vec::new(),
        checkpoints_saved: 0,
    };
    let outcome = train::<B>(
        &config,
        &data,
        &[Default::default()],
        options,
        |event| match event {
            TrainEvent::Step { step, loss, .. } => {
                report.losses.push(loss);
                if Some(step + 1) == task.stop_after {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            TrainEvent::Saved { .. } => report.checkpoints_saved += 1,
            _ => {}
        },
    );
    match outcome {
        Ok(summary) => report.steps = summary.steps,
        Err(error) => report.error = Some(error.to_string()),
    }
    let path = report_path(&task.out, processes.rank());
    fs::write(path, serde_json::to_string(&report).unwrap()).unwrap();
}

/// Where rank `rank` of the run in `out` reports.
fn report_path(out: &Path, rank: usize) -> PathBuf {
    out.with_file_name(format!(
        "{}-rank-{rank}.json",
        out.file_name().unwrap().to_string_lossy()
    ))
}

/// Runs `task` as two MPI processes (oversubscribing the cores; as root if need be) and
/// returns the two ranks' reports.
fn two_ranks(task: &RankTask) -> [RankReport; 2] {
    let output = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .arg(env::current_exe().unwrap())
        .args([
            "--exact",
            "rank_of_a_run",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(RANK_TASK, serde_json::to_string(task).unwrap())
        .output()
        .expect("this test needs Open MPI's mpirun (apt-get install openmpi-bin)");
    assert!(
        output.status.success(),
        "mpirun: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    [0, 1].map(|rank| {
        let text = fs::read_to_string(report_path(&task.out, rank)).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

/// One process training `config` on the discs in `data` into `out`, stopped after
/// `stop_after` steps; its losses.
fn alone(config: &TrainConfig, data: &Path, out: &Path, stop_after: Option<u64>) -> Vec<f64> {
    let _turn = common::my_turn();
    let stop = AtomicBool::new(false);
    let mut losses = Vec::new();
    let data = runs::load_discs(data);
    let options = RunOptions::new(out, false, &stop);
    train::<B>(config, &data, &[Default::default()], options, |event| {
        if let TrainEvent::Step { step, loss, .. } = event {
            losses.push(loss);
            if Some(step + 1) == stop_after {
                stop.store(true, Ordering::SeqCst);
            }
        }
    })
    .unwrap();
    losses
}

#[test]
fn two_processes_train_like_one_write_the_run_once_and_resume() {
    let data = common::scratch("mpi", "data");
    runs::write_discs(&data);
    let config = runs::config(2);
    let one = common::scratch("mpi", "one-process");
    let whole = alone(&config, &data, &one, None);

    // Two ranks, stopped after 5 of the 8 steps: rank 0 writes the checkpoint, rank 1 nothing.
    let two = common::scratch("mpi", "two-processes");
    let task = RankTask {
        data: data.clone(),
        out: two.clone(),
        config: config.clone(),
        rank1_learning_rate: None,
        resume: false,
        stop_after: Some(5),
    };
    let [rank0, rank1] = two_ranks(&task);
    assert_eq!((rank0.error, rank1.error), (None, None));
    assert_eq!((rank0.steps, rank1.steps), (5, 5));
    assert_eq!((rank0.checkpoints_saved, rank1.checkpoints_saved), (1, 0));
    // Both ranks see the same (summed) loss, one process's to rounding.
    assert_eq!(rank0.losses, rank1.losses);
    for (a, b) in whole.iter().zip(&rank0.losses) {
        assert!(
            (a - b).abs() < 1e-4 * a.abs(),
            "{whole:?} vs {:?}",
            rank0.losses
        );
    }
    let checkpoints: Vec<_> = fs::read_dir(two.join("checkpoints"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}"); // step-00000005 and `latest`
    let log = fs::read_to_string(two.join("loss.csv")).unwrap();
    assert_eq!(log.lines().count(), 6, "{log}");

    // Both ranks resume from rank 0's checkpoint and finish like the one process.
    let [rank0, rank1] = two_ranks(&RankTask {
        resume: true,
        stop_after: None,
        ..task
    });
    assert_eq!((rank0.error, rank1.error), (None, None));
    assert_eq!((rank0.steps, rank1.steps), (8, 8));
    let (a, b) = (runs::final_weights(&one), runs::final_weights(&two));
    let (trained, ema) = (
        runs::max_difference(&a[0], &b[0]),
        runs::max_difference(&a[1], &b[1]),
    );
    println!("two processes vs one after 8 steps: max |Δ| trained {trained:e}, EMA {ema:e}");
    assert!(trained <= 1e-5 && ema <= 1e-5, "{trained} {ema}");
    assert!(
        RunFolder::new(&two)
            .latest_checkpoint()
            .unwrap()
            .unwrap()
            .ends_with("step-00000008")
    );
}

#[test]
fn ranks_with_different_configs_all_stop_and_the_odd_one_names_the_field() {
    let data = common::scratch("mpi", "mismatch-data");
    runs::write_discs(&data);
    let out = common::scratch("mpi", "mismatch");
    let [rank0, rank1] = two_ranks(&RankTask {
        data,
        out: out.clone(),
        config: runs::config(1),
        rank1_learning_rate: Some(5e-4),
        resume: false,
        stop_after: None,
    });
    let (rank0, rank1) = (rank0.error.unwrap(), rank1.error.unwrap());
    assert!(
        rank1.contains("rank 1") && rank1.contains("learning_rate"),
        "{rank1}"
    );
    assert!(rank0.contains("ranks [1]"), "{rank0}");
    assert!(!out.join("checkpoints").exists());
}
