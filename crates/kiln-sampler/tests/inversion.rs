//! Inversion against the Gaussian-mixture oracle: invert exact data, sample it back with the
//! same sampler, and measure the round trip's RMS error for DDIM's plain and exact inversion
//! and for DPM-Solver's.

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_sampler::{
    AlgorithmType, Ddim, DdimConfig, DpmSolver, DpmSolverConfig, GaussianMixture, InversionMethod,
    SampleClipping, SamplerError, SigmaSpacing, invert, sample,
};
use kiln_schedule::{BetaSchedule, GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap()
}

/// Three components in 6 dimensions.
fn mixture() -> GaussianMixture {
    let mean = |values: [f64; 6]| values.to_vec();
    GaussianMixture::new(
        vec![0.4, 0.35, 0.25],
        vec![
            mean([-0.8, 0.4, 0.0, 0.6, -0.3, 0.2]),
            mean([0.7, -0.5, 0.3, -0.2, 0.5, -0.6]),
            mean([0.1, 0.8, -0.7, 0.0, 0.2, 0.6]),
        ],
        vec![0.05, 0.08, 0.03],
        schedule(),
    )
    .unwrap()
}

fn unclipped_ddim(steps: usize) -> Ddim {
    let config = DdimConfig {
        clipping: SampleClipping::thresholding_only(None),
        ..DdimConfig::default()
    };
    Ddim::new(config, &schedule(), steps).unwrap()
}

/// The data every round trip starts from.
fn data(oracle: &GaussianMixture) -> Tensor<B, 2> {
    oracle.sample_data(64, &mut StdRng::seed_from_u64(1), &Default::default())
}

