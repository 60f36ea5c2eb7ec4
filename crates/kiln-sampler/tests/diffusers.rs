//! diffusers' own scheduler tests (tests/schedulers/test_scheduler_*.py), reproduced: the dummy
//! model x·t/(t+1) run from a deterministic (4, 3, 8, 8) sample, checked by sum(|x|) (±1e-2)
//! and mean(|x|) (±1e-3) against the published values.
//!
//! Skipped: the DDPM full loops and the stochastic loops (η > 0, ancestral), whose values
//! depend on torch's random generator; DPM-Solver's SDE variants, LCM, TCD and the ancestral
//! Euler and DPM2 are checked element for element instead, with noise diffusers is given
//! (`benches/peer/*_fixtures.py`).

use std::collections::HashMap;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use kiln_forward::{ForwardProcess, standard_normal};
use kiln_sampler::AlgorithmType::{self, DpmSolverPlusPlus, SdeDpmSolver, SdeDpmSolverPlusPlus};
use kiln_sampler::{
    Ddim, DdimConfig, Ddpm, DdpmConfig, Deis, DeisConfig, Denoiser, Dpm2, Dpm2Config, DpmSolver,
    DpmSolverConfig, DpmSolverSde, DpmSolverSdeConfig, DpmSolverSinglestep,
    DpmSolverSinglestepConfig, DynamicThresholding, Euler, EulerConfig, FinalSigmas, FnDenoiser,
    Heun, HeunConfig, InversionMethod, Lcm, LcmConfig, Lms, LmsConfig, Pndm, PndmConfig,
    Prediction, SaSolver, SaSolverAlgorithm, SaSolverConfig, SaSolverTau, SampleClipping, Sampler,
    SamplerError, SigmaSpacing, SolverType, Tcd, TcdConfig, UniPc, UniPcConfig, UniPcSolverType,
    VarianceType, invert, sample, sample_from,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

/// `arange(768).reshape(3, 8, 8, 4) / 768` permuted to (4, 3, 8, 8); `flip` reverses the
/// arange first (`dummy_noise_deter`).
fn deterministic(flip: bool) -> Tensor<B, 4> {
    let mut values = vec![0f32; 768];
    for b in 0..4 {
        for c in 0..3 {
            for h in 0..8 {
                for w in 0..8 {
                    let source = ((c * 8 + h) * 8 + w) * 4 + b;
                    let source = if flip { 767 - source } else { source };
                    values[((b * 3 + c) * 8 + h) * 8 + w] = source as f32 / 768.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [4, 3, 8, 8]), &Default::default())
}

fn dummy(prediction: Prediction) -> FnDenoiser<impl Fn(Tensor<B, 4>, f64) -> Tensor<B, 4>> {
    FnDenoiser::new(prediction, |x: Tensor<B, 4>, t: f64| {
        x.mul_scalar(t / (t + 1.0))
    })
}

fn linear(train_timesteps: usize, beta_start: f64) -> NoiseSchedule {
    let beta = BetaSchedule::Linear {
        beta_start,
        beta_end: 0.02,
    };
    NoiseSchedule::new(&beta, train_timesteps).unwrap()
}

fn run(sampler: &mut impl Sampler<B, 4>, prediction: Prediction) -> Tensor<B, 4> {
    let mut rng = StdRng::seed_from_u64(0);
    sample(
        sampler,
        &dummy(prediction),
        deterministic(false),
        &mut rng,
        |_| {},
    )
    .unwrap()
}

fn abs_sum_and_mean(x: Tensor<B, 4>) -> (f64, f64) {
    let values: Vec<f32> = x.abs().into_data().to_vec().unwrap();
    let sum: f64 = values.iter().map(|&v| v as f64).sum();
    (sum, sum / values.len() as f64)
}

fn assert_sum_and_mean(x: Tensor<B, 4>, sum: f64, mean: f64) {
    let (got_sum, got_mean) = abs_sum_and_mean(x);
    assert!(
        (got_sum - sum).abs() < 1e-2,
        "sum {got_sum}, expected {sum}"
    );
    assert!(
        (got_mean - mean).abs() < 1e-3,
        "mean {got_mean}, expected {mean}"
    );
}

fn assert_mean(x: Tensor<B, 4>, mean: f64) {
    let (_, got_mean) = abs_sum_and_mean(x);
    assert!(
        (got_mean - mean).abs() < 1e-3,
        "mean {got_mean}, expected {mean}"
    );
}

#[test]
fn ddim_full_loop_no_noise() {
    let mut ddim = Ddim::new(DdimConfig::default(), &linear(1000, 1e-4), 10).unwrap();
    assert_sum_and_mean(run(&mut ddim, Prediction::Epsilon), 172.0067, 0.223967);
}

#[test]
fn ddim_full_loop_with_v_prediction() {
    let mut ddim = Ddim::new(DdimConfig::default(), &linear(1000, 1e-4), 10).unwrap();
    assert_sum_and_mean(run(&mut ddim, Prediction::V), 52.5302, 0.0684);
}

#[test]
fn ddim_full_loop_with_and_without_set_alpha_to_one() {
    for (set_alpha_to_one, sum, mean) in [(true, 149.8295, 0.1951), (false, 149.0784, 0.1941)] {
        let config = DdimConfig {
            set_alpha_to_one,
            ..DdimConfig::default()
        };
        let mut ddim = Ddim::new(config, &linear(1000, 0.01), 10).unwrap();
        assert_sum_and_mean(run(&mut ddim, Prediction::Epsilon), sum, mean);
    }
}

/// Plain DDIM inversion (`invert` with `InversionMethod::Plain`) against diffusers 0.42's
/// `DDIMInverseScheduler` with `clip_sample` off (`benches/peer/ddim_inverse_fixtures.py`):
/// `set_alpha_to_one` on and off, `leading` grids with `steps_offset` 0 and 1 and `trailing`
/// ones, β from 1e-4 and 1e-2, 10 and 50 steps (24 runs, ε prediction), the call timesteps
/// exactly and the results element for element (each ends at m·x), to 1e-5 of the largest
/// value. diffusers' published loops clip x̂_0, which no inversion can undo and Kiln refuses.
#[test]
fn ddim_inversion_matches_diffusers_element_for_element() {
    let runs: Vec<&str> = include_str!("fixtures/ddim_inverse.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(runs.len(), 24);
    for line in runs {
        let [settings, m, timesteps] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        let mut config = DdimConfig {
            clipping: SampleClipping::thresholding_only(None),
            ..DdimConfig::default()
        };
        let (mut beta_start, mut steps) = (0.0, 0);
        for setting in settings.split_whitespace() {
            match setting.split_once('=').unwrap() {
                ("set_alpha_to_one", flag) => config.set_alpha_to_one = flag == "True",
                ("timestep_spacing", name) => (config.grid, _) = grid_named(name, config.grid),
                ("steps_offset", offset) => config.grid.steps_offset = offset.parse().unwrap(),
                ("beta_start", value) => beta_start = value.parse().unwrap(),
                ("steps", count) => steps = count.parse().unwrap(),
                _ => panic!("unknown fixture setting {setting}"),
            }
        }
        let ddim = Ddim::new(config, &linear(1000, beta_start), steps).unwrap();
        let mut called: Vec<f64> = ddim.inference_timesteps().to_vec();
        called.reverse();
        let expected: Vec<f64> = timesteps.split(' ').map(|t| t.parse().unwrap()).collect();
        assert_eq!(called, expected, "{line}");
        let x = deterministic(false);
        let model = dummy(Prediction::Epsilon);
        let inverted = invert(&ddim, &model, x.clone(), InversionMethod::Plain, |_| {}).unwrap();
        let expected = x.mul_scalar(m.parse::<f64>().unwrap());
        let scale = expected.clone().abs().max().into_scalar() as f64;
        let error = (inverted - expected).abs().max().into_scalar() as f64;
        assert!(
            error <= 1e-5 * scale.max(1.0),
            "{line}: max error {error:e}"
        );
    }
}

/// diffusers' `full_loop_with_noise`: `add_noise` (kiln-forward's q_sample) at the 9th of 10
/// timesteps, then the last two steps.
fn noised_then_last_two_steps(
    sampler: &mut impl Sampler<B, 4>,
    schedule: NoiseSchedule,
) -> Tensor<B, 4> {
    let timesteps = sampler.timesteps().to_vec();
    let forward = ForwardProcess::<B>::new(schedule, &Default::default());
    let start = timesteps[8] as usize;
    let mut x = forward
        .q_sample(deterministic(false), &[start; 4], deterministic(true))
        .unwrap();
    let model = dummy(Prediction::Epsilon);
    let mut rng = StdRng::seed_from_u64(0);
    for (index, &t) in timesteps.iter().enumerate().skip(8) {
        let output = model.denoise(x.clone(), t).unwrap();
        x = sampler
            .step(index, output, Prediction::Epsilon, x, &mut rng)
            .unwrap()
            .sample;
    }
    x
}

#[test]
fn ddim_full_loop_with_noise() {
    let schedule = linear(1000, 1e-4);
    let mut ddim = Ddim::new(DdimConfig::default(), &schedule, 10).unwrap();
    let x = noised_then_last_two_steps(&mut ddim, schedule);
    assert_sum_and_mean(x, 354.5418, 0.4616);
}

/// diffusers' Euler and Heun test loops overwrite the sample with its scaled model input and
/// pass that to `step`; reproducing their numbers means doing the same.
fn sigma_test_loop(sampler: &mut impl Sampler<B, 4>, prediction: Prediction) -> Tensor<B, 4> {
    let timesteps = sampler.timesteps().to_vec();
    let mut x = deterministic(false).mul_scalar(sampler.init_noise_sigma());
    let model = dummy(prediction);
    let mut rng = StdRng::seed_from_u64(0);
    for (index, &t) in timesteps.iter().enumerate() {
        x = x.mul_scalar(sampler.model_input_scale(index));
        let output = model.denoise(x.clone(), t).unwrap();
        x = sampler
            .step(index, output, prediction, x, &mut rng)
            .unwrap()
            .sample;
    }
    x
}

fn euler_test_loop(config: EulerConfig, prediction: Prediction) -> Tensor<B, 4> {
    sigma_test_loop(
        &mut Euler::new(config, &linear(1100, 1e-4), 10).unwrap(),
        prediction,
    )
}

fn heun_test_loop(config: HeunConfig, prediction: Prediction) -> Tensor<B, 4> {
    let mut heun = Heun::<B, 4>::new(config, &linear(1100, 1e-4), 10).unwrap();
    sigma_test_loop(&mut heun, prediction)
}

fn lms_test_loop(config: LmsConfig, prediction: Prediction) -> Tensor<B, 4> {
    let mut lms = Lms::<B, 4>::new(config, &linear(1100, 1e-4), 10).unwrap();
    sigma_test_loop(&mut lms, prediction)
}

/// test_scheduler_lms.py's full loops: ε (1006.388 / 1.31), v (0.0017 / 2.2676e-6) and
/// Karras σ. diffusers publishes 3812.9927 / 4.9648 for the last, from ᾱ cumulated in f32 over
/// 1,100 steps; its own scheduler given the schedule in f64, as Kiln computes it, ends at
/// 3813.0240 (`benches/peer/lms_fixtures.py --karras-f64`), 8e-6 apart, and so does Kiln.
#[test]
fn lms_full_loops() {
    let x = lms_test_loop(LmsConfig::default(), Prediction::Epsilon);
    assert_sum_and_mean(x, 1006.388, 1.31);
    let x = lms_test_loop(LmsConfig::default(), Prediction::V);
    assert_sum_and_mean(x, 0.0017, 2.2676e-06);
    let karras = LmsConfig {
        sigma_spacing: SigmaSpacing::Karras,
        ..LmsConfig::default()
    };
    assert_sum_and_mean(
        lms_test_loop(karras, Prediction::Epsilon),
        3813.0240,
        4.9648,
    );
}

/// LMS of orders 1 to 4, in ε, v and x_0, on `linspace`, `leading` and `trailing` grids and
/// with Karras σ, against diffusers 0.42 (`benches/peer/lms_fixtures.py`), element for
/// element: each run from x ends at m·x.
#[test]
fn lms_matches_diffusers_element_for_element() {
    let runs = linear_runs(include_str!("fixtures/lms.txt"));
    assert_eq!(runs.len(), 48);
    for (settings, coefficients) in runs {
        let [order, prediction, grid] = settings.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad settings {settings}");
        };
        let (grid, sigma_spacing) = grid_named(grid, LmsConfig::default().grid);
        let config = LmsConfig {
            order: order.parse().unwrap(),
            sigma_spacing,
            grid,
            ..Default::default()
        };
        let mut lms = Lms::<B, 4>::new(config, &linear(1000, 1e-4), 10).unwrap();
        let prediction = prediction_named(prediction);
        assert_linear_run(&mut lms, prediction, &coefficients, 1e-5, settings);
    }
}

/// test_scheduler_kdpm2_discrete.py's full loops: ε (20.4125 / 0.0266) and v (4.6934e-7 /
/// 6.1112e-10).
#[test]
fn dpm2_full_loops() {
    for (prediction, sum, mean) in [
        (Prediction::Epsilon, 20.4125, 0.0266),
        (Prediction::V, 4.6934e-07, 6.1112e-10),
    ] {
        let mut dpm2 = Dpm2::<B, 4>::new(Dpm2Config::default(), &linear(1100, 1e-4), 10).unwrap();
        assert_sum_and_mean(sigma_test_loop(&mut dpm2, prediction), sum, mean);
    }
}

/// A fixture's grid: a `timestep_spacing` over `default` (the sampler's default grid), or
/// `karras` for Karras σ on `default`; with whether σ is Karras's.
fn grid_named(name: &str, default: TimestepGrid) -> (TimestepGrid, SigmaSpacing) {
    let spacing = match name {
        "karras" => return (default, SigmaSpacing::Karras),
        "linspace" => TimestepSpacing::Linspace,
        "leading" => TimestepSpacing::Leading,
        "trailing" => TimestepSpacing::Trailing,
        other => panic!("unknown grid {other}"),
    };
    (TimestepGrid { spacing, ..default }, SigmaSpacing::Timesteps)
}

/// DPM-Solver-2 in 1, 2, 5 and 10 steps, in ε and v, on `linspace`, `leading` and `trailing`
/// grids and with Karras σ, against diffusers 0.42's `KDPM2DiscreteScheduler`
/// (`benches/peer/dpm2_fixtures.py`): the model-call timesteps and the result element for
/// element (each run from x ends at m·x).
///
/// The midpoints' timesteps agree to 8.2e-3: diffusers finds them in a σ table from ᾱ
/// cumulated in f32. The results agree to 3e-5 of the run's largest value in 5 and 10 steps,
/// but only to 2.0e-4 in 2 steps: there the dummy model's ε̂ cancels x to 1 % at σ_max, which
/// amplifies the rounding of f32 tensors a hundredfold, in both implementations (the 2-step
/// `linspace` loop in f64 ends at m = 19.1523; diffusers at 19.1510).
#[test]
fn dpm2_matches_diffusers_element_for_element() {
    assert_dpm2_runs(include_str!("fixtures/dpm2.txt"), false);
}

/// DPM2 in either form over a fixture file's runs.
fn assert_dpm2_runs(fixtures: &str, ancestral: bool) {
    assert_two_call_runs(
        fixtures,
        Dpm2Config::default().grid,
        |grid, sigma_spacing, steps| {
            let config = Dpm2Config {
                ancestral,
                sigma_spacing,
                grid,
                ..Default::default()
            };
            Dpm2::<B, 4>::new(config, &linear(1000, 1e-4), steps).unwrap()
        },
    );
}

/// DPM-Solver-2 ancestral, over the same runs as [`dpm2_matches_diffusers_element_for_element`],
/// against diffusers 0.42's `KDPM2AncestralDiscreteScheduler`
/// (`benches/peer/ancestral_fixtures.py`), fresh noise included (each run from x with noises
/// z_k ends at m·x + Σ n_k z_k): they agree to 9.8e-5 of the run's largest value.
///
/// In 2 steps on the `linspace` and Karras grids, which go from σ_max ≈ 157 to σ_min = 0.01,
/// diffusers' run is NaN (its σ_down cancels in f32; see `ancestral_split`); Kiln's must be
/// finite there.
#[test]
fn dpm2_ancestral_matches_diffusers_element_for_element() {
    assert_dpm2_runs(include_str!("fixtures/dpm2_ancestral.txt"), true);
}

/// DPM-Solver++ SDE over the same runs as [`dpm2_matches_diffusers_element_for_element`],
/// against diffusers 0.42's `DPMSolverSDEScheduler` (`benches/peer/dpm_sde_fixtures.py`),
/// given a Brownian path made of the draws Kiln takes, so that each run from x ends at
/// m·x + Σ n_k z_k: the model-call timesteps and the result element for element. They agree
/// to 9.3e-5 of the run's largest value; the test fails if the two noises of a step are drawn
/// independently.
#[test]
fn dpm_solver_sde_matches_diffusers_element_for_element() {
    let fixtures = include_str!("fixtures/dpm_sde.txt");
    let default = DpmSolverSdeConfig::default();
    assert_two_call_runs(fixtures, default.grid, |grid, sigma_spacing, steps| {
        let config = DpmSolverSdeConfig {
            sigma_spacing,
            grid,
            ..Default::default()
        };
        DpmSolverSde::<B, 4>::new(config, &linear(1000, 1e-4), steps).unwrap()
    });
}

/// Checks the 32 runs of a fixture file of a sampler with two calls a step (1, 2, 5 and 10
/// steps; ε and v; three grids and Karras σ), the sampler made by `build` from the grid, Karras
/// σ or not, and the step count: its call timesteps to 2e-2, its results to 5e-4 (runs that
/// are NaN in diffusers only for being finite).
fn assert_two_call_runs<S: Sampler<B, 4>>(
    fixtures: &str,
    default_grid: TimestepGrid,
    build: impl Fn(TimestepGrid, SigmaSpacing, usize) -> S,
) {
    let runs: Vec<&str> = fixtures
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(runs.len(), 32);
    for line in runs {
        let [settings, coefficients, timesteps] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        let [steps, prediction, grid] = settings.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad settings {settings}");
        };
        let (grid, sigma_spacing) = grid_named(grid, default_grid);
        let mut sampler = build(grid, sigma_spacing, steps.parse().unwrap());
        let expected: Vec<f64> = timesteps.split(' ').map(|t| t.parse().unwrap()).collect();
        let calls = sampler.timesteps();
        assert_eq!(calls.len(), expected.len(), "{settings}");
        // diffusers' NaN midpoints (see the ancestral test) aside
        let worst = calls
            .iter()
            .zip(&expected)
            .filter(|(_, want)| !want.is_nan())
            .map(|(got, want)| (got - want).abs())
            .fold(0.0, f64::max);
        assert!(worst < 2e-2, "{settings}: {calls:?} against {expected:?}");
        let coefficients: Vec<f64> = coefficients
            .split(' ')
            .map(|c| c.parse().unwrap())
            .collect();
        let prediction = prediction_named(prediction);
        if coefficients.iter().any(|c| c.is_nan()) {
            let x = sample(
                &mut sampler,
                &dummy(prediction),
                deterministic(false),
                &mut StdRng::seed_from_u64(7),
                |_| {},
            )
            .unwrap();
            assert!(!x.is_nan().any().into_scalar(), "{settings}: NaN");
            continue;
        }
        assert_linear_run(&mut sampler, prediction, &coefficients, 5e-4, settings);
    }
}

#[test]
fn heun_full_loop_no_noise() {
    let x = heun_test_loop(HeunConfig::default(), Prediction::Epsilon);
    assert_sum_and_mean(x, 0.1233, 0.0002);
}

#[test]
fn heun_full_loop_with_v_prediction() {
    let x = heun_test_loop(HeunConfig::default(), Prediction::V);
    assert_sum_and_mean(x, 4.6934e-07, 6.1112e-10);
}

#[test]
fn heun_full_loop_karras_sigmas() {
    let config = HeunConfig {
        sigma_spacing: SigmaSpacing::Karras,
        ..HeunConfig::default()
    };
    assert_sum_and_mean(
        heun_test_loop(config, Prediction::Epsilon),
        0.00015,
        1.9869554535034695e-07,
    );
}

#[test]
fn euler_full_loop_no_noise() {
    let x = euler_test_loop(EulerConfig::default(), Prediction::Epsilon);
    assert_sum_and_mean(x, 10.0807, 0.0131);
}

#[test]
fn euler_full_loop_with_v_prediction() {
    let x = euler_test_loop(EulerConfig::default(), Prediction::V);
    assert_sum_and_mean(x, 0.0002, 2.2676e-06);
}

#[test]
fn euler_full_loop_karras_sigmas() {
    let config = EulerConfig {
        sigma_spacing: SigmaSpacing::Karras,
        ..EulerConfig::default()
    };
    let x = euler_test_loop(config, Prediction::Epsilon);
    assert_sum_and_mean(x, 124.52299499511719, 0.16213932633399963);
}

/// Euler ancestral in 1, 2, 5 and 10 steps, in ε and v, on `linspace`, `leading` and
/// `trailing` grids, against diffusers 0.42's `EulerAncestralDiscreteScheduler`
/// (`benches/peer/ancestral_fixtures.py`), fresh noise included, element for element: within
/// 3e-5 of the run's largest value (2.4e-5 at worst, in the 1- and 2-step runs from σ ≈ 157,
/// where x − σ ε̂ cancels; 3.1e-6 in 5 and 10 steps).
#[test]
fn euler_ancestral_matches_diffusers_element_for_element() {
    let runs = linear_runs(include_str!("fixtures/euler_ancestral.txt"));
    assert_eq!(runs.len(), 24);
    for (settings, coefficients) in runs {
        let [steps, prediction, grid] = settings.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad settings {settings}");
        };
        let (grid, _) = grid_named(grid, EulerConfig::default().grid);
        let config = EulerConfig {
            ancestral: true,
            grid,
            ..EulerConfig::default()
        };
        let mut euler = Euler::new(config, &linear(1000, 1e-4), steps.parse().unwrap()).unwrap();
        let prediction = prediction_named(prediction);
        assert_linear_run(&mut euler, prediction, &coefficients, 3e-5, settings);
    }
}

/// test_scheduler_dpm_multi.py: order 2, midpoint, `lower_order_final = False`,
/// `final_sigmas_type = "sigma_min"` (so the last step is second order, to σ of t = 0).
fn dpm_test_config() -> DpmSolverConfig {
    DpmSolverConfig {
        lower_order_final: false,
        final_sigmas_type: FinalSigmas::SigmaMin,
        ..DpmSolverConfig::default()
    }
}

fn dpm_run(config: DpmSolverConfig, prediction: Prediction) -> Tensor<B, 4> {
    let mut solver = DpmSolver::new(config, &linear(1000, 1e-4), 10).unwrap();
    run(&mut solver, prediction)
}

#[test]
fn dpm_solver_full_loop_no_noise() {
    assert_mean(dpm_run(dpm_test_config(), Prediction::Epsilon), 0.3301);
}

#[test]
fn dpm_solver_full_loop_with_v_prediction() {
    assert_mean(dpm_run(dpm_test_config(), Prediction::V), 0.2251);
}

#[test]
fn dpm_solver_full_loop_with_thresholding() {
    let config = DpmSolverConfig {
        thresholding: Some(DynamicThresholding {
            ratio: 0.87,
            max_value: 0.5,
        }),
        ..dpm_test_config()
    };
    assert_mean(dpm_run(config, Prediction::Epsilon), 1.1364);
}

/// diffusers' `test_full_loop_with_lu_and_v_prediction`: σ even in λ.
#[test]
fn dpm_solver_full_loop_with_lu_lambdas_and_v_prediction() {
    let config = DpmSolverConfig {
        sigma_spacing: SigmaSpacing::Exponential,
        ..dpm_test_config()
    };
    assert_mean(dpm_run(config, Prediction::V), 0.1554);
}

/// A fixture line's settings (`key=value` in diffusers' names) as a config and a prediction.
fn dpm_fixture_config(settings: &str) -> (DpmSolverConfig, Prediction) {
    let mut config = DpmSolverConfig::default();
    let mut prediction = Prediction::Epsilon;
    for setting in settings.split_whitespace() {
        let (key, value) = setting.split_once('=').unwrap();
        match (key, value) {
            ("algorithm_type", name) => config.algorithm_type = algorithm_named(name),
            ("solver_order", order) => config.solver_order = order.parse().unwrap(),
            ("solver_type", name) => config.solver_type = solver_type_named(name),
            ("prediction_type", name) => prediction = prediction_named(name),
            ("final_sigmas_type", name) => config.final_sigmas_type = final_sigmas_named(name),
            ("lower_order_final", flag) => config.lower_order_final = flag == "True",
            ("use_lu_lambdas" | "use_exponential_sigmas", "True") => {
                config.sigma_spacing = SigmaSpacing::Exponential
            }
            ("use_karras_sigmas", "True") => config.sigma_spacing = SigmaSpacing::Karras,
            ("use_beta_sigmas", "True") => config.sigma_spacing = SigmaSpacing::BETA,
            ("lambda_min_clipped", value) => config.lambda_min_clipped = value.parse().unwrap(),
            ("euler_at_final", flag) => config.euler_at_final = flag == "True",
            ("timestep_spacing", name) => (config.grid, _) = grid_named(name, config.grid),
            _ => panic!("unknown fixture setting {setting}"),
        }
    }
    (config, prediction)
}

/// A fixture's `algorithm_type`.
fn algorithm_named(name: &str) -> AlgorithmType {
    match name {
        "dpmsolver++" => DpmSolverPlusPlus,
        "sde-dpmsolver++" => SdeDpmSolverPlusPlus,
        "dpmsolver" => AlgorithmType::DpmSolver,
        "sde-dpmsolver" => SdeDpmSolver,
        other => panic!("unknown algorithm {other}"),
    }
}

/// A fixture's `solver_type`.
fn solver_type_named(name: &str) -> SolverType {
    match name {
        "midpoint" => SolverType::Midpoint,
        "heun" => SolverType::Heun,
        other => panic!("unknown solver type {other}"),
    }
}

/// A fixture's `final_sigmas_type`.
fn final_sigmas_named(name: &str) -> FinalSigmas {
    match name {
        "zero" => FinalSigmas::Zero,
        "sigma_min" => FinalSigmas::SigmaMin,
        other => panic!("unknown final_sigmas_type {other}"),
    }
}

/// A fixture file's runs: the settings before ` | ` and the coefficients m, n_0, n_1, … after.
fn linear_runs(fixtures: &str) -> Vec<(&str, Vec<f64>)> {
    fixtures
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (settings, coefficients) = line.split_once(" | ").unwrap();
            let coefficients = coefficients
                .split_whitespace()
                .map(|c| c.parse().unwrap())
                .collect();
            (settings, coefficients)
        })
        .collect()
}

