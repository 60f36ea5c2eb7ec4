//! The forward process against closed forms and against itself (jump vs. Markov chain).

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::{ForwardError, ForwardProcess, LossWeighting, Prediction, standard_normal};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

fn process(beta: BetaSchedule, timesteps: usize) -> ForwardProcess<B> {
    ForwardProcess::new(
        NoiseSchedule::new(&beta, timesteps).unwrap(),
        &Default::default(),
    )
}

fn values<const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().to_vec().unwrap()
}

fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    values((a - b).abs().max())[0]
}

/// Per-column sample mean and variance of a `[rows, columns]` tensor.
fn column_moments(x: Tensor<B, 2>) -> (Vec<f64>, Vec<f64>) {
    let [rows, columns] = x.dims();
    let data = values(x);
    let mut mean = vec![0.0; columns];
    let mut var = vec![0.0; columns];
    for row in data.chunks(columns) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / rows as f64;
        }
    }
    for row in data.chunks(columns) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2) / (rows - 1) as f64;
        }
    }
    (mean, var)
}

/// The O(1) jump and t + 1 Markov steps reach the same Gaussian: for n independent draws the
/// sample mean has standard error √(var/n) and the sample variance √(2/(n−1))·var, so both are
/// checked to 5 standard errors (a false alarm has probability ~6e-7 per comparison).
#[test]
fn jump_and_markov_chain_agree_in_distribution() {
    let device = Default::default();
    let forward = process(BetaSchedule::cosine(), 200);
    let mut rng = StdRng::seed_from_u64(1);
    let draws = 20_000;
    // Each column starts from a different clean value; each row is an independent draw.
    let clean = [-1.0f32, -0.3, 0.0, 0.5, 1.0];
    let x0 = Tensor::<B, 1>::from_floats(clean, &device)
        .unsqueeze::<2>()
        .repeat_dim(0, draws);
    let shape = [draws, clean.len()];
    for t in [0, 9, 99, 199] {
        let abar = forward.schedule().alphas_cumprod()[t];
        let timesteps = vec![t; draws];
        let jumped = forward
            .q_sample(
                x0.clone(),
                &timesteps,
                standard_normal(shape, &mut rng, &device),
            )
            .unwrap();
        let mut chained = x0.clone();
        for step in 0..=t {
            let noise = standard_normal(shape, &mut rng, &device);
            chained = forward.q_step(chained, &vec![step; draws], noise).unwrap();
        }
        for x in [jumped, chained] {
            let (mean, var) = column_moments(x);
            let expected_var = 1.0 - abar;
            for (column, &c) in clean.iter().enumerate() {
                let expected_mean = abar.sqrt() * c as f64;
                let mean_tolerance = 5.0 * (expected_var / draws as f64).sqrt();
                let var_tolerance = 5.0 * (2.0 / (draws - 1) as f64).sqrt() * expected_var;
                assert!(
                    (mean[column] - expected_mean).abs() < mean_tolerance,
                    "t={t} column {column}: mean {} vs {expected_mean}",
                    mean[column]
                );
                assert!(
                    (var[column] - expected_var).abs() < var_tolerance,
                    "t={t} column {column}: variance {} vs {expected_var}",
                    var[column]
                );
            }
        }
    }
}

#[test]
fn q_sample_is_the_closed_form() {
    let device = Default::default();
    let forward = process(BetaSchedule::linear(), 1000);
    let x0 = Tensor::<B, 2>::from_floats([[0.5, -0.5], [1.0, 0.25]], &device);
    let noise = Tensor::<B, 2>::from_floats([[1.0, 2.0], [-1.0, 0.0]], &device);
    let x_t = values(forward.q_sample(x0, &[0, 999], noise).unwrap());
    let s = forward.schedule();
    let (a0, s0) = (
        s.sqrt_alphas_cumprod()[0],
        s.sqrt_one_minus_alphas_cumprod()[0],
    );
    let (a1, s1) = (
        s.sqrt_alphas_cumprod()[999],
        s.sqrt_one_minus_alphas_cumprod()[999],
    );
    let expected = [0.5 * a0 + s0, -0.5 * a0 + 2.0 * s0, a1 - s1, 0.25 * a1];
    for (got, want) in x_t.iter().zip(expected) {
        assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }
}

