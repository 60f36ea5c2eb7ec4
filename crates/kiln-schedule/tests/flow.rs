//! Rectified flow's noise levels against diffusers' `FlowMatchEulerDiscreteScheduler` and
//! closed forms.

#[path = "support/flow_settings.rs"]
mod flow_settings;

use flow_settings::flow_settings;
use kiln_schedule::{
    BetaSchedule, FlowSchedule, FlowShift, FlowSpacing, NoiseSchedule, ResolutionShift,
    ScheduleError, TimeShift,
};

/// Every grid of `benches/peer/flow_fixtures.py` (5 shifts, 4 spacings, with and without
/// `shift_terminal`, 1–28 steps, 1,000 and 100 training timesteps): timesteps and σ to 1e-6,
/// the precision of diffusers' f32 tables.
#[test]
fn grids_match_diffusers() {
    let lines: Vec<&str> = include_str!("fixtures/flow_grids.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 200);
    for line in lines {
        let [settings, timesteps, sigmas] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("bad line {line}");
        };
        let (schedule, steps, _) = flow_settings(settings);
        let grid = schedule.grid(steps).unwrap();
        for (got, want) in [(grid.timesteps(), timesteps), (grid.sigmas(), sigmas)] {
            let want: Vec<f64> = want.split(' ').map(|v| v.parse().unwrap()).collect();
            assert_eq!(got.len(), want.len(), "{settings}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{settings}: {g} against diffusers' {w}"
                );
            }
        }
    }
}

/// The training table: σ_t = shift((t + 1)/T) from 1 down, unshifted under a dynamic shift.
#[test]
fn training_sigmas_are_the_shifted_fractions() {
    let sd3 = FlowSchedule {
        train_timesteps: 4,
        shift: FlowShift::Static(3.0),
        ..FlowSchedule::default()
    };
    let expected = [1.0, 2.25 / 2.5, 1.5 / 2.0, 0.75 / 1.5];
    for (got, want) in sd3.training_sigmas().unwrap().iter().zip(expected) {
        assert!((got - want).abs() < 1e-15, "{got} against {want}");
    }
    let flux = FlowSchedule {
        train_timesteps: 4,
        shift: FlowShift::Dynamic {
            mu: 1.0,
            time_shift: TimeShift::Exponential,
        },
        ..FlowSchedule::default()
    };
    assert_eq!(flux.training_sigmas().unwrap(), [1.0, 0.75, 0.5, 0.25]);
}

/// Every shift keeps σ = 0 and σ = 1 where they are, exactly (sσ/(1 + (s − 1)σ) computed as
/// written gives 1 + 2⁻⁵² at σ = 1 for s = 0.1), so a grid starts at pure noise.
#[test]
fn shifts_keep_the_ends() {
    for shift in [
        FlowShift::Static(0.1),
        FlowShift::Static(0.2),
        FlowShift::Static(3.0),
        FlowShift::Dynamic {
            mu: 1.15,
            time_shift: TimeShift::Exponential,
        },
        FlowShift::Dynamic {
            mu: 0.3,
            time_shift: TimeShift::Linear,
        },
    ] {
        let schedule = FlowSchedule {
            shift,
            ..FlowSchedule::default()
        };
        assert_eq!(schedule.shift(0.0), Ok(0.0), "{shift:?}");
        assert_eq!(schedule.shift(1.0), Ok(1.0), "{shift:?}");
        assert_eq!(schedule.grid(3).unwrap().sigmas()[0], 1.0, "{shift:?}");
    }
    assert!(matches!(
        FlowSchedule::default().shift(1.5),
        Err(ScheduleError::OutOfRange { name: "sigma", .. })
    ));
}

/// The exponential time shift with μ = ln s is the static shift by s, laid over the unshifted
/// training extremes.
#[test]
fn exponential_shift_by_log_s_is_the_static_shift() {
    let shift = 3.0_f64;
    let dynamic = FlowSchedule {
        shift: FlowShift::Dynamic {
            mu: shift.ln(),
            time_shift: TimeShift::Exponential,
        },
        ..FlowSchedule::default()
    };
    let grid = dynamic.grid(5).unwrap();
    let fractions = [1.0, 0.75025, 0.5005, 0.25075, 0.001];
    for (got, fraction) in grid.sigmas().iter().zip(fractions) {
        let want = shift * fraction / (1.0 + (shift - 1.0) * fraction);
        assert!((got - want).abs() < 1e-14, "{got} against {want}");
    }
    assert_eq!(grid.sigmas()[5], 0.0);
}