/// Runs `sampler` over the dummy model from the deterministic sample and checks every element
/// against the fixture's m·x + Σ n_k z_k, with the z_k drawn again by a second generator of
/// the same seed; `tolerance` is relative to the result's largest value (or 1).
fn assert_linear_run(
    sampler: &mut impl Sampler<B, 4>,
    prediction: Prediction,
    coefficients: &[f64],
    tolerance: f64,
    settings: &str,
) {
    assert_linear_run_of(
        sampler,
        &dummy(prediction),
        coefficients,
        tolerance,
        settings,
    );
}

/// [`assert_linear_run`] over `model`, for another dummy than x·t/(t+1).
fn assert_linear_run_of(
    sampler: &mut impl Sampler<B, 4>,
    model: &impl Denoiser<B, 4>,
    coefficients: &[f64],
    tolerance: f64,
    settings: &str,
) {
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64(7);
    let mut noise_rng = StdRng::seed_from_u64(7);
    let x = deterministic(false);
    let result = sample(sampler, model, x.clone(), &mut rng, |_| {}).unwrap();
    let mut expected = x.mul_scalar(coefficients[0]);
    for &n in &coefficients[1..] {
        let z = standard_normal::<B, 4>([4, 3, 8, 8], &mut noise_rng, &device);
        expected = expected + z.mul_scalar(n);
    }
    let scale = expected.clone().abs().max().into_scalar() as f64;
    let error = (result - expected).abs().max().into_scalar() as f64;
    assert!(
        error <= tolerance * scale.max(1.0),
        "{settings}: max error {error:e} at scale {scale}"
    );
}

