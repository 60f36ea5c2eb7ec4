//! Bad configurations and uses are typed errors, and two samplers that must agree do.

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::standard_normal;
use kiln_sampler::{
    AlgorithmType, ClassConditional, ConsistencyScalings, Ddim, DdimConfig, Ddpm, DdpmConfig, Deis,
    DeisConfig, Denoiser, Dpm2, Dpm2Config, DpmSolver, DpmSolverConfig, DpmSolverSde,
    DpmSolverSinglestep, DpmSolverSinglestepConfig, DynamicThresholding, Euler, EulerConfig,
    FinalSigmas, FnDenoiser, GaussianMixture, GuidanceConfig, Guided, Heun, InversionMethod, Lcm,
    LcmConfig, Lms, LmsConfig, ModelError, NoisePath, Pndm, PndmConfig, Prediction, SaSolver,
    SaSolverConfig, SaSolverTau, SampleClipping, Sampler, SamplerError, SigmaSpacing, UniPc,
    UniPcConfig, VarianceType, image_to_image, inpaint, invert, sample, sample_from, slerp,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule, ScheduleError};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap()
}

/// A smooth ε model, x·t/1500, to run samplers with.
fn shrinking_model() -> FnDenoiser<impl Fn(Tensor<B, 2>, f64) -> Tensor<B, 2>> {
    FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, t| {
        x.mul_scalar(t / 1500.0)
    })
}

/// Eight standard normal 2-D points from `seed`.
fn eight_points(seed: u64) -> Tensor<B, 2> {
    standard_normal::<B, 2>(
        [8, 2],
        &mut StdRng::seed_from_u64(seed),
        &Default::default(),
    )
}

#[test]
fn step_counts_are_checked() {
    let s = schedule();
    assert_eq!(
        Ddim::new(DdimConfig::default(), &s, 0).unwrap_err(),
        SamplerError::Schedule(ScheduleError::ZeroSteps)
    );
    assert_eq!(
        Ddpm::new(DdpmConfig::default(), &s, 1001).unwrap_err(),
        SamplerError::Schedule(ScheduleError::TooManySteps {
            steps: 1001,
            train_timesteps: 1000,
            most: 1000
        })
    );
    // N + 1 points over T, the last dropped, fit T − 1 distinct whole timesteps.
    assert_eq!(
        DpmSolver::<B, 2>::new(DpmSolverConfig::default(), &s, 1000).unwrap_err(),
        SamplerError::Schedule(ScheduleError::TooManySteps {
            steps: 1000,
            train_timesteps: 1000,
            most: 999
        })
    );
    assert!(Euler::new(EulerConfig::default(), &s, 0).is_err());
    assert!(DpmSolver::<B, 2>::new(DpmSolverConfig::default(), &s, 2000).is_err());
}

