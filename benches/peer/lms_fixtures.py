"""Writes crates/kiln-sampler/tests/fixtures/lms.txt: what diffusers' LMSDiscreteScheduler makes
of a sampling loop with the dummy model x·t/(t+1) of its tests (linear betas 1e-4 to 0.02 over
1,000 steps, 10 inference steps) at orders 1 to 4, in ε, v and x_0, on `linspace`, `leading` and
`trailing` grids and with Karras σ, for crates/kiln-sampler/tests/diffusers.rs (the test needs
no Python).

The loop is the one pipelines run (the noise times `init_noise_sigma`, the model called on
`scale_model_input`, `step` given the unscaled sample), and every step is linear in the sample,
so a run from x ends at m·x; the script finds m by running from x = 1. Never run by CI.

    pip install torch diffusers scipy
    python3 benches/peer/lms_fixtures.py
    python3 benches/peer/lms_fixtures.py --karras-f64

With `--karras-f64` it prints instead the sum of |x| at the end of test_scheduler_lms.py's
Karras loop (1,100 training steps, the loop's sample scaled before `step`), with the schedule
computed in f64 as Kiln computes it: diffusers cumulates ᾱ in f32, which moves the published
3812.9927 by 8e-6.
"""
import itertools
import pathlib
import sys

import diffusers
import numpy as np
import torch
from diffusers import LMSDiscreteScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/lms.txt"
STEPS = 10
GRIDS = {
    "linspace": dict(timestep_spacing="linspace"),
    "leading": dict(timestep_spacing="leading"),
    "trailing": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
}


def run(order, prediction, grid):
    """m: where the loop takes the one-element sample 1."""
    scheduler = LMSDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
        prediction_type=prediction, **GRIDS[grid],
    )
    scheduler.set_timesteps(STEPS)
    x = torch.ones((1, 1, 1, 1), dtype=torch.float32) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        x = scheduler.step(model_input * t / (t + 1), t, x, order=order).prev_sample
    return x.item()


def karras_f64():
    """test_scheduler_lms.py's Karras full loop with ᾱ, σ and the timesteps computed in f64."""
    scheduler = LMSDiscreteScheduler(
        num_train_timesteps=1100, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", use_karras_sigmas=True
    )
    scheduler.set_timesteps(STEPS)
    alphas_cumprod = np.cumprod(1 - np.linspace(0.0001, 0.02, 1100, dtype=np.float64))
    all_sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    sigmas = np.interp(np.linspace(0, 1099, STEPS)[::-1], np.arange(1100), all_sigmas)
    sigmas = scheduler._convert_to_karras(in_sigmas=sigmas)
    scheduler.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]))
    scheduler.timesteps = torch.from_numpy(np.array([scheduler._sigma_to_t(s, np.log(all_sigmas)) for s in sigmas]))
    x = torch.arange(768).reshape(3, 8, 8, 4).permute(3, 0, 1, 2).double() / 768 * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(x, t)
        x = scheduler.step(x * t / (t + 1), t, x).prev_sample
    print(f"sum |x| {x.abs().sum().item():.4f}, mean {x.abs().mean().item():.4f}")


def main():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/lms_fixtures.py",
        "# order prediction_type grid | m: the run from x ends at m·x",
    ]
    for order, prediction, grid in itertools.product([1, 2, 3, 4], ["epsilon", "v_prediction", "sample"], GRIDS):
        lines.append(f"{order} {prediction} {grid} | {run(order, prediction, grid)!r}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    karras_f64() if "--karras-f64" in sys.argv else main()