/// The dummy x·t/(t+1) that also learns its variance: v = sin(t/37) for every value, as
/// `benches/peer/ddpm_learned_range_fixtures.py` extends diffusers' dummy.
struct LearnedVarianceDummy(Prediction);

impl Denoiser<B, 4> for LearnedVarianceDummy {
    fn prediction(&self) -> Prediction {
        self.0
    }

    fn denoise(&self, sample: Tensor<B, 4>, timestep: f64) -> Result<Tensor<B, 4>, SamplerError> {
        Ok(sample.mul_scalar(timestep / (timestep + 1.0)))
    }

    fn learns_variance(&self) -> bool {
        true
    }

    fn denoise_with_variance(
        &self,
        sample: Tensor<B, 4>,
        timestep: f64,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        let variance = sample.ones_like().mul_scalar((timestep / 37.0).sin());
        Ok(Tensor::cat(
            vec![self.denoise(sample, timestep)?, variance],
            1,
        ))
    }
}

/// DDPM with the learned variance of Nichol & Dhariwal 2021 (`learned_range`) in 1, 2, 5, 10
/// and 50 steps, in ε, x_0 and v, on `linspace`, `leading` and `trailing` grids, against
/// diffusers 0.42's `DDPMScheduler` (`benches/peer/ddpm_learned_range_fixtures.py`), fresh
/// noise included, element for element: each run is linear in the sample and its noises, as
/// the dummy's v depends on t alone.
#[test]
fn ddpm_learned_range_matches_diffusers_element_for_element() {
    let runs = linear_runs(include_str!("fixtures/ddpm_learned_range.txt"));
    assert_eq!(runs.len(), 45);
    for (settings, coefficients) in runs {
        let words: Vec<&str> = settings.split_whitespace().collect();
        let [steps, prediction, spacing] = words[..] else {
            panic!("{settings}: expected steps, prediction and spacing");
        };
        let config = DdpmConfig {
            variance_type: VarianceType::LearnedRange,
            clipping: SampleClipping::default(),
            grid: TimestepGrid {
                spacing: TimestepSpacing::from_name(spacing).unwrap(),
                ..TimestepGrid::default()
            },
        };
        let mut ddpm = Ddpm::new(config, &linear(1000, 1e-4), steps.parse().unwrap()).unwrap();
        let model = LearnedVarianceDummy(Prediction::from_name(prediction).unwrap());
        assert_linear_run_of(&mut ddpm, &model, &coefficients, 5e-5, settings);
    }
}

