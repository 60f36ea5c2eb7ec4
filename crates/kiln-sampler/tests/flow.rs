//! The rectified-flow samplers against diffusers' `FlowMatchEulerDiscreteScheduler` and
//! `FlowMatchHeunDiscreteScheduler` (`benches/peer/flow_fixtures.py`), and against the exact
//! flow of Gaussian data.

#[path = "../../kiln-schedule/tests/support/flow_settings.rs"]
mod flow_settings;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use flow_settings::flow_settings;
use kiln_forward::standard_normal;
use kiln_sampler::{
    Ddim, DdimConfig, FlowEuler, FlowEulerConfig, FlowHeun, FlowSampler, FnDenoiser, FnVelocity,
    Prediction, SampleClipping, SamplerError, VelocityModel, sample, sample_flow,
};
use kiln_schedule::{
    BetaSchedule, FlowSchedule, FlowShift, GridEnd, NoiseSchedule, ScheduleError, TimestepGrid,
    TimestepSpacing,
};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

/// diffusers' scheduler-test model x·t/(t + 1), read as a velocity.
fn dummy() -> FnVelocity<impl Fn(Tensor<B, 4>, f64) -> Tensor<B, 4>> {
    FnVelocity(|x: Tensor<B, 4>, t: f64| x.mul_scalar(t / (t + 1.0)))
}

/// Eight standard normal values, shaped as diffusers' test samples are.
fn sample_values() -> Tensor<B, 4> {
    standard_normal::<B, 4>(
        [2, 1, 2, 2],
        &mut StdRng::seed_from_u64(7),
        &Default::default(),
    )
}

fn values<const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data().to_vec::<f32>().unwrap()
}

fn run(sampler: &mut impl FlowSampler<B, 4>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    sample_flow(sampler, &dummy(), x, &mut StdRng::seed_from_u64(0), |_| {}).unwrap()
}