#[test]
fn orders_and_settings_are_checked() {
    let s = schedule();
    for (solver_order, algorithm_type) in [
        (0, AlgorithmType::DpmSolverPlusPlus),
        (4, AlgorithmType::DpmSolverPlusPlus),
        (3, AlgorithmType::SdeDpmSolverPlusPlus),
        (3, AlgorithmType::SdeDpmSolver),
    ] {
        let config = DpmSolverConfig {
            solver_order,
            algorithm_type,
            ..DpmSolverConfig::default()
        };
        let error = DpmSolver::<B, 2>::new(config, &s, 10).unwrap_err();
        assert!(
            matches!(error, SamplerError::UnsupportedOrder { order, .. } if order == solver_order)
        );
    }
    let noise_to_zero = DpmSolverConfig {
        algorithm_type: AlgorithmType::DpmSolver,
        ..DpmSolverConfig::default()
    };
    let error = DpmSolver::<B, 2>::new(noise_to_zero, &s, 10).unwrap_err();
    assert!(
        matches!(error, SamplerError::Incompatible { .. }),
        "{error}"
    );
    let flat_beta = DpmSolverConfig {
        sigma_spacing: SigmaSpacing::Beta {
            alpha: 0.0,
            beta: 0.6,
        },
        ..DpmSolverConfig::default()
    };
    let error = DpmSolver::<B, 2>::new(flat_beta, &s, 10).unwrap_err();
    assert!(error.to_string().contains("alpha is 0"), "{error}");
    let unipc_over_noise_to_zero = UniPcConfig {
        predict_x0: false,
        ..UniPcConfig::default()
    };
    let error = UniPc::<B, 2>::new(unipc_over_noise_to_zero, &s, 10).unwrap_err();
    assert!(
        matches!(error, SamplerError::Incompatible { .. }),
        "{error}"
    );
    for lambda_min_clipped in [f64::NAN, 10.0] {
        let clipped_away = DpmSolverConfig {
            lambda_min_clipped,
            ..DpmSolverConfig::default()
        };
        let error = DpmSolver::<B, 2>::new(clipped_away, &s, 10).unwrap_err();
        assert!(
            matches!(
                error,
                SamplerError::OutOfRange {
                    name: "lambda_min_clipped",
                    ..
                }
            ),
            "{error}"
        );
    }
    for solver_order in [0, 4] {
        let config = DeisConfig {
            solver_order,
            ..DeisConfig::default()
        };
        let error = Deis::<B, 2>::new(config, &s, 10).unwrap_err();
        assert!(matches!(
            error,
            SamplerError::UnsupportedOrder {
                sampler: "DEIS",
                ..
            }
        ));
    }
    for (solver_order, algorithm_type) in [
        (4, AlgorithmType::DpmSolverPlusPlus),
        (3, AlgorithmType::SdeDpmSolverPlusPlus),
    ] {
        let config = DpmSolverSinglestepConfig {
            solver_order,
            algorithm_type,
            ..DpmSolverSinglestepConfig::default()
        };
        let error = DpmSolverSinglestep::<B, 2>::new(config, &s, 10).unwrap_err();
        assert!(
            matches!(error, SamplerError::UnsupportedOrder { order, .. } if order == solver_order)
        );
    }
    // diffusers' singlestep solver has no sde-dpmsolver; ε̂ cannot step to σ = 0.
    for (algorithm_type, final_sigmas_type) in [
        (AlgorithmType::SdeDpmSolver, FinalSigmas::SigmaMin),
        (AlgorithmType::DpmSolver, FinalSigmas::Zero),
    ] {
        let config = DpmSolverSinglestepConfig {
            algorithm_type,
            final_sigmas_type,
            ..DpmSolverSinglestepConfig::default()
        };
        let error = DpmSolverSinglestep::<B, 2>::new(config, &s, 10).unwrap_err();
        assert!(
            matches!(error, SamplerError::Incompatible { .. }),
            "{error}"
        );
    }
    for (predictor_order, corrector_order) in [(0, 2), (5, 2), (2, 0), (2, 5)] {
        let config = SaSolverConfig {
            predictor_order,
            corrector_order,
            ..SaSolverConfig::default()
        };
        let error = SaSolver::<B, 2>::new(config, &s, 10).unwrap_err();
        assert!(matches!(
            error,
            SamplerError::UnsupportedOrder {
                sampler: "SA-Solver",
                ..
            }
        ));
    }
    for tau in [-0.5, f64::NAN, f64::INFINITY] {
        let config = SaSolverConfig {
            tau: SaSolverTau::constant(tau),
            ..SaSolverConfig::default()
        };
        assert!(matches!(
            SaSolver::<B, 2>::new(config, &s, 10).unwrap_err(),
            SamplerError::OutOfRange { name: "tau", .. }
        ));
    }
    let nan_window = SaSolverConfig {
        tau: SaSolverTau {
            min_timestep: f64::NAN,
            ..SaSolverTau::default()
        },
        ..SaSolverConfig::default()
    };
    assert!(matches!(
        SaSolver::<B, 2>::new(nan_window, &s, 10).unwrap_err(),
        SamplerError::OutOfRange {
            name: "tau window",
            ..
        }
    ));
    let negative_eta = DdimConfig {
        eta: -0.5,
        ..DdimConfig::default()
    };
    assert!(matches!(
        Ddim::new(negative_eta, &s, 10).unwrap_err(),
        SamplerError::OutOfRange { name: "eta", .. }
    ));
    let bad_clip = DdimConfig {
        clipping: SampleClipping {
            clip_sample: true,
            clip_sample_range: 0.0,
            thresholding: None,
        },
        ..DdimConfig::default()
    };
    assert!(Ddim::new(bad_clip, &s, 10).is_err());
}

#[test]
fn epsilon_at_zero_terminal_snr_is_an_error_not_a_nan() {
    let zero_snr = schedule().rescale_zero_terminal_snr().unwrap();
    let trailing = kiln_schedule::TimestepGrid {
        spacing: kiln_schedule::TimestepSpacing::Trailing,
        ..Default::default()
    };
    let config = DdimConfig {
        grid: trailing,
        ..DdimConfig::default()
    };
    let mut ddim = Ddim::new(config, &zero_snr, 10).unwrap();
    let noise = Tensor::<B, 2>::ones([2, 2], &Default::default());
    let mut rng = StdRng::seed_from_u64(0);
    let epsilon = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, _| x);
    let error = sample(&mut ddim, &epsilon, noise.clone(), &mut rng, |_| {}).unwrap_err();
    assert!(
        matches!(error, SamplerError::UnsupportedPrediction { timestep, .. } if timestep == 999.0)
    );
    // v-prediction is defined there.
    let mut ddim = Ddim::new(config, &zero_snr, 10).unwrap();
    let v = FnDenoiser::new(Prediction::V, |x: Tensor<B, 2>, _| x.mul_scalar(0.1));
    assert!(sample(&mut ddim, &v, noise, &mut rng, |_| {}).is_ok());
    // The σ samplers start from σ = √(2²⁴ − 1) ≈ 4096 in place of ∞, as diffusers' do.
    let euler = Euler::new(
        EulerConfig {
            grid: trailing,
            ..EulerConfig::default()
        },
        &zero_snr,
        10,
    )
    .unwrap();
    let sigma_max = Sampler::<B, 2>::init_noise_sigma(&euler);
    assert_eq!(sigma_max, (16_777_216.0f64 - 1.0).sqrt());
}

