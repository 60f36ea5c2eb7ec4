"""Writes crates/kiln-metrics/tests/fixtures/reference.json: feature sets and what the reference
implementations make of them, for kiln-metrics' tests (which need no Python).

- FD: pytorch-fid's `calculate_frechet_distance` on `np.mean` / `np.cov` of the features;
- KID: torch-fidelity's `kid_features_to_metric`, once with one subset as large as two sets of
  equal size (the MMD of the sets themselves: the first n rows of each) and once with its default random subsets, whose indices are drawn
  again here with the same `np.random.RandomState` calls so that the Rust test can use them;
- precision and recall: torch-fidelity's `prc_features_to_metric` (k = 3).

The features are stored as float32 values (what a network gives) and handed to the references
as float64, the precision Kiln computes its statistics in. Never run by CI.

    pip install torch scipy pytorch-fid torch-fidelity
    python3 benches/peer/metrics_fixtures.py
"""
import json
import pathlib

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/kiln-metrics/tests/fixtures/reference.json"


def features(rng, count, dims, shift, scale):
    """`count` float32 rows: correlated Gaussian features, shifted and scaled."""
    mixing = rng.standard_normal((dims, dims)) / np.sqrt(dims)
    rows = rng.standard_normal((count, dims)) @ mixing * scale + shift
    return rows.astype(np.float32)


def fd(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(calculate_frechet_distance(a.mean(axis=0), np.cov(a, rowvar=False),
                                            b.mean(axis=0), np.cov(b, rowvar=False)))


def case(name, generated, real, kid_subsets, kid_subset_size, seed=2020):
    g64, r64 = torch.from_numpy(generated.astype(np.float64)), torch.from_numpy(real.astype(np.float64))
    # One subset as large as two sets of equal size is a permutation of each: the MMD of the
    # sets themselves (here the first n rows of each).
    n = min(len(generated), len(real))
    whole = kid_features_to_metric(g64[:n], r64[:n], kid_subsets=1, kid_subset_size=n, rng_seed=seed,
                                   verbose=False)
    kid = kid_features_to_metric(g64, r64, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                                 rng_seed=seed, verbose=False)
    # The subsets torch-fidelity drew: the same RandomState calls in the same order.
    rng = np.random.RandomState(seed)
    subsets = []
    for _ in range(kid_subsets):
        a = rng.choice(len(generated), kid_subset_size, replace=False).tolist()
        b = rng.choice(len(real), kid_subset_size, replace=False).tolist()
        subsets.append([a, b])
    prc = prc_features_to_metric(g64, r64, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False,
                                 verbose=False)
    return {
        "name": name,
        "dims": int(generated.shape[1]),
        # Each float32 by its shortest decimal, which reads back as the same float32.
        "generated": [float(str(v)) for v in generated.ravel()],
        "real": [float(str(v)) for v in real.ravel()],
        "fd": fd(generated, real),
        "mmd2_whole": whole["kernel_inception_distance_mean"],
        "kid_subsets": subsets,
        "kid_mean": kid["kernel_inception_distance_mean"],
        "kid_std": kid["kernel_inception_distance_std"],
        "precision": prc["precision"],
        "recall": prc["recall"],
        "f_score": prc["f_score"],
    }


def main():
    rng = np.random.default_rng(7)
    cases = [
        # More samples than dimensions: regular covariances.
        case("regular", features(rng, 240, 24, 0.3, 1.1), features(rng, 200, 24, 0.0, 1.0),
             kid_subsets=5, kid_subset_size=100),
        # Fewer samples than dimensions: singular covariances, the case pytorch-fid guards.
        case("singular", features(rng, 30, 48, 0.5, 0.8), features(rng, 36, 48, 0.0, 1.0),
             kid_subsets=3, kid_subset_size=20),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": cases}))
    for c in cases:
        print(c["name"], "fd", c["fd"], "mmd2", c["mmd2_whole"], "kid", c["kid_mean"], c["kid_std"],
              "precision", c["precision"], "recall", c["recall"])
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