/// Flux's μ: 0.5 at 256 tokens, 1.15 at 4,096, linear between and beyond.
#[test]
fn resolution_shift_is_linear_in_the_token_count() {
    let flux = ResolutionShift::default();
    assert!((flux.mu(256.0).unwrap() - 0.5).abs() < 1e-15);
    assert!((flux.mu(4096.0).unwrap() - 1.15).abs() < 1e-15);
    assert!((flux.mu(2176.0).unwrap() - 0.825).abs() < 1e-15);
    let degenerate = ResolutionShift {
        max_seq_len: 256.0,
        ..flux
    };
    assert!(matches!(
        degenerate.mu(1024.0),
        Err(ScheduleError::OutOfRange {
            name: "max_seq_len",
            ..
        })
    ));
    assert!(matches!(
        flux.mu(f64::NAN),
        Err(ScheduleError::NonFinite {
            name: "seq_len",
            ..
        })
    ));
}

/// Bad settings are typed errors, not NaN grids.
#[test]
fn bad_settings_are_refused() {
    let with = |change: fn(&mut FlowSchedule)| {
        let mut schedule = FlowSchedule::default();
        change(&mut schedule);
        schedule.grid(4)
    };
    assert_eq!(
        FlowSchedule::default().grid(0),
        Err(ScheduleError::ZeroSteps)
    );
    assert_eq!(
        with(|s| s.train_timesteps = 0),
        Err(ScheduleError::ZeroTimesteps)
    );
    let refused = |result: Result<_, ScheduleError>, field: &str| match result {
        Err(ScheduleError::OutOfRange { name, .. } | ScheduleError::NonFinite { name, .. }) => {
            assert_eq!(name, field)
        }
        other => panic!("{field}: expected a refusal, got {other:?}"),
    };
    refused(with(|s| s.shift = FlowShift::Static(0.0)), "shift");
    refused(
        with(|s| s.shift = FlowShift::Static(f64::INFINITY)),
        "shift",
    );
    refused(
        with(|s| {
            s.shift = FlowShift::Dynamic {
                mu: 0.0,
                time_shift: TimeShift::Linear,
            }
        }),
        "mu",
    );
    refused(
        with(|s| {
            s.shift = FlowShift::Dynamic {
                mu: f64::NAN,
                time_shift: TimeShift::Exponential,
            }
        }),
        "mu",
    );
    // e^μ past f64's range made ∞/∞ or 0/0 σ.
    for mu in [710.0, -746.0] {
        let schedule = FlowSchedule {
            shift: FlowShift::Dynamic {
                mu,
                time_shift: TimeShift::Exponential,
            },
            ..FlowSchedule::default()
        };
        refused(schedule.grid(4), "mu");
    }
    for terminal in [0.0, 1.0, -0.5, f64::NAN] {
        let schedule = FlowSchedule {
            shift_terminal: Some(terminal),
            ..FlowSchedule::default()
        };
        refused(schedule.grid(4), "shift_terminal");
    }
    // One step ends at σ = 1, which no stretch can move.
    let one_step = FlowSchedule {
        shift_terminal: Some(0.1),
        spacing: FlowSpacing::Karras,
        ..FlowSchedule::default()
    };
    refused(one_step.grid(1), "shift_terminal");
}

/// `rectified_flow` puts the straight path on the variance-preserving scale: ᾱ_t =
/// (1 − σ_t)²/((1 − σ_t)² + σ_t²) over the training σ, pure noise at the last timestep.
#[test]
fn rectified_flow_betas_give_the_straight_path() {
    for shift in [1.0, 3.0] {
        let flow = FlowSchedule {
            shift: FlowShift::Static(shift),
            ..FlowSchedule::default()
        };
        let schedule = NoiseSchedule::new(&BetaSchedule::RectifiedFlow { shift }, 1000).unwrap();
        let sigmas: Vec<f64> = flow.training_sigmas().unwrap().into_iter().rev().collect();
        for (t, (abar, sigma)) in schedule.alphas_cumprod().iter().zip(&sigmas).enumerate() {
            let signal = (1.0 - sigma).powi(2);
            let expected = signal / (signal + sigma * sigma);
            assert!(
                (abar - expected).abs() <= 1e-13,
                "shift {shift}, t = {t}: {abar} against {expected}"
            );
        }
        assert_eq!(schedule.alphas_cumprod()[999], 0.0);
    }
    assert_eq!(
        BetaSchedule::from_name("rectified_flow"),
        Some(BetaSchedule::RectifiedFlow { shift: 1.0 })
    );
    assert!(matches!(
        BetaSchedule::RectifiedFlow { shift: -1.0 }.betas(1000),
        Err(ScheduleError::OutOfRange { name: "shift", .. })
    ));
}
