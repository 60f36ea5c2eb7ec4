"""Writes the rectified-flow fixtures that Kiln's flow schedule and samplers are checked against
(the tests need no Python):

- crates/kiln-schedule/tests/fixtures/flow_grids.txt: the timesteps and σ of diffusers'
  `FlowMatchEulerDiscreteScheduler.set_timesteps` over static and dynamic (exponential, linear)
  shifts, `shift_terminal`, Karras / exponential / beta respacing, 1 to 28 steps and 1,000 or
  100 training timesteps (checked by crates/kiln-schedule/tests/flow.rs);
- crates/kiln-sampler/tests/fixtures/flow.txt: where `FlowMatchEulerDiscreteScheduler` and
  `FlowMatchHeunDiscreteScheduler` (deterministic: no `stochastic_sampling`, no churn) take
  diffusers' scheduler-test model x·t/(t+1), run as a velocity from noise down (checked by
  crates/kiln-sampler/tests/flow.rs).

Every step of those loops is linear in the sample, so a run from x ends at m·x: the script
finds m by running diffusers from x = 1. Never run by CI.

    pip install torch diffusers scipy
    python3 benches/peer/flow_fixtures.py
"""
import itertools
import pathlib
import warnings

import diffusers
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

ROOT = pathlib.Path(__file__).resolve().parents[2]
GRIDS = ROOT / "crates/kiln-schedule/tests/fixtures/flow_grids.txt"
LOOPS = ROOT / "crates/kiln-sampler/tests/fixtures/flow.txt"
HEADER = f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/flow_fixtures.py"

# (settings as Kiln's test reads them, diffusers' config, set_timesteps' mu)
SHIFTS = [
    ("shift=1", dict(shift=1.0), None),
    ("shift=3", dict(shift=3.0), None),
    ("mu=0.5", dict(use_dynamic_shifting=True), 0.5),
    ("mu=1.15", dict(use_dynamic_shifting=True), 1.15),
    ("linear_mu=2", dict(use_dynamic_shifting=True, time_shift_type="linear"), 2.0),
]
SPACINGS = [
    ("spacing=shifted", {}),
    ("spacing=karras", dict(use_karras_sigmas=True)),
    ("spacing=exponential", dict(use_exponential_sigmas=True)),
    ("spacing=beta", dict(use_beta_sigmas=True)),
]
TERMINALS = [("", {}), ("terminal=0.1", dict(shift_terminal=0.1))]


def euler(train, shift, spacing, terminal, mu):
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=train, **shift, **spacing, **terminal), mu


def grid_lines():
    for train, (shift_name, shift, mu), (spacing_name, spacing), (terminal_name, terminal), steps in (
        itertools.product([1000, 100], SHIFTS, SPACINGS, TERMINALS, [1, 4, 28])
    ):
        if terminal and steps == 1:
            continue  # one step ends at σ = 1, which no stretch moves (diffusers divides by 0)
        scheduler, mu = euler(train, shift, spacing, terminal, mu)
        scheduler.set_timesteps(steps, mu=mu)
        settings = " ".join(filter(None, [f"train={train}", shift_name, spacing_name, terminal_name, f"steps={steps}"]))
        timesteps = " ".join(repr(float(t)) for t in scheduler.timesteps)
        sigmas = " ".join(repr(float(s)) for s in scheduler.sigmas)
        yield f"{settings} | {timesteps} | {sigmas}"


def run(scheduler):
    x = torch.ones((1, 1, 1, 1), dtype=torch.float32)
    for t in scheduler.timesteps:
        x = scheduler.step(x * t / (t + 1), t, x).prev_sample
    return x.item()


def loop_lines():
    for (shift_name, shift, mu), (spacing_name, spacing), (terminal_name, terminal), steps in itertools.product(
        SHIFTS, SPACINGS, TERMINALS, [1, 4, 10]
    ):
        if terminal and steps == 1:
            continue
        scheduler, mu = euler(1000, shift, spacing, terminal, mu)
        scheduler.set_timesteps(steps, mu=mu)
        settings = " ".join(filter(None, ["sampler=euler", shift_name, spacing_name, terminal_name, f"steps={steps}"]))
        yield f"{settings} | {run(scheduler)!r}"
    for shift_value, steps in itertools.product([1.0, 3.0], [1, 2, 4, 10]):
        scheduler = FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000, shift=shift_value)
        scheduler.set_timesteps(steps)
        calls = " ".join(repr(float(t)) for t in scheduler.timesteps)
        yield f"sampler=heun shift={shift_value:g} spacing=shifted steps={steps} | {run(scheduler)!r} | {calls}"


def main():
    warnings.simplefilter("ignore")
    grids = list(grid_lines())
    GRIDS.write_text("\n".join([HEADER, "# settings | timesteps | sigmas (the last is the end, 0)", *grids]) + "\n")
    loops = list(loop_lines())
    LOOPS.write_text(
        "\n".join([HEADER, "# settings | m: the run from x ends at m·x | (heun) the call timesteps", *loops]) + "\n"
    )
    print(f"wrote {len(grids)} grids to {GRIDS} and {len(loops)} runs to {LOOPS}")


if __name__ == "__main__":
    main()
