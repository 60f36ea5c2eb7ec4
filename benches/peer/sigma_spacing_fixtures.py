"""Writes two fixture files for diffusers' exponential and beta noise levels
(`use_exponential_sigmas`, `use_beta_sigmas`), for Rust tests that need no Python:

- crates/kiln-schedule/tests/fixtures/beta_sigmas.txt: the σ of diffusers' `_convert_to_beta`
  (scipy's Beta(a, b) quantiles) between σ_min and σ_max for several a, b and step counts.
- crates/kiln-sampler/tests/fixtures/sigma_spacing.txt: what diffusers' schedulers make of a
  sampling loop with the dummy model x·t/(t+1) of its tests (linear betas 1e-4 to 0.02 over
  1,000 steps, ε prediction) with each spacing, on `linspace` and `leading` grids (which
  DPM-Solver singlestep does not have: it lays its σ out from the table's ends, as the other
  multistep solvers do with these spacings), in 1, 2, 5 and 10 steps. Every step is linear
  in the sample, so a run from x ends at m·x; the script writes m (from a loop in f64) and
  the call timesteps. For the two stochastic schedulers (DPM2 ancestral and
  DPM-Solver SDE, which draw their own noise) only the timesteps; SA-Solver runs with τ = 0.

The multistep solvers (DPM-Solver++ 2M and 2S, DEIS, UniPC, SA-Solver) round the timesteps of
Karras σ but cast those of exponential and beta σ to int64, which truncates them (a model call
at t = 841 for σ at t = 841.9). Kiln rounds all three alike, so here diffusers' σ → t lookup is
wrapped in a rounding for those schedulers; the σ they step through are diffusers' own.

Never run by CI.

    pip install torch diffusers scipy
    python3 benches/peer/sigma_spacing_fixtures.py
"""
import inspect
import itertools
import pathlib

import diffusers
import numpy as np
import torch
from deis_fixtures import SCHEDULER
from diffusers import (
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    DPMSolverSinglestepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    SASolverScheduler,
    UniPCMultistepScheduler,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLERS = {
    "euler": (EulerDiscreteScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpm2": (KDPM2DiscreteScheduler, {}),
    "dpm2_a": (KDPM2AncestralDiscreteScheduler, {}),
    "dpm++sde": (DPMSolverSDEScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {}),
    "dpm++2s": (DPMSolverSinglestepScheduler, {}),
    "deis": (DEISMultistepScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
    "sa_solver": (SASolverScheduler, dict(tau_func=lambda t: 0)),
}
STOCHASTIC = {"dpm2_a", "dpm++sde"}
MULTISTEP = {"dpm++", "dpm++2s", "deis", "unipc", "sa_solver"}
SPACINGS = {"exponential": "use_exponential_sigmas", "beta": "use_beta_sigmas"}


def rounding_lookups(scheduler):
    """Rounds the scheduler's σ → t lookups, as Kiln rounds the timesteps of every spacing."""
    lookup = scheduler._sigma_to_t
    scheduler._sigma_to_t = lambda sigma, log_sigmas: np.round(lookup(sigma, log_sigmas))


def loop_in_f64(scheduler, steps):
    """The pipelines' loop from x = 1 with the dummy model, in f64: the scheduler's f32 tables
    are widened after `set_timesteps` (their values stay f32-rounded). In f32 a beta grid's
    close first steps amplify rounding: SA-Solver's 5-step run ends at −4.52434 in f32 and
    −4.52559 in f64 (Kiln: −4.52571)."""
    scheduler.set_timesteps(steps)
    for name, value in vars(scheduler).items():
        if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
            setattr(scheduler, name, value.double())
    x = torch.ones((1, 1, 1, 1), dtype=torch.float64) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return x


def run(sampler, spacing, grid, steps):
    """m (where the loop takes x = 1; None for the stochastic ones) and the call timesteps."""
    kind, extra = SAMPLERS[sampler]
    if "timestep_spacing" in inspect.signature(kind.__init__).parameters:
        extra = dict(extra, timestep_spacing=grid)
    scheduler = kind(**SCHEDULER, **extra, **{SPACINGS[spacing]: True})
    if sampler in MULTISTEP:
        rounding_lookups(scheduler)
    torch.manual_seed(0)
    x = loop_in_f64(scheduler, steps)
    m = None if sampler in STOCHASTIC else x.item()
    return m, [float(t) for t in scheduler.timesteps]


def sampler_fixtures():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/sigma_spacing_fixtures.py",
        "# sampler spacing grid steps | m: the run from x ends at m·x (- where it draws noise) | the call timesteps",
    ]
    for sampler, spacing, grid, steps in itertools.product(SAMPLERS, SPACINGS, ["linspace", "leading"], [1, 2, 5, 10]):
        m, timesteps = run(sampler, spacing, grid, steps)
        m = "-" if m is None else repr(m)
        timesteps = " ".join(repr(t) for t in timesteps)
        lines.append(f"{sampler} {spacing} {grid} {steps} | {m} | {timesteps}")
    return lines


def beta_fixtures():
    lines = [
        f"# diffusers {diffusers.__version__}: benches/peer/sigma_spacing_fixtures.py",
        "# sigma_min sigma_max steps a b | diffusers' _convert_to_beta",
    ]
    scheduler = EulerDiscreteScheduler()
    for (a, b), steps in itertools.product([(0.6, 0.6), (0.5, 2.0), (2.0, 5.0), (1.0, 1.0), (3.0, 0.7), (0.01, 0.01), (200.0, 200.0)], [1, 2, 10, 25]):
        sigma_min, sigma_max = 0.0292, 14.6146
        ends = torch.tensor([sigma_max, sigma_min], dtype=torch.float64)
        sigmas = scheduler._convert_to_beta(ends, steps, alpha=a, beta=b)
        values = " ".join(repr(float(s)) for s in sigmas)
        lines.append(f"{sigma_min!r} {sigma_max!r} {steps} {a!r} {b!r} | {values}")
    return lines


def main():
    for path, lines in [
        ("crates/kiln-schedule/tests/fixtures/beta_sigmas.txt", beta_fixtures()),
        ("crates/kiln-sampler/tests/fixtures/sigma_spacing.txt", sampler_fixtures()),
    ]:
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).write_text("\n".join(lines) + "\n")
        runs = sum(not line.startswith("#") for line in lines)
        print(f"wrote {runs} lines to {path}")


if __name__ == "__main__":
    main()
