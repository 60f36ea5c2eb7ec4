"""Loads a folder written by `examples/export_diffusers` with diffusers, as a PyTorch user
would, and samples from it.

    cargo run --release --example export_diffusers -- --checkpoint runs/faces --out faces-diffusers
    python3 benches/peer/diffusers_export_check.py faces-diffusers --out diffusers_samples.png

Checks that `DDPMPipeline.from_pretrained` takes the folder with every weight in place (diffusers
refuses missing weights, and this script refuses unexpected ones), that the scheduler holds the
exported betas, then draws `--count` images with DDIM in `--steps` steps (DDPM for a model that
learns its variance, `variance_type = "learned_range"`: diffusers' DDIM does not split the
variance off the UNet's output) and writes them as one grid. That Kiln's tensors and config are
diffusers' own is checked in Rust (crates/kiln-unet/tests/diffusers.rs); this is the end-to-end
look.
"""

import argparse
import json
import math
import pathlib

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMPipeline, UNet2DModel
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("diffusers_samples.png"))
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    _, loading = UNet2DModel.from_pretrained(args.folder / "unet", output_loading_info=True)
    problems = {kind: names for kind, names in loading.items() if names}
    assert not problems, problems

    pipeline = DDPMPipeline.from_pretrained(args.folder)
    exported = json.loads((args.folder / "scheduler/scheduler_config.json").read_text())
    betas = torch.tensor(exported["trained_betas"], dtype=torch.float32)
    assert torch.equal(pipeline.scheduler.betas, betas), "the scheduler's betas differ"
    parameters = sum(p.numel() for p in pipeline.unet.parameters())
    print(
        f"loaded {args.folder}: UNet2DModel of {parameters:,} parameters, "
        f"{pipeline.unet.config.sample_size}x{pipeline.unet.config.sample_size}, "
        f"{pipeline.scheduler.config.prediction_type}, {len(betas)} timesteps"
    )

    sampler = "DDPM"
    if pipeline.scheduler.config.variance_type != "learned_range":
        pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        sampler = "DDIM"
    generator = torch.Generator().manual_seed(args.seed)
    output = pipeline(
        batch_size=args.count,
        num_inference_steps=args.steps,
        generator=generator,
        output_type="np",
    )
    images = (np.clip(output.images, 0, 1) * 255).round().astype(np.uint8)
    columns = math.ceil(math.sqrt(args.count))
    rows = math.ceil(args.count / columns)
    height, width, channels = images.shape[1:]
    grid = np.zeros((rows * height, columns * width, channels), dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    Image.fromarray(grid.squeeze(-1) if channels == 1 else grid).save(args.out)
    print(f"wrote {args.count} {sampler} {args.steps}-step samples to {args.out}")


if __name__ == "__main__":
    main()
