"""Writes crates/kiln-sampler/tests/fixtures/dpm2.txt: what diffusers' KDPM2DiscreteScheduler
makes of a sampling loop with the dummy model x·t/(t+1) of its tests (linear betas 1e-4 to 0.02
over 1,000 steps) in 1, 2, 5 and 10 steps, in ε and v (diffusers has no x_0 prediction here), on
`linspace`, `leading` and `trailing` grids and with Karras σ, for
crates/kiln-sampler/tests/diffusers.rs (the test needs no Python).

The loop is the one pipelines run (the noise times `init_noise_sigma`, the model called on
`scale_model_input`, `step` given the unscaled sample), and every step is linear in the sample,
so a run from x ends at m·x; the script finds m by running from x = 1. It also writes each run's
model-call timesteps, which interleave the grid's with those of the midpoints. Never run by CI.

    pip install torch diffusers
    python3 benches/peer/dpm2_fixtures.py
"""
import itertools
import pathlib

import diffusers
import torch
from diffusers import KDPM2DiscreteScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/dpm2.txt"
GRIDS = {
    "linspace": dict(timestep_spacing="linspace"),
    "leading": dict(timestep_spacing="leading"),
    "trailing": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
}


def run(steps, prediction, grid):
    """(m, the call timesteps): where the loop takes the one-element sample 1, and at what t."""
    scheduler = KDPM2DiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
        prediction_type=prediction, **GRIDS[grid],
    )
    scheduler.set_timesteps(steps)
    x = torch.ones((1, 1, 1, 1), dtype=torch.float32) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return x.item(), [float(t) for t in scheduler.timesteps]


def main():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/dpm2_fixtures.py",
        "# steps prediction_type grid | m: the run from x ends at m·x | the call timesteps",
    ]
    for steps, prediction, grid in itertools.product([1, 2, 5, 10], ["epsilon", "v_prediction"], GRIDS):
        m, timesteps = run(steps, prediction, grid)
        lines.append(f"{steps} {prediction} {grid} | {m!r} | {' '.join(repr(t) for t in timesteps)}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    main()
