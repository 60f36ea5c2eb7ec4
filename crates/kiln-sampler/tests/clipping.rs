//! x̂_0 clipping in the σ-space samplers (Euler, LMS, Heun, DPM2, DPM-Solver++ SDE): with a
//! model whose x̂_0 is out of range, every step's x̂_0 is clamped and the run ends on the bound.

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::standard_normal;
use kiln_sampler::{
    Dpm2, Dpm2Config, DpmSolverSde, DpmSolverSdeConfig, Euler, EulerConfig, FnDenoiser, Heun,
    HeunConfig, Lms, LmsConfig, Prediction, SampleClipping, Sampler, SamplerError, sample,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap()
}

/// A clamp to [−`range`, `range`].
fn clamp(range: f64) -> SampleClipping {
    SampleClipping {
        clip_sample: true,
        clip_sample_range: range,
        thresholding: None,
    }
}

/// The largest |x̂_0| over the run's steps and the run's result, for a model that predicts
/// x_0 = 3 everywhere.
fn run(mut sampler: impl Sampler<B, 2>) -> (f32, Tensor<B, 2>) {
    let model = FnDenoiser::new(Prediction::Sample, |x: Tensor<B, 2>, _t| {
        x.zeros_like().add_scalar(3.0)
    });
    let noise =
        standard_normal::<B, 2>([16, 3], &mut StdRng::seed_from_u64(1), &Default::default());
    let mut largest = 0f32;
    let result = sample(
        &mut sampler,
        &model,
        noise,
        &mut StdRng::seed_from_u64(2),
        |event| {
            largest = largest.max(event.denoised.clone().abs().max().into_scalar());
        },
    )
    .unwrap();
    (largest, result)
}

/// Each σ-space sampler, built by `build` from a clipping setting, clamps x̂_0 to 0.5 when told
/// to (every step's x̂_0 within it, the result on it) and leaves it at 3 otherwise.
fn assert_clips<S: Sampler<B, 2>>(name: &str, build: impl Fn(SampleClipping) -> S) {
    let (largest, result) = run(build(clamp(0.5)));
    assert!(largest <= 0.5, "{name}: x̂_0 reached {largest}");
    let off: f32 = result.sub_scalar(0.5).abs().max().into_scalar();
    assert!(off < 1e-4, "{name}: clipped run ends {off} from 0.5");
    let (largest, result) = run(build(SampleClipping::default()));
    assert_eq!(largest, 3.0, "{name} unclipped");
    let off: f32 = result.sub_scalar(3.0).abs().max().into_scalar();
    assert!(off < 1e-4, "{name}: unclipped run ends {off} from 3");
}

#[test]
fn sigma_space_samplers_clip_their_prediction_of_x0() {
    let s = schedule();
    for ancestral in [false, true] {
        assert_clips("euler", |clipping| {
            let config = EulerConfig {
                ancestral,
                clipping,
                ..EulerConfig::default()
            };
            Euler::new(config, &s, 10).unwrap()
        });
        assert_clips("dpm2", |clipping| {
            let config = Dpm2Config {
                ancestral,
                clipping,
                ..Dpm2Config::default()
            };
            Dpm2::<B, 2>::new(config, &s, 10).unwrap()
        });
    }
    assert_clips("lms", |clipping| {
        let config = LmsConfig {
            clipping,
            ..LmsConfig::default()
        };
        Lms::<B, 2>::new(config, &s, 10).unwrap()
    });
    assert_clips("heun", |clipping| {
        let config = HeunConfig {
            clipping,
            ..HeunConfig::default()
        };
        Heun::<B, 2>::new(config, &s, 10).unwrap()
    });
    assert_clips("dpm++ sde", |clipping| {
        let config = DpmSolverSdeConfig {
            clipping,
            ..DpmSolverSdeConfig::default()
        };
        DpmSolverSde::<B, 2>::new(config, &s, 10).unwrap()
    });
}

#[test]
fn a_clamp_to_no_range_is_refused() {
    let s = schedule();
    let bad = clamp(0.0);
    let errors = [
        Euler::new(
            EulerConfig {
                clipping: bad,
                ..EulerConfig::default()
            },
            &s,
            10,
        )
        .err(),
        Lms::<B, 2>::new(
            LmsConfig {
                clipping: bad,
                ..LmsConfig::default()
            },
            &s,
            10,
        )
        .err(),
        Dpm2::<B, 2>::new(
            Dpm2Config {
                clipping: bad,
                ..Dpm2Config::default()
            },
            &s,
            10,
        )
        .err(),
        DpmSolverSde::<B, 2>::new(
            DpmSolverSdeConfig {
                clipping: bad,
                ..DpmSolverSdeConfig::default()
            },
            &s,
            10,
        )
        .err(),
    ];
    for error in errors {
        assert!(
            matches!(
                error,
                Some(SamplerError::OutOfRange {
                    name: "clip_sample_range",
                    ..
                })
            ),
            "{error:?}"
        );
    }
}
