"""Writes crates/kiln-sampler/tests/fixtures/lcm.txt: what diffusers' LCMScheduler makes of its
own test loop (tests/schedulers/test_scheduler_lcm.py: scaled-linear betas 0.00085 to 0.012 over
1,000 steps, the dummy model x·t/(t+1)) at several step counts and predictions, for
crates/kiln-sampler/tests/diffusers.rs (the test needs no Python).

As for DPM-Solver (benches/peer/dpm_solver_fixtures.py), every step is linear in the sample
and in its fresh noise, so a run from x with noises z_0, z_1, … ends at m·x + Σ_k n_k z_k; the
script finds m and the n_k from unit inputs, giving diffusers the noise through a generator
whose draws it replaces (LCMScheduler has no `variance_noise`). Never run by CI.

    pip install torch diffusers
    python3 benches/peer/lcm_fixtures.py
"""
import pathlib
from unittest import mock

import diffusers
import torch
from diffusers import LCMScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/lcm.txt"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def run(steps, prediction, sample, noise_step):
    """The loop from the one-element `sample`, with noise 1 at draw `noise_step` (None: none)."""
    scheduler = LCMScheduler(prediction_type=prediction, **SCHEDULER)
    scheduler.set_timesteps(steps)
    draws = iter(range(steps))

    def noise(shape, **kwargs):
        return torch.full(shape, 1.0 if next(draws) == noise_step else 0.0, dtype=kwargs.get("dtype"))

    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float32)
    with mock.patch("diffusers.schedulers.scheduling_lcm.randn_tensor", noise):
        for t in scheduler.timesteps:
            x = scheduler.step(x * t / (t + 1), t, x).prev_sample
    return x.item()


def main():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/lcm_fixtures.py",
        "# steps prediction_type | m n_0 … n_{steps-1}: the run from x with noises z_k ends at m·x + Σ n_k z_k",
    ]
    for steps in [1, 2, 4, 10]:
        for prediction in ["epsilon", "v_prediction", "sample"]:
            coefficients = [run(steps, prediction, 1.0, None)] + [run(steps, prediction, 0.0, k) for k in range(steps)]
            lines.append(f"{steps} {prediction} | " + " ".join(f"{c!r}" for c in coefficients))
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    main()