#[test]
fn stepping_past_the_end_is_an_error() {
    let mut ddim = Ddim::new(DdimConfig::default(), &schedule(), 3).unwrap();
    let x = Tensor::<B, 2>::zeros([1, 2], &Default::default());
    let mut rng = StdRng::seed_from_u64(0);
    let error = ddim
        .step(3, x.clone(), Prediction::Epsilon, x, &mut rng)
        .unwrap_err();
    assert_eq!(error, SamplerError::StepOutOfRange { index: 3, steps: 3 });
}

/// DDIM with η = 1 has DDPM's posterior mean and `fixed_small` variance (Song et al. 2021,
/// §4.1), so with the same noise draws the two samplers produce the same samples.
#[test]
fn ddim_with_eta_one_is_ddpm() {
    let s = schedule();
    let no_clip = SampleClipping::default();
    let mut ddim = Ddim::new(
        DdimConfig {
            eta: 1.0,
            clipping: no_clip,
            ..DdimConfig::default()
        },
        &s,
        50,
    )
    .unwrap();
    let mut ddpm = Ddpm::new(
        DdpmConfig {
            clipping: no_clip,
            ..DdpmConfig::default()
        },
        &s,
        50,
    )
    .unwrap();
    let device = Default::default();
    let noise = standard_normal::<B, 2>([64, 3], &mut StdRng::seed_from_u64(1), &device);
    let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, t| {
        x.mul_scalar(t / 2000.0)
    });
    let a = sample(
        &mut ddim,
        &model,
        noise.clone(),
        &mut StdRng::seed_from_u64(2),
        |_| {},
    )
    .unwrap();
    let b = sample(
        &mut ddpm,
        &model,
        noise,
        &mut StdRng::seed_from_u64(2),
        |_| {},
    )
    .unwrap();
    let difference: f32 = (a - b).abs().max().into_scalar();
    assert!(difference < 1e-4, "{difference}");
}

#[test]
fn the_callback_sees_every_step_in_order() {
    let mut solver = DpmSolver::<B, 2>::new(DpmSolverConfig::default(), &schedule(), 7).unwrap();
    let expected = <DpmSolver<B, 2> as Sampler<B, 2>>::timesteps(&solver).to_vec();
    let model = FnDenoiser::new(Prediction::Sample, |x: Tensor<B, 2>, _| x.mul_scalar(0.0));
    let noise = Tensor::<B, 2>::ones([2, 2], &Default::default());
    let mut seen = Vec::new();
    sample(
        &mut solver,
        &model,
        noise,
        &mut StdRng::seed_from_u64(0),
        |event| {
            assert_eq!(event.steps, 7);
            seen.push((event.index, event.timestep));
        },
    )
    .unwrap();
    let indices: Vec<usize> = seen.iter().map(|s| s.0).collect();
    assert_eq!(indices, (0..7).collect::<Vec<_>>());
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), expected);
}

/// SA-Solver's weights stay finite for any τ: over x̂_0 they integrate e^{c(λ − λ_t)} with
/// c = 1 + τ², which a form in e^{cλ} would overflow (c·h ≈ 900 for τ = 10 in one step).
#[test]
fn sa_solver_with_a_large_tau_stays_finite() {
    let model = shrinking_model();
    let noise = eight_points(3);
    for steps in [1, 2, 10] {
        for predictor_order in [1, 2, 3] {
            let config = SaSolverConfig {
                predictor_order,
                corrector_order: predictor_order,
                tau: SaSolverTau::constant(10.0),
                ..SaSolverConfig::default()
            };
            let mut solver = SaSolver::<B, 2>::new(config, &schedule(), steps).unwrap();
            let mut rng = StdRng::seed_from_u64(0);
            let x = sample(&mut solver, &model, noise.clone(), &mut rng, |_| {}).unwrap();
            let worst = x.abs().max().into_scalar();
            assert!(
                worst.is_finite(),
                "{steps} steps, order {predictor_order}: {worst}"
            );
        }
    }
}

