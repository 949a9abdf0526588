"""Why faiss indexes get their rows zero-padded to a multiple of 16 dimensions (vlclean.search.embedding).

faiss's scalar-quantizer kernels (float16, sq8, bf16 storage) have SIMD paths only when the
dimension is a multiple of 8/16; otherwise they fall back to scalar code. The `pixels` embedding is
305-d, so every IVF search of it (analyze's neighbours, noise's k = 50, detect_leaks' train x train
above EXACT_PAIR_BUDGET) ran the slow path. Zero columns change no inner product.

Measured in one process, one thread, the same rows and queries: IVF-float16 over the raw 305-d rows
(the baseline), the same padded to 320-d (what the library builds), and IVF-flat for reference; the
neighbours found must agree. Prints CPU seconds and the ratio against the baseline.

Usage: ``python bench/bench_ivf_padding.py [--rows 100000 --queries 5000 --dim 305] [--quick]``.
Exits 1 when padding is not at least 2x faster or the neighbours differ beyond float16 ties.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlclean.search import embedding as emb  # noqa: E402

MIN_SPEEDUP = 2.0
MIN_AGREEMENT = 0.95  # share of top-k ids shared by the padded and raw float16 searches


def clustered_rows(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(max(1, n // 100), dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def timed_search(rows: np.ndarray, queries: np.ndarray, k: int, *, pad: bool, storage: str) -> tuple[float, np.ndarray]:
    saved = emb.SIMD_DIM_MULTIPLE
    emb.SIMD_DIM_MULTIPLE = saved if pad else 1
    try:
        index = emb.build_embedding_index(rows, index="ivf", storage=storage, seed=0)
    finally:
        emb.SIMD_DIM_MULTIPLE = saved
    start = time.process_time()
    _, ids = index.search(queries, k)
    return time.process_time() - start, ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=5_000)
    ap.add_argument("--dim", type=int, default=305, help="the pixels embedding's dimension")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="20,000 rows, 1,000 queries")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.queries = 20_000, 1_000
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = clustered_rows(args.rows, args.dim, rng)
    queries = rows[rng.choice(args.rows, args.queries, replace=False)]
    base_s, base_ids = timed_search(rows, queries, args.k, pad=False, storage="float16")
    pad_s, pad_ids = timed_search(rows, queries, args.k, pad=True, storage="float16")
    flat_s, _ = timed_search(rows, queries, args.k, pad=True, storage="float32")
    agree = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(base_ids, pad_ids)])
    print(f"{args.rows:,} rows x {args.dim} dims, {args.queries:,} queries, k = {args.k}, 1 thread (CPU s)")
    print(f"  IVF float16, {args.dim}-d (baseline)     {base_s:7.2f}")
    print(f"  IVF float16, padded to {-(-args.dim // 16) * 16}-d        {pad_s:7.2f}   {base_s / pad_s:5.1f}x faster")
    print(f"  IVF flat (float32), padded      {flat_s:7.2f}   {base_s / flat_s:5.1f}x faster")
    print(f"  top-{args.k} ids shared, padded vs baseline: {agree:.4f}")
    ok = base_s / pad_s >= MIN_SPEEDUP and agree >= MIN_AGREEMENT
    if not ok:
        print(f"MISSED: speed-up >= {MIN_SPEEDUP}x and agreement >= {MIN_AGREEMENT}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
