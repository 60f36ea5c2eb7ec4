"""Writes crates/kiln-sampler/tests/fixtures/ddim_inverse.txt: what diffusers' DDIMInverseScheduler
makes of its own test loop (tests/schedulers/test_scheduler_ddim_inverse.py: linear betas 1e-4
(or 1e-2) to 0.02 over 1,000 steps, the dummy model x·t/(t+1), run from the data up) with
`clip_sample` off, which Kiln's plain inversion (`kiln_sampler::invert`,
`InversionMethod::Plain`) is checked against (crates/kiln-sampler/tests/diffusers.rs; the test
needs no Python).

The runs: ε prediction, `set_alpha_to_one` on and off, `leading` (with `steps_offset` 0 and 1)
and `trailing` grids, 10 and 50 steps. Only ε: for v and x_0 diffusers turns the model's output
into ε̂ with ᾱ of the step's start, where the sample is, while Kiln uses ᾱ of the timestep the
model was called at, as the model saw it. diffusers' published loops clip x̂_0 (`clip_sample`),
which no inversion can undo and Kiln refuses.

Every step is linear in the sample, so a run from x ends at m·x: the script finds m by running
diffusers from x = 1. Never run by CI.

    pip install torch diffusers
    python3 benches/peer/ddim_inverse_fixtures.py
"""
import itertools
import pathlib
import warnings

import diffusers
import torch
from diffusers import DDIMInverseScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/ddim_inverse.txt"


def run(config, steps):
    """The test loop from the one-element sample 1."""
    scheduler = DDIMInverseScheduler(
        num_train_timesteps=1000, beta_end=0.02, beta_schedule="linear", clip_sample=False, **config
    )
    scheduler.set_timesteps(steps)
    x = torch.ones((1, 1, 1, 1), dtype=torch.float32)
    for t in scheduler.timesteps:
        x = scheduler.step(x * t / (t + 1), t, x).prev_sample
    return x.item(), [int(t) for t in scheduler.timesteps]


def configs():
    for alpha_to_one, (spacing, offset), beta_start, steps in itertools.product(
        [True, False], [("leading", 0), ("leading", 1), ("trailing", 0)], [0.0001, 0.01], [10, 50]
    ):
        yield dict(set_alpha_to_one=alpha_to_one, timestep_spacing=spacing, steps_offset=offset,
                   beta_start=beta_start), steps


def main():
    warnings.simplefilter("ignore")
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/ddim_inverse_fixtures.py",
        "# settings | m: the inverted run from x ends at m·x | the call timesteps",
    ]
    for config, steps in configs():
        m, timesteps = run(config, steps)
        settings = " ".join(f"{key}={value}" for key, value in config.items())
        lines.append(f"{settings} steps={steps} | {m!r} | {' '.join(map(str, timesteps))}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    main()
