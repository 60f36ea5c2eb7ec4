"""Writes crates/kiln-sampler/tests/fixtures/zero_snr.txt: what diffusers' Euler, DPM-Solver++
(2M) and UniPC schedulers make of a sampling loop over a zero-terminal-SNR schedule
(`rescale_betas_zero_snr`: linear betas 1e-4 to 0.02 over 1,000 steps, rescaled), where they
put ᾱ = 2⁻²⁴ in place of the last ᾱ = 0 so that σ_max ≈ 4096 is finite. The model is the
dummy x·t/(t+1) of diffusers' tests predicting v, on `trailing` grids of 5 and 10 steps (which
start at t = 999, the timestep of zero SNR) and with Karras σ. Every step is linear in the
sample, so a run from x ends at m·x; the script writes m for the Rust test
(crates/kiln-sampler/tests/diffusers.rs; the test needs no Python). Never run by CI.

    pip install torch diffusers
    python3 benches/peer/zero_snr_fixtures.py
"""
import itertools
import pathlib

import diffusers
import torch
from deis_fixtures import loop
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/zero_snr.txt"
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 rescale_betas_zero_snr=True, prediction_type="v_prediction")
SAMPLERS = {
    "euler": EulerDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}
GRIDS = {
    "trailing": dict(timestep_spacing="trailing"),
    "karras": dict(timestep_spacing="trailing", use_karras_sigmas=True),
}


def run(sampler, grid, steps):
    """m: where the loop takes x = 1."""
    scheduler = SAMPLERS[sampler](**SCHEDULER, **GRIDS[grid])
    x = loop(scheduler, steps, torch.ones((1, 1, 1, 1), dtype=torch.float32))
    return x.item(), [float(t) for t in scheduler.timesteps]


def main():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/zero_snr_fixtures.py",
        "# sampler grid steps | m: the run from x ends at m·x | the call timesteps",
    ]
    for sampler, grid, steps in itertools.product(SAMPLERS, GRIDS, [5, 10]):
        m, timesteps = run(sampler, grid, steps)
        lines.append(f"{sampler} {grid} {steps} | {m!r} | {' '.join(repr(t) for t in timesteps)}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    main()