/// Every sampler can be reused: a second run from index 0 repeats the first exactly.
#[test]
fn samplers_can_sample_twice() {
    let s = schedule();
    let model = shrinking_model();
    let noise = eight_points(3);
    fn twice<S: Sampler<B, 2>>(
        mut sampler: S,
        model: &impl Denoiser<B, 2>,
        noise: &Tensor<B, 2>,
    ) -> f32 {
        let first = sample(
            &mut sampler,
            model,
            noise.clone(),
            &mut StdRng::seed_from_u64(4),
            |_| {},
        )
        .unwrap();
        let second = sample(
            &mut sampler,
            model,
            noise.clone(),
            &mut StdRng::seed_from_u64(4),
            |_| {},
        )
        .unwrap();
        (first - second).abs().max().into_scalar()
    }
    let order3 = DpmSolverConfig {
        solver_order: 3,
        ..DpmSolverConfig::default()
    };
    let order3_deis = DeisConfig {
        solver_order: 3,
        ..DeisConfig::default()
    };
    let order3_singlestep = DpmSolverSinglestepConfig {
        solver_order: 3,
        ..DpmSolverSinglestepConfig::default()
    };
    let differences = [
        twice(
            DpmSolver::<B, 2>::new(order3, &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            UniPc::<B, 2>::new(Default::default(), &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            Heun::<B, 2>::new(Default::default(), &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            Pndm::<B, 2>::new(Default::default(), &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            Deis::<B, 2>::new(order3_deis, &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            DpmSolverSinglestep::<B, 2>::new(order3_singlestep, &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            Ddpm::new(DdpmConfig::default(), &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            DpmSolverSde::<B, 2>::new(Default::default(), &s, 12).unwrap(),
            &model,
            &noise,
        ),
        twice(
            SaSolver::<B, 2>::new(SaSolverConfig::default(), &s, 12).unwrap(),
            &model,
            &noise,
        ),
    ];
    assert!(differences.iter().all(|&d| d == 0.0), "{differences:?}");
}

/// A model that takes batches of exactly two samples and refuses others with its own error.
struct PairsOnly;

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("a batch of {0}; this model takes 2")]
struct NotAPair(usize);

impl PairsOnly {
    fn check(&self, sample: &Tensor<B, 2>) -> Result<(), SamplerError> {
        match sample.dims()[0] {
            2 => Ok(()),
            batch => Err(ModelError::new(NotAPair(batch)).into()),
        }
    }
}

impl Denoiser<B, 2> for PairsOnly {
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }

    fn denoise(&self, sample: Tensor<B, 2>, _timestep: f64) -> Result<Tensor<B, 2>, SamplerError> {
        self.check(&sample)?;
        Ok(sample.mul_scalar(0.1))
    }
}

impl ClassConditional<B, 2> for PairsOnly {
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }

    fn classes(&self) -> usize {
        3
    }

    fn denoise_labelled(
        &self,
        sample: Tensor<B, 2>,
        timestep: f64,
        _labels: &[Option<usize>],
    ) -> Result<Tensor<B, 2>, SamplerError> {
        self.denoise(sample, timestep)
    }
}

/// The model's refusal as the model's own error type.
fn refusal(result: Result<Tensor<B, 2>, SamplerError>) -> NotAPair {
    match result {
        Err(SamplerError::Model(error)) => {
            let own = error
                .downcast_ref::<NotAPair>()
                .expect("the model's own error");
            NotAPair(own.0)
        }
        other => panic!("expected the model's refusal, got {other:?}"),
    }
}

#[test]
fn a_model_that_refuses_its_input_stops_every_sampler_and_editor_with_its_error() {
    let s = schedule();
    let device = Default::default();
    let rng = &mut StdRng::seed_from_u64(0);
    let three = standard_normal::<B, 2>([3, 4], rng, &device);
    let mut ddim = Ddim::new(DdimConfig::default(), &s, 5).unwrap();
    assert_eq!(
        refusal(sample(&mut ddim, &PairsOnly, three.clone(), rng, |_| {})),
        NotAPair(3)
    );
    let mut heun = Heun::new(Default::default(), &s, 5).unwrap();
    assert_eq!(
        refusal(sample(&mut heun, &PairsOnly, three.clone(), rng, |_| {})),
        NotAPair(3)
    );
    let edited = image_to_image(&mut ddim, &PairsOnly, &s, three.clone(), 0.5, rng, |_| {});
    assert_eq!(refusal(edited), NotAPair(3));
    let mask = Tensor::<B, 2>::ones([3, 4], &device);
    let mut ddpm = Ddpm::new(DdpmConfig::default(), &s, 5).unwrap();
    let filled = inpaint(
        &mut ddpm,
        &PairsOnly,
        &s,
        three.clone(),
        mask,
        None,
        rng,
        |_| {},
    );
    assert_eq!(refusal(filled), NotAPair(3));
    let unclipped = DdimConfig {
        clipping: SampleClipping::thresholding_only(None),
        ..DdimConfig::default()
    };
    let ddim_unclipped = Ddim::new(unclipped, &s, 5).unwrap();
    let inverted = invert(
        &ddim_unclipped,
        &PairsOnly,
        three.clone(),
        InversionMethod::Plain,
        |_| {},
    );
    assert_eq!(refusal(inverted), NotAPair(3));
    // The message names both the failure and the model's reason.
    let message = sample(&mut ddim, &PairsOnly, three, rng, |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "the model failed: a batch of 3; this model takes 2"
    );
    // Two samples pass.
    let two = standard_normal::<B, 2>([2, 4], rng, &device);
    assert!(sample(&mut ddim, &PairsOnly, two, rng, |_| {}).is_ok());
}

/// A model output of another shape than the sample (a UNet with a learned variance returns
/// twice the channels) stops sampling, a sampler's own step, and inversion with a typed error
/// naming both shapes, before any sampler combines the two.
#[test]
fn a_model_output_of_another_shape_is_an_error_not_a_panic() {
    let s = schedule();
    let rng = &mut StdRng::seed_from_u64(0);
    let x = standard_normal::<B, 2>([3, 4], rng, &Default::default());
    let doubled = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, _| {
        Tensor::cat(vec![x.clone(), x], 1)
    });
    let expected = SamplerError::ShapeMismatch {
        what: "model output",
        expected: vec![3, 4],
        found: vec![3, 8],
    };
    let mut ddim = Ddim::new(DdimConfig::default(), &s, 5).unwrap();
    let sampled = sample(&mut ddim, &doubled, x.clone(), rng, |_| {});
    assert_eq!(sampled.unwrap_err(), expected);
    let mut dpm = DpmSolver::new(DpmSolverConfig::default(), &s, 5).unwrap();
    let sampled = sample(&mut dpm, &doubled, x.clone(), rng, |_| {});
    assert_eq!(sampled.unwrap_err(), expected);
    let unclipped = DdimConfig {
        clipping: SampleClipping::thresholding_only(None),
        ..DdimConfig::default()
    };
    let ddim = Ddim::new(unclipped, &s, 5).unwrap();
    let inverted = invert(&ddim, &doubled, x.clone(), InversionMethod::Plain, |_| {});
    assert_eq!(inverted.unwrap_err(), expected);
    let output = doubled.denoise(x.clone(), 999.0).unwrap();
    let mut euler = Euler::new(EulerConfig::default(), &s, 5).unwrap();
    let stepped = euler.step(0, output, Prediction::Epsilon, x.clone(), rng);
    assert_eq!(stepped.unwrap_err(), expected);
    // PNDM combines its outputs before converting them.
    let mut pndm = Pndm::<B, 2>::new(PndmConfig::default(), &s, 5).unwrap();
    let sampled = sample(&mut pndm, &doubled, x, rng, |_| {});
    assert_eq!(sampled.unwrap_err(), expected);
}

#[test]
fn guidance_of_a_batch_other_than_its_labels_is_an_error() {
    let guided = Guided::new::<B, 2>(PairsOnly, vec![0, 1], GuidanceConfig::new(3.0)).unwrap();
    let three = Tensor::<B, 2>::zeros([3, 4], &Default::default());
    assert_eq!(
        guided.denoise(three, 500.0).unwrap_err(),
        SamplerError::LabelCount {
            labels: 2,
            batch: 3
        }
    );
    // The doubled batch of guidance (4) is refused by the model, and said so.
    let two = Tensor::<B, 2>::zeros([2, 4], &Default::default());
    assert_eq!(refusal(guided.denoise(two, 500.0)), NotAPair(4));
}

/// Driven step by step without `restart`, as diffusers' loops are, a multistep solver that
/// is stepped from a later index after a whole run starts that trajectory afresh: it ends
/// where a new solver does, not on the last run's outputs.
#[test]
fn a_part_way_start_without_restart_starts_afresh() {
    let s = schedule();
    let model = shrinking_model();
    let noise = eight_points(3);
    /// Steps `sampler` from index `start` to the end, calling `step` directly, with noise
    /// from `seed`.
    fn steps_from<S: Sampler<B, 2>>(
        sampler: &mut S,
        model: &impl Denoiser<B, 2>,
        noise: &Tensor<B, 2>,
        (start, seed): (usize, u64),
    ) -> Tensor<B, 2> {
        let timesteps = sampler.timesteps().to_vec();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = noise.clone();
        for (index, &t) in timesteps.iter().enumerate().skip(start) {
            let output = model.denoise(x.clone(), t).unwrap();
            x = sampler
                .step(index, output, model.prediction(), x, &mut rng)
                .unwrap()
                .sample;
        }
        x
    }
    fn afresh<S: Sampler<B, 2> + Clone>(
        sampler: S,
        model: &impl Denoiser<B, 2>,
        noise: &Tensor<B, 2>,
    ) -> f32 {
        // The whole run draws from another seed, so noise it leaves behind would show.
        let mut used = sampler.clone();
        steps_from(&mut used, model, noise, (0, 5));
        let part_way = steps_from(&mut used, model, noise, (3, 4));
        let fresh = steps_from(&mut sampler.clone(), model, noise, (3, 4));
        (part_way - fresh).abs().max().into_scalar()
    }
    let order3 = DpmSolverConfig {
        solver_order: 3,
        ..DpmSolverConfig::default()
    };
    let deis = DeisConfig {
        solver_order: 3,
        ..DeisConfig::default()
    };
    let singlestep = DpmSolverSinglestepConfig {
        solver_order: 3,
        ..DpmSolverSinglestepConfig::default()
    };
    let sa_solver = SaSolverConfig {
        predictor_order: 3,
        corrector_order: 3,
        ..SaSolverConfig::default()
    };
    let euler_a_tree = EulerConfig {
        ancestral: true,
        noise_path: NoisePath::BrownianTree,
        ..EulerConfig::default()
    };
    let differences = [
        afresh(
            SaSolver::<B, 2>::new(sa_solver, &s, 12).unwrap(),
            &model,
            &noise,
        ),
        afresh(
            DpmSolver::<B, 2>::new(order3, &s, 12).unwrap(),
            &model,
            &noise,
        ),
        afresh(Deis::<B, 2>::new(deis, &s, 12).unwrap(), &model, &noise),
        afresh(
            DpmSolverSinglestep::<B, 2>::new(singlestep, &s, 12).unwrap(),
            &model,
            &noise,
        ),
        afresh(
            UniPc::<B, 2>::new(Default::default(), &s, 12).unwrap(),
            &model,
            &noise,
        ),
        afresh(Euler::new(euler_a_tree, &s, 12).unwrap(), &model, &noise),
    ];
    assert!(differences.iter().all(|&d| d == 0.0), "{differences:?}");
}

/// A Brownian tree is for samplers that add noise: the deterministic Euler and DPM-Solver-2
/// refuse one, their ancestral variants take it.
#[test]
fn only_the_ancestral_variants_take_a_noise_path() {
    let s = schedule();
    for ancestral in [false, true] {
        let euler = EulerConfig {
            ancestral,
            noise_path: NoisePath::BrownianTree,
            ..EulerConfig::default()
        };
        let dpm2 = Dpm2Config {
            ancestral,
            noise_path: NoisePath::BrownianTree,
            ..Dpm2Config::default()
        };
        let results = [
            Euler::new(euler, &s, 10).map(|_| ()),
            Dpm2::<B, 2>::new(dpm2, &s, 10).map(|_| ()),
        ];
        for result in results {
            match ancestral {
                true => assert!(result.is_ok(), "{result:?}"),
                false => assert!(
                    matches!(result, Err(SamplerError::Incompatible { .. })),
                    "{result:?}"
                ),
            }
        }
    }
}

/// `restart` forgets a multistep sampler's history even where the last run stopped (a run
/// that failed at a model call, say): restarted there, the next run ends where a new sampler's
/// does, not on the stopped run's outputs.
#[test]
fn a_restart_where_the_last_run_stopped_forgets_its_history() {
    let s = schedule();
    let model = shrinking_model();
    let (first, second) = (eight_points(3), eight_points(4));
    fn stopped_then_restarted<S: Sampler<B, 2> + Clone>(
        sampler: S,
        model: &impl Denoiser<B, 2>,
        (first, second): (&Tensor<B, 2>, &Tensor<B, 2>),
    ) -> f32 {
        let mut used = sampler.clone();
        let mut rng = StdRng::seed_from_u64(4);
        let mut x = first.clone();
        for index in 0..3 {
            let t = used.timesteps()[index];
            let output = model.denoise(x.clone(), t).unwrap();
            x = used
                .step(index, output, model.prediction(), x, &mut rng)
                .unwrap()
                .sample;
        }
        let run = |sampler: &mut S| {
            sample_from(
                sampler,
                model,
                second.clone(),
                3,
                &mut StdRng::seed_from_u64(5),
                |_| {},
            )
            .unwrap()
        };
        let (restarted, fresh) = (run(&mut used), run(&mut sampler.clone()));
        (restarted - fresh).abs().max().into_scalar()
    }
    let pair = (&first, &second);
    let order3 = DpmSolverConfig {
        solver_order: 3,
        ..DpmSolverConfig::default()
    };
    let differences = [
        stopped_then_restarted(
            Lms::<B, 2>::new(LmsConfig::default(), &s, 12).unwrap(),
            &model,
            pair,
        ),
        stopped_then_restarted(
            DpmSolver::<B, 2>::new(order3, &s, 12).unwrap(),
            &model,
            pair,
        ),
        stopped_then_restarted(
            Deis::<B, 2>::new(DeisConfig::default(), &s, 12).unwrap(),
            &model,
            pair,
        ),
        stopped_then_restarted(
            UniPc::<B, 2>::new(Default::default(), &s, 12).unwrap(),
            &model,
            pair,
        ),
        stopped_then_restarted(
            SaSolver::<B, 2>::new(SaSolverConfig::default(), &s, 12).unwrap(),
            &model,
            pair,
        ),
    ];
    assert!(differences.iter().all(|&d| d == 0.0), "{differences:?}");
}

/// A class-conditional model that answers only the first half of its batch.
#[derive(Debug)]
struct FirstHalf;

impl ClassConditional<B, 2> for FirstHalf {
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }

    fn classes(&self) -> usize {
        3
    }

    fn denoise_labelled(
        &self,
        sample: Tensor<B, 2>,
        _timestep: f64,
        _labels: &[Option<usize>],
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let half = sample.dims()[0] / 2;
        Ok(sample.narrow(0, 0, half))
    }
}

/// Guidance refuses an empty label list and a model whose doubled batch comes back short,
/// before it splits that batch; slerp refuses empty endpoints and interpolates a zero one
/// linearly instead of returning NaN.
#[test]
fn guidance_and_slerp_refuse_what_they_cannot_split() {
    let empty = Guided::new::<B, 2>(FirstHalf, vec![], GuidanceConfig::new(3.0));
    assert!(
        matches!(empty, Err(SamplerError::OutOfRange { name: "labels", .. })),
        "{empty:?}"
    );
    let guided = Guided::new::<B, 2>(FirstHalf, vec![0, 1], GuidanceConfig::new(3.0)).unwrap();
    let two = Tensor::<B, 2>::ones([2, 4], &Default::default());
    assert_eq!(
        guided.denoise(two.clone(), 500.0).unwrap_err(),
        SamplerError::ShapeMismatch {
            what: "model output",
            expected: vec![4, 4],
            found: vec![2, 4],
        }
    );
    let zero = Tensor::<B, 2>::zeros([2, 4], &Default::default());
    let halfway = slerp(zero, two.clone(), 0.25).unwrap();
    let linear = two.mul_scalar(0.25);
    assert_eq!(halfway.into_data(), linear.into_data());
    let nothing = Tensor::<B, 2>::zeros([2, 0], &Default::default());
    let result = slerp(nothing.clone(), nothing, 0.5);
    assert!(
        matches!(result, Err(SamplerError::OutOfRange { .. })),
        "{result:?}"
    );
}

/// Dynamic thresholding of samples without elements has no quantile to take: it leaves them
/// be rather than index an empty sort.
#[test]
fn thresholding_an_empty_sample_leaves_it_be() {
    let config = DpmSolverConfig {
        thresholding: Some(DynamicThresholding {
            ratio: 0.9,
            max_value: 1.0,
        }),
        ..DpmSolverConfig::default()
    };
    let mut solver = DpmSolver::new(config, &schedule(), 4).unwrap();
    let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, _| x);
    let empty = Tensor::<B, 2>::zeros([2, 0], &Default::default());
    let result = sample(
        &mut solver,
        &model,
        empty,
        &mut StdRng::seed_from_u64(0),
        |_| {},
    );
    assert_eq!(result.unwrap().dims(), [2, 0]);
}

/// Consistency scalings with σ_d = 0 (c_skip = 0/0 at t = 0) or a non-finite or negative
/// timestep scaling are refused by LCM, not turned into a NaN sample.
#[test]
fn lcm_refuses_scalings_that_make_nan() {
    for (timestep_scaling, sigma_data) in [(10.0, 0.0), (10.0, f64::NAN), (-1.0, 0.5)] {
        let config = LcmConfig {
            scalings: ConsistencyScalings {
                timestep_scaling,
                sigma_data,
            },
            ..LcmConfig::default()
        };
        let result = Lcm::new(config, &schedule(), 4);
        assert!(
            matches!(result, Err(SamplerError::OutOfRange { .. })),
            "{timestep_scaling}, {sigma_data}: {result:?}"
        );
    }
    assert!(Lcm::new(LcmConfig::default(), &schedule(), 4).is_ok());
}

/// The mixture oracle, as a model, refuses what a model should: a sample of another width,
/// labels not one per row, and a label that is not one of its components.
#[test]
fn the_mixture_oracle_refuses_samples_and_labels_it_does_not_fit() {
    let oracle = GaussianMixture::new(
        vec![0.5, 0.5],
        vec![vec![-1.0, 0.0], vec![1.0, 0.0]],
        vec![0.1, 0.1],
        schedule(),
    )
    .unwrap();
    let three_wide = Tensor::<B, 2>::zeros([4, 3], &Default::default());
    assert_eq!(
        oracle.denoise(three_wide, 500.0).unwrap_err(),
        SamplerError::ShapeMismatch {
            what: "sample",
            expected: vec![4, 2],
            found: vec![4, 3],
        }
    );
    let two = Tensor::<B, 2>::zeros([2, 2], &Default::default());
    let result = oracle.denoise_labelled(two.clone(), 500.0, &[Some(0)]);
    assert_eq!(
        result.unwrap_err(),
        SamplerError::LabelCount {
            labels: 1,
            batch: 2
        }
    );
    let result = oracle.denoise_labelled(two.clone(), 500.0, &[Some(0), Some(2)]);
    assert_eq!(
        result.unwrap_err(),
        SamplerError::ClassOutOfRange {
            class: 2,
            classes: 2
        }
    );
    assert!(
        oracle
            .denoise_labelled(two, 500.0, &[Some(1), None])
            .is_ok()
    );
}

/// [`shrinking_model`] learning the variance v = `first` for the first coordinate and
/// `second` for the second (one value per point and coordinate, as a UNet gives one per pixel).
struct LearnedVariance {
    first: f64,
    second: f64,
}

impl Denoiser<B, 2> for LearnedVariance {
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }

    fn denoise(&self, sample: Tensor<B, 2>, timestep: f64) -> Result<Tensor<B, 2>, SamplerError> {
        shrinking_model().denoise(sample, timestep)
    }

    fn learns_variance(&self) -> bool {
        true
    }

    fn denoise_with_variance(
        &self,
        sample: Tensor<B, 2>,
        timestep: f64,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let [points, _] = sample.dims();
        let device = sample.device();
        let variance = Tensor::cat(
            vec![
                Tensor::full([points, 1], self.first, &device),
                Tensor::full([points, 1], self.second, &device),
            ],
            1,
        );
        Ok(Tensor::cat(
            vec![self.denoise(sample, timestep)?, variance],
            1,
        ))
    }
}