/// DPM-Solver's other algorithms (ε̂, SDE), uniform-λ steps, λ clipping (`lambda_min_clipped`
/// = −4 on `linspace` and `leading` grids) and `euler_at_final` against diffusers 0.42, element
/// for element, SDE noise included: each loop is linear in the sample x and the noises z_k, so
/// diffusers' run ends at m·x + Σ n_k z_k with scalars `benches/peer/dpm_solver_fixtures.py`
/// measured. diffusers keeps σ and λ in f32 and Kiln in f64: the runs agree to 3e-5 of their
/// largest value (the SDE ones, whose values reach 300), where a midpoint step taken for a Heun
/// one is off by 5 % to 300 %.
#[test]
fn dpm_solver_algorithms_match_diffusers_element_for_element() {
    let runs = linear_runs(include_str!("fixtures/dpm_solver.txt"));
    assert_eq!(runs.len(), 44);
    for (settings, coefficients) in runs {
        let (config, prediction) = dpm_fixture_config(settings);
        let mut solver = DpmSolver::new(config, &linear(1000, 1e-4), 10).unwrap();
        assert_linear_run(&mut solver, prediction, &coefficients, 5e-5, settings);
    }
}

fn dpm_inverse_run(config: DpmSolverConfig, prediction: Prediction) -> Tensor<B, 4> {
    let mut inverse = DpmSolver::inverse(config, &linear(1000, 1e-4), 10).unwrap();
    run(&mut inverse, prediction)
}

/// test_scheduler_dpm_multi_inverse.py's `test_full_loop_no_noise` (and `test_switch`).
#[test]
fn dpm_solver_inverse_full_loop_no_noise() {
    assert_mean(
        dpm_inverse_run(dpm_test_config(), Prediction::Epsilon),
        0.7047,
    );
}

/// test_scheduler_dpm_multi_inverse.py's `test_full_loop_with_v_prediction`.
#[test]
fn dpm_solver_inverse_full_loop_with_v_prediction() {
    assert_mean(dpm_inverse_run(dpm_test_config(), Prediction::V), 1.5194);
}

/// test_scheduler_dpm_multi_inverse.py's `test_full_loop_no_noise_thres`, published as 19.8933
/// from diffusers' tables in f32: its first step divides by σ(0) = √((1 − ᾱ_0)/ᾱ_0) = 0.01,
/// which f32 has to 1e-4, and the same loop with the tables in f64 gives 19.8954
/// (`benches/peer/dpm_inverse_fixtures.py` prints both), as Kiln does.
#[test]
fn dpm_solver_inverse_full_loop_with_thresholding() {
    let config = DpmSolverConfig {
        thresholding: Some(DynamicThresholding {
            ratio: 0.87,
            max_value: 0.5,
        }),
        ..dpm_test_config()
    };
    let (_, mean) = abs_sum_and_mean(dpm_inverse_run(config, Prediction::Epsilon));
    assert!((mean - 19.8954).abs() < 1e-3, "mean {mean}");
    assert!((mean - 19.8933).abs() < 3e-3, "mean {mean}");
}

/// `DpmSolver::inverse` against diffusers 0.42's `DPMSolverMultistepInverseScheduler`, element
/// for element, for both ODE algorithms, orders 1–3, both solver types, the three predictions,
/// the lower orders at the end, λ clipping and Karras, exponential and beta σ: each loop is linear in the sample x, so
/// diffusers' run ends at m·x with the scalar `benches/peer/dpm_inverse_fixtures.py` measured.
/// The x_0-prediction runs agree to 8.3e-5 of their largest value, the others to 1.1e-5: their
/// first step divides by σ(0) = 0.01, which diffusers has in f32 (with its tables in f64 the
/// same run moves by 8.2e-5, to Kiln's), where a midpoint step taken for a Heun one is off by
/// 0.5 %.
#[test]
fn dpm_solver_inverse_matches_diffusers_element_for_element() {
    let runs = linear_runs(include_str!("fixtures/dpm_inverse.txt"));
    assert_eq!(runs.len(), 42);
    for (settings, coefficients) in runs {
        let (mut config, prediction) = dpm_fixture_config(settings);
        // diffusers' inverse scheduler has no final σ; Kiln's takes the settings sampling
        // takes, where the ε̂ algorithm stops at σ_min.
        if config.algorithm_type == AlgorithmType::DpmSolver {
            config.final_sigmas_type = FinalSigmas::SigmaMin;
        }
        let mut inverse = DpmSolver::inverse(config, &linear(1000, 1e-4), 10).unwrap();
        assert_linear_run(&mut inverse, prediction, &coefficients, 1e-4, settings);
    }
}

fn lcm_schedule() -> NoiseSchedule {
    let beta = BetaSchedule::ScaledLinear {
        beta_start: 0.00085,
        beta_end: 0.012,
    };
    NoiseSchedule::new(&beta, 1000).unwrap()
}

/// test_scheduler_lcm.py's `test_full_loop_onestep`: one call, no noise.
#[test]
fn lcm_full_loop_onestep() {
    let mut lcm = Lcm::new(LcmConfig::default(), &lcm_schedule(), 1).unwrap();
    assert_sum_and_mean(run(&mut lcm, Prediction::Epsilon), 18.7097, 0.0244);
}

/// LCM's grid and its multistep runs, fresh noise included, against diffusers 0.42
/// (`benches/peer/lcm_fixtures.py`), element for element.
#[test]
fn lcm_matches_diffusers_element_for_element() {
    let schedule = lcm_schedule();
    for (steps, timesteps) in [
        (
            10,
            vec![
                999.0, 899.0, 799.0, 699.0, 599.0, 499.0, 399.0, 299.0, 199.0, 99.0,
            ],
        ),
        (4, vec![999.0, 759.0, 499.0, 259.0]),
    ] {
        let lcm = Lcm::new(LcmConfig::default(), &schedule, steps).unwrap();
        assert_eq!(Sampler::<B, 4>::timesteps(&lcm), timesteps.as_slice());
    }
    let runs = linear_runs(include_str!("fixtures/lcm.txt"));
    assert_eq!(runs.len(), 12);
    for (settings, coefficients) in runs {
        let (steps, prediction) = settings.split_once(' ').unwrap();
        let mut lcm = Lcm::new(LcmConfig::default(), &schedule, steps.parse().unwrap()).unwrap();
        let prediction = prediction_named(prediction);
        assert_linear_run(&mut lcm, prediction, &coefficients, 1e-5, settings);
    }
}

/// A fixture's `prediction_type`.
fn prediction_named(name: &str) -> Prediction {
    match name {
        "epsilon" => Prediction::Epsilon,
        "v_prediction" => Prediction::V,
        "sample" => Prediction::Sample,
        other => panic!("unknown prediction {other}"),
    }
}

/// test_scheduler_tcd.py's deterministic full loops (γ = 0) in 1 and 10 steps.
#[test]
fn tcd_full_loops_deterministic() {
    for (steps, sum, mean) in [(1, 29.8715, 0.0389), (10, 181.2040, 0.2359)] {
        let config = TcdConfig {
            gamma: 0.0,
            ..TcdConfig::default()
        };
        let mut tcd = Tcd::new(config, &lcm_schedule(), steps).unwrap();
        assert_sum_and_mean(run(&mut tcd, Prediction::Epsilon), sum, mean);
    }
}

