"""Benchmark: the mislabel judgement at ImageNet size (1,331,167 images x 1,000 classes), time and peak memory.

Usage: ``python bench/bench_mislabels_scale.py [--images 1331167] [--classes 1000] [--k 20] [--quick]``

The kNN classifier's neighbours are synthetic (each image's ``k`` neighbours drawn mostly from its
class, 3 % of labels flipped), so this measures what ``vlclean.detect.label_issues`` does after the
neighbour search: leave-one-out kNN probabilities made in float32 chunks and judged by cleanlab's
batched ``LabelInspector`` (two passes). Baseline in the same process: allocating the dense float32
probability matrix that the path never builds (N x K x 4 bytes), the floor of any dense approach.
Prints seconds, images/s, peak RSS, and the recall of the flipped labels.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlclean.detect import MislabelParams, label_issues  # noqa: E402


def synthetic_neighbours(n: int, k: int, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(sims, ids)`` (n, k): 90 % of each row's neighbours share its true class."""
    order = np.argsort(labels, kind="stable")
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ids = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, 100_000):
        rows = np.arange(start, min(n, start + 100_000))
        c = labels[rows]
        same = order[starts[c][:, None] + rng.integers(0, counts[c][:, None], size=(len(rows), k))]
        other = rng.integers(0, n, size=(len(rows), k))
        ids[rows] = np.where(rng.random((len(rows), k)) < 0.9, same, other)
    ids[ids == np.arange(n)[:, None]] = (ids[ids == np.arange(n)[:, None]] + 1) % n
    sims = np.sort(rng.uniform(0.5, 1.0, size=(n, k)).astype(np.float32), axis=1)[:, ::-1]
    return np.ascontiguousarray(sims), ids


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1_331_167)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="30,000 images (still the batched path)")
    args = ap.parse_args()
    n = 30_000 if args.quick else args.images
    rng = np.random.default_rng(0)
    true = rng.integers(0, args.classes, size=n)
    sims, ids = synthetic_neighbours(n, args.k, true, rng)
    given = true.copy()
    flip = rng.choice(n, size=int(0.03 * n), replace=False)
    given[flip] = (true[flip] + rng.integers(1, args.classes, size=len(flip))) % args.classes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    dense_gb = n * args.classes * 4 / 2**30
    t0 = time.perf_counter()
    found = label_issues(np.zeros((n, 1), np.float32), given, args.classes,
                         MislabelParams(classifier="knn", knn_k=args.k), 0, neighbours=(sims, ids))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    recall = found.flag[flip].mean()
    precision = found.flag[flip].sum() / max(1, found.flag.sum())
    print(f"images {n:,} x classes {args.classes}: label_issues (kNN, batched) {seconds:.1f} s = {n / seconds:,.0f} images/s; "
          f"peak RSS {peak:,.0f} MB (inputs held before: {before:,.0f} MB); a dense float32 matrix alone would be "
          f"{dense_gb:.1f} GB; flipped labels: recall {recall:.3f}, precision {precision:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
