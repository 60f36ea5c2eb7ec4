"""Writes crates/kiln-sampler/tests/fixtures/dpm_singlestep.txt: what diffusers'
DPMSolverSinglestepScheduler makes of a sampling loop with the dummy model x·t/(t+1) of its
tests (linear betas 1e-4 to 0.02 over 1,000 steps), for crates/kiln-sampler/tests/diffusers.rs
(the test needs no Python).

The runs cover orders 1–3, `dpmsolver++`, `dpmsolver` (which needs `final_sigmas_type =
"sigma_min"`) and `sde-dpmsolver++` (orders 1 and 2), the `midpoint` and `heun` second-order
forms, ε, v and x_0 predictions, the default grid and Karras σ, in 1, 3, 5 and 10 steps; and
`lower_order_final = False` where diffusers keeps it (10 steps at order 2 and 9 at order 3,
final σ σ_min). As for benches/peer/lcm_fixtures.py, every step is linear in the sample and in its
fresh noise, so a run from x with noises z_0, z_1, … ends at m·x + Σ_k n_k z_k; the script finds
m and the n_k from unit inputs, giving diffusers the noise through a `randn_tensor` whose draws
it replaces.

The runs are diffusers' algorithm in f64: after `set_timesteps` the script recomputes its σ
table from ᾱ cumulated in f64 (diffusers keeps it in f32), and the sample and noise are f64.
The few-step runs of `dpmsolver`, whose update x_t = (α_t/α_s) x_s − s_t(e^h − 1) ε̂ cancels
large terms, amplify f32 rounding: diffusers' f32 run at order 3, v, in 5 steps ends at 0.6426
where its f64 run ends at 0.6406, and a fixture in f32 would test rounding, not the
algorithm. Never run by CI.

    pip install torch diffusers
    python3 benches/peer/dpm_singlestep_fixtures.py
"""
import itertools
import pathlib
from unittest import mock

import diffusers
import numpy as np
import torch
from diffusers import DPMSolverSinglestepScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/dpm_singlestep.txt"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")


def f64_sigmas(scheduler, steps):
    """The scheduler's σ after `set_timesteps(steps)`, from ᾱ cumulated in f64."""
    alphas_cumprod = np.cumprod(1.0 - np.linspace(SCHEDULER["beta_start"], SCHEDULER["beta_end"], 1000))
    table = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
    if scheduler.config.use_karras_sigmas:
        sigmas = scheduler._convert_to_karras(in_sigmas=np.flip(table).copy(), num_inference_steps=steps)
    else:
        sigmas = table[scheduler.timesteps.numpy()]
    last = table[0] if scheduler.config.final_sigmas_type == "sigma_min" else 0.0
    return torch.from_numpy(np.concatenate([sigmas, [last]]))


def run(settings, steps, sample, noise_draw):
    """(where the loop takes the one-element `sample` with noise 1 at draw `noise_draw` (None:
    none), the number of draws)."""
    scheduler = DPMSolverSinglestepScheduler(**settings, **SCHEDULER)
    scheduler.set_timesteps(steps)
    scheduler.sigmas = f64_sigmas(scheduler, steps)
    draws = itertools.count()

    def noise(shape, **kwargs):
        return torch.full(shape, 1.0 if next(draws) == noise_draw else 0.0, dtype=kwargs.get("dtype"))

    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float64) * scheduler.init_noise_sigma
    with mock.patch(f"{type(scheduler).__module__}.randn_tensor", noise):
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)
            x = scheduler.step(model_input * t / (t + 1), t, x).prev_sample
    return x.item(), next(draws)


def coefficients(settings, steps):
    """m, n_0, …: the run's coefficients (the n_k only for the SDE)."""
    m, draws = run(settings, steps, 1.0, None)
    if settings["algorithm_type"] != "sde-dpmsolver++":
        return [m]
    return [m] + [run(settings, steps, 0.0, k)[0] for k in range(draws)]


def main():
    runs = []
    algorithms = [("dpmsolver++", [1, 2, 3], "zero"), ("dpmsolver", [1, 2, 3], "sigma_min"),
                  ("sde-dpmsolver++", [1, 2], "zero")]
    for algorithm, orders, final in algorithms:
        for order, solver_type, prediction, karras, steps in itertools.product(
            orders, ["midpoint", "heun"], ["epsilon", "v_prediction", "sample"], [False, True], [1, 3, 5, 10]
        ):
            runs.append((algorithm, order, solver_type, prediction, karras, steps, final, True))
    for algorithm, order in [("dpmsolver++", 2), ("dpmsolver++", 3), ("dpmsolver", 2), ("dpmsolver", 3)]:
        steps = 10 if order == 2 else 9
        runs.append((algorithm, order, "midpoint", "epsilon", False, steps, "sigma_min", False))
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/dpm_singlestep_fixtures.py",
        "# algorithm_type solver_order solver_type prediction_type karras steps final_sigmas_type lower_order_final"
        " | m n_0 …: the run from x with noises z_k ends at m·x + Σ n_k z_k",
    ]
    for algorithm, order, solver_type, prediction, karras, steps, final, lower_order_final in runs:
        settings = dict(
            algorithm_type=algorithm, solver_order=order, solver_type=solver_type, prediction_type=prediction,
            use_karras_sigmas=karras, final_sigmas_type=final, lower_order_final=lower_order_final,
        )
        values = " ".join(repr(c) for c in coefficients(settings, steps))
        lines.append(
            f"{algorithm} {order} {solver_type} {prediction} {karras} {steps} {final} {lower_order_final} | {values}"
        )
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    main()
