//! Every sampler by name over a schedule it must handle.

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::{Prediction, standard_normal};
use kiln_pipeline::{NamedRun, SamplerName, sample_by_name};
use kiln_sampler::{
    DpmSolver, DpmSolverConfig, FnDenoiser, GaussianMixture, NoisePath, SamplerError, SigmaSpacing,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule, ScheduleError, TimestepSpacing};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

/// A v-prediction model over a zero-terminal-SNR schedule, and a flow model over the
/// rectified-flow schedule (pure noise at t = 999 too), from t = 999 (ᾱ = 0) on `trailing`
/// grids and from each sampler's default grid: every sampler ends on finite values. The σ
/// samplers take σ ≈ 4096 for the infinite σ of t = 999, as diffusers does.
#[test]
fn every_sampler_samples_zero_terminal_snr_with_v_and_flow_prediction() {
    let rescaled = NoiseSchedule::new(&BetaSchedule::linear(), 1000)
        .and_then(|schedule| schedule.rescale_zero_terminal_snr())
        .unwrap();
    let flow = NoiseSchedule::new(&BetaSchedule::rectified_flow(), 1000).unwrap();
    for (schedule, prediction) in [(rescaled, Prediction::V), (flow, Prediction::Flow)] {
        every_sampler_ends_finite(&schedule, prediction);
    }
}

fn every_sampler_ends_finite(schedule: &NoiseSchedule, prediction: Prediction) {
    let model = FnDenoiser::new(prediction, |x: Tensor<B, 2>, _| x.mul_scalar(0.1));
    let noise = standard_normal::<B, 2>([4, 2], &mut StdRng::seed_from_u64(1), &Default::default());
    for sampler in SamplerName::ALL {
        for spacing in [None, Some(TimestepSpacing::Trailing)] {
            let run = NamedRun {
                spacing,
                ..NamedRun::new(sampler, 10, false)
            };
            let mut rng = StdRng::seed_from_u64(2);
            let x = sample_by_name(run, schedule, &model, noise.clone(), &mut rng, |_| {})
                .unwrap_or_else(|error| panic!("{prediction:?}, {sampler} ({spacing:?}): {error}"));
            let values: Vec<f32> = x.into_data().to_vec().unwrap();
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{prediction:?}, {sampler} ({spacing:?}): {values:?}"
            );
        }
    }
}

/// Every sampler on every grid (and with Karras, exponential and beta σ where it takes them),
/// in every prediction, over diffusers' four β schedules, from one step to as many as the
/// schedule has timesteps and one more: finite samples, or a typed error where the step count
/// cannot be laid out (more steps than the grid has room for; fewer than PNDM's 4 warm-up
/// steps; for `lcm` and `tcd`, more than the 50 of their distillation grid), never a panic or
/// a NaN.
#[test]
fn every_sampler_at_edge_step_counts_ends_finite_or_says_why() {
    for beta in [
        BetaSchedule::linear(),
        BetaSchedule::scaled_linear(),
        BetaSchedule::cosine(),
        BetaSchedule::sigmoid(),
    ] {
        let schedule = NoiseSchedule::new(&beta, 1000).unwrap();
        let problems = sweep(&schedule);
        assert!(problems.is_empty(), "{beta:?}:\n{}", problems.join("\n"));
    }
}

/// The σ spacings other than the grid's timesteps.
const SIGMA_SPACINGS: [SigmaSpacing; 3] = [
    SigmaSpacing::Karras,
    SigmaSpacing::Exponential,
    SigmaSpacing::BETA,
];

/// The cases of [`every_sampler_at_edge_step_counts_ends_finite_or_says_why`] over
/// `schedule` that end on a non-finite value or an unexpected error.
fn sweep(schedule: &NoiseSchedule) -> Vec<String> {
    let noise = standard_normal::<B, 2>([2, 2], &mut StdRng::seed_from_u64(1), &Default::default());
    let spacings = [
        TimestepSpacing::Linspace,
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
    ];
    let mut problems = Vec::new();
    for prediction in [Prediction::Epsilon, Prediction::V, Prediction::Sample] {
        let model = FnDenoiser::new(prediction, |x: Tensor<B, 2>, t| x.mul_scalar(t / 2000.0));
        for sampler in SamplerName::ALL {
            let limit = if sampler.samples_consistency_models() {
                50
            } else {
                1000
            };
            let sigma_spacings = match sampler.takes_sigma_spacing() {
                true => &SIGMA_SPACINGS[..],
                false => &[],
            };
            let layouts = spacings
                .map(|spacing| (Some(spacing), None))
                .into_iter()
                .chain(sigma_spacings.iter().map(|&sigma| (None, Some(sigma))));
            for (spacing, sigma_spacing) in layouts {
                for steps in [1, 2, 3, 50, 51, 999, 1000, 1001] {
                    let run = NamedRun {
                        spacing,
                        sigma_spacing,
                        ..NamedRun::new(sampler, steps, false)
                    };
                    let mut rng = StdRng::seed_from_u64(2);
                    let case = format!(
                        "{sampler} {spacing:?} {sigma_spacing:?} {steps} steps {prediction:?}"
                    );
                    match sample_by_name(run, schedule, &model, noise.clone(), &mut rng, |_| {}) {
                        Ok(x) => {
                            let values: Vec<f32> = x.into_data().to_vec().unwrap();
                            if !values.iter().all(|v| v.is_finite()) {
                                problems.push(format!("{case}: {values:?}"));
                            }
                        }
                        Err(SamplerError::Schedule(ScheduleError::TooManySteps {
                            most, ..
                        })) if steps > most => {}
                        Err(SamplerError::OutOfRange {
                            name: "num_inference_steps",
                            ..
                        }) if sampler == SamplerName::Pndm && steps < 4 => {}
                        Err(error) if steps <= limit => problems.push(format!("{case}: {error}")),
                        Err(_) => {}
                    }
                }
            }
        }
    }
    problems
}