/// The RMS distance between two samples.
fn rms_distance(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f64 {
    let distance: f32 = (a - b).powi_scalar(2).mean().sqrt().into_scalar();
    distance as f64
}

/// The RMS error of data → inversion → DDIM sampling, or the inversion's error.
fn round_trip(steps: usize, method: InversionMethod) -> Result<f64, SamplerError> {
    let oracle = mixture();
    let data = data(&oracle);
    let mut ddim = unclipped_ddim(steps);
    let noise = invert(&ddim, &oracle, data.clone(), method, |_| {})?;
    let back = sample(
        &mut ddim,
        &oracle,
        noise,
        &mut StdRng::seed_from_u64(0),
        |_| {},
    )?;
    Ok(rms_distance(back, data))
}

/// The RMS error of data → [`DpmSolver::inverse`] → [`DpmSolver::new`] sampling.
fn dpm_round_trip(steps: usize, config: DpmSolverConfig) -> f64 {
    let oracle = mixture();
    let data = data(&oracle);
    let mut rng = StdRng::seed_from_u64(0);
    let mut inverse = DpmSolver::inverse(config, &schedule(), steps).unwrap();
    let noise = sample(&mut inverse, &oracle, data.clone(), &mut rng, |_| {}).unwrap();
    let mut forward = DpmSolver::new(config, &schedule(), steps).unwrap();
    let back = sample(&mut forward, &oracle, noise, &mut rng, |_| {}).unwrap();
    rms_distance(back, data)
}

#[test]
fn exact_inversion_gives_the_data_back_and_plain_inversion_does_not() {
    let methods = [
        ("plain", InversionMethod::Plain),
        ("exact × 1", InversionMethod::Exact { iterations: 1 }),
        ("exact × 3", InversionMethod::Exact { iterations: 3 }),
        ("exact × 10", InversionMethod::Exact { iterations: 10 }),
    ];
    println!("| steps | {} |", methods.map(|(name, _)| name).join(" | "));
    let mut table = Vec::new();
    for steps in [10, 20, 50, 100, 200] {
        let row: Vec<Result<f64, SamplerError>> = methods
            .iter()
            .map(|&(_, method)| round_trip(steps, method))
            .collect();
        let cells: Vec<String> = row
            .iter()
            .map(|result| match result {
                Ok(error) => format!("{error:.1e}"),
                Err(SamplerError::InversionDiverged { .. }) => "diverged".into(),
                Err(error) => panic!("{error}"),
            })
            .collect();
        println!("| {steps} | {} |", cells.join(" | "));
        table.push((steps, row));
    }
    let at = |steps: usize, method: usize| -> &Result<f64, SamplerError> {
        &table.iter().find(|(s, _)| *s == steps).unwrap().1[method]
    };
    let plain_100 = *at(100, 0).as_ref().unwrap();
    let exact_100 = *at(100, 3).as_ref().unwrap();
    assert!(
        exact_100 < 1e-4,
        "exact inversion at 100 steps: {exact_100:e}"
    );
    assert!(plain_100 > 10.0 * exact_100, "plain {plain_100:e}");
    // Plain inversion improves only as the steps shrink.
    let plain_errors: Vec<f64> = [10, 20, 50, 100, 200]
        .iter()
        .map(|&steps| *at(steps, 0).as_ref().unwrap())
        .collect();
    assert!(
        plain_errors.windows(2).all(|pair| pair[1] < pair[0]),
        "{plain_errors:?}"
    );
    for steps in [10, 20] {
        assert!(
            matches!(at(steps, 3), Err(SamplerError::InversionDiverged { .. })),
            "exact inversion in {steps} steps should stop converging: {:?}",
            at(steps, 3)
        );
    }
}

#[test]
fn only_a_deterministic_unclipped_ddim_can_be_inverted() {
    let oracle = mixture();
    let data: Tensor<B, 2> =
        oracle.sample_data(2, &mut StdRng::seed_from_u64(2), &Default::default());
    let clipped = Ddim::new(DdimConfig::default(), &schedule(), 10).unwrap();
    let stochastic = Ddim::new(
        DdimConfig {
            eta: 1.0,
            clipping: SampleClipping::thresholding_only(None),
            ..DdimConfig::default()
        },
        &schedule(),
        10,
    )
    .unwrap();
    for ddim in [clipped, stochastic] {
        let result = invert(&ddim, &oracle, data.clone(), InversionMethod::Plain, |_| {});
        assert!(
            matches!(result, Err(SamplerError::NotInvertible { .. })),
            "{result:?}"
        );
    }
}

/// DPM-Solver++'s multistep inversion over λ-uniform steps (exponential σ) gives the data back
/// closer than DDIM's plain inversion in as many model calls, and ever closer with more steps.
/// On the timestep grid it does not: both start with one first-order step from the data's σ(0)
/// up to σ(t_N), which dominates their error.
#[test]
fn dpm_solver_inversion_over_uniform_lambda_round_trips_closer_than_plain_ddim_inversion() {
    let config = |solver_order, sigma_spacing| DpmSolverConfig {
        solver_order,
        sigma_spacing,
        ..DpmSolverConfig::default()
    };
    let columns = [
        ("2M", config(2, SigmaSpacing::Timesteps)),
        ("2M exponential σ", config(2, SigmaSpacing::Exponential)),
        ("3M exponential σ", config(3, SigmaSpacing::Exponential)),
        ("2M Karras σ", config(2, SigmaSpacing::Karras)),
    ];
    println!(
        "| steps | DDIM plain | {} |",
        columns.map(|(name, _)| name).join(" | ")
    );
    let mut uniform_lambda = Vec::new();
    for steps in [10, 20, 50, 100] {
        let ddim = round_trip(steps, InversionMethod::Plain).unwrap();
        let dpm = columns.map(|(_, config)| dpm_round_trip(steps, config));
        let cells = dpm.map(|error| format!("{error:.1e}"));
        println!("| {steps} | {ddim:.1e} | {} |", cells.join(" | "));
        let bound = if steps == 10 { 0.7 } else { 0.25 };
        for error in &dpm[1..3] {
            assert!(
                *error < bound * ddim,
                "{steps} steps: {dpm:?}, DDIM {ddim:e}"
            );
        }
        uniform_lambda.push(dpm[1]);
    }
    assert!(
        uniform_lambda.windows(2).all(|pair| pair[1] < pair[0]),
        "{uniform_lambda:?}"
    );
}

/// The SDE algorithms' noise has no inverse: refused, where diffusers returns NaN. So are
/// settings sampling refuses (ε̂ down to σ = 0) and a grid with no call left (one step on a
/// grid that ends at timestep 0, where inversion starts).
#[test]
fn dpm_solver_inversion_refuses_what_it_cannot_run() {
    let inverse = |config, steps| DpmSolver::<B, 2>::inverse(config, &schedule(), steps);
    for algorithm_type in [
        AlgorithmType::SdeDpmSolverPlusPlus,
        AlgorithmType::SdeDpmSolver,
        AlgorithmType::DpmSolver,
    ] {
        let config = DpmSolverConfig {
            algorithm_type,
            ..DpmSolverConfig::default()
        };
        let result = inverse(config, 10);
        assert!(
            matches!(result, Err(SamplerError::Incompatible { .. })),
            "{algorithm_type:?}: {result:?}"
        );
    }
    let to_zero = DpmSolverConfig {
        grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::AtLastStep),
        ..DpmSolverConfig::default()
    };
    assert!(inverse(to_zero, 2).is_ok());
    let result = inverse(to_zero, 1);
    assert!(
        matches!(result, Err(SamplerError::OutOfRange { name: "steps", .. })),
        "{result:?}"
    );
}
