"""Prints what a model that learns its variance (`face_train --variance-type learned_range`)
says its reverse steps' variance is: the statistics of v (−1: β̃_t, 1: β_t, in the log domain)
over training images noised to each of a few timesteps. Reads the model as diffusers does,
from a folder written by `examples/export_diffusers`.

    cargo run --release --example export_diffusers -- --checkpoint runs/faces-lv --out faces-lv-diffusers
    python3 scripts/learned_variance_probe.py faces-lv-diffusers runs/faces-train

Needs torch, diffusers, numpy and pillow; never run by CI.
"""
import argparse
import pathlib

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image


def load(path, size):
    """The image's centred square in grayscale at `size`, in [−1, 1], as face_train takes it."""
    image = Image.open(path).convert("L")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 127.5 - 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=pathlib.Path)
    parser.add_argument("images", type=pathlib.Path)
    parser.add_argument("--count", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    unet = UNet2DModel.from_pretrained(args.model / "unet").eval()
    scheduler = DDPMScheduler.from_pretrained(args.model / "scheduler")
    assert unet.config.out_channels == 2 * unet.config.in_channels, "the model learns no variance"
    files = sorted(path for path in args.images.rglob("*") if path.suffix in {".png", ".pgm", ".jpg"})
    x0 = torch.tensor(np.stack([load(path, unet.config.sample_size) for path in files[: args.count]]))
    x0 = x0[:, None]
    alphas_cumprod = scheduler.alphas_cumprod
    channels = unet.config.in_channels
    for t in [999, 800, 500, 200, 100, 50, 20, 5, 1]:
        noisy = alphas_cumprod[t].sqrt() * x0 + (1 - alphas_cumprod[t]).sqrt() * torch.randn_like(x0)
        with torch.no_grad():
            v = unet(noisy, torch.full((len(x0),), t)).sample[:, channels:]
        print(
            f"t {t:3}: v mean {v.mean():+.3f}, std {v.std():.3f}, "
            f"5th–95th percentile {v.quantile(0.05):+.3f} … {v.quantile(0.95):+.3f}"
        )


if __name__ == "__main__":
    main()