/// TCD's runs at γ = 0, 0.3, 0.5 and 1, fresh noise included, against diffusers 0.42
/// (`benches/peer/lcm_fixtures.py`), element for element; its grid is LCM's.
#[test]
fn tcd_matches_diffusers_element_for_element() {
    let schedule = lcm_schedule();
    let runs = linear_runs(include_str!("fixtures/tcd.txt"));
    assert_eq!(runs.len(), 48);
    for (settings, coefficients) in runs {
        let [steps, prediction, gamma] = settings.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad settings {settings}");
        };
        let steps = steps.parse().unwrap();
        let config = TcdConfig {
            gamma: gamma.parse().unwrap(),
            ..TcdConfig::default()
        };
        let mut tcd = Tcd::new(config, &schedule, steps).unwrap();
        let lcm = Lcm::new(LcmConfig::default(), &schedule, steps).unwrap();
        assert_eq!(
            Sampler::<B, 4>::timesteps(&tcd),
            Sampler::<B, 4>::timesteps(&lcm)
        );
        let prediction = prediction_named(prediction);
        assert_linear_run(&mut tcd, prediction, &coefficients, 1e-5, settings);
    }
}

fn pndm_run(config: PndmConfig, beta_start: f64, prediction: Prediction) -> Tensor<B, 4> {
    let mut pndm = Pndm::<B, 4>::new(config, &linear(1000, beta_start), 10).unwrap();
    run(&mut pndm, prediction)
}

#[test]
fn pndm_timesteps_with_offset() {
    let config = PndmConfig {
        grid: TimestepGrid {
            steps_offset: 1,
            ..TimestepGrid::default()
        },
        ..PndmConfig::default()
    };
    let pndm = Pndm::<B, 4>::new(config, &linear(1000, 1e-4), 10).unwrap();
    let expected = [
        901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1,
    ];
    let expected: Vec<f64> = expected.iter().map(|&t| t as f64).collect();
    assert_eq!(pndm.timesteps(), expected);
}

#[test]
fn pndm_full_loop_no_noise() {
    let x = pndm_run(PndmConfig::default(), 1e-4, Prediction::Epsilon);
    assert_sum_and_mean(x, 198.1318, 0.2580);
}

#[test]
fn pndm_full_loop_with_v_prediction() {
    let x = pndm_run(PndmConfig::default(), 1e-4, Prediction::V);
    assert_sum_and_mean(x, 67.3986, 0.0878);
}

#[test]
fn pndm_full_loop_with_and_without_set_alpha_to_one() {
    for (set_alpha_to_one, sum, mean) in [(true, 230.0399, 0.2995), (false, 186.9482, 0.2434)] {
        let config = PndmConfig {
            set_alpha_to_one,
            ..PndmConfig::default()
        };
        assert_sum_and_mean(pndm_run(config, 0.01, Prediction::Epsilon), sum, mean);
    }
}

/// test_scheduler_unipc.py: order 2, bh2, `final_sigmas_type = "sigma_min"`.
fn unipc_run(sigma_spacing: SigmaSpacing, prediction: Prediction) -> Tensor<B, 4> {
    let config = UniPcConfig {
        final_sigmas_type: FinalSigmas::SigmaMin,
        sigma_spacing,
        ..UniPcConfig::default()
    };
    let mut unipc = UniPc::<B, 4>::new(config, &linear(1000, 1e-4), 10).unwrap();
    run(&mut unipc, prediction)
}

#[test]
fn unipc_full_loops() {
    assert_mean(
        unipc_run(SigmaSpacing::Timesteps, Prediction::Epsilon),
        0.2464,
    );
    assert_mean(unipc_run(SigmaSpacing::Karras, Prediction::Epsilon), 0.2925);
    assert_mean(unipc_run(SigmaSpacing::Timesteps, Prediction::V), 0.1014);
    assert_mean(unipc_run(SigmaSpacing::Karras, Prediction::V), 0.1966);
}

/// From a fresh scheduler, so the first of the two steps is first order.
#[test]
fn unipc_full_loop_with_noise() {
    let schedule = linear(1000, 1e-4);
    let config = UniPcConfig {
        final_sigmas_type: FinalSigmas::SigmaMin,
        ..UniPcConfig::default()
    };
    let mut unipc = UniPc::<B, 4>::new(config, &schedule, 10).unwrap();
    let x = noised_then_last_two_steps(&mut unipc, schedule);
    assert_sum_and_mean(x, 315.5757, 0.4109);
}

/// test_scheduler_deis.py's full loops (10 steps, order 2): ε (mean 0.23916), v (0.091) and
/// `add_noise` then the last two steps (315.3016 / 0.41054).
#[test]
fn deis_full_loops() {
    let schedule = linear(1000, 1e-4);
    for (prediction, mean) in [(Prediction::Epsilon, 0.23916), (Prediction::V, 0.091)] {
        let mut deis = Deis::<B, 4>::new(DeisConfig::default(), &schedule, 10).unwrap();
        assert_mean(run(&mut deis, prediction), mean);
    }
    let mut deis = Deis::<B, 4>::new(DeisConfig::default(), &schedule, 10).unwrap();
    let x = noised_then_last_two_steps(&mut deis, schedule);
    assert_sum_and_mean(x, 315.3016, 0.41054);
}

/// DEIS of orders 1–3 against diffusers 0.42's `DEISMultistepScheduler`
/// (`benches/peer/deis_fixtures.py`): 152 runs over ε, v and x_0, every grid and Karras σ,
/// 1 to 10 steps, with and without `lower_order_final`, their timesteps exactly and their
/// results element for element (each ends at m·x), to 3e-5 of the run's largest value (2.3e-5
/// at worst, in the one-step runs from σ_max, where diffusers' f32 cancels most of x); and six
/// runs with dynamic thresholding (ratio 0.87, max 0.5), which is not linear: sum(|x|) to
/// 1e-2, mean(|x|) to 1e-5 and every 48th element to 1e-5.
///
/// One difference is kept on purpose: with Karras σ in one step diffusers' last σ is the
/// Karras grid's last, σ_max itself, so its step goes nowhere and returns the noise (m = 1);
/// Kiln steps to σ_min, as every other grid does, and lands where the one-step `linspace` run
/// does (the same step, from t = 999 to σ_min).
#[test]
fn deis_matches_diffusers_element_for_element() {
    let schedule = linear(1000, 1e-4);
    let fixtures = include_str!("fixtures/deis.txt");
    let runs: Vec<&str> = fixtures
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(runs.len(), 158);
    let results = results_by_settings(&runs);
    for line in runs {
        let [settings, values, expected] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        let settings: Vec<&str> = settings.split(' ').collect();
        let numbers = |text: &str| -> Vec<f64> {
            text.split(' ')
                .map(|value| value.parse().unwrap())
                .collect()
        };
        let prediction = prediction_named(settings[2]);
        let solver_order = settings[1].parse().unwrap();
        match settings[0] {
            "linear" => {
                let (grid, sigma_spacing) = grid_named(settings[3], DeisConfig::default().grid);
                let config = DeisConfig {
                    solver_order,
                    lower_order_final: settings[5] == "True",
                    sigma_spacing,
                    grid,
                    ..DeisConfig::default()
                };
                let steps = settings[4].parse().unwrap();
                let values = if settings[3] == "karras" && steps == 1 {
                    assert_eq!(values, "1.0", "{line}: diffusers' step no longer stays put");
                    let linspace =
                        format!("linear {} {} linspace 1 True", settings[1], settings[2]);
                    results[linspace.as_str()]
                } else {
                    values
                };
                let mut deis = Deis::<B, 4>::new(config, &schedule, steps).unwrap();
                assert_eq!(
                    Sampler::<B, 4>::timesteps(&deis),
                    numbers(expected).as_slice(),
                    "{line}"
                );
                assert_linear_run(&mut deis, prediction, &numbers(values), 3e-5, line);
            }
            "threshold" => {
                let config = DeisConfig {
                    solver_order,
                    thresholding: Some(DynamicThresholding {
                        ratio: 0.87,
                        max_value: 0.5,
                    }),
                    ..DeisConfig::default()
                };
                let mut deis = Deis::<B, 4>::new(config, &schedule, 10).unwrap();
                let x = run(&mut deis, prediction);
                let [sum, mean] = numbers(values)[..] else {
                    panic!("bad values {values}");
                };
                let (got_sum, got_mean) = abs_sum_and_mean(x.clone());
                assert!((got_sum - sum).abs() < 1e-2, "{line}: sum {got_sum}");
                assert!((got_mean - mean).abs() < 1e-5, "{line}: mean {got_mean}");
                let elements = x.into_data().to_vec::<f32>().unwrap();
                for (k, want) in numbers(expected).into_iter().enumerate() {
                    let got = f64::from(elements[48 * k]);
                    assert!(
                        (got - want).abs() < 1e-5,
                        "{line}: element {}: {got}",
                        48 * k
                    );
                }
            }
            other => panic!("unknown run kind {other}"),
        }
    }
}

