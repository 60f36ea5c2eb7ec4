"""Writes crates/kiln-sampler/tests/fixtures/lcm.txt and tcd.txt: what diffusers' LCMScheduler
and TCDScheduler make of their own test loop (tests/schedulers/test_scheduler_lcm.py and
test_scheduler_tcd.py: scaled-linear betas 0.00085 to 0.012 over 1,000 steps, the dummy model
x·t/(t+1)) at several step counts, predictions and, for TCD, values of γ (`eta` in
TCDScheduler.step), for crates/kiln-sampler/tests/diffusers.rs (the test needs no Python).

As for DPM-Solver (benches/peer/dpm_solver_fixtures.py), every step is linear in the sample
and in its fresh noise, so a run from x with noises z_0, z_1, … ends at m·x + Σ_k n_k z_k; the
script finds m and the n_k from unit inputs, giving diffusers the noise through a generator
whose draws it replaces (neither scheduler takes a `variance_noise`). Never run by CI.

    pip install torch diffusers
    python3 benches/peer/lcm_fixtures.py
"""
import pathlib
from unittest import mock

import diffusers
import torch
from diffusers import LCMScheduler, TCDScheduler

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
PREDICTIONS = ["epsilon", "v_prediction", "sample"]


def run(scheduler, steps, sample, noise_step, **step_kwargs):
    """The loop from the one-element `sample`, with noise 1 at draw `noise_step` (None: none)."""
    scheduler.set_timesteps(steps)
    draws = iter(range(steps))

    def noise(shape, **kwargs):
        return torch.full(shape, 1.0 if next(draws) == noise_step else 0.0, dtype=kwargs.get("dtype"))

    module = type(scheduler).__module__
    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float32)
    with mock.patch(f"{module}.randn_tensor", noise):
        for t in scheduler.timesteps:
            x = scheduler.step(x * t / (t + 1), t, x, **step_kwargs).prev_sample
    return x.item()


def coefficients(make, steps, **step_kwargs):
    """m, n_0, …, n_{steps-1} of the run of the scheduler `make()` in `steps` steps."""
    return [run(make(), steps, 1.0, None, **step_kwargs)] + [
        run(make(), steps, 0.0, k, **step_kwargs) for k in range(steps)
    ]


def write(name, rows, settings):
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/lcm_fixtures.py",
        f"# {settings} | m n_0 … n_{{steps-1}}: the run from x with noises z_k ends at m·x + Σ n_k z_k",
    ] + [f"{key} | " + " ".join(f"{c!r}" for c in values) for key, values in rows]
    out = FIXTURES / name
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} runs to {out}")


def main():
    lcm = [
        (f"{steps} {prediction}", coefficients(lambda: LCMScheduler(prediction_type=prediction, **SCHEDULER), steps))
        for steps in [1, 2, 4, 10]
        for prediction in PREDICTIONS
    ]
    write("lcm.txt", lcm, "steps prediction_type")
    tcd = [
        (
            f"{steps} {prediction} {gamma}",
            coefficients(lambda: TCDScheduler(prediction_type=prediction, **SCHEDULER), steps, eta=gamma),
        )
        for steps in [1, 2, 4, 10]
        for prediction in PREDICTIONS
        for gamma in [0.0, 0.3, 0.5, 1.0]
    ]
    write("tcd.txt", tcd, "steps prediction_type gamma")


if __name__ == "__main__":
    main()
