#!/usr/bin/env python3
"""Per-image mean brightness of the PNGs under each folder given (searched recursively; of
each image's largest centred square, which face_train trains on), in [0, 1]: the mean, the
spread of the means (standard deviation, 1st and 99th percentiles, darkest and brightest).
What zero terminal SNR is meant to widen (Lin et al. 2023, §3): a model trained without it
cannot draw images much darker or brighter than average. Beside them, the mean per-image
contrast (the standard deviation of an image's pixels) and the share of pixels at pure black
or white: what strong guidance inflates (oversaturation; Sadat et al. 2025).

    python3 scripts/brightness.py runs/faces-train runs/samples-v runs/samples-v-zsnr

A PNG file given instead of a folder is read as `face_sample`'s grid (`--out`): `--count`
tiles of `--tile` pixels, ⌈√count⌉ to a row, 2 white pixels apart.

    python3 scripts/brightness.py runs/faces-train runs/grid.png --count 500 --tile 32

Needs numpy and pillow (`pip install numpy pillow`).
"""
import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image


def statistics(pixels):
    """The mean, the standard deviation and the share of values at 0 or 1 of `pixels`."""
    return pixels.mean(), pixels.std(), np.mean((pixels <= 0) | (pixels >= 1))


def square_statistics(file):
    """`statistics` of the largest centred square of `file` (what face_train crops),
    grayscale, in [0, 1]."""
    pixels = np.asarray(Image.open(file).convert("L"), dtype=np.float64) / 255
    height, width = pixels.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return statistics(pixels[top : top + side, left : left + side])


def image_statistics(folder):
    """`statistics` of each PNG under `folder`, one row each."""
    files = sorted(Path(folder).rglob("*.png"))
    return np.array([square_statistics(file) for file in files])


def tile_statistics(grid, count, tile, gap=2):
    """`statistics` of each of the first `count` tiles of face_sample's grid `grid`."""
    pixels = np.asarray(Image.open(grid).convert("L"), dtype=np.float64) / 255
    columns = math.ceil(math.sqrt(count))
    rows = []
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (tile + gap), column * (tile + gap)
        rows.append(statistics(pixels[top : top + tile, left : left + tile]))
    return np.array(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="folders of PNGs, or face_sample grids")
    parser.add_argument("--count", type=int, default=500, help="images in each grid")
    parser.add_argument("--tile", type=int, default=32, help="a grid's tile size in pixels")
    args = parser.parse_args()
    print(
        "| images | count | mean | std | 1st – 99th percentile | darkest – brightest "
        "| contrast | black or white |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in args.paths:
        if Path(folder).is_file():
            rows = tile_statistics(folder, args.count, args.tile)
        else:
            rows = image_statistics(folder)
        means, contrasts, clipped = rows.T
        low, high = np.percentile(means, [1, 99])
        print(
            f"| {folder} | {len(means)} | {means.mean():.3f} | {means.std():.3f} | "
            f"{low:.3f} – {high:.3f} | {means.min():.3f} – {means.max():.3f} | "
            f"{contrasts.mean():.3f} | {clipped.mean():.2%} |"
        )


if __name__ == "__main__":
    main()