fn ddpm(variance_type: VarianceType) -> Ddpm {
    let config = DdpmConfig {
        variance_type,
        clipping: SampleClipping::default(),
        ..DdpmConfig::default()
    };
    Ddpm::new(config, &schedule(), 20).unwrap()
}

/// `learned_range` spans `fixed_small` (v = −1) to `fixed_large` (v = 1), value by value:
/// with the same noise, a model learning v = 1 for one coordinate and −1 for the other
/// samples the first as `fixed_large` does and the second as `fixed_small` does.
#[test]
fn a_learned_variance_reaches_both_fixed_ones_value_by_value() {
    fn run(variance_type: VarianceType, model: &impl Denoiser<B, 2>) -> Tensor<B, 2> {
        let mut rng = StdRng::seed_from_u64(4);
        sample(
            &mut ddpm(variance_type),
            model,
            eight_points(3),
            &mut rng,
            |_| {},
        )
        .unwrap()
    }
    let both = LearnedVariance {
        first: 1.0,
        second: -1.0,
    };
    let mixed = run(VarianceType::LearnedRange, &both);
    let large = run(VarianceType::FixedLarge, &shrinking_model());
    let small = run(VarianceType::FixedSmall, &shrinking_model());
    let column = |x: &Tensor<B, 2>, c: usize| x.clone().narrow(1, c, 1);
    let gap = |a: Tensor<B, 2>, b: Tensor<B, 2>| -> f32 { (a - b).abs().max().into_scalar() };
    assert!(gap(column(&mixed, 0), column(&large, 0)) < 1e-5);
    assert!(gap(column(&mixed, 1), column(&small, 1)) < 1e-5);
    // The two fixed variances differ, so the comparison could fail.
    assert!(gap(large, small) > 1e-2);
}