/// test_scheduler_dpm_single.py's full loops (10 steps, order 2, final σ σ_min): ε (mean
/// 0.2791), v (0.1453), Karras σ (0.2248), Karras σ with v (0.0649), and 50 steps started at
/// the fourth timestep (0.2574), where the first block is entered half-way and starts afresh.
#[test]
fn dpm_solver_singlestep_full_loops() {
    let schedule = linear(1000, 1e-4);
    let config = DpmSolverSinglestepConfig {
        final_sigmas_type: FinalSigmas::SigmaMin,
        ..DpmSolverSinglestepConfig::default()
    };
    for (sigma_spacing, prediction, mean) in [
        (SigmaSpacing::Timesteps, Prediction::Epsilon, 0.2791),
        (SigmaSpacing::Timesteps, Prediction::V, 0.1453),
        (SigmaSpacing::Karras, Prediction::Epsilon, 0.2248),
        (SigmaSpacing::Karras, Prediction::V, 0.0649),
    ] {
        let config = DpmSolverSinglestepConfig {
            sigma_spacing,
            ..config
        };
        let mut solver = DpmSolverSinglestep::<B, 4>::new(config, &schedule, 10).unwrap();
        assert_mean(run(&mut solver, prediction), mean);
    }
    let mut solver = DpmSolverSinglestep::<B, 4>::new(config, &schedule, 50).unwrap();
    let model = dummy(Prediction::Epsilon);
    let mut rng = StdRng::seed_from_u64(0);
    let x = sample_from(
        &mut solver,
        &model,
        deterministic(false),
        3,
        &mut rng,
        |_| {},
    )
    .unwrap();
    assert_mean(x, 0.2574);
}

/// Singlestep DPM-Solver against diffusers 0.42's `DPMSolverSinglestepScheduler`
/// (`benches/peer/dpm_singlestep_fixtures.py`), element for element, SDE noise included: 388
/// runs over orders 1–3, `dpmsolver++`, `dpmsolver` and `sde-dpmsolver++`, `midpoint` and
/// `heun`, ε, v and x_0, the default grid and Karras σ, 1 to 10 steps, with
/// `lower_order_final` off where diffusers keeps it off.
///
/// The fixtures are diffusers' algorithm in f64 (its σ table recomputed from ᾱ in f64), and
/// Kiln's f32 tensors agree with them to 3.1e-5 of the run's largest value, except in the
/// 3- and 5-step `dpmsolver` runs: there x_t = (α_t/α_s) x_s − s_t(e^h − 1) ε̂ cancels terms
/// 25 times the result, and the differences of ε̂ within a block are small, so f32 rounding
/// grows to 1.4e-3 (diffusers' own f32 run of the worst case ends 2.0e-3 from its f64 run).
/// Those runs are held to 2e-3, the others to 5e-5.
#[test]
fn dpm_solver_singlestep_matches_diffusers_element_for_element() {
    let runs = linear_runs(include_str!("fixtures/dpm_singlestep.txt"));
    assert_eq!(runs.len(), 388);
    for (settings, coefficients) in runs {
        let [
            algorithm,
            order,
            solver_type,
            prediction,
            karras,
            steps,
            last,
            lower,
        ] = settings.split(' ').collect::<Vec<_>>()[..]
        else {
            panic!("bad settings {settings}");
        };
        let config = DpmSolverSinglestepConfig {
            solver_order: order.parse().unwrap(),
            algorithm_type: algorithm_named(algorithm),
            solver_type: solver_type_named(solver_type),
            lower_order_final: lower == "True",
            final_sigmas_type: final_sigmas_named(last),
            sigma_spacing: match karras {
                "True" => SigmaSpacing::Karras,
                _ => SigmaSpacing::Timesteps,
            },
            ..DpmSolverSinglestepConfig::default()
        };
        let schedule = linear(1000, 1e-4);
        let steps: usize = steps.parse().unwrap();
        let mut solver = DpmSolverSinglestep::<B, 4>::new(config, &schedule, steps).unwrap();
        let prediction = prediction_named(prediction);
        let tolerance = if algorithm == "dpmsolver" && matches!(steps, 3 | 5) {
            2e-3
        } else {
            5e-5
        };
        assert_linear_run(&mut solver, prediction, &coefficients, tolerance, settings);
    }
}

