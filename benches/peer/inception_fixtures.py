"""Writes the fixtures that prove kiln-metrics' InceptionV3 is pytorch-fid's, without its weights:

- crates/kiln-metrics/tests/fixtures/inception.json: pool3 features of bundled faces through
  pytorch-fid's `InceptionV3` (FID variant, resize to 299 and scaling to [-1, 1] on) loaded with
  deterministic weights that the Rust test computes from the same formula, and pytorch-fid's
  Fréchet distance between two sets of those features;
- crates/kiln-metrics/tests/fixtures/inception_stem.pth: the first layer's tensors under
  those weights, saved by `torch.save` as pytorch-fid's `.pth` is, for the reader's test.

The weights: tensor `name` of `n` values gets v_i = sin(12.9898 i + 0.618034 s), i = 0 … n-1,
s the sum of the bytes of `name`, scaled by its role (convolution: 2 / sqrt(fan-in), He's scale;
batch norm: γ = 1 + 0.2 v, β = 0.1 v, mean 0.1 v, variance 1 + 0.5 v), computed in float64 and
stored as float32. Never run by CI.

    pip install torch torchvision scipy pytorch-fid
    python3 benches/peer/inception_fixtures.py
"""
import json
import pathlib

import numpy as np
import torch
from PIL import Image
import pytorch_fid.inception as fid_inception
from pytorch_fid.fid_score import calculate_frechet_distance

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/kiln-metrics/tests/fixtures"
FACES = ROOT / "assets/faces"

# Set A: photo 1 of people 1-6; set B: photo 1 of people 7-12.
SET_A = [f"s{person}/1.png" for person in range(1, 7)]
SET_B = [f"s{person}/1.png" for person in range(7, 13)]
# How many rows of features are stored whole (the rest enter through the FD).
STORED_ROWS = 3


def formula(name, shape):
    """The deterministic weights (see the module's doc)."""
    count = int(np.prod(shape))
    phase = sum(name.encode()) * 0.618034
    v = np.sin(np.arange(count, dtype=np.float64) * 12.9898 + phase)
    if name.endswith("conv.weight"):
        v = (2.0 / np.sqrt(float(np.prod(shape[1:])))) * v
    elif name.endswith("bn.weight"):
        v = 1.0 + 0.2 * v
    elif name.endswith("bn.bias") or name.endswith("bn.running_mean"):
        v = 0.1 * v
    elif name.endswith("bn.running_var"):
        v = 1.0 + 0.5 * v
    else:
        v = 0.01 * v
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def formula_state(module):
    return {
        name: tensor if name.endswith("num_batches_tracked") else formula(name, tuple(tensor.shape))
        for name, tensor in module.state_dict().items()
    }


def fid_network():
    """pytorch-fid's InceptionV3 (pool3 only), its weight download replaced by the formula."""
    load = torch.nn.Module.load_state_dict
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: None
    torch.nn.Module.load_state_dict = lambda self, _state, *a, **k: load(self, formula_state(self))
    try:
        return fid_inception.InceptionV3([3]).eval()
    finally:
        torch.nn.Module.load_state_dict = load


def images(paths):
    """Grayscale PNGs as pytorch-fid reads an image (PIL's RGB, ToTensor's [0, 1])."""
    arrays = [np.asarray(Image.open(FACES / p).convert("RGB"), dtype=np.float32) / 255.0
              for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def main():
    network = fid_network()
    with torch.no_grad():
        a = network(images(SET_A))[0].squeeze(3).squeeze(2).numpy()
        b = network(images(SET_B))[0].squeeze(3).squeeze(2).numpy()
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    fd = calculate_frechet_distance(a64.mean(axis=0), np.cov(a64, rowvar=False),
                                    b64.mean(axis=0), np.cov(b64, rowvar=False))
    print(f"features: mean {a.mean():.4f}, std {a.std():.4f}, max {a.max():.4f}; FD {fd:.6f}")
    fixture = {
        "set_a": SET_A,
        "set_b": SET_B,
        "features_a": [float(x) for x in a[:STORED_ROWS].ravel()],
        "fd": float(fd),
    }
    (FIXTURES / "inception.json").write_text(json.dumps(fixture))

    state = {name: tensor for name, tensor in network.blocks[0][0].state_dict().items()
             if not name.endswith("num_batches_tracked")}
    torch.save({f"Conv2d_1a_3x3.{name}": tensor for name, tensor in state.items()},
               FIXTURES / "inception_stem.pth")


if __name__ == "__main__":
    main()