/// Every loop of the fixtures (Euler: 5 shifts × 4 spacings, with and without
/// `shift_terminal`, 1, 4 and 10 steps; Heun: shift 1 and 3, 1–10 steps) ends where diffusers'
/// does, element for element to 1e-5 relative (plus f32's cancellation in the first step), and Heun calls the model at diffusers'
/// timesteps.
#[test]
fn loops_match_diffusers_element_for_element() {
    let lines: Vec<&str> = include_str!("fixtures/flow.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 108);
    for line in lines {
        let fields: Vec<&str> = line.split(" | ").collect();
        let (schedule, steps, settings) = flow_settings(fields[0]);
        let m: f64 = fields[1].parse().unwrap();
        let x = sample_values();
        let got = match settings["sampler"] {
            "euler" => run(
                &mut FlowEuler::new(FlowEulerConfig::default(), &schedule, steps).unwrap(),
                x.clone(),
            ),
            "heun" => {
                let mut heun = FlowHeun::new(&schedule, steps).unwrap();
                let calls: Vec<f64> = fields[2].split(' ').map(|t| t.parse().unwrap()).collect();
                let timesteps = FlowSampler::<B, 4>::timesteps(&heun);
                assert_eq!(timesteps.len(), calls.len(), "{line}");
                for (got, want) in timesteps.iter().zip(&calls) {
                    assert!((got - want).abs() <= 1e-6 * want, "{line}: call at {got}");
                }
                run(&mut heun, x.clone())
            }
            other => panic!("unknown sampler {other}"),
        };
        for (got, start) in values(got).into_iter().zip(values(x)) {
            let want = m * start as f64;
            // One step from σ = 1 cancels x − x·t/(t + 1) in f32, on both sides.
            let tolerance = 1e-5 * want.abs() + 2e-7 * f64::from(start.abs());
            assert!(
                (got as f64 - want).abs() <= tolerance,
                "{line}: {got} against {want}"
            );
        }
    }
}

/// The exact velocity of data x_0 ~ N(0, s²) in each coordinate: x_σ ~ N(0, v(σ)) with
/// v = (1 − σ)² s² + σ², and u = E[ε − x_0 | x_σ] = (σ − (1 − σ) s²)/v · x_σ. The ODE takes
/// x_1 = z to x_0 = s z.
fn gaussian_flow(s: f64) -> FnVelocity<impl Fn(Tensor<B, 2>, f64) -> Tensor<B, 2>> {
    gaussian_flow_over(s, 1000.0)
}

/// [`gaussian_flow`] for a model called at σ·`train_timesteps`.
fn gaussian_flow_over(
    s: f64,
    train_timesteps: f64,
) -> FnVelocity<impl Fn(Tensor<B, 2>, f64) -> Tensor<B, 2>> {
    FnVelocity(move |x: Tensor<B, 2>, t: f64| {
        let sigma = t / train_timesteps;
        let variance = (1.0 - sigma).powi(2) * s * s + sigma * sigma;
        x.mul_scalar((sigma - (1.0 - sigma) * s * s) / variance)
    })
}

/// The largest distance from s·z after sampling the Gaussian flow from z.
fn gaussian_error(sampler: &mut impl FlowSampler<B, 2>, s: f64) -> f64 {
    let z = standard_normal::<B, 2>([16, 2], &mut StdRng::seed_from_u64(3), &Default::default());
    let x0 = sample_flow(
        sampler,
        &gaussian_flow(s),
        z.clone(),
        &mut StdRng::seed_from_u64(0),
        |_| {},
    )
    .unwrap();
    let error = (x0 - z.mul_scalar(s)).abs().max();
    f64::from(error.into_scalar())
}

/// Euler's error falls as 1/N and Heun's as 1/N² on the exact flow of Gaussian data.
#[test]
fn euler_is_first_order_and_heun_second() {
    let s = 0.5;
    let schedule = FlowSchedule::default();
    let euler = |steps| {
        gaussian_error(
            &mut FlowEuler::new(FlowEulerConfig::default(), &schedule, steps).unwrap(),
            s,
        )
    };
    let heun = |steps| gaussian_error(&mut FlowHeun::new(&schedule, steps).unwrap(), s);
    let (euler_20, euler_40) = (euler(20), euler(40));
    let (heun_20, heun_40) = (heun(20), heun(40));
    println!(
        "largest error, 20 and 40 steps: Euler {euler_20:.3e} {euler_40:.3e}, Heun {heun_20:.3e} {heun_40:.3e}"
    );
    let euler_ratio = euler_20 / euler_40;
    let heun_ratio = heun_20 / heun_40;
    assert!(
        (1.7..2.3).contains(&euler_ratio),
        "Euler: {euler_20} then {euler_40}"
    );
    assert!(heun_ratio > 3.3, "Heun: {heun_20} then {heun_40}");
    assert!(heun_20 < euler_20 / 5.0, "Heun {heun_20}, Euler {euler_20}");
}

/// Kiln's own rectified flow is a variance-preserving model: `flow_prediction` over the
/// `rectified_flow` β schedule, fed x_t = x_σ / √((1 − σ)² + σ²). Deterministic DDIM on it
/// steps exactly as the flow Euler sampler does on x_σ: with T = N = 10, `trailing` DDIM
/// visits σ = 1, 0.9, …, 0.1, the flow grid of 10 steps over 10 timesteps, and both end at
/// σ = 0.
#[test]
fn ddim_on_the_rectified_flow_schedule_is_flow_euler() {
    let s = 0.5;
    let train = 10;
    let velocity = gaussian_flow_over(s, train as f64);
    let on_vp_scale = FnDenoiser::new(Prediction::Flow, |x: Tensor<B, 2>, t: f64| {
        let sigma = (t + 1.0) / train as f64;
        let norm = ((1.0 - sigma).powi(2) + sigma * sigma).sqrt();
        velocity
            .velocity(x.mul_scalar(norm), sigma * train as f64)
            .unwrap()
    });
    let schedule = NoiseSchedule::new(&BetaSchedule::rectified_flow(), train).unwrap();
    let config = DdimConfig {
        clipping: SampleClipping::default(),
        grid: TimestepGrid::new(TimestepSpacing::Trailing, GridEnd::AtLastStep),
        ..DdimConfig::default()
    };
    let mut ddim = Ddim::new(config, &schedule, train).unwrap();
    let z = standard_normal::<B, 2>([16, 2], &mut StdRng::seed_from_u64(3), &Default::default());
    let rng = &mut StdRng::seed_from_u64(0);
    let by_ddim = sample(&mut ddim, &on_vp_scale, z.clone(), rng, |_| {}).unwrap();
    let flow = FlowSchedule {
        train_timesteps: train,
        ..FlowSchedule::default()
    };
    let mut euler = FlowEuler::new(FlowEulerConfig::default(), &flow, train).unwrap();
    let by_euler = sample_flow(&mut euler, &velocity, z, rng, |_| {}).unwrap();
    let difference = (by_ddim - by_euler).abs().max().into_scalar();
    assert!(difference < 1e-5, "{difference}");
}

/// Data that is always c: the path is straight, so one Euler step, any number of Heun steps,
/// and stochastic Euler (which renoises from x̂_0 = c) all land on c exactly.
#[test]
fn a_point_mass_is_reached_exactly() {
    let c = 0.75;
    let to_c = FnVelocity(move |x: Tensor<B, 2>, t: f64| {
        let sigma = t / 1000.0;
        x.sub_scalar(c).div_scalar(sigma)
    });
    let shifted = FlowSchedule {
        shift: FlowShift::Static(3.0),
        ..FlowSchedule::default()
    };
    let stochastic = FlowEulerConfig { stochastic: true };
    let mut samplers: Vec<Box<dyn FnMut() -> Tensor<B, 2>>> = Vec::new();
    for steps in [1, 7] {
        let noise =
            || standard_normal::<B, 2>([6, 3], &mut StdRng::seed_from_u64(1), &Default::default());
        let rng = || StdRng::seed_from_u64(2);
        let euler = FlowEuler::new(FlowEulerConfig::default(), &shifted, steps).unwrap();
        let renoised = FlowEuler::new(stochastic, &shifted, steps).unwrap();
        let heun = FlowHeun::<B, 2>::new(&shifted, steps).unwrap();
        samplers.push(Box::new(move || {
            sample_flow(&mut euler.clone(), &to_c, noise(), &mut rng(), |_| {}).unwrap()
        }));
        samplers.push(Box::new(move || {
            sample_flow(&mut renoised.clone(), &to_c, noise(), &mut rng(), |_| {}).unwrap()
        }));
        samplers.push(Box::new(move || {
            sample_flow(&mut heun.clone(), &to_c, noise(), &mut rng(), |_| {}).unwrap()
        }));
    }
    for (i, run) in samplers.iter_mut().enumerate() {
        for value in values(run()) {
            assert!((value - c as f32).abs() < 1e-5, "sampler {i}: {value}");
        }
    }
}

/// A stochastic step is (1 − σ') x̂_0 + σ' z with z drawn from the caller's generator, and
/// reports x̂_0 = x − σ u; the last step returns x̂_0 itself.
#[test]
fn stochastic_euler_renoises_from_the_estimate() {
    let schedule = FlowSchedule::default();
    let mut euler = FlowEuler::new(FlowEulerConfig { stochastic: true }, &schedule, 4).unwrap();
    let sigmas = euler.sigmas().to_vec();
    let device = Default::default();
    let x = Tensor::<B, 2>::from_data(TensorData::new(vec![0.5f32, -1.0, 2.0], [1, 3]), &device);
    let u = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32, 0.25, -0.5], [1, 3]), &device);
    let step = euler
        .step(1, u.clone(), x.clone(), &mut StdRng::seed_from_u64(9))
        .unwrap();
    let z = standard_normal::<B, 2>([1, 3], &mut StdRng::seed_from_u64(9), &device);
    let denoised = x.clone() - u.clone().mul_scalar(sigmas[1]);
    let expected = denoised.clone().mul_scalar(1.0 - sigmas[2]) + z.mul_scalar(sigmas[2]);
    for (got, want) in values(step.sample).into_iter().zip(values(expected)) {
        assert!((got - want).abs() < 1e-6, "{got} against {want}");
    }
    assert_eq!(values(step.denoised), values(denoised));
    let last = euler
        .step(3, u.clone(), x.clone(), &mut StdRng::seed_from_u64(9))
        .unwrap();
    assert_eq!(values(last.sample), values(last.denoised));
}

