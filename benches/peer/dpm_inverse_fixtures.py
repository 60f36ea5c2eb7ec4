"""Writes crates/kiln-sampler/tests/fixtures/dpm_inverse.txt: what diffusers'
DPMSolverMultistepInverseScheduler makes of its own test loop
(tests/schedulers/test_scheduler_dpm_multi_inverse.py: linear betas 1e-4 to 0.02 over 1,000 steps,
10 inference steps, the dummy model x·t/(t+1), run from the data up) for the algorithm types,
orders, solver types, predictions, `lower_order_final`, `euler_at_final` and λ clipping Kiln
checks `DpmSolver::inverse` against (crates/kiln-sampler/tests/diffusers.rs; the test needs no
Python).

The `linspace` timestep grid and Karras, exponential and beta σ only: there diffusers' inverse grid
is the forward grid run backwards, as Kiln's is for every spacing (diffusers' `leading` inverse
grid ends past where its forward grid starts, and its `trailing` one starts at σ(T/N − 1) rather
than at the data).

Every step of the deterministic loop is linear in the sample, elementwise, so a run from x ends
at m·x: the script finds m by running diffusers from x = 1. It also prints diffusers' thresholded
test loop with its tables in f32 (as published) and in f64 (Kiln computes them in f64). Never run
by CI.

    pip install torch diffusers
    python3 benches/peer/dpm_inverse_fixtures.py
"""
import itertools
import pathlib
import warnings

import diffusers
import numpy as np
import torch
from diffusers import DPMSolverMultistepInverseScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/dpm_inverse.txt"
STEPS = 10


def run(config):
    """The test loop from the one-element sample 1."""
    scheduler = DPMSolverMultistepInverseScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", **config
    )
    # diffusers casts exponential and beta σ's timesteps to int64, which truncates them; Kiln rounds
    # the timesteps of every spacing, as diffusers does Karras σ's (see sigma_spacing_fixtures.py).
    lookup = scheduler._sigma_to_t
    scheduler._sigma_to_t = lambda sigma, log_sigmas: np.round(lookup(sigma, log_sigmas))
    scheduler.set_timesteps(STEPS)
    x = torch.ones((1, 1, 1, 1), dtype=torch.float32)
    for t in scheduler.timesteps:
        x = scheduler.step(x * t / (t + 1), t, x).prev_sample
    return x.item()


def configs():
    for algorithm, order, solver, prediction in itertools.product(
        ["dpmsolver++", "dpmsolver"], [1, 2, 3], ["midpoint", "heun"], ["epsilon", "v_prediction", "sample"]
    ):
        if order == 1 and solver == "heun":
            continue  # the same first-order step
        yield dict(algorithm_type=algorithm, solver_order=order, solver_type=solver,
                   prediction_type=prediction, lower_order_final=False)
    for order, flag in itertools.product([2, 3], ["lower_order_final", "euler_at_final"]):
        yield {"algorithm_type": "dpmsolver++", "solver_order": order, "prediction_type": "epsilon",
               "lower_order_final": flag == "lower_order_final", "euler_at_final": flag == "euler_at_final"}
    for order in [2, 3]:
        yield dict(algorithm_type="dpmsolver++", solver_order=order, prediction_type="epsilon",
                   lambda_min_clipped=-4.0, lower_order_final=False)
    # Karras, exponential and beta σ: diffusers' inverse grid is the forward one backwards with a
    # last step from σ_max to itself, which moves nothing at order 2 (Kiln makes no such call)
    # and divides by its h = 0 at order 3 (NaN). With `lower_order_final` diffusers takes that
    # step at first order and Kiln the one before it, so only without.
    for spacing, prediction in itertools.product(
        ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"], ["epsilon", "v_prediction"]
    ):
        yield {"algorithm_type": "dpmsolver++", "solver_order": 2, "prediction_type": prediction,
               spacing: True, "lower_order_final": False}


def thresholded_mean(dtype):
    """test_full_loop_no_noise_thres's mean |x| (published: 19.8933), with the scheduler's tables
    in `dtype`: diffusers' own run keeps them in f32, where σ(0) = √((1 − ᾱ_0)/ᾱ_0) = 0.01 from
    ᾱ_0 = 0.9999 carries a relative error of 1e-4 into the result."""
    scheduler = DPMSolverMultistepInverseScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
        lower_order_final=False, thresholding=True, dynamic_thresholding_ratio=0.87, sample_max_value=0.5,
    )
    betas = torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    scheduler.alphas_cumprod = alphas_cumprod.to(dtype)
    scheduler.alpha_t = alphas_cumprod.sqrt().to(dtype)
    scheduler.sigma_t = (1 - alphas_cumprod).sqrt().to(dtype)
    scheduler.lambda_t = (scheduler.alpha_t.log() - scheduler.sigma_t.log()).to(dtype)
    scheduler.set_timesteps(STEPS)
    scheduler.sigmas = scheduler.sigmas.to(dtype)
    x = (torch.arange(768, dtype=dtype).reshape(3, 8, 8, 4) / 768).permute(3, 0, 1, 2).contiguous()
    for t in scheduler.timesteps:
        x = scheduler.step(x * t / (t + 1), t, x).prev_sample
    return x.abs().mean().item()


def main():
    warnings.simplefilter("ignore")
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/dpm_inverse_fixtures.py",
        "# settings, then m: the inverted run from x ends at m·x",
    ]
    for config in configs():
        settings = " ".join(f"{key}={value}" for key, value in config.items())
        lines.append(f"{settings} | {run(config)!r}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")
    for dtype in [torch.float32, torch.float64]:
        print(f"test_full_loop_no_noise_thres with {dtype} tables: {thresholded_mean(dtype):.6f}")


if __name__ == "__main__":
    main()