/// SA-Solver against diffusers 0.42's `SASolverScheduler` (`benches/peer/sa_solver_fixtures.py`),
/// element for element, noise included: 1, 2, 5 and 10 steps on every grid in ε and v with the
/// default orders and τ window, then 10 steps with predictor and corrector orders 1–4, over
/// x̂_0 and ε̂, in every prediction, with τ off, on everywhere, ½ and in diffusers' window,
/// and 10 steps with λ clipped at −4 (`lambda_min_clipped`) on `linspace` and `leading` grids.
/// Each run from x ends at m·x + Σ n_k z_k, diffusers given Kiln's draws; the call
/// timesteps agree exactly, the results to 8.2e-5 of the run's largest value (or 1). The
/// worst runs are the ones whose steps amplify f32 rounding: an order-3 predictor with an
/// order-1 corrector over ε̂ swings the sample back and forth, and diffusers' own m there
/// depends on the input by 1.5e-4 (0.303819 from x = 0.3, 0.303775 from x = 0.7, as the
/// fixture script prints). Leaving out the order-2 extra term, or drawing the corrector's
/// noise afresh, fails the test.
///
/// As for DEIS, the one-step Karras run differs on purpose: diffusers' stays at σ_max and
/// returns the noise, Kiln's steps to σ_min and lands where the one-step `linspace` run does.
///
/// Six runs with dynamic thresholding (ratio 0.87, max 0.5; orders 2 and 3 over x̂_0, every
/// prediction, τ = 0), which is not linear, go from the deterministic sample: sum(|x|) to
/// 1e-2, mean(|x|) and every 48th element to 1e-5.
#[test]
fn sa_solver_matches_diffusers_element_for_element() {
    let (thresholded, runs): (Vec<&str>, Vec<&str>) = include_str!("fixtures/sa_solver.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .partition(|line| line.starts_with("threshold "));
    assert_eq!((runs.len(), thresholded.len()), (88, 6));
    for line in thresholded {
        let [settings, values, elements] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        let numbers = |text: &str| -> Vec<f64> {
            text.split(' ')
                .map(|value| value.parse().unwrap())
                .collect()
        };
        let (config, prediction, steps) = sa_solver_fixture_config(&settings["threshold ".len()..]);
        let mut solver = SaSolver::<B, 4>::new(config, &linear(1000, 1e-4), steps).unwrap();
        let x = run(&mut solver, prediction);
        let [sum, mean] = numbers(values)[..] else {
            panic!("bad values {values}");
        };
        let (got_sum, got_mean) = abs_sum_and_mean(x.clone());
        assert!((got_sum - sum).abs() < 1e-2, "{line}: sum {got_sum}");
        assert!((got_mean - mean).abs() < 1e-5, "{line}: mean {got_mean}");
        let got = x.into_data().to_vec::<f32>().unwrap();
        for (k, want) in numbers(elements).into_iter().enumerate() {
            let element = f64::from(got[48 * k]);
            assert!(
                (element - want).abs() < 1e-5,
                "{line}: element {}: {element}",
                48 * k
            );
        }
    }
    let one_step_karras = "steps=1 grid=karras";
    for &line in &runs {
        let [settings, mut coefficients, timesteps] = line.split(" | ").collect::<Vec<_>>()[..]
        else {
            panic!("bad line {line}");
        };
        if settings.ends_with(one_step_karras) {
            assert_eq!(coefficients, "1.0", "diffusers returns the noise");
            let linspace = settings.replace(one_step_karras, "steps=1 grid=linspace");
            let twin = runs.iter().find(|run| run.starts_with(&linspace)).unwrap();
            coefficients = twin.split(" | ").nth(1).unwrap();
        }
        let (config, prediction, steps) = sa_solver_fixture_config(settings);
        let mut solver = SaSolver::<B, 4>::new(config, &linear(1000, 1e-4), steps).unwrap();
        let expected: Vec<f64> = timesteps.split(' ').map(|t| t.parse().unwrap()).collect();
        assert_eq!(solver.timesteps(), expected, "{settings}");
        let coefficients: Vec<f64> = coefficients
            .split(' ')
            .map(|c| c.parse().unwrap())
            .collect();
        assert_linear_run(&mut solver, prediction, &coefficients, 1e-4, settings);
    }
}

/// A SA-Solver fixture's settings: the config, the prediction and the step count.
fn sa_solver_fixture_config(settings: &str) -> (SaSolverConfig, Prediction, usize) {
    let mut config = SaSolverConfig::default();
    let (mut prediction, mut steps) = (Prediction::Epsilon, 0);
    for setting in settings.split_whitespace() {
        let (key, value) = setting.split_once('=').unwrap();
        match (key, value) {
            ("prediction_type", name) => prediction = prediction_named(name),
            ("predictor_order", order) => config.predictor_order = order.parse().unwrap(),
            ("corrector_order", order) => config.corrector_order = order.parse().unwrap(),
            ("algorithm_type", "data_prediction") => {
                config.algorithm_type = SaSolverAlgorithm::DataPrediction
            }
            ("algorithm_type", "noise_prediction") => {
                config.algorithm_type = SaSolverAlgorithm::NoisePrediction
            }
            ("lower_order_final", flag) => config.lower_order_final = flag == "True",
            ("tau", "window") => config.tau = SaSolverTau::default(),
            ("tau", "ode") => config.tau = SaSolverTau::ODE,
            ("tau", "sde") => config.tau = SaSolverTau::constant(1.0),
            ("tau", "half") => config.tau = SaSolverTau::constant(0.5),
            ("steps", count) => steps = count.parse().unwrap(),
            ("lambda_min_clipped", value) => config.lambda_min_clipped = value.parse().unwrap(),
            ("thresholding", "True") => config.thresholding = Some(DynamicThresholding::default()),
            ("dynamic_thresholding_ratio", ratio) => {
                config.thresholding.as_mut().unwrap().ratio = ratio.parse().unwrap();
            }
            ("sample_max_value", max) => {
                config.thresholding.as_mut().unwrap().max_value = max.parse().unwrap();
            }
            ("grid", name) => {
                (config.grid, config.sigma_spacing) = grid_named(name, config.grid);
            }
            _ => panic!("unknown fixture setting {setting}"),
        }
    }
    (config, prediction, steps)
}

/// Zero-terminal-SNR schedules (linear, scaled_linear and squaredcos_cap_v2, rescaled) with a
/// v-prediction model, against diffusers 0.42's Euler, DPM-Solver++ (2M) and UniPC schedulers
/// with `rescale_betas_zero_snr` (`benches/peer/zero_snr_fixtures.py`): both take σ ≈ 4096
/// (ᾱ = 2⁻²⁴) for the last timestep's infinite σ, so a `trailing` grid starts there, and look
/// Karras σ up in that table. For the cosine schedule diffusers is handed its ᾱ computed in
/// f64: in its f32 that schedule's σ_min is 0.2 % off, and UniPC's m in 5 Karras steps 0.9 %.
/// The call timesteps agree to 2e-4 (diffusers' f32 table) and the results (each run from x
/// ends at m·x) to 1e-4 of m. Left out: UniPC in 10 Karras steps over the cosine schedule,
/// which fails inside diffusers (an assertion on its order), and DPM-Solver with Karras σ over
/// the cosine schedule, whose timesteps diffusers truncates rather than rounds for that
/// schedule alone.
#[test]
fn zero_terminal_snr_matches_diffusers() {
    let runs: Vec<&str> = include_str!("fixtures/zero_snr.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(runs.len(), 33);
    let trailing = TimestepGrid {
        spacing: TimestepSpacing::Trailing,
        ..TimestepGrid::default()
    };
    for line in runs {
        let [settings, m, timesteps] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        let [sampler, betas, grid, steps] = settings.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad settings {settings}");
        };
        let betas = match betas {
            "linear" => BetaSchedule::linear(),
            "scaled_linear" => BetaSchedule::ScaledLinear {
                beta_start: 0.00085,
                beta_end: 0.012,
            },
            "squaredcos_cap_v2" => BetaSchedule::cosine(),
            other => panic!("unknown betas {other}"),
        };
        let schedule = NoiseSchedule::new(&betas, 1000)
            .and_then(|schedule| schedule.rescale_zero_terminal_snr())
            .unwrap();
        let sigma_spacing = match grid {
            "karras" => SigmaSpacing::Karras,
            _ => SigmaSpacing::Timesteps,
        };
        let steps = steps.parse().unwrap();
        let mut sampler: Box<dyn FnMut() -> (Vec<f64>, Tensor<B, 4>)> = match sampler {
            "euler" => {
                let config = EulerConfig {
                    sigma_spacing,
                    grid: trailing,
                    ..EulerConfig::default()
                };
                let mut euler = Euler::new(config, &schedule, steps).unwrap();
                Box::new(move || {
                    let calls = Sampler::<B, 4>::timesteps(&euler).to_vec();
                    (calls, run(&mut euler, Prediction::V))
                })
            }
            "dpm++" => {
                let config = DpmSolverConfig {
                    sigma_spacing,
                    grid: trailing,
                    ..DpmSolverConfig::default()
                };
                let mut solver = DpmSolver::<B, 4>::new(config, &schedule, steps).unwrap();
                Box::new(move || (solver.timesteps().to_vec(), run(&mut solver, Prediction::V)))
            }
            "unipc" => {
                let config = UniPcConfig {
                    sigma_spacing,
                    grid: trailing,
                    ..UniPcConfig::default()
                };
                let mut unipc = UniPc::<B, 4>::new(config, &schedule, steps).unwrap();
                Box::new(move || (unipc.timesteps().to_vec(), run(&mut unipc, Prediction::V)))
            }
            other => panic!("unknown sampler {other}"),
        };
        let (calls, x) = sampler();
        let expected: Vec<f64> = timesteps.split(' ').map(|t| t.parse().unwrap()).collect();
        assert_eq!(calls.len(), expected.len(), "{settings}");
        let worst = calls
            .iter()
            .zip(&expected)
            .map(|(got, want)| (got - want).abs())
            .fold(0.0, f64::max);
        assert!(worst < 2e-4, "{settings}: {calls:?} against {expected:?}");
        let m: f64 = m.parse().unwrap();
        let got = linear_factor(x);
        assert!(
            (got - m).abs() < 1e-4 * m.abs().max(1.0),
            "{settings}: m {got} against {m}"
        );
    }
}

/// diffusers' exponential and beta noise levels (`use_exponential_sigmas`, `use_beta_sigmas`)
/// in every sampler that has them, against diffusers 0.42
/// (`benches/peer/sigma_spacing_fixtures.py`): Euler, LMS, Heun, DPM2 (and ancestral),
/// DPM-Solver++ SDE, 2M and 2S, DEIS, UniPC and SA-Solver (τ = 0), on `linspace` and `leading`
/// grids in 1, 2, 5 and 10 steps (the multistep solvers space σ between the schedule's ends,
/// so their `leading` runs check that the grid is ignored, as in diffusers). The call
/// timesteps agree exactly in the multistep solvers and to 8.2e-3 in the others (fractional,
/// found in diffusers' f32 σ table), and DPM2 ancestral's last midpoint to 0.33 (diffusers'
/// σ_down cancels in f32 there, to NaN in 2 steps); each run from x ends at the same m·x, to 6.4e-5 of
/// max(|m|, 1) (diffusers' loop in f64; the test allows 1e-4), and to 1.0e-4 in DPM2's 2-step
/// runs, where ε̂ cancels x to 1 % at σ_max (see `dpm2_matches_diffusers_element_for_element`;
/// the test allows 2e-4). The two samplers that draw noise are checked by their timesteps
/// alone.
///
/// Two differences are kept on purpose. diffusers' multistep solvers truncate the timesteps of
/// these two spacings where they round Karras σ's; Kiln rounds all three, and the script has
/// diffusers round them too. In one step DEIS and SA-Solver stay at σ_max in diffusers
/// (m = 1), as with Karras σ; Kiln's step to σ_min, so there the test checks diffusers' m = 1
/// and that Kiln's run is its one-step `linspace` run (the same step from t = 999).
#[test]
fn exponential_and_beta_sigmas_match_diffusers() {
    let runs: Vec<&str> = include_str!("fixtures/sigma_spacing.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(runs.len(), 176);
    let schedule = linear(1000, 1e-4);
    for line in runs {
        let [settings, m, timesteps] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        let [sampler, spacing, grid, steps] = settings.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad settings {settings}");
        };
        let sigma_spacing = match spacing {
            "exponential" => SigmaSpacing::Exponential,
            "beta" => SigmaSpacing::BETA,
            other => panic!("unknown spacing {other}"),
        };
        let steps: usize = steps.parse().unwrap();
        let run_with = |sigma_spacing: SigmaSpacing, grid: &str| {
            spaced_sampler_run(sampler, sigma_spacing, grid, &schedule, steps)
        };
        let (calls, x) = run_with(sigma_spacing, grid);
        let expected: Vec<f64> = timesteps.split(' ').map(|t| t.parse().unwrap()).collect();
        assert_eq!(calls.len(), expected.len(), "{settings}");
        // diffusers' last DPM2-ancestral midpoint σ_mid = √(σ σ_down), from a σ_down that
        // cancels in f32 when σ ≫ σ_min (see `ancestral_split`), is up to 0.33 timesteps off,
        // and NaN in 2 steps, where the cancellation goes below zero.
        let last_midpoint = (sampler == "dpm2_a" && steps > 1).then(|| calls.len() - 2);
        for (i, (got, want)) in calls.iter().zip(&expected).enumerate() {
            if want.is_nan() && Some(i) == last_midpoint {
                continue;
            }
            let tolerance = match Some(i) == last_midpoint {
                true => 0.35,
                false => TIMESTEPS_TOLERANCE,
            };
            assert!(
                (got - want).abs() < tolerance,
                "{settings}: {calls:?} against {expected:?}"
            );
        }
        let m = match (sampler, steps) {
            _ if m == "-" => continue,
            ("deis" | "sa_solver", 1) => {
                assert_eq!(m, "1.0", "{line}: diffusers' step no longer stays put");
                let (_, x) = run_with(SigmaSpacing::Timesteps, "linspace");
                linear_factor(x)
            }
            _ => m.parse().unwrap(),
        };
        // DPM2's 2-step runs amplify f32 rounding (see the doc comment).
        let tolerance = match (sampler, steps) {
            ("dpm2", 2) => 2e-4,
            _ => 1e-4,
        };
        let got = linear_factor(x);
        assert!(
            (got - m).abs() < tolerance * m.abs().max(1.0),
            "{settings}: m {got} against {m}"
        );
    }
}

/// The σ-space samplers' fractional timesteps, from diffusers' σ table in f32.
const TIMESTEPS_TOLERANCE: f64 = 1e-2;

/// The call timesteps of the fixture's `sampler` with `sigma_spacing` on the `grid` named, and
/// its run from the deterministic sample with the ε dummy.
fn spaced_sampler_run(
    sampler: &str,
    sigma_spacing: SigmaSpacing,
    grid: &str,
    schedule: &NoiseSchedule,
    steps: usize,
) -> (Vec<f64>, Tensor<B, 4>) {
    let grid = |default: TimestepGrid| grid_named(grid, default).0;
    // The sampler from its default config with this spacing and grid, and the fields given.
    macro_rules! spaced {
        ($sampler:ident, $config:ident $(, $field:ident: $value:expr)*) => {
            spaced_run($sampler::new(
                $config {
                    sigma_spacing,
                    grid: grid($config::default().grid),
                    $($field: $value,)*
                    ..$config::default()
                },
                schedule,
                steps,
            ))
        };
    }
    match sampler {
        "euler" => spaced!(Euler, EulerConfig),
        "lms" => spaced!(Lms, LmsConfig),
        "heun" => spaced!(Heun, HeunConfig),
        "dpm2" | "dpm2_a" => spaced!(Dpm2, Dpm2Config, ancestral: sampler == "dpm2_a"),
        "dpm++sde" => spaced!(DpmSolverSde, DpmSolverSdeConfig),
        "dpm++" => spaced!(DpmSolver, DpmSolverConfig),
        "dpm++2s" => spaced!(DpmSolverSinglestep, DpmSolverSinglestepConfig),
        "deis" => spaced!(Deis, DeisConfig),
        "unipc" => spaced!(UniPc, UniPcConfig),
        "sa_solver" => spaced!(SaSolver, SaSolverConfig, tau: SaSolverTau::ODE),
        other => panic!("unknown sampler {other}"),
    }
}

/// A fixture file's runs by their settings (the first field): their second field.
fn results_by_settings<'a>(runs: &[&'a str]) -> HashMap<&'a str, &'a str> {
    runs.iter()
        .map(|line| {
            let mut fields = line.split(" | ");
            (fields.next().unwrap(), fields.next().unwrap())
        })
        .collect()
}

