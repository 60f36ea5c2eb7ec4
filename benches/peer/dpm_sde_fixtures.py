"""Writes crates/kiln-sampler/tests/fixtures/dpm_sde.txt: what diffusers' DPMSolverSDEScheduler
makes of a sampling loop with the dummy model x·t/(t+1) of its tests (linear betas 1e-4 to
0.02 over 1,000 steps) in 1, 2, 5 and 10 steps, in ε and v (it takes no x_0), on `linspace`,
`leading` and `trailing` grids and with Karras σ, for crates/kiln-sampler/tests/diffusers.rs
(the test needs no Python).

The loop is the one pipelines run (the noise times `init_noise_sigma`, the model called on
`scale_model_input`, `step` given the unscaled sample). diffusers asks its noise sampler for
normalised Brownian increments (W(σ') − W(σ))/√|σ − σ'|, which it draws from a torchsde
Brownian tree; here the scheduler is given a Brownian path W that grows downwards in σ from
W(σ_max) = 0, each new point σ' below the lowest one σ_low at W(σ_low) + √(σ_low − σ') z_k with
the next draw z_k. Each step asks for its midpoint first, then its end, so z_{2i} and z_{2i+1}
are the step's two draws, as Kiln's sampler takes them. Every step is linear in the sample and
in the draws, so a run from x ends at m·x + Σ_k n_k z_k; as benches/peer/ancestral_fixtures.py
does, the script finds m and the n_k from unit inputs. It also writes each run's model-call
timesteps. Never run by CI.

    pip install torch diffusers torchsde
    python3 benches/peer/dpm_sde_fixtures.py
"""
import itertools
import pathlib

import diffusers
import torch
from diffusers import DPMSolverSDEScheduler

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
GRIDS = {
    "linspace": dict(timestep_spacing="linspace"),
    "leading": dict(timestep_spacing="leading"),
    "trailing": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
}
STEPS = [1, 2, 5, 10]


class UnitPath:
    """A Brownian path over σ whose draw number `noise_draw` is 1 and the others 0."""

    def __init__(self, noise_draw):
        self.noise_draw = noise_draw
        self.draws = itertools.count()
        self.points = {}

    def value(self, sigma):
        if not self.points:
            self.points[sigma] = 0.0
        if sigma not in self.points:
            lowest = min(self.points)
            assert sigma < lowest, "a query between known points would need a bridge"
            z = 1.0 if next(self.draws) == self.noise_draw else 0.0
            self.points[sigma] = self.points[lowest] + (lowest - sigma) ** 0.5 * z
        return self.points[sigma]

    def __call__(self, sigma, sigma_next):
        sigma, sigma_next = float(sigma), float(sigma_next)
        start = self.value(sigma)
        w = (self.value(sigma_next) - start) / abs(sigma - sigma_next) ** 0.5
        return torch.full((1, 1, 1, 1), w, dtype=torch.float32)


def run(make, steps, sample, noise_draw):
    """(where the loop takes the one-element `sample` with draw `noise_draw` 1 (None: none),
    the number of draws, the call timesteps)."""
    scheduler = make()
    scheduler.set_timesteps(steps)
    path = UnitPath(noise_draw)
    scheduler.noise_sampler = path
    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float32) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return x.item(), next(path.draws), [float(t) for t in scheduler.timesteps]


def coefficients(make, steps):
    """(m, n_0, …: the run's coefficients, the call timesteps)."""
    m, draws, timesteps = run(make, steps, 1.0, None)
    return [m] + [run(make, steps, 0.0, k)[0] for k in range(draws)], timesteps


def numbers(values):
    return " ".join(repr(v) for v in values)


def main():
    rows = []
    for steps, prediction, grid in itertools.product(STEPS, ["epsilon", "v_prediction"], GRIDS):
        make = lambda: DPMSolverSDEScheduler(prediction_type=prediction, **GRIDS[grid], **SCHEDULER)
        values, timesteps = coefficients(make, steps)
        rows.append(f"{steps} {prediction} {grid} | {numbers(values)} | {numbers(timesteps)}")
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/dpm_sde_fixtures.py",
        "# steps prediction_type grid | m n_0 …: the run from x with draws z_k ends at m·x + Σ n_k z_k"
        " | the call timesteps",
    ] + rows
    out = FIXTURES / "dpm_sde.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} runs to {out}")


if __name__ == "__main__":
    main()
