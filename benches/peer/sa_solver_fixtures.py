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
also writes each run's model-call timesteps.

Dynamic thresholding (ratio 0.87, max 0.5) makes the loop nonlinear, so those runs (τ = 0,
orders 2 and 3, every prediction, over x̂_0: diffusers' ε̂ path fails with thresholding) go
from the published tests' deterministic (4, 3, 8, 8) sample in 10 steps and write sum(|x|),
mean(|x|) and every 48th element of the result, as benches/peer/deis_fixtures.py does.

The script also prints how much diffusers' own f32 result of the run that amplifies
rounding most (orders 3 and 1 over ε̂, τ = 0) moves with the input. Never run by CI.

    pip install torch diffusers
    python3 benches/peer/sa_solver_fixtures.py
"""
import itertools
import pathlib
import warnings

import diffusers
import diffusers.schedulers.scheduling_sasolver as sasolver
import torch
from deis_fixtures import GRIDS, SCHEDULER, deterministic_sample
from diffusers import SASolverScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/sa_solver.txt"
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
    """(where the loop takes `sample` (a number: a one-element tensor) with draw `noise_draw`
    1 (None: none), the number of draws, the call timesteps)."""
    steps, grid, tau = settings["steps"], settings["grid"], settings["tau"]
    config = {k: v for k, v in settings.items() if k not in ("steps", "grid", "tau")}
    scheduler = SASolverScheduler(tau_func=TAUS[tau], **GRIDS[grid], **SCHEDULER, **config)
    scheduler.set_timesteps(steps)
    draws = Draws()
    sasolver.randn_tensor = draws
    sigmas = scheduler.sigmas.tolist()
    if not isinstance(sample, torch.Tensor):
        sample = torch.full((1, 1, 1, 1), sample, dtype=torch.float32)
    x = sample * scheduler.init_noise_sigma
    taken = 0
    for i, t in enumerate(scheduler.timesteps):
        noisy = TAUS[tau](t) > 0 and sigmas[i + 1] != sigmas[i]
        draws.next = 1.0 if noisy and taken == noise_draw else 0.0
        taken += noisy
        model_input = scheduler.scale_model_input(x, t)
        x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return (x.item() if x.numel() == 1 else x), taken, [float(t) for t in scheduler.timesteps]


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
    # λ_min = −4 drops t ≥ 889 of the linear schedule (λ_999 = −5.06); diffusers' `trailing`
    # grid then lays fewer points than asked, so only `linspace` and `leading`.
    for grid in ["linspace", "leading"]:
        yield dict(base, steps=10, grid=grid, lambda_min_clipped=-4.0)


def thresholded():
    """The nonlinear runs: settings, and the loop's result from the deterministic sample."""
    base = dict(steps=10, grid="linspace", tau="ode", algorithm_type="data_prediction",
                thresholding=True, dynamic_thresholding_ratio=0.87, sample_max_value=0.5)
    for order, prediction in itertools.product([2, 3], ["epsilon", "v_prediction", "sample"]):
        setting = dict(base, predictor_order=order, corrector_order=order, prediction_type=prediction)
        yield setting, run(setting, deterministic_sample(), None)[0]


def amplification():
    """m of the most rounding-sensitive run, from inputs 0.3 and 0.7 (f32) and in f64."""
    setting = dict(steps=10, grid="linspace", tau="ode", predictor_order=3, corrector_order=1,
                   algorithm_type="noise_prediction", prediction_type="epsilon")
    ms = {x: run(setting, x, None)[0] / x for x in (0.3, 0.7)}
    return ms


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
    for setting, x in thresholded():
        described = " ".join(f"{key}={value}" for key, value in setting.items())
        elements = numbers(x.flatten()[::48].tolist())
        rows.append(f"threshold {described} | {x.abs().sum().item()!r} {x.abs().mean().item()!r} | {elements}")
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/sa_solver_fixtures.py",
        "# settings | m n_0 …: the run from x with draws z_k ends at m·x + Σ n_k z_k | the call timesteps",
        "# threshold settings | sum(|x|) mean(|x|) | x.flatten()[::48], from the deterministic sample",
    ] + rows
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} runs to {OUT}")
    print("m of orders 3 and 1 over ε̂ (τ = 0) in f32, by input:", amplification())


if __name__ == "__main__":
    main()
