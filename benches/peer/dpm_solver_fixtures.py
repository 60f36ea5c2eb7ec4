"""Writes crates/kiln-sampler/tests/fixtures/dpm_solver.txt: what diffusers'
DPMSolverMultistepScheduler makes of its own test loop (tests/schedulers/test_scheduler_dpm_multi.py:
linear betas 1e-4 to 0.02 over 1,000 steps, 10 inference steps, the dummy model x·t/(t+1)) for the
algorithm types, orders, solver types, predictions, noise levels, λ clipping and
`euler_at_final` Kiln checks itself against
(crates/kiln-sampler/tests/diffusers.rs; the test needs no Python).

Every step of that loop is linear in the sample and in the step's noise, elementwise, so a run
from x with noises z_0 … z_9 ends at m·x + Σ_k n_k z_k for scalars m, n_k. The script finds them
by running diffusers from x = 1 with no noise (m) and from x = 0 with noise 1 at step k only
(n_k), passing the noise as `variance_noise`; the Rust test then draws its own noise and checks
every element of its result against m·x + Σ n_k z_k. Never run by CI.

    pip install torch diffusers
    python3 benches/peer/dpm_solver_fixtures.py
"""
import itertools
import pathlib
import warnings

import diffusers
import torch
from diffusers import DPMSolverMultistepScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/dpm_solver.txt"
STEPS = 10


def run(config, sample, noise_step):
    """The test loop from the one-element `sample`, with noise 1 at `noise_step` (None: none)."""
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", **config
    )
    scheduler.set_timesteps(STEPS)
    x = torch.full((1, 1, 1, 1), sample, dtype=torch.float32)
    for k, t in enumerate(scheduler.timesteps):
        output = x * t / (t + 1)
        noise = torch.full_like(x, 1.0 if k == noise_step else 0.0)
        x = scheduler.step(output, t, x, variance_noise=noise).prev_sample
    return x.item()


def configs():
    predictions = ["epsilon", "v_prediction", "sample"]
    for algorithm, order, solver, prediction in itertools.product(
        ["dpmsolver", "sde-dpmsolver"], [1, 2, 3], ["midpoint", "heun"], predictions
    ):
        if order == 3 and algorithm.startswith("sde"):
            continue  # diffusers has no third-order sde-dpmsolver
        if order == 1 and solver == "heun":
            continue  # the same first-order step
        yield dict(algorithm_type=algorithm, solver_order=order, solver_type=solver,
                   prediction_type=prediction, final_sigmas_type="sigma_min", lower_order_final=False)
    for order, solver, final in itertools.product([1, 2], ["midpoint", "heun"], ["zero", "sigma_min"]):
        yield dict(algorithm_type="sde-dpmsolver++", solver_order=order, solver_type=solver,
                   prediction_type="epsilon", final_sigmas_type=final, lower_order_final=False)
    for algorithm, final in [("dpmsolver++", "zero"), ("dpmsolver", "sigma_min")]:
        for order in [2, 3]:
            yield dict(algorithm_type=algorithm, solver_order=order, prediction_type="v_prediction",
                       use_lu_lambdas=True, final_sigmas_type=final, lower_order_final=True)
    # λ_min = −4 drops the timesteps with σ > e⁴ (t ≥ 889 of the linear schedule, λ_999 = −5.06);
    # diffusers' `trailing` grid then lays fewer points than asked (Kiln lays them all), so
    # only `linspace` and `leading`.
    for algorithm, order, spacing in itertools.product(
        ["dpmsolver++", "sde-dpmsolver++"], [2, 3], ["linspace", "leading"]
    ):
        if order == 3 and algorithm.startswith("sde"):
            continue
        yield dict(algorithm_type=algorithm, solver_order=order, prediction_type="epsilon",
                   lambda_min_clipped=-4.0, timestep_spacing=spacing, lower_order_final=False,
                   final_sigmas_type="sigma_min")
    for algorithm, order in [("sde-dpmsolver++", 2), ("dpmsolver++", 3)]:
        yield dict(algorithm_type=algorithm, solver_order=order, prediction_type="epsilon",
                   euler_at_final=True, final_sigmas_type="sigma_min", lower_order_final=False)


def main():
    warnings.simplefilter("ignore")
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/dpm_solver_fixtures.py",
        "# settings, then m and n_0 … n_9: the run from x with noises z_k ends at m·x + Σ n_k z_k",
    ]
    for config in configs():
        settings = " ".join(f"{key}={value}" for key, value in config.items())
        coefficients = [run(config, 1.0, None)] + [run(config, 0.0, k) for k in range(STEPS)]
        lines.append(settings + " | " + " ".join(f"{c!r}" for c in coefficients))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    main()
