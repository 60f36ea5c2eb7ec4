//! The variational bound's terms against closed forms: the Gaussian KL in its textbook form,
//! the discretised decoder's probabilities (which add up to 1 over the 256 levels), and the
//! learned variance's end points.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use kiln_forward::{ForwardProcess, discretized_gaussian_log_likelihood, normal_kl};
use kiln_schedule::{BetaSchedule, NoiseSchedule};

type B = Flex;

fn row(values: &[f64]) -> Tensor<B, 2> {
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let count = values.len();
    Tensor::from_data(TensorData::new(values, [1, count]), &Default::default())
}

fn values<const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    let values: Vec<f32> = tensor.into_data().to_vec().unwrap();
    values.into_iter().map(f64::from).collect()
}

fn linear_process() -> ForwardProcess<B> {
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    ForwardProcess::new(schedule, &Default::default())
}

#[test]
fn normal_kl_is_the_textbook_divergence() {
    // KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) = ln(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²)/(2σ₂²) − ½.
    let cases = [
        (0.3, 0.5, -0.2, 2.0),
        (1.0, 1e-3, 1.0, 1e-3),
        (-2.0, 4.0, 0.5, 0.25),
    ];
    for (mean1, var1, mean2, var2) in cases {
        let kl = normal_kl(
            row(&[mean1]),
            row(&[f64::ln(var1)]),
            row(&[mean2]),
            row(&[f64::ln(var2)]),
        );
        let (s1, s2) = (f64::sqrt(var1), f64::sqrt(var2));
        let expected =
            (s2 / s1).ln() + (var1 + (mean1 - mean2) * (mean1 - mean2)) / (2.0 * var2) - 0.5;
        let kl = values(kl)[0];
        assert!(
            (kl - expected).abs() <= 1e-5 * expected.abs().max(1.0),
            "{kl} vs {expected}"
        );
    }
}

/// The 256 levels of 8-bit data in [−1, 1].
fn levels() -> Vec<f64> {
    (0..256).map(|k| -1.0 + 2.0 * k as f64 / 255.0).collect()
}

#[test]
fn the_discretised_decoder_spreads_probability_one_over_the_256_levels() {
    let levels = levels();
    for (mean, variance) in [
        (0.0, 1.0),
        (0.7, 0.01),
        (-1.3, 0.2),
        (0.2, 1e-5),
        (0.0, 25.0),
    ] {
        let log_likelihood = discretized_gaussian_log_likelihood(
            row(&levels),
            row(&vec![mean; 256]),
            row(&vec![f64::ln(variance); 256]),
        );
        let total: f64 = values(log_likelihood).into_iter().map(f64::exp).sum();
        assert!(
            (total - 1.0).abs() < 2e-4,
            "N({mean}, {variance}): the levels' probabilities add up to {total}"
        );
    }
}

#[test]
fn the_discretised_decoder_gives_a_level_the_mass_around_it() {
    // N(x, 1) over a level x (its bin x ± h, h = 1/255): 2h·φ(0)·(1 − h²/6) to O(h⁵).
    let h = 1.0 / 255.0;
    let expected = 2.0 * h / f64::sqrt(2.0 * std::f64::consts::PI) * (1.0 - h * h / 6.0);
    let level = levels()[128];
    let centred = discretized_gaussian_log_likelihood(row(&[level]), row(&[level]), row(&[0.0]));
    let probability = values(centred)[0].exp();
    assert!(
        (probability / expected - 1.0).abs() < 1e-3,
        "{probability} vs {expected}"
    );
    // A Gaussian far narrower than a bin puts all its mass on the level it sits on.
    let sharp =
        discretized_gaussian_log_likelihood(row(&[0.2]), row(&[0.2]), row(&[f64::ln(1e-8)]));
    assert!(values(sharp)[0].abs() < 1e-6);
}