/// The posterior by Bayes' rule for the two Gaussians q(x_{t−1}|x_0) and q(x_t|x_{t−1}):
/// precision 1/(1 − ᾱ_{t−1}) + α_t/β_t, mean (√ᾱ_{t−1} x_0/(1 − ᾱ_{t−1}) + √α_t x_t/β_t)/precision.
#[test]
fn posterior_matches_bayes_rule() {
    let device = Default::default();
    let forward = process(BetaSchedule::scaled_linear(), 1000);
    let s = forward.schedule().clone();
    let timesteps = [0usize, 1, 500, 999];
    let x0 = Tensor::<B, 2>::from_floats([[0.8], [-0.4], [0.1], [1.0]], &device);
    let x_t = Tensor::<B, 2>::from_floats([[0.3], [0.7], [-1.2], [2.0]], &device);
    let posterior = forward
        .q_posterior(x0.clone(), x_t.clone(), &timesteps)
        .unwrap();
    let (clean, noisy) = (values(x0), values(x_t));
    let (mean, variance) = (values(posterior.mean), values(posterior.variance));
    for (i, &t) in timesteps.iter().enumerate() {
        let (x0, xt) = (clean[i] as f64, noisy[i] as f64);
        let (expected_mean, expected_var) = if t == 0 {
            (x0, 0.0)
        } else {
            let prior_var = 1.0 - s.alphas_cumprod()[t - 1];
            let (alpha, beta) = (s.alphas()[t], s.betas()[t]);
            let precision = 1.0 / prior_var + alpha / beta;
            let weighted =
                s.sqrt_alphas_cumprod()[t - 1] * x0 / prior_var + alpha.sqrt() * xt / beta;
            (weighted / precision, 1.0 / precision)
        };
        assert!((mean[i] as f64 - expected_mean).abs() < 1e-5, "t={t}");
        assert!(
            (variance[i] as f64 - expected_var).abs() < 1e-6 * expected_var.max(1e-3),
            "t={t}"
        );
    }
    assert_eq!(
        values(posterior.log_variance_clipped)[0] as f64,
        s.posterior_variance()[1].ln() as f32 as f64
    );
}

const KINDS: [Prediction; 4] = [
    Prediction::Epsilon,
    Prediction::Sample,
    Prediction::V,
    Prediction::Flow,
];

#[test]
fn predictions_convert_into_each_other() {
    let device = Default::default();
    for forward in [
        process(BetaSchedule::linear(), 1000),
        ForwardProcess::new(
            NoiseSchedule::new(&BetaSchedule::linear(), 1000)
                .unwrap()
                .rescale_zero_terminal_snr()
                .unwrap(),
            &device,
        ),
    ] {
        let mut rng = StdRng::seed_from_u64(2);
        let timesteps = [0, 1, 250, 998];
        let x0 = standard_normal::<B, 4>([4, 2, 3, 3], &mut rng, &device);
        let noise = standard_normal::<B, 4>([4, 2, 3, 3], &mut rng, &device);
        let x_t = forward
            .q_sample(x0.clone(), &timesteps, noise.clone())
            .unwrap();
        let target = |kind| {
            forward
                .target(kind, x0.clone(), noise.clone(), &timesteps)
                .unwrap()
        };
        for from in KINDS {
            for to in KINDS {
                let converted = forward
                    .convert(target(from), x_t.clone(), &timesteps, from, to)
                    .unwrap();
                let error = max_abs_diff(converted.clone(), target(to));
                assert!(error < 2e-3, "{from:?} -> {to:?}: {error}");
                let back = forward
                    .convert(converted, x_t.clone(), &timesteps, to, from)
                    .unwrap();
                assert!(
                    max_abs_diff(back, target(from)) < 2e-3,
                    "{from:?} -> {to:?} -> back"
                );
            }
        }
    }
}

#[test]
fn v_target_is_the_closed_form() {
    let device = Default::default();
    let forward = process(BetaSchedule::linear(), 1000);
    let x0 = Tensor::<B, 1>::from_floats([0.5], &device);
    let noise = Tensor::<B, 1>::from_floats([-2.0], &device);
    let v = values(forward.target(Prediction::V, x0, noise, &[600]).unwrap())[0] as f64;
    let s = forward.schedule();
    let expected =
        s.sqrt_alphas_cumprod()[600] * -2.0 - s.sqrt_one_minus_alphas_cumprod()[600] * 0.5;
    assert!((v - expected).abs() < 1e-6);
}

/// The flow target is ε − x_0 at every timestep, and x_t on the rectified-flow schedule is
/// the straight path's x_σ = (1 − σ) x_0 + σ ε divided by √((1 − σ)² + σ²), σ = (t + 1)/T.
#[test]
fn flow_target_is_the_velocity_of_the_straight_path() {
    let device = Default::default();
    let forward = process(BetaSchedule::rectified_flow(), 1000);
    let x0 = Tensor::<B, 1>::from_floats([0.5, 0.5, 0.5], &device);
    let noise = Tensor::<B, 1>::from_floats([-2.0, -2.0, -2.0], &device);
    let timesteps = [0, 599, 999];
    let u = values(
        forward
            .target(Prediction::Flow, x0.clone(), noise.clone(), &timesteps)
            .unwrap(),
    );
    assert_eq!(u, [-2.5; 3]);
    let x_t = values(forward.q_sample(x0, &timesteps, noise).unwrap());
    for (got, t) in x_t.iter().zip(timesteps) {
        let sigma = (t + 1) as f64 / 1000.0;
        let norm = ((1.0 - sigma).powi(2) + sigma * sigma).sqrt();
        let expected = ((1.0 - sigma) * 0.5 + sigma * -2.0) / norm;
        assert!(
            (f64::from(*got) - expected).abs() < 1e-6,
            "t = {t}: {got} against {expected}"
        );
    }
}