#[test]
fn a_learned_variance_needs_a_model_that_learns_one_in_the_right_shape() {
    let noise = eight_points(5);
    let mut rng = StdRng::seed_from_u64(6);
    let mut learned = ddpm(VarianceType::LearnedRange);
    let error = sample(
        &mut learned,
        &shrinking_model(),
        noise.clone(),
        &mut rng,
        |_| {},
    );
    assert_eq!(error.unwrap_err(), SamplerError::NoLearnedVariance);
    // A model that gives its prediction alone where the variance should come beside it.
    let truncated = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, t| {
        x.mul_scalar(t / 1500.0)
    });
    struct Truncating<M>(M);
    impl<M: Denoiser<B, 2>> Denoiser<B, 2> for Truncating<M> {
        fn prediction(&self) -> Prediction {
            self.0.prediction()
        }
        fn denoise(&self, x: Tensor<B, 2>, t: f64) -> Result<Tensor<B, 2>, SamplerError> {
            self.0.denoise(x, t)
        }
        fn learns_variance(&self) -> bool {
            true
        }
        fn denoise_with_variance(
            &self,
            x: Tensor<B, 2>,
            t: f64,
        ) -> Result<Tensor<B, 2>, SamplerError> {
            self.0.denoise(x, t)
        }
    }
    let error = sample(
        &mut learned,
        &Truncating(truncated),
        noise,
        &mut rng,
        |_| {},
    );
    assert_eq!(
        error.unwrap_err(),
        SamplerError::ShapeMismatch {
            what: "model output with its learned variance",
            expected: vec![8, 4],
            found: vec![8, 2],
        }
    );
}
