#!/usr/bin/env python3
"""Per-image mean brightness of the PNGs under each folder given (searched recursively; of
each image's largest centred square, which face_train trains on), in [0, 1]: the mean, the
spread of the means (standard deviation, 1st and 99th percentiles, darkest and brightest).
What zero terminal SNR is meant to widen (Lin et al. 2023, §3): a model trained without it
cannot draw images much darker or brighter than average.

    python3 scripts/brightness.py runs/faces-train runs/samples-v runs/samples-v-zsnr

Needs numpy and pillow (`pip install numpy pillow`).
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def square_mean(file):
    """The mean of the largest centred square of `file` (what face_train crops), grayscale,
    in [0, 1]."""
    pixels = np.asarray(Image.open(file).convert("L"), dtype=np.float64) / 255
    height, width = pixels.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top : top + side, left : left + side].mean()


def image_means(folder):
    """The mean of each PNG under `folder`."""
    return np.array([square_mean(file) for file in sorted(Path(folder).rglob("*.png"))])


def main():
    print("| images | count | mean | std | 1st – 99th percentile | darkest – brightest |")
    print("| --- | --- | --- | --- | --- | --- |")
    for folder in sys.argv[1:]:
        means = image_means(folder)
        low, high = np.percentile(means, [1, 99])
        print(
            f"| {folder} | {len(means)} | {means.mean():.3f} | {means.std():.3f} | "
            f"{low:.3f} – {high:.3f} | {means.min():.3f} – {means.max():.3f} |"
        )


if __name__ == "__main__":
    main()