#[test]
fn epsilon_says_nothing_about_x0_at_zero_snr() {
    let device = Default::default();
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 10)
        .unwrap()
        .rescale_zero_terminal_snr()
        .unwrap();
    let forward = ForwardProcess::<B>::new(schedule, &device);
    let x = Tensor::<B, 2>::ones([2, 3], &device);
    let result = forward.convert(
        x.clone(),
        x.clone(),
        &[3, 9],
        Prediction::Epsilon,
        Prediction::Sample,
    );
    assert_eq!(
        result.unwrap_err(),
        ForwardError::Undetermined {
            timestep: 9,
            from: Prediction::Epsilon,
            to: Prediction::Sample
        }
    );
    // v still determines x_0 there: x_0 = −v when ᾱ = 0.
    let clean = forward
        .convert(x.clone(), x, &[9, 9], Prediction::V, Prediction::Sample)
        .unwrap();
    assert_eq!(values(clean), vec![-1.0; 6]);
}

/// Min-SNR weights make the four targets' weighted losses equal for the same x̂_0 error,
/// which is what "the x_0 loss weighted by min(SNR, γ)" means for each target.
#[test]
fn min_snr_weights_agree_across_targets() {
    let device = Default::default();
    let forward = process(BetaSchedule::cosine(), 1000);
    let mut rng = StdRng::seed_from_u64(3);
    let timesteps = [0, 100, 500, 900, 999];
    let shape = [5, 16];
    let x0 = standard_normal::<B, 2>(shape, &mut rng, &device);
    let noise = standard_normal::<B, 2>(shape, &mut rng, &device);
    let x_t = forward.q_sample(x0.clone(), &timesteps, noise).unwrap();
    // A wrong x_0 estimate, expressed in each target's terms.
    let guess = x0.clone() + standard_normal::<B, 2>(shape, &mut rng, &device).mul_scalar(0.1);
    let weighting = LossWeighting::MinSnr { gamma: 5.0 };
    let weighted_loss = |kind: Prediction| {
        let true_target = forward
            .convert(
                x0.clone(),
                x_t.clone(),
                &timesteps,
                Prediction::Sample,
                kind,
            )
            .unwrap();
        let guessed = forward
            .convert(
                guess.clone(),
                x_t.clone(),
                &timesteps,
                Prediction::Sample,
                kind,
            )
            .unwrap();
        let per_sample: Tensor<B, 1> = (guessed - true_target)
            .powi_scalar(2)
            .mean_dim(1)
            .squeeze_dim(1);
        values(per_sample * forward.loss_weights(weighting, kind, &timesteps).unwrap())
    };
    let reference = weighted_loss(Prediction::Sample);
    for kind in [Prediction::Epsilon, Prediction::V, Prediction::Flow] {
        for (got, want) in weighted_loss(kind).iter().zip(&reference) {
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1e-4),
                "{kind:?}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn min_snr_weights_are_finite_at_zero_and_infinite_snr() {
    let weighting = LossWeighting::MinSnr { gamma: 5.0 };
    let weight = |snr, kind| weighting.weight(snr, kind).unwrap();
    assert_eq!(weight(0.0, Prediction::Epsilon), 1.0);
    assert_eq!(weight(0.0, Prediction::Sample), 0.0);
    assert_eq!(weight(0.0, Prediction::V), 0.0);
    assert_eq!(weight(f64::INFINITY, Prediction::Epsilon), 0.0);
    assert_eq!(weight(f64::INFINITY, Prediction::Sample), 5.0);
    assert_eq!(weight(f64::INFINITY, Prediction::V), 0.0);
    assert_eq!(weight(20.0, Prediction::Epsilon), 0.25);
    assert_eq!(weight(1.0, Prediction::V), 0.5);
    assert_eq!(LossWeighting::Uniform.weight(0.0, Prediction::V), Ok(1.0));
    for gamma in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            LossWeighting::MinSnr { gamma }
                .weight(1.0, Prediction::V)
                .is_err()
        );
    }
}

#[test]
fn bad_arguments_are_named_errors() {
    let device = Default::default();
    let forward = process(BetaSchedule::linear(), 100);
    let x = Tensor::<B, 3>::zeros([2, 4, 4], &device);
    assert_eq!(
        forward.q_sample(x.clone(), &[1], x.clone()).unwrap_err(),
        ForwardError::BatchMismatch {
            timesteps: 1,
            batch: 2
        }
    );
    assert_eq!(
        forward.q_step(x.clone(), &[1, 100], x.clone()).unwrap_err(),
        ForwardError::TimestepOutOfRange {
            timestep: 100,
            num_timesteps: 100
        }
    );
    assert_eq!(
        forward
            .q_posterior(x.clone(), Tensor::zeros([2, 4, 5], &device), &[1, 2])
            .unwrap_err(),
        ForwardError::ShapeMismatch {
            name: "x_t",
            expected: vec![2, 4, 4],
            actual: vec![2, 4, 5]
        }
    );
    assert!(
        forward
            .loss_weights(LossWeighting::Uniform, Prediction::V, &[7, 100])
            .is_err()
    );
    let message = forward
        .q_sample(x.clone(), &[5, 300], x)
        .unwrap_err()
        .to_string();
    assert!(message.contains("300"), "{message}");
}