/// m of a run that is linear in its start: the result's sum over the deterministic sample's.
fn linear_factor(x: Tensor<B, 4>) -> f64 {
    x.sum().into_scalar() as f64 / deterministic(false).sum().into_scalar() as f64
}

/// A sampler's call timesteps and its run from the deterministic sample with the ε dummy.
fn spaced_run<S: Sampler<B, 4>>(
    sampler: Result<S, kiln_sampler::SamplerError>,
) -> (Vec<f64>, Tensor<B, 4>) {
    let mut sampler = sampler.unwrap();
    (
        sampler.timesteps().to_vec(),
        run(&mut sampler, Prediction::Epsilon),
    )
}

/// diffusers' DPM-Solver singlestep lays its clipped grid as the multistep solver does
/// (linspace(0, T′ − 1, N + 1) without its end, T′ the timesteps with λ ≥ `lambda_min_clipped`),
/// and so does Kiln's: with λ_min = −4 (T′ = 889 of the linear schedule) both start at
/// t = 888, and the multistep grid is the one checked against diffusers above.
#[test]
fn dpm_solver_singlestep_clips_lambda_as_multistep() {
    let schedule = linear(1000, 1e-4);
    let multistep = DpmSolver::<B, 4>::new(
        DpmSolverConfig {
            lambda_min_clipped: -4.0,
            ..DpmSolverConfig::default()
        },
        &schedule,
        10,
    )
    .unwrap();
    let singlestep = DpmSolverSinglestep::new(
        DpmSolverSinglestepConfig {
            lambda_min_clipped: -4.0,
            ..DpmSolverSinglestepConfig::default()
        },
        &schedule,
        10,
    )
    .unwrap();
    let timesteps = Sampler::<B, 4>::timesteps(&singlestep);
    assert_eq!(timesteps, multistep.timesteps());
    assert_eq!(timesteps[0], 888.0);
}

/// UniPC over x̂_0 and over ε̂ (`predict_x0`) against diffusers 0.42's `UniPCMultistepScheduler`
/// (`benches/peer/unipc_fixtures.py`): `bh1` and `bh2`, orders 1–3, ε, v and x_0, on a
/// `linspace` grid and with Karras σ, in 1, 2, 5 and 10 steps to σ_min, and the default
/// data-prediction `bh2` at order 2 to σ = 0, and 10-step runs with the corrector left out of
/// the first 1, 3 and 10 steps' results (`disable_corrector`) over x̂_0 and ε̂ (322 runs). `bh1` to σ = 0 and a beta grid's
/// last step from σ_min to σ_min at order 3, both NaN in diffusers, are checked finite. The call timesteps agree exactly and
/// the results element for element (each run from x ends at m·x, diffusers' loop in f64), to
/// 1e-4 of the run's largest value (or 1) over x̂_0 and 5e-4 over ε̂, whose long steps
/// multiply ε̂ by e^h − 1 and cancel the terms. The worst, an element 3.1e-4 off in a run whose
/// largest value is 0.08 (1.1e-3 of m), is `bh2` in 2 steps, where
/// terms of 44 cancel to a result of 0.08 and f32 rounding grows 500-fold: the update in f64
/// ends at m = −0.0819003, diffusers' loop in f64 at −0.0818996 and in f32 at −0.0823932,
/// Kiln's in f32 at −0.0818076. Taking the ε̂ form's update with −h, as the x̂_0 form has it,
/// fails the test.
///
/// As for DEIS, the one-step Karras runs to σ_min differ on purpose: diffusers' final σ is the
/// Karras grid's last, σ_max itself, so its step goes nowhere (m = 1); Kiln's steps to σ_min
/// and lands where the one-step `linspace` run does.
#[test]
fn unipc_matches_diffusers_element_for_element() {
    let runs: Vec<&str> = include_str!("fixtures/unipc.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(runs.len(), 322);
    let results = results_by_settings(&runs);
    let schedule = linear(1000, 1e-4);
    for line in runs {
        let [settings, mut m, timesteps] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        if settings.contains("grid=karras steps=1 final_sigmas_type=sigma_min") {
            assert_eq!(m, "1.0", "{line}: diffusers' step no longer stays put");
            m = results[settings.replace("grid=karras", "grid=linspace").as_str()];
        }
        let mut config = UniPcConfig::default();
        let (mut prediction, mut steps) = (Prediction::Epsilon, 0);
        for setting in settings.split_whitespace() {
            match setting.split_once('=').unwrap() {
                ("predict_x0", flag) => config.predict_x0 = flag == "True",
                ("solver_type", "bh1") => config.solver_type = UniPcSolverType::Bh1,
                ("solver_type", "bh2") => config.solver_type = UniPcSolverType::Bh2,
                ("solver_order", order) => config.solver_order = order.parse().unwrap(),
                ("prediction_type", name) => prediction = prediction_named(name),
                ("grid", name) => {
                    (config.grid, config.sigma_spacing) = grid_named(name, config.grid)
                }
                ("steps", count) => steps = count.parse().unwrap(),
                ("final_sigmas_type", name) => config.final_sigmas_type = final_sigmas_named(name),
                ("skip_corrector", count) => config.skip_corrector = count.parse().unwrap(),
                _ => panic!("unknown fixture setting {setting}"),
            }
        }
        let mut unipc = UniPc::<B, 4>::new(config, &schedule, steps).unwrap();
        let expected: Vec<f64> = timesteps.split(' ').map(|t| t.parse().unwrap()).collect();
        assert_eq!(unipc.timesteps(), expected.as_slice(), "{line}");
        let m: f64 = m.parse().unwrap();
        // Over ε̂ long steps multiply ε̂ by e^h − 1 and cancel the terms: f32 rounding grows.
        let tolerance = match config.predict_x0 {
            true => 1e-4,
            false => 5e-4,
        };
        assert_linear_run(&mut unipc, prediction, &[m], tolerance, settings);
    }
    // Both NaN in diffusers: `bh1`'s step to σ = 0 adds B(h) = −h = −∞ times an empty sum; a
    // beta grid to σ_min ends in a step from σ_min to σ_min exactly, whose weights at order 3
    // without `lower_order_final` are 0/0 (Kiln keeps the sample).
    let bh1_to_zero = UniPcConfig {
        solver_type: UniPcSolverType::Bh1,
        ..UniPcConfig::default()
    };
    let stays_put = UniPcConfig {
        solver_order: 3,
        lower_order_final: false,
        final_sigmas_type: FinalSigmas::SigmaMin,
        sigma_spacing: SigmaSpacing::BETA,
        ..UniPcConfig::default()
    };
    for config in [bh1_to_zero, stays_put] {
        let mut unipc = UniPc::<B, 4>::new(config, &schedule, 10).unwrap();
        let values: Vec<f32> = run(&mut unipc, Prediction::Epsilon)
            .into_data()
            .to_vec()
            .unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{config:?}");
    }
}

/// λ clipping at its edges, against the timesteps of diffusers 0.42.1's
/// `DPMSolverMultistepScheduler` in 10 steps: over the linear schedule rescaled to zero
/// terminal SNR, whose λ rises again at t = 999 (σ = 4096 after σ_998 ≈ 15,400), λ_min = −9
/// drops t = 998 and 999 (diffusers' sorted search of the flipped λ drops both); and a
/// `leading` grid with `steps_offset = 100` over the 889 timesteps λ_min = −4 keeps, whose
/// offset may reach past t = 888 (up to T − 1).
#[test]
fn lambda_clipping_matches_diffusers_at_its_edges() {
    let zero_snr = NoiseSchedule::new(&BetaSchedule::linear(), 1000)
        .and_then(|schedule| schedule.rescale_zero_terminal_snr())
        .unwrap();
    let clipped = DpmSolverConfig {
        lambda_min_clipped: -9.0,
        ..DpmSolverConfig::default()
    };
    let solver = DpmSolver::<B, 4>::new(clipped, &zero_snr, 10).unwrap();
    let expected = [
        997.0, 897.0, 798.0, 698.0, 598.0, 498.0, 399.0, 299.0, 199.0, 100.0,
    ];
    assert_eq!(solver.timesteps(), expected);
    let leading = DpmSolverConfig {
        lambda_min_clipped: -4.0,
        grid: TimestepGrid {
            spacing: TimestepSpacing::Leading,
            steps_offset: 100,
            ..DpmSolverConfig::default().grid
        },
        ..DpmSolverConfig::default()
    };
    let solver = DpmSolver::<B, 4>::new(leading, &linear(1000, 1e-4), 10).unwrap();
    let expected = [
        900.0, 820.0, 740.0, 660.0, 580.0, 500.0, 420.0, 340.0, 260.0, 180.0,
    ];
    assert_eq!(solver.timesteps(), expected);
}
