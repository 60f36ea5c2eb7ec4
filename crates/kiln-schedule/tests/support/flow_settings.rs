//! Reads the settings of a line of the flow fixtures (`benches/peer/flow_fixtures.py`), such
//! as `train=1000 shift=3 spacing=karras terminal=0.1 steps=4`, into a schedule and a step
//! count. Shared by kiln-schedule's and kiln-sampler's flow tests.

use std::collections::HashMap;

use kiln_schedule::{FlowSchedule, FlowShift, FlowSpacing, TimeShift};

/// The schedule and step count that `settings` name; other keys (`sampler`) are left to the
/// caller, in the returned map.
pub fn flow_settings(settings: &str) -> (FlowSchedule, usize, HashMap<&str, &str>) {
    let values: HashMap<&str, &str> = settings
        .split(' ')
        .map(|pair| pair.split_once('=').expect("key=value"))
        .collect();
    let number = |key: &str| values.get(key).map(|v| v.parse::<f64>().unwrap());
    let shift = match (number("shift"), number("mu"), number("linear_mu")) {
        (Some(shift), None, None) => FlowShift::Static(shift),
        (None, Some(mu), None) => FlowShift::Dynamic {
            mu,
            time_shift: TimeShift::Exponential,
        },
        (None, None, Some(mu)) => FlowShift::Dynamic {
            mu,
            time_shift: TimeShift::Linear,
        },
        other => panic!("no single shift in {settings}: {other:?}"),
    };
    let spacing = match values["spacing"] {
        "shifted" => FlowSpacing::Shifted,
        "karras" => FlowSpacing::Karras,
        "exponential" => FlowSpacing::Exponential,
        "beta" => FlowSpacing::Beta,
        other => panic!("unknown spacing {other}"),
    };
    let schedule = FlowSchedule {
        train_timesteps: number("train").map_or(1000, |t| t as usize),
        shift,
        shift_terminal: number("terminal"),
        spacing,
    };
    (schedule, values["steps"].parse().unwrap(), values)
}
