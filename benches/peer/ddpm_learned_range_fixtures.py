"""Writes crates/kiln-sampler/tests/fixtures/ddpm_learned_range.txt: what diffusers'
DDPMScheduler with `variance_type = "learned_range"` makes of a sampling loop with the dummy
model of its tests, x·t/(t+1), extended by a learned variance v = sin(t/37) in a second
channel (linear betas 1e-4 to 0.02 over 1,000 steps, no clipping) in 1, 2, 5, 10 and 50 steps,
in ε, x_0 and v, on `linspace`, `leading` and `trailing` grids, for
crates/kiln-sampler/tests/diffusers.rs (the test needs no Python).

The loop is the one `DDPMPipeline` runs. v depends on t alone, so every step is linear in the
sample and in its fresh noise, and a run from x with noises z_0, z_1, … ends at
m·x + Σ_k n_k z_k; as benches/peer/ancestral_fixtures.py does, the script finds m and the n_k
from unit inputs, giving diffusers the noise through a `randn_tensor` whose draws it replaces.
Never run by CI.

    pip install torch diffusers
    python3 benches/peer/ddpm_learned_range_fixtures.py
"""
import itertools
import math
import pathlib
from unittest import mock

import diffusers
import torch
from diffusers import DDPMScheduler

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures"
SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    variance_type="learned_range",
    clip_sample=False,
)
STEPS = [1, 2, 5, 10, 50]
PREDICTIONS = ["epsilon", "sample", "v_prediction"]
SPACINGS = ["linspace", "leading", "trailing"]


def run(make, steps, sample, noise_draw):
    """(where the loop takes the one-element `sample` with noise 1 at draw `noise_draw` (None:
    none), the number of draws)."""
    scheduler = make()
    scheduler.set_timesteps(steps)
    draws = itertools.count()

    def noise(shape, **kwargs):
        return torch.full(shape, 1.0 if next(draws) == noise_draw else 0.0, dtype=kwargs.get("dtype"))

    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float32)
    with mock.patch(f"{type(scheduler).__module__}.randn_tensor", noise):
        for t in scheduler.timesteps:
            variance = torch.full_like(x, math.sin(float(t) / 37.0))
            output = torch.cat([x * t / (t + 1), variance], dim=1)
            x = scheduler.step(output, t, x).prev_sample
    return x.item(), next(draws)


def main():
    rows = []
    for steps, prediction, spacing in itertools.product(STEPS, PREDICTIONS, SPACINGS):
        make = lambda: DDPMScheduler(prediction_type=prediction, timestep_spacing=spacing, **SCHEDULER)
        m, draws = run(make, steps, 1.0, None)
        values = [m] + [run(make, steps, 0.0, k)[0] for k in range(draws)]
        rows.append(f"{steps} {prediction} {spacing} | " + " ".join(repr(v) for v in values))
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/ddpm_learned_range_fixtures.py",
        "# steps prediction_type timestep_spacing | m n_0 …: the run from x with noises z_k ends at m·x + Σ n_k z_k",
    ] + rows
    out = FIXTURES / "ddpm_learned_range.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} runs to {out}")


if __name__ == "__main__":
    main()
