"""Writes crates/kiln-sampler/tests/fixtures/sa_solver.txt: what diffusers' SASolverScheduler
makes of a sampling loop with the dummy model x·t/(t+1) of its tests (linear betas 1e-4 to
0.02 over 1,000 steps) for the settings Kiln checks itself against
(crates/kiln-sampler/tests/diffusers.rs; the test needs no Python): 1, 2, 5 and 10 steps on
`linspace`, `leading` and `trailing` grids and with Karras σ, in ε and v, with the default
orders; then 10 steps with predictor and corrector orders 1 to 4, both algorithm types, every
prediction type, `lower_order_final` off, and τ off (the ODE), on everywhere (the SDE) and
diffusers' default window (1 for 200 ≤ t ≤ 800, else 0).

diffusers draws one noise tensor in every step; Kiln draws one only in a step whose noise term
is not zero (τ(t) > 0 and σ' ≠ σ), so the script hands diffusers the next of its unit draws in
those steps and zeros in the others, in the order Kiln takes them. Every step is linear in the
sample and in the draws, so a run from x ends at m·x + Σ_k n_k z_k; as
benches/peer/dpm_solver_fixtures.py does, the script finds m and the n_k from unit inputs. It
also writes each run's model-call timesteps. Never run by CI.

    pip install torch diffusers
    python3 benches/peer/sa_solver_fixtures.py
"""
import itertools
import pathlib
import warnings

import diffusers
import diffusers.schedulers.scheduling_sasolver as sasolver
import torch
from diffusers import SASolverScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/sa_solver.txt"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
GRIDS = {
    "linspace": dict(timestep_spacing="linspace"),
    "leading": dict(timestep_spacing="leading"),
    "trailing": dict(timestep_spacing="trailing"),
    "karras": dict(use_karras_sigmas=True),
}
TAUS = {
    "window": lambda t: 1 if 200 <= t <= 800 else 0,
    "ode": lambda t: 0,
    "sde": lambda t: 1,
    "half": lambda t: 0.5,
}


class Draws:
    """Stands in for diffusers' `randn_tensor`: the noise the scheduler asks for next."""

    def __init__(self):
        self.next = None

    def __call__(self, shape, **kwargs):
        return torch.full(shape, self.next, dtype=torch.float32)


def run(settings, sample, noise_draw):
    """(where the loop takes the one-element `sample` with draw `noise_draw` 1 (None: none),
    the number of draws, the call timesteps)."""
    steps, grid, tau = settings["steps"], settings["grid"], settings["tau"]
    config = {k: v for k, v in settings.items() if k not in ("steps", "grid", "tau")}
    scheduler = SASolverScheduler(tau_func=TAUS[tau], **GRIDS[grid], **SCHEDULER, **config)
    scheduler.set_timesteps(steps)
    draws = Draws()
    sasolver.randn_tensor = draws
    sigmas = scheduler.sigmas.tolist()
    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float32) * scheduler.init_noise_sigma
    taken = 0
    for i, t in enumerate(scheduler.timesteps):
        noisy = TAUS[tau](t) > 0 and sigmas[i + 1] != sigmas[i]
        draws.next = 1.0 if noisy and taken == noise_draw else 0.0
        taken += noisy
        model_input = scheduler.scale_model_input(x, t)
        x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return x.item(), taken, [float(t) for t in scheduler.timesteps]


def settings():
    base = dict(prediction_type="epsilon", predictor_order=2, corrector_order=2,
                algorithm_type="data_prediction", lower_order_final=True, tau="window")
    for steps, prediction, grid in itertools.product([1, 2, 5, 10], ["epsilon", "v_prediction"], GRIDS):
        yield dict(base, steps=steps, grid=grid, prediction_type=prediction)
    for (p, c), algorithm, tau in itertools.product(
        [(1, 1), (2, 2), (3, 3), (4, 4), (3, 1), (1, 4)], ["data_prediction", "noise_prediction"], TAUS
    ):
        yield dict(base, steps=10, grid="linspace", predictor_order=p, corrector_order=c,
                   algorithm_type=algorithm, tau=tau)
    for prediction, algorithm in itertools.product(["sample", "v_prediction"], ["data_prediction", "noise_prediction"]):
        yield dict(base, steps=10, grid="karras", prediction_type=prediction, algorithm_type=algorithm,
                   predictor_order=3, corrector_order=3, tau="sde")
    for algorithm in ["data_prediction", "noise_prediction"]:
        yield dict(base, steps=10, grid="trailing", predictor_order=3, corrector_order=4,
                   algorithm_type=algorithm, lower_order_final=False, tau="half")


def numbers(values):
    return " ".join(repr(v) for v in values)


def main():
    warnings.simplefilter("ignore")
    rows = []
    for setting in settings():
        m, draws, timesteps = run(setting, 1.0, None)
        values = [m] + [run(setting, 0.0, k)[0] for k in range(draws)]
        described = " ".join(f"{key}={value}" for key, value in setting.items())
        rows.append(f"{described} | {numbers(values)} | {numbers(timesteps)}")
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/sa_solver_fixtures.py",
        "# settings | m n_0 …: the run from x with draws z_k ends at m·x + Σ n_k z_k | the call timesteps",
    ] + rows
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} runs to {OUT}")


if __name__ == "__main__":
    main()
