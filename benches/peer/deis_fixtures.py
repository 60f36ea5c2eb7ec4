"""Writes crates/kiln-sampler/tests/fixtures/deis.txt: what diffusers' DEISMultistepScheduler
makes of a sampling loop with the dummy model x·t/(t+1) of its tests (linear betas 1e-4 to
0.02 over 1,000 steps), for crates/kiln-sampler/tests/diffusers.rs (the test needs no Python).

Two kinds of run:
- `linear`: orders 1–3, ε, v and x_0 predictions, `linspace`, `leading` and `trailing` grids
  and Karras σ, in 1, 2, 5 and 10 steps (and order 3 without `lower_order_final`). Every step
  is linear in the sample, so a run from x ends at m·x; the script finds m by running from
  x = 1 (the loop pipelines run: the noise times `init_noise_sigma`, the model called on
  `scale_model_input`), and writes the run's timesteps.
- `threshold`: dynamic thresholding (ratio 0.87, max 0.5) makes the loop nonlinear, so these
  run the published tests' loop from their deterministic (4, 3, 8, 8) sample in 10 steps and
  write sum(|x|), mean(|x|) and every 48th element of the result.

Never run by CI.

    pip install torch diffusers
    python3 benches/peer/deis_fixtures.py
"""
import itertools
import pathlib

import diffusers
import torch
from diffusers import DEISMultistepScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/deis.txt"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
GRIDS = {
    "linspace": dict(timestep_spacing="linspace"),
    "leading": dict(timestep_spacing="leading"),
    "trailing": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
}


def loop(scheduler, steps, x):
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return x


def deterministic_sample():
    """diffusers' `dummy_sample_deter`: arange(768) as (3, 8, 8, 4) / 768, permuted."""
    return (torch.arange(768, dtype=torch.float32).reshape(3, 8, 8, 4) / 768).permute(3, 0, 1, 2)


def main():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/deis_fixtures.py",
        "# linear order prediction_type grid steps lower_order_final | m: the run from x ends at m·x | the timesteps",
        "# threshold order prediction_type | sum(|x|) mean(|x|) | x.flatten()[::48]",
    ]
    runs = [
        (order, prediction, grid, steps, True)
        for order, prediction, grid, steps in itertools.product(
            [1, 2, 3], ["epsilon", "v_prediction", "sample"], GRIDS, [1, 2, 5, 10]
        )
    ] + [(3, "epsilon", grid, steps, False) for grid, steps in itertools.product(GRIDS, [5, 10])]
    for order, prediction, grid, steps, lower_order_final in runs:
        scheduler = DEISMultistepScheduler(
            solver_order=order, prediction_type=prediction, lower_order_final=lower_order_final,
            **GRIDS[grid], **SCHEDULER,
        )
        m = loop(scheduler, steps, torch.ones((1, 1, 1, 1))).item()
        timesteps = " ".join(str(int(t)) for t in scheduler.timesteps)
        lines.append(f"linear {order} {prediction} {grid} {steps} {lower_order_final} | {m!r} | {timesteps}")
    for order, prediction in itertools.product([1, 2, 3], ["epsilon", "sample"]):
        scheduler = DEISMultistepScheduler(
            solver_order=order, prediction_type=prediction, thresholding=True,
            dynamic_thresholding_ratio=0.87, sample_max_value=0.5, **SCHEDULER,
        )
        x = loop(scheduler, 10, deterministic_sample())
        elements = " ".join(repr(v) for v in x.flatten()[::48].tolist())
        lines.append(
            f"threshold {order} {prediction} | {x.abs().sum().item()!r} {x.abs().mean().item()!r} | {elements}"
        )
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 3} runs to {OUT}")


if __name__ == "__main__":
    main()
