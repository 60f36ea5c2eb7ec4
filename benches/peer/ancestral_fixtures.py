"""Writes crates/kiln-sampler/tests/fixtures/euler_ancestral.txt and dpm2_ancestral.txt: what
diffusers' EulerAncestralDiscreteScheduler and KDPM2AncestralDiscreteScheduler make of a
sampling loop with the dummy model x·t/(t+1) of their tests (linear betas 1e-4 to 0.02 over
1,000 steps) in 1, 2, 5 and 10 steps, in ε and v (neither takes x_0), on `linspace`, `leading`
and `trailing` grids and, for DPM2, with Karras σ, for crates/kiln-sampler/tests/diffusers.rs
(the test needs no Python).

The loop is the one pipelines run (the noise times `init_noise_sigma`, the model called on
`scale_model_input`, `step` given the unscaled sample). Every step is linear in the sample and
in its fresh noise, so a run from x with noises z_0, z_1, … ends at m·x + Σ_k n_k z_k; as
benches/peer/lcm_fixtures.py does, the script finds m and the n_k from unit inputs, giving
diffusers the noise through a `randn_tensor` whose draws it replaces. For DPM2 it also writes
each run's model-call timesteps. Never run by CI.

    pip install torch diffusers
    python3 benches/peer/ancestral_fixtures.py
"""
import itertools
import pathlib
from unittest import mock

import diffusers
import torch
from diffusers import EulerAncestralDiscreteScheduler, KDPM2AncestralDiscreteScheduler

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
SPACINGS = {spacing: dict(timestep_spacing=spacing) for spacing in ["linspace", "leading", "trailing"]}
STEPS = [1, 2, 5, 10]


def run(make, steps, sample, noise_draw):
    """(where the loop takes the one-element `sample` with noise 1 at draw `noise_draw` (None:
    none), the number of draws, the call timesteps)."""
    scheduler = make()
    scheduler.set_timesteps(steps)
    draws = itertools.count()

    def noise(shape, **kwargs):
        return torch.full(shape, 1.0 if next(draws) == noise_draw else 0.0, dtype=kwargs.get("dtype"))

    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float32) * scheduler.init_noise_sigma
    with mock.patch(f"{type(scheduler).__module__}.randn_tensor", noise):
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)
            x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return x.item(), next(draws), [float(t) for t in scheduler.timesteps]


def coefficients(make, steps):
    """(m, n_0, …: the run's coefficients, the call timesteps)."""
    m, draws, timesteps = run(make, steps, 1.0, None)
    return [m] + [run(make, steps, 0.0, k)[0] for k in range(draws)], timesteps


def write(name, rows, settings):
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/ancestral_fixtures.py",
        f"# {settings}",
    ] + [" | ".join(row) for row in rows]
    out = FIXTURES / name
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} runs to {out}")


def numbers(values):
    return " ".join(repr(v) for v in values)


def main():
    euler = []
    for steps, prediction, grid in itertools.product(STEPS, ["epsilon", "v_prediction"], SPACINGS):
        make = lambda: EulerAncestralDiscreteScheduler(prediction_type=prediction, **SPACINGS[grid], **SCHEDULER)
        values, _ = coefficients(make, steps)
        euler.append([f"{steps} {prediction} {grid}", numbers(values)])
    write(
        "euler_ancestral.txt",
        euler,
        "steps prediction_type grid | m n_0 …: the run from x with noises z_k ends at m·x + Σ n_k z_k",
    )
    grids = dict(SPACINGS, karras=dict(use_karras_sigmas=True))
    dpm2 = []
    for steps, prediction, grid in itertools.product(STEPS, ["epsilon", "v_prediction"], grids):
        make = lambda: KDPM2AncestralDiscreteScheduler(prediction_type=prediction, **grids[grid], **SCHEDULER)
        values, timesteps = coefficients(make, steps)
        dpm2.append([f"{steps} {prediction} {grid}", numbers(values), numbers(timesteps)])
    write(
        "dpm2_ancestral.txt",
        dpm2,
        "steps prediction_type grid | m n_0 …: the run from x with noises z_k ends at m·x + Σ n_k z_k"
        " | the call timesteps",
    )


if __name__ == "__main__":
    main()
