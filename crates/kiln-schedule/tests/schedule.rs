//! Schedules against closed forms and against the values `tests/reference.py` computes with
//! numpy by diffusers' formulas.

use kiln_schedule::{
    BetaSchedule, GridEnd, NoiseSchedule, ScheduleError, TimestepGrid, TimestepSpacing,
    beta_sigmas, karras_sigmas, uniform_lambda_sigmas,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn schedule(beta: BetaSchedule) -> NoiseSchedule {
    NoiseSchedule::new(&beta, 1000).unwrap()
}

fn assert_rel(actual: f64, expected: f64, tolerance: f64) {
    let error = ((actual - expected) / expected).abs();
    assert!(
        error <= tolerance,
        "{actual} differs from {expected} by {error:e} (relative), more than {tolerance:e}"
    );
}

#[test]
fn linear_matches_reference() {
    let s = schedule(BetaSchedule::linear());
    assert_eq!(s.betas()[0], 1e-4);
    assert_eq!(s.betas()[999], 0.02);
    assert_rel(s.alphas_cumprod()[999], 4.035829765375676e-05, 1e-12);
}

#[test]
fn scaled_linear_matches_reference() {
    let s = schedule(BetaSchedule::scaled_linear());
    assert_rel(s.betas()[500], 0.005742071067688482, 1e-12);
    assert_rel(s.alphas_cumprod()[999], 0.0007334124595808159, 1e-12);
}

#[test]
fn sigmoid_matches_reference() {
    let s = schedule(BetaSchedule::sigmoid());
    assert_rel(s.betas()[0], 0.00014920520081703202, 1e-12);
    assert_rel(s.betas()[500], 0.010079879790061013, 1e-12);
}

#[test]
fn cosine_matches_paper() {
    let s = schedule(BetaSchedule::cosine());
    assert_rel(s.betas()[0], 4.128422482196914e-05, 1e-9);
    assert_eq!(s.betas()[999], 0.999);
    assert_rel(s.alphas_cumprod()[500], 0.49228517244880304, 1e-12);
    // ᾱ follows the cosine closed form wherever β is below the cap.
    let alpha_bar = |tau: f64| {
        ((tau + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    for t in [0, 10, 250, 700, 990] {
        assert_rel(
            s.alphas_cumprod()[t],
            alpha_bar((t + 1) as f64 / 1000.0) / alpha_bar(0.0),
            1e-9,
        );
    }
}

#[test]
fn named_schedules_resolve() {
    assert_eq!(
        BetaSchedule::from_name("squaredcos_cap_v2"),
        Some(BetaSchedule::cosine())
    );
    assert_eq!(
        BetaSchedule::from_name("scaled_linear"),
        Some(BetaSchedule::scaled_linear())
    );
    assert_eq!(BetaSchedule::from_name("quadratic"), None);
}

#[test]
fn a_single_timestep_works_for_every_schedule() {
    for beta in [
        BetaSchedule::linear(),
        BetaSchedule::scaled_linear(),
        BetaSchedule::cosine(),
        BetaSchedule::sigmoid(),
    ] {
        let s = NoiseSchedule::new(&beta, 1).unwrap();
        assert_eq!(s.num_timesteps(), 1);
        assert!(s.posterior_log_variance_clipped()[0].is_finite());
    }
}

#[test]
fn zero_terminal_snr_rescaling_follows_algorithm_1() {
    let original = schedule(BetaSchedule::linear());
    let s = original.rescale_zero_terminal_snr().unwrap();
    assert_eq!(s.alphas_cumprod()[999], 0.0);
    assert!(s.ends_in_pure_noise() && !original.ends_in_pure_noise());
    assert_eq!(s.betas()[999], 1.0);
    assert_eq!(s.snr()[999], 0.0);
    assert_eq!(s.log_snr()[999], f64::NEG_INFINITY);
    assert_eq!(s.sigmas()[999], f64::INFINITY);
    assert_rel(s.alphas_cumprod()[0], original.alphas_cumprod()[0], 1e-12);
    assert_rel(s.alphas_cumprod()[500], 0.0752462157043267, 1e-10);
    assert_rel(s.betas()[998], 0.75226723115047, 1e-10);
    assert!(s.posterior_variance().iter().all(|v| v.is_finite()));
    assert_eq!(s.sigma_to_timestep(f64::INFINITY), 999.0);
    assert_eq!(
        NoiseSchedule::new(&BetaSchedule::linear(), 1)
            .unwrap()
            .rescale_zero_terminal_snr(),
        Err(ScheduleError::TooShortToRescale { timesteps: 1 })
    );
}

#[test]
fn posterior_mean_returns_the_previous_mean() {
    // With no noise, x_t = √ᾱ_t x_0 and the posterior mean is √ᾱ_{t−1} x_0:
    // c1_t + c2_t √ᾱ_t = √ᾱ_{t−1}.
    for beta in [BetaSchedule::linear(), BetaSchedule::cosine()] {
        let s = schedule(beta);
        for t in 0..1000 {
            let previous = if t == 0 {
                1.0
            } else {
                s.sqrt_alphas_cumprod()[t - 1]
            };
            let mean = s.posterior_mean_coef1()[t]
                + s.posterior_mean_coef2()[t] * s.sqrt_alphas_cumprod()[t];
            assert!(
                (mean - previous).abs() < 1e-12,
                "t = {t}: {mean} vs {previous}"
            );
        }
        assert_eq!(s.posterior_variance()[0], 0.0);
        assert_eq!(
            s.posterior_log_variance_clipped()[0],
            s.posterior_variance()[1].ln()
        );
    }
}

#[test]
fn posterior_variance_matches_gaussian_conditioning() {
    // β̃_t is the variance of x_{t−1} given x_t and x_0 for the joint Gaussian
    // x_{t−1} = √ᾱ_{t−1} x_0 + n_1, x_t = √α_t x_{t−1} + n_2:
    // Var = v1 − v1² α_t / (α_t v1 + β_t) with v1 = 1 − ᾱ_{t−1}.
    let s = schedule(BetaSchedule::sigmoid());
    for t in 1..1000 {
        let v1 = 1.0 - s.alphas_cumprod()[t - 1];
        let (alpha, beta) = (s.alphas()[t], s.betas()[t]);
        let expected = v1 - v1 * v1 * alpha / (alpha * v1 + beta);
        assert_rel(s.posterior_variance()[t], expected, 1e-9);
    }
}

#[test]
fn ddim_leading_with_offset() {
    let grid = TimestepGrid {
        spacing: TimestepSpacing::Leading,
        steps_offset: 1,
        end: GridEnd::AtLastStep,
    };
    assert_eq!(
        grid.discrete_timesteps(1000, 5).unwrap(),
        [801, 601, 401, 201, 1]
    );
}

#[test]
fn multistep_linspace_drops_the_end_point() {
    let grid = TimestepGrid {
        spacing: TimestepSpacing::Linspace,
        steps_offset: 0,
        end: GridEnd::BeforeZero,
    };
    assert_eq!(
        grid.discrete_timesteps(1000, 10).unwrap(),
        [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
    );
}

#[test]
fn multistep_leading_uses_n_plus_one_points() {
    let grid = TimestepGrid {
        spacing: TimestepSpacing::Leading,
        steps_offset: 1,
        end: GridEnd::BeforeZero,
    };
    assert_eq!(
        grid.discrete_timesteps(1000, 10).unwrap(),
        [901, 811, 721, 631, 541, 451, 361, 271, 181, 91]
    );
}

#[test]
fn trailing_starts_at_the_last_timestep() {
    for end in [GridEnd::AtLastStep, GridEnd::BeforeZero] {
        let grid = TimestepGrid {
            spacing: TimestepSpacing::Trailing,
            steps_offset: 0,
            end,
        };
        assert_eq!(
            grid.discrete_timesteps(1000, 7).unwrap(),
            [999, 856, 713, 570, 428, 285, 142]
        );
        // numpy's arange(T, 0, −T/N) yields N + 1 points for some N (61 among them), which
        // makes diffusers end on timestep −1; the grid keeps exactly N.
        let timesteps = grid.discrete_timesteps(1000, 61).unwrap();
        assert_eq!(timesteps.len(), 61);
        assert_eq!(*timesteps.last().unwrap(), 15);
    }
}

#[test]
fn euler_linspace_is_fractional() {
    let grid = TimestepGrid {
        spacing: TimestepSpacing::Linspace,
        steps_offset: 0,
        end: GridEnd::AtLastStep,
    };
    let timesteps = grid.timesteps(1100, 10).unwrap();
    assert_eq!(timesteps[0], 1099.0);
    assert_rel(timesteps[1], 976.8888888888889, 1e-15);
    assert_eq!(timesteps[9], 0.0);
}

#[test]
fn bad_inputs_are_named_errors() {
    use ScheduleError::*;
    let linear = |beta_start, beta_end| BetaSchedule::Linear {
        beta_start,
        beta_end,
    };
    assert_eq!(BetaSchedule::linear().betas(0), Err(ZeroTimesteps));
    assert_eq!(
        linear(0.02, 1e-4).betas(10),
        Err(DecreasingBetas {
            start: 0.02,
            end: 1e-4
        })
    );
    assert!(matches!(
        linear(f64::NAN, 0.02).betas(10),
        Err(NonFinite {
            name: "beta_start",
            ..
        })
    ));
    assert!(matches!(
        linear(1e-4, 1.5).betas(10),
        Err(OutOfRange {
            name: "beta_end",
            ..
        })
    ));
    assert!(matches!(
        linear(0.0, 0.02).betas(10),
        Err(OutOfRange {
            name: "beta_start",
            ..
        })
    ));
    assert_eq!(
        NoiseSchedule::from_betas(vec![0.1, 0.0, 0.2]),
        Err(BetaOutOfRange {
            index: 1,
            value: 0.0
        })
    );
    assert!(matches!(
        NoiseSchedule::from_betas(vec![0.1, f64::INFINITY]),
        Err(BetaOutOfRange { index: 1, .. })
    ));
    assert!(matches!(
        NoiseSchedule::from_betas(vec![0.1, f64::NAN]),
        Err(BetaOutOfRange { index: 1, .. })
    ));
    // So small that 1 − β rounds to 1: ᾱ would stay 1 and σ 0.
    assert_eq!(
        NoiseSchedule::from_betas(vec![0.1, 1e-17]),
        Err(BetaOutOfRange {
            index: 1,
            value: 1e-17
        })
    );
    assert!(NoiseSchedule::from_betas(vec![0.1, 1e-15]).is_ok());
    assert_eq!(NoiseSchedule::from_betas(vec![]), Err(ZeroTimesteps));
    assert!(BetaSchedule::Custom(vec![0.1; 3]).betas(4).is_err());

    let grid = TimestepGrid::default();
    assert_eq!(grid.timesteps(1000, 0), Err(ZeroSteps));
    assert_eq!(
        grid.timesteps(10, 11),
        Err(TooManySteps {
            steps: 11,
            train_timesteps: 10,
            most: 10
        })
    );
    let offset = TimestepGrid {
        steps_offset: 1,
        ..grid
    };
    assert!(matches!(
        offset.timesteps(10, 10),
        Err(OffsetPastEnd {
            steps_offset: 1,
            ..
        })
    ));
    let huge = TimestepGrid {
        spacing: TimestepSpacing::Leading,
        steps_offset: usize::MAX,
        ..grid
    };
    assert!(matches!(
        huge.timesteps(1000, 10),
        Err(OffsetPastEnd {
            steps_offset: usize::MAX,
            ..
        })
    ));

    assert_eq!(karras_sigmas(0.1, 10.0, 0, 7.0), Err(ZeroSteps));
    assert!(matches!(
        karras_sigmas(0.0, 10.0, 5, 7.0),
        Err(OutOfRange {
            name: "sigma_min",
            ..
        })
    ));
    assert!(matches!(
        karras_sigmas(20.0, 10.0, 5, 7.0),
        Err(OutOfRange {
            name: "sigma_min",
            ..
        })
    ));
    assert!(matches!(
        karras_sigmas(0.1, f64::NAN, 5, 7.0),
        Err(NonFinite {
            name: "sigma_max",
            ..
        })
    ));
}

#[test]
fn errors_name_the_value() {
    let message = NoiseSchedule::from_betas(vec![0.1, 1.5])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("1.5") && message.contains("timestep 1"),
        "{message}"
    );
}

#[test]
fn karras_sigmas_match_reference() {
    let s = schedule(BetaSchedule::linear());
    let sigmas = karras_sigmas(s.sigmas()[0], s.sigmas()[999], 10, 7.0).unwrap();
    assert_rel(sigmas[0], 157.40728081040749, 1e-12);
    assert_rel(sigmas[3], 21.105410301025287, 1e-12);
    assert_rel(sigmas[9], 0.010000500037502566, 1e-12);
    assert_rel(s.sigma_to_timestep(sigmas[3]), 775.13315450661, 1e-11);
}

/// Even in λ = −log σ: every ratio σ_{i+1}/σ_i is the same, the ends are σ_max and σ_min, and
/// Karras et al.'s spacing tends to it as ρ grows.
#[test]
fn uniform_lambda_sigmas_are_even_in_log_sigma() {
    let s = schedule(BetaSchedule::linear());
    let (sigma_min, sigma_max) = (s.sigmas()[0], s.sigmas()[999]);
    let sigmas = uniform_lambda_sigmas(sigma_min, sigma_max, 10).unwrap();
    assert_eq!(sigmas.len(), 10);
    assert_rel(sigmas[0], sigma_max, 1e-14);
    assert_rel(sigmas[9], sigma_min, 1e-14);
    let ratio = (sigma_min / sigma_max).powf(1.0 / 9.0);
    for pair in sigmas.windows(2) {
        assert_rel(pair[1] / pair[0], ratio, 1e-12);
    }
    let karras = karras_sigmas(sigma_min, sigma_max, 10, 1e7).unwrap();
    for (k, u) in karras.iter().zip(&sigmas) {
        assert_rel(*k, *u, 1e-5);
    }
    assert_eq!(uniform_lambda_sigmas(0.5, 2.0, 1).unwrap(), vec![2.0]);
    assert_eq!(
        uniform_lambda_sigmas(0.1, 10.0, 0),
        Err(ScheduleError::ZeroSteps)
    );
    for sigma_min in [20.0, -1.0] {
        assert!(matches!(
            uniform_lambda_sigmas(sigma_min, 10.0, 5),
            Err(ScheduleError::OutOfRange {
                name: "sigma_min",
                ..
            })
        ));
    }
}

#[test]
fn sigma_and_timestep_are_inverse() {
    let s = schedule(BetaSchedule::scaled_linear());
    for t in [0.0, 1.0, 17.0, 500.0, 998.0, 999.0] {
        assert!((s.sigma_to_timestep(s.sigma_at(t)) - t).abs() < 1e-9);
    }
    // Between grid points σ is interpolated linearly; its inverse is linear in log σ, so the
    // round trip is close but not exact.
    assert!((s.sigma_to_timestep(s.sigma_at(321.5)) - 321.5).abs() < 0.01);
    assert_eq!(s.sigma_to_timestep(1e-6), 0.0);
    assert_eq!(s.sigma_to_timestep(1e6), 999.0);
    assert_eq!(s.sigma_at(-3.0), s.sigmas()[0]);
    assert_eq!(s.sigma_at(5000.0), s.sigmas()[999]);
}

/// Every valid schedule, whatever its parameters, obeys the same order and range facts.
#[test]
fn random_schedules_are_monotone_and_in_range() {
    let mut rng = StdRng::seed_from_u64(7);
    for case in 0..300 {
        let timesteps = rng.random_range(1..=2000);
        let low: f64 = 10f64.powf(rng.random_range(-6.0..-1.0));
        let high = (low * rng.random_range(1.0..100.0)).min(0.5);
        let beta = match case % 5 {
            0 => BetaSchedule::Linear {
                beta_start: low,
                beta_end: high,
            },
            1 => BetaSchedule::ScaledLinear {
                beta_start: low,
                beta_end: high,
            },
            2 => BetaSchedule::Sigmoid {
                beta_start: low,
                beta_end: high,
            },
            3 => BetaSchedule::cosine(),
            _ => BetaSchedule::Custom(
                (0..timesteps)
                    .map(|_| rng.random_range(1e-5..0.02))
                    .collect(),
            ),
        };
        let mut s = NoiseSchedule::new(&beta, timesteps).unwrap();
        let zero_snr = timesteps >= 2 && rng.random_bool(0.3);
        if zero_snr {
            s = s.rescale_zero_terminal_snr().unwrap();
        }
        let abar = s.alphas_cumprod();
        assert!(
            abar.windows(2).all(|w| w[1] < w[0]),
            "case {case}: ᾱ must decrease"
        );
        assert!(abar.iter().all(|a| (0.0..1.0).contains(a)));
        assert!(abar[..timesteps - 1].iter().all(|&a| a > 0.0));
        assert_eq!(abar[timesteps - 1] == 0.0, zero_snr, "case {case}");
        assert!(s.snr().windows(2).all(|w| w[1] < w[0]));
        assert!(s.sigmas().windows(2).all(|w| w[1] > w[0]));
        for t in 0..timesteps {
            let a = s.sqrt_alphas_cumprod()[t];
            let b = s.sqrt_one_minus_alphas_cumprod()[t];
            assert!((a * a + b * b - 1.0).abs() < 1e-12);
            assert!(s.posterior_variance()[t] <= s.betas()[t] * (1.0 + 1e-12));
            assert!(s.posterior_variance()[t] >= 0.0);
            assert!((0.0..=1.0 + 1e-12).contains(&s.posterior_mean_coef2()[t]));
        }

        let steps = rng.random_range(1..=timesteps);
        let spacing = [
            TimestepSpacing::Leading,
            TimestepSpacing::Trailing,
            TimestepSpacing::Linspace,
        ][case % 3];
        let end = if case % 2 == 0 {
            GridEnd::AtLastStep
        } else {
            GridEnd::BeforeZero
        };
        let grid = TimestepGrid {
            spacing,
            steps_offset: 0,
            end,
        };
        match grid.discrete_timesteps(timesteps, steps) {
            Ok(ts) => {
                assert_eq!(
                    ts.len(),
                    steps,
                    "case {case}: {grid:?} T={timesteps} N={steps}"
                );
                assert!(
                    ts.windows(2).all(|w| w[1] < w[0]),
                    "case {case}: {grid:?} {ts:?}"
                );
                assert!(ts.iter().all(|&t| t < timesteps));
            }
            // A grid of N + 1 points cannot fit N = T distinct steps.
            Err(ScheduleError::TooManySteps { .. }) => {
                assert!(
                    end == GridEnd::BeforeZero && steps == timesteps,
                    "case {case}"
                )
            }
            Err(other) => panic!("case {case}: unexpected {other}"),
        }
    }
}

/// diffusers' `_convert_to_beta` (scipy's Beta(a, b) quantiles) for seven shapes, U-shaped to
/// skewed, Beta(0.01, 0.01) and Beta(200, 200) among them, in 1, 2, 10 and 25 steps
/// (`benches/peer/sigma_spacing_fixtures.py`): to 1e-13.
#[test]
fn beta_sigmas_match_diffusers() {
    let lines: Vec<&str> = include_str!("fixtures/beta_sigmas.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 28);
    for line in lines {
        let (settings, expected) = line.split_once(" | ").unwrap();
        let numbers: Vec<f64> = settings.split(' ').map(|v| v.parse().unwrap()).collect();
        let [sigma_min, sigma_max, steps, a, b] = numbers[..] else {
            panic!("bad settings {settings}");
        };
        let sigmas = beta_sigmas(sigma_min, sigma_max, steps as usize, a, b).unwrap();
        let expected: Vec<f64> = expected.split(' ').map(|v| v.parse().unwrap()).collect();
        assert_eq!(sigmas.len(), expected.len(), "{settings}");
        for (got, want) in sigmas.iter().zip(&expected) {
            assert_rel(*got, *want, 1e-13);
        }
    }
}

/// Beta(1, 1) spaces σ evenly; Beta(0.6, 0.6) is symmetric, so its σ mirror about the middle
/// and crowd at both ends; bad shapes are typed errors.
#[test]
fn beta_sigmas_follow_their_distribution() {
    let even = beta_sigmas(1.0, 10.0, 10, 1.0, 1.0).unwrap();
    for (i, sigma) in even.iter().enumerate() {
        assert_rel(*sigma, 10.0 - i as f64, 1e-14);
    }
    let crowded = beta_sigmas(1.0, 10.0, 11, 0.6, 0.6).unwrap();
    assert_eq!((crowded[0], crowded[10]), (10.0, 1.0));
    for i in 0..11 {
        assert_rel(crowded[i] + crowded[10 - i], 11.0, 1e-13);
    }
    assert!(crowded[0] - crowded[1] < crowded[4] - crowded[5]);
    assert_eq!(beta_sigmas(1.0, 10.0, 1, 0.6, 0.6).unwrap(), vec![10.0]);
    assert_eq!(
        beta_sigmas(1.0, 10.0, 0, 0.6, 0.6),
        Err(ScheduleError::ZeroSteps)
    );
    for (a, b, name) in [(0.0, 0.6, "alpha"), (0.6, -1.0, "beta")] {
        assert!(matches!(
            beta_sigmas(1.0, 10.0, 5, a, b),
            Err(ScheduleError::OutOfRange { name: n, .. }) if n == name
        ));
    }
    assert!(matches!(
        beta_sigmas(1.0, 10.0, 5, f64::NAN, 0.6),
        Err(ScheduleError::NonFinite { name: "alpha", .. })
    ));
}