/// `NamedRun::tau` reaches SA-Solver: with τ = 0 it solves the ODE, so two generators give the
/// same samples; with diffusers' default τ = 1 they differ.
#[test]
fn sa_solver_takes_its_tau_from_the_run() {
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, t| {
        x.mul_scalar(t / 2000.0)
    });
    let noise = standard_normal::<B, 2>([4, 2], &mut StdRng::seed_from_u64(1), &Default::default());
    let spread = |tau: Option<f64>| -> f32 {
        let run = NamedRun {
            tau,
            ..NamedRun::new(SamplerName::SaSolver, 10, false)
        };
        let [a, b] = [3, 4].map(|seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            sample_by_name(run, &schedule, &model, noise.clone(), &mut rng, |_| {}).unwrap()
        });
        (a - b).abs().max().into_scalar()
    };
    assert_eq!(spread(Some(0.0)), 0.0);
    assert!(spread(None) > 1e-3);
}

/// `NamedRun::sigma_spacing` reaches every sampler that takes it: Karras, exponential and
/// beta σ each change its samples from the same noise and draws; the others refuse it.
#[test]
fn sigma_spacing_reaches_the_samplers_that_take_it() {
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, t| {
        x.mul_scalar(t / 2000.0)
    });
    let noise = standard_normal::<B, 2>([4, 2], &mut StdRng::seed_from_u64(1), &Default::default());
    for sampler in SamplerName::ALL {
        let draw = |sigma_spacing: Option<SigmaSpacing>| {
            let run = NamedRun {
                sigma_spacing,
                ..NamedRun::new(sampler, 10, false)
            };
            let mut rng = StdRng::seed_from_u64(2);
            sample_by_name(run, &schedule, &model, noise.clone(), &mut rng, |_| {})
        };
        let own = draw(None).unwrap();
        for spacing in SIGMA_SPACINGS {
            match draw(Some(spacing)) {
                Ok(x) => {
                    assert!(sampler.takes_sigma_spacing(), "{sampler} took {spacing:?}");
                    let change = (x - own.clone()).abs().max().into_scalar();
                    assert!(change > 1e-4, "{sampler}: {spacing:?} changed nothing");
                }
                Err(error) => assert!(
                    !sampler.takes_sigma_spacing()
                        && matches!(error, SamplerError::Incompatible { .. }),
                    "{sampler} with {spacing:?}: {error}"
                ),
            }
        }
    }
}

/// `NamedRun::noise_path` reaches the SDE and ancestral samplers, and a Brownian tree keeps one seed's
/// samples on one path across step counts: on a Gaussian mixture's exact denoiser, 20 and 80
/// steps from one seed land far closer together than with noise drawn step by step. The other
/// samplers, and DPM-Solver's ODE algorithms, refuse a tree.
#[test]
fn a_brownian_tree_keeps_a_seed_on_one_path_across_step_counts() {
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    let device = Default::default();
    let oracle = GaussianMixture::new(
        vec![0.3, 0.7],
        vec![vec![-1.0, 0.5], vec![0.8, -0.4]],
        vec![0.04, 0.09],
        schedule.clone(),
    )
    .unwrap();
    let noise = standard_normal::<B, 2>([1000, 2], &mut StdRng::seed_from_u64(1), &device);
    for sampler in SamplerName::ALL {
        let draw = |noise_path: NoisePath, steps: usize| {
            let run = NamedRun {
                noise_path,
                ..NamedRun::new(sampler, steps, false)
            };
            let mut rng = StdRng::seed_from_u64(2);
            sample_by_name(run, &schedule, &oracle, noise.clone(), &mut rng, |_| {})
        };
        if !sampler.takes_noise_path() {
            assert!(matches!(
                draw(NoisePath::BrownianTree, 20),
                Err(SamplerError::Incompatible { .. })
            ));
            continue;
        }
        let moved = |noise_path| {
            let (coarse, fine) = (draw(noise_path, 20).unwrap(), draw(noise_path, 80).unwrap());
            let squared = (coarse - fine).powf_scalar(2.0).sum().into_scalar();
            (squared / 1000.0).sqrt()
        };
        let (sequential, tree) = (moved(NoisePath::Sequential), moved(NoisePath::BrownianTree));
        assert!(
            tree < 0.4 * sequential,
            "{sampler}: {tree} against {sequential}"
        );
    }
    let ode_tree = DpmSolverConfig {
        noise_path: NoisePath::BrownianTree,
        ..DpmSolverConfig::default()
    };
    assert!(matches!(
        DpmSolver::<B, 2>::new(ode_tree, &schedule, 10),
        Err(SamplerError::Incompatible { .. })
    ));
}