#[test]
fn the_learned_variance_spans_the_posterior_variance_to_beta() {
    let process = linear_process();
    let schedule = process.schedule().clone();
    let timesteps = [0, 1, 500, 999];
    for (v, expect) in [(-1.0, 0.0), (1.0, 1.0), (0.0, 0.5)] {
        let log_variance = process
            .learned_log_variance(
                Tensor::<B, 2>::full([4, 3], v, &Default::default()),
                &timesteps,
            )
            .unwrap();
        let log_variance = values(log_variance);
        for (i, &t) in timesteps.iter().enumerate() {
            // log β̃ clipped: β̃_0 = 0 is taken as β̃_1.
            let low = schedule.posterior_variance()[t.max(1)].ln();
            let high = schedule.betas()[t].ln();
            let expected = low + expect * (high - low);
            for &got in &log_variance[3 * i..3 * i + 3] {
                assert!(
                    (got - expected).abs() < 1e-4,
                    "t {t}, v {v}: {got} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn the_bound_is_zero_for_the_true_posterior_and_grows_with_the_squared_error() {
    let process = linear_process();
    let schedule = process.schedule().clone();
    let device = Default::default();
    let timesteps = [1, 10, 500, 999];
    let x0 = Tensor::<B, 2>::from_data(
        TensorData::new(vec![0.2f32, -0.6, 0.9, 0.0, -1.0, 0.4, 1.0, -0.2], [4, 2]),
        &device,
    );
    let x_t = x0.clone().mul_scalar(0.8).add_scalar(0.1);
    let truth = process
        .q_posterior(x0.clone(), x_t.clone(), &timesteps)
        .unwrap()
        .log_variance_clipped
        .expand([4, 2]);
    let exact = process
        .vlb_terms(
            x0.clone(),
            x_t.clone(),
            &timesteps,
            x0.clone(),
            truth.clone(),
        )
        .unwrap();
    assert!(values(exact).iter().all(|bits| bits.abs() < 1e-5));
    // x̂_0 off by d moves the mean by c1_t·d: KL = (c1_t d)²/(2 β̃_t) nats per value.
    let d = 0.5;
    let off = process
        .vlb_terms(x0.clone(), x_t, &timesteps, x0.add_scalar(d), truth)
        .unwrap();
    for (&t, bits) in timesteps.iter().zip(values(off)) {
        let shift = schedule.posterior_mean_coef1()[t] * d;
        let expected =
            shift * shift / (2.0 * schedule.posterior_variance()[t]) / std::f64::consts::LN_2;
        // f32 cancellation leaves ~1e-7 of a nat where the KL is tiny (t = 999).
        assert!(
            (bits - expected).abs() < 1e-3 * expected + 1e-6,
            "t {t}: {bits} bits vs {expected}"
        );
    }
}

#[test]
fn the_bound_at_timestep_zero_is_the_decoders_negative_log_likelihood() {
    let process = linear_process();
    let device = Default::default();
    let x0 = Tensor::<B, 2>::from_data(
        TensorData::new(vec![-1.0f32, -0.2, 0.6, 1.0], [1, 4]),
        &device,
    );
    let x_t = x0.clone().add_scalar(0.01);
    let predicted = x0.clone().add_scalar(0.003);
    let log_variance = Tensor::<B, 2>::full([1, 4], f64::ln(2e-5), &device);
    let bits = values(
        process
            .vlb_terms(
                x0.clone(),
                x_t,
                &[0],
                predicted.clone(),
                log_variance.clone(),
            )
            .unwrap(),
    )[0];
    // At t = 0 the posterior mean is x̂_0 itself (c1 = 1, c2 = 0).
    let nats = values(discretized_gaussian_log_likelihood(
        x0,
        predicted,
        log_variance,
    ));
    let expected = -nats.iter().sum::<f64>() / 4.0 / std::f64::consts::LN_2;
    assert!((bits - expected).abs() < 1e-4, "{bits} vs {expected}");
    assert!(bits > 0.0);
}