/// Bad uses are typed errors: zero steps, a velocity of another shape, a step past the end,
/// Heun's calls out of order or a trajectory started at a corrector; and a model's own error
/// reaches the caller.
#[test]
fn bad_uses_are_refused() {
    let schedule = FlowSchedule::default();
    assert_eq!(
        FlowEuler::new(FlowEulerConfig::default(), &schedule, 0).unwrap_err(),
        SamplerError::Schedule(ScheduleError::ZeroSteps)
    );
    let device = Default::default();
    let x = Tensor::<B, 2>::ones([2, 3], &device);
    let wide = Tensor::<B, 2>::ones([2, 6], &device);
    let rng = &mut StdRng::seed_from_u64(0);
    let mut euler = FlowEuler::new(FlowEulerConfig::default(), &schedule, 3).unwrap();
    assert!(matches!(
        euler.step(0, wide.clone(), x.clone(), rng),
        Err(SamplerError::ShapeMismatch { .. })
    ));
    assert_eq!(
        euler.step(3, x.clone(), x.clone(), rng).unwrap_err(),
        SamplerError::StepOutOfRange { index: 3, steps: 3 }
    );
    let mut heun = FlowHeun::<B, 2>::new(&schedule, 3).unwrap();
    assert_eq!(FlowSampler::<B, 2>::timesteps(&heun).len(), 5);
    assert!(matches!(
        heun.step(2, x.clone(), x.clone(), rng),
        Err(SamplerError::OutOfOrder {
            index: 2,
            expected: 0,
            ..
        })
    ));
    assert!(matches!(
        heun.restart(1),
        Err(SamplerError::CannotStartAt { index: 1, .. })
    ));
    assert!(matches!(
        heun.step(0, wide, x.clone(), rng),
        Err(SamplerError::ShapeMismatch { .. })
    ));
    struct Refusing;
    impl VelocityModel<B, 2> for Refusing {
        fn velocity(&self, _: Tensor<B, 2>, _: f64) -> Result<Tensor<B, 2>, SamplerError> {
            Err(SamplerError::ClassOutOfRange {
                class: 3,
                classes: 2,
            })
        }
    }
    assert_eq!(
        sample_flow(&mut heun, &Refusing, x, rng, |_| {}).unwrap_err(),
        SamplerError::ClassOutOfRange {
            class: 3,
            classes: 2
        }
    );
}

/// `sample_flow` reports every call in order, at its timestep, with x̂_0 = x − σu.
#[test]
fn progress_reports_every_call() {
    let schedule = FlowSchedule::default();
    let mut heun = FlowHeun::<B, 2>::new(&schedule, 4).unwrap();
    let expected: Vec<f64> = FlowSampler::<B, 2>::timesteps(&heun).to_vec();
    let mut seen = Vec::new();
    let x = Tensor::<B, 2>::ones([1, 2], &Default::default());
    let model = FnVelocity(|x: Tensor<B, 2>, _t: f64| x.mul_scalar(0.5));
    sample_flow(
        &mut heun,
        &model,
        x,
        &mut StdRng::seed_from_u64(0),
        |event| {
            assert_eq!(event.steps, expected.len());
            seen.push((event.index, event.timestep));
        },
    )
    .unwrap();
    let want: Vec<(usize, f64)> = expected.into_iter().enumerate().collect();
    assert_eq!(seen, want);
}
