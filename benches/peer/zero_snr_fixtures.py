"""Writes crates/kiln-sampler/tests/fixtures/zero_snr.txt: what diffusers' Euler, DPM-Solver++
(2M) and UniPC schedulers make of a sampling loop over a zero-terminal-SNR schedule
(`rescale_betas_zero_snr`: linear betas 1e-4 to 0.02, scaled_linear 8.5e-4 to 0.012 or
squaredcos_cap_v2 over 1,000 steps, rescaled), where they put ᾱ = 2⁻²⁴ in place of the last
ᾱ = 0 so that σ_max ≈ 4096 is finite (the linear schedule's σ table is then no longer
increasing: σ_998 ≈ 15,400; the others' stays so). diffusers keeps ᾱ in f32, which puts the
cosine schedule's σ_min = √((1 − ᾱ_0)/ᾱ_0) 0.2 % off (1 − ᾱ_0 ≈ 4e-5 cancels), so for that
schedule each scheduler is handed its own ᾱ computed in f64 (its betas, its
`rescale_zero_terminal_snr`, then ᾱ_T = 2⁻²⁴) and runs in f64. (The linear schedule stays in
f32: there σ = 4096 is also σ_999 of the non-increasing table, and diffusers' lookup of the
first Karras timestep lands on 995.26 in f32 and on 999 in f64, where the values tie.) The
model is the
dummy x·t/(t+1) of diffusers' tests predicting v, on `trailing` grids of 5 and 10 steps (which
start at t = 999, the timestep of zero SNR) and with Karras σ. Every step is linear in the
sample, so a run from x ends at m·x; the script writes m for the Rust test
(crates/kiln-sampler/tests/diffusers.rs; the test needs no Python). Never run by CI.

    pip install torch diffusers
    python3 benches/peer/zero_snr_fixtures.py
"""
import itertools
import pathlib

import math

import diffusers
import torch
from deis_fixtures import loop
from diffusers.schedulers.scheduling_euler_discrete import rescale_zero_terminal_snr
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/zero_snr.txt"
SCHEDULER = dict(num_train_timesteps=1000, rescale_betas_zero_snr=True, prediction_type="v_prediction")
BETAS = {
    "linear": dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear"),
    "scaled_linear": dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
    "squaredcos_cap_v2": dict(beta_schedule="squaredcos_cap_v2"),
}
SAMPLERS = {
    "euler": EulerDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}
GRIDS = {
    "trailing": dict(timestep_spacing="trailing"),
    "karras": dict(timestep_spacing="trailing", use_karras_sigmas=True),
}


def cosine_alphas_cumprod(timesteps=1000):
    """diffusers' ᾱ for squaredcos_cap_v2 rescaled to zero terminal SNR, in f64, with
    ᾱ_T = 2⁻²⁴."""
    bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    beta = [min(1 - bar((i + 1) / timesteps) / bar(i / timesteps), 0.999) for i in range(timesteps)]
    abar = torch.cumprod(1 - rescale_zero_terminal_snr(torch.tensor(beta, dtype=torch.float64)), dim=0)
    abar[-1] = 2**-24
    return abar


def run(sampler, betas, grid, steps):
    """m: where the loop takes x = 1."""
    scheduler = SAMPLERS[sampler](**SCHEDULER, **BETAS[betas], **GRIDS[grid])
    dtype = torch.float32
    if betas == "squaredcos_cap_v2":
        scheduler.alphas_cumprod, dtype = cosine_alphas_cumprod(), torch.float64
    x = loop(scheduler, steps, torch.ones((1, 1, 1, 1), dtype=dtype))
    return x.item(), [float(t) for t in scheduler.timesteps]


def main():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/zero_snr_fixtures.py",
        "# sampler betas grid steps | m: the run from x ends at m·x | the call timesteps",
    ]
    for sampler, betas, grid, steps in itertools.product(SAMPLERS, BETAS, GRIDS, [5, 10]):
        if (sampler, betas, grid) == ("dpm++", "squaredcos_cap_v2", "karras"):
            lines.append(f"# {sampler} {betas} {grid} {steps}: left out; for this schedule diffusers' "
                         "DPM-Solver skips `.round()` and truncates its Karras timesteps to int64 "
                         "(998.62 becomes 998), where Kiln rounds them")
            continue
        try:
            m, timesteps = run(sampler, betas, grid, steps)
        except (IndexError, AssertionError) as error:  # its step index runs past repeated timesteps
            lines.append(f"# {sampler} {betas} {grid} {steps} fails in diffusers: {type(error).__name__} {error}")
            continue
        timesteps = " ".join(repr(t) for t in timesteps)
        lines.append(f"{sampler} {betas} {grid} {steps} | {m!r} | {timesteps}")
    OUT.write_text("\n".join(lines) + "\n")
    runs = sum(not line.startswith("#") for line in lines)
    print(f"wrote {runs} runs to {OUT}")


if __name__ == "__main__":
    main()
