"""Writes crates/kiln-sampler/tests/fixtures/unipc.txt: what diffusers' UniPCMultistepScheduler
makes of a sampling loop with the dummy model x·t/(t+1) of its tests (linear betas 1e-4 to
0.02 over 1,000 steps), over x̂_0 and over ε̂ (`predict_x0`), for
crates/kiln-sampler/tests/diffusers.rs (the test needs no Python).

The runs: `predict_x0` True and False, B(h) = `bh1` and `bh2`, orders 1–3, ε, v and x_0
predictions, on a `linspace` grid and with Karras σ, in 1, 2, 5 and 10 steps, all with
`final_sigmas_type = "sigma_min"` (over ε̂ a step to σ = 0 is NaN in diffusers); the
data-prediction runs at order 2 with `bh2` and `final_sigmas_type = "zero"` (with `bh1` diffusers'
last step is NaN there: it adds B(h)·0 with B(h) = −h = −∞); and 10-step runs with the corrector
left out of the first 1, 3 and 10 steps' results (`disable_corrector`, written `skip_corrector=k`
for [0, …, k − 1], Kiln's `skip_corrector`). Every step is linear in the
sample, so a run from x ends at m·x; the script writes m from a loop in f64 (the scheduler's
f32 tables widened, as in sigma_spacing_fixtures.py) and the call timesteps.

Never run by CI.

    pip install torch diffusers
    python3 benches/peer/unipc_fixtures.py
"""
import itertools
import pathlib

import diffusers
import torch
from deis_fixtures import GRIDS, SCHEDULER
from diffusers import UniPCMultistepScheduler
from sigma_spacing_fixtures import loop_in_f64

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-sampler/tests/fixtures/unipc.txt"


def settings():
    for predict_x0, solver, order, prediction, grid, steps in itertools.product(
        [True, False], ["bh1", "bh2"], [1, 2, 3], ["epsilon", "v_prediction", "sample"],
        ["linspace", "karras"], [1, 2, 5, 10],
    ):
        yield dict(predict_x0=predict_x0, solver_type=solver, solver_order=order, prediction_type=prediction,
                   grid=grid, steps=steps, final_sigmas_type="sigma_min")
    # bh1 to σ = 0 is NaN in diffusers: its last step adds B(h)·0 with B(h) = −h = −∞.
    for prediction, grid, steps in itertools.product(["epsilon", "v_prediction"], ["linspace", "karras"], [1, 2, 5, 10]):
        yield dict(predict_x0=True, solver_type="bh2", solver_order=2, prediction_type=prediction,
                   grid=grid, steps=steps, final_sigmas_type="zero")
    # The corrector left out of the first k steps' results: disable_corrector = [0, …, k − 1].
    for predict_x0, order, skip in itertools.product([True, False], [1, 2, 3], [1, 3, 10]):
        yield dict(predict_x0=predict_x0, solver_type="bh2", solver_order=order, prediction_type="epsilon",
                   grid="linspace", steps=10, final_sigmas_type="sigma_min", skip_corrector=skip)


def run(setting):
    config = {k: v for k, v in setting.items() if k not in ("grid", "steps", "skip_corrector")}
    config["disable_corrector"] = list(range(setting.get("skip_corrector", 0)))
    scheduler = UniPCMultistepScheduler(**SCHEDULER, **GRIDS[setting["grid"]], **config)
    x = loop_in_f64(scheduler, setting["steps"])
    return x.item(), [float(t) for t in scheduler.timesteps]


def main():
    lines = [
        f"# diffusers {diffusers.__version__}, torch {torch.__version__}: benches/peer/unipc_fixtures.py",
        "# settings | m: the run from x ends at m·x | the call timesteps",
    ]
    for setting in settings():
        m, timesteps = run(setting)
        described = " ".join(f"{key}={value}" for key, value in setting.items())
        lines.append(f"{described} | {m!r} | {' '.join(repr(t) for t in timesteps)}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} runs to {OUT}")


if __name__ == "__main__":
    main()
