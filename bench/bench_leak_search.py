"""Benchmark of the leak-search engines at ImageNet scale (1.28M train x 50K test).

(a) Hamming: random 64-bit hashes with planted near pairs (a train hash with 0..10 bits flipped
    becomes a test hash), searched at distance <= 10 exactly, with and without mirrored queries;
    checked against a numpy brute force on a sample of queries, whose time is extrapolated.
(a') The brute-force Hamming engine (``method="brute"``: faiss ``IndexBinaryFlat`` range search) against
    a numpy popcount scan over the same pairs, one thread each: identical pairs, and the speed ratio.
(b) Embeddings: clustered unit vectors (a mixture of gaussians, like image embeddings) stored as
    float16; queries are near-duplicates of base rows plus fresh draws; an approximate index
    (IVF, float16 storage) is built and its recall@1 measured against exact search on a sample.

Usage: ``python bench/bench_leak_search.py [--train 1280000 --test 50000] [--quick]``.
Exits 1 when a target is missed (time, memory, exact agreement, recall).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

from _common import current_rss_gb, peak_rss_gb  # noqa: E402  (bench/ is on sys.path when run)

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlclean.search.embedding import build_embedding_index, embedding_pairs, recall_check
from vlclean.search.hamming import hamming_pairs

HAMMING_TIME_TARGET_S = 60.0
HAMMING_RSS_TARGET_GB = 2.0
RECALL_TARGET = 0.99


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1_280_000, help="base (train) rows")
    parser.add_argument("--test", type=int, default=50_000, help="query (test) rows")
    parser.add_argument("--planted", type=int, default=1000, help="planted near pairs (Hamming)")
    parser.add_argument("--max-distance", type=int, default=10)
    parser.add_argument("--sample", type=int, default=200, help="queries checked by brute force (Hamming)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--centres", type=int, default=1000, help="mixture components (embeddings)")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF cells visited (default: library's)")
    parser.add_argument("--nlist", type=int, default=None, help="IVF cells (default: library's)")
    parser.add_argument("--recall-sample", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="Hamming worker threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scan-queries", type=int, default=2048, help="queries of the brute-force comparison")
    parser.add_argument("--skip-hamming", action="store_true")
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small run: 100K train x 5K test")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.planted = 100_000, 5_000, 200
    return args


# ------------------------------------------------------------------ (a) Hamming


def make_hashes(
    args: argparse.Namespace, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """train (B,), test (Q,), test mirrors (Q,); planted pairs: test rows, train rows, whether via the mirror.

    A planted test hash (or, for a fifth of them, its mirror) is its train hash with 0..max_distance bits flipped.
    """
    train = rng.integers(0, 2**64, size=args.train, dtype=np.uint64)
    test = rng.integers(0, 2**64, size=args.test, dtype=np.uint64)
    mirror = rng.integers(0, 2**64, size=args.test, dtype=np.uint64)
    n = min(args.planted, args.test, args.train)
    test_rows = rng.choice(args.test, size=n, replace=False)
    train_rows = rng.choice(args.train, size=n, replace=False)
    flips = rng.integers(0, args.max_distance + 1, size=n)
    via_mirror = rng.random(n) < 0.2
    for t, b, d, m in zip(test_rows, train_rows, flips, via_mirror):
        mask = 0
        for bit in rng.choice(64, size=d, replace=False):
            mask |= 1 << int(bit)
        (mirror if m else test)[t] = np.uint64(int(train[b]) ^ mask)
    return train, test, mirror, test_rows, train_rows, via_mirror


def brute_force(query: np.ndarray, base: np.ndarray, max_distance: int, mirror: np.ndarray | None) -> set:
    """{(query row, base row, distance)} with numpy, base in blocks (reference for a sample)."""
    found = set()
    block = 1 << 14
    for start in range(0, len(base), block):
        dist = np.bitwise_count(query[:, None] ^ base[None, start : start + block])
        if mirror is not None:
            dist = np.minimum(dist, np.bitwise_count(mirror[:, None] ^ base[None, start : start + block]))
        qi, bi = np.nonzero(dist <= max_distance)
        found.update(zip(qi.tolist(), (bi + start).tolist(), dist[qi, bi].astype(int).tolist()))
    return found


def bench_hamming(args: argparse.Namespace, rng: np.random.Generator) -> bool:
    print(f"== (a) Hamming search: {args.train:,} train x {args.test:,} test hashes, distance <= {args.max_distance}")
    train, test, mirror, test_rows, train_rows, via_mirror = make_hashes(args, rng)
    print(
        f"data: {current_rss_gb():.2f} GB RSS; {len(test_rows)} planted pairs ({via_mirror.sum()} through the mirror)"
    )
    ok = True
    sample_rows = np.sort(
        np.concatenate(
            [test_rows[: args.sample // 2], rng.choice(args.test, size=args.sample - args.sample // 2, replace=False)]
        )
    )
    sample_rows = np.unique(sample_rows)
    for label, use_mirror in (("plain", False), ("with mirrors", True)):
        tracemalloc.start()
        t0 = time.perf_counter()
        pairs = hamming_pairs(
            test,
            train,
            max_distance=args.max_distance,
            query_mirror=mirror if use_mirror else None,
            n_threads=args.threads,
        )
        seconds = time.perf_counter() - t0
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        found = set(zip(pairs["query_idx"].tolist(), pairs["base_idx"].tolist()))
        expected = [(t, b) for t, b, m in zip(test_rows, train_rows, via_mirror) if use_mirror or not m]
        recovered = sum((int(t), int(b)) in found for t, b in expected)

        t0 = time.perf_counter()
        reference = brute_force(
            test[sample_rows], train, args.max_distance, mirror[sample_rows] if use_mirror else None
        )
        brute_s = time.perf_counter() - t0
        reference = {(int(sample_rows[q]), b, d) for q, b, d in reference}
        in_sample = pairs[pairs["query_idx"].isin(sample_rows)]
        got = set(zip(in_sample["query_idx"].tolist(), in_sample["base_idx"].tolist(), in_sample["distance"].tolist()))
        agree = got == reference
        brute_full = brute_s * args.test / len(sample_rows)
        rss = peak_rss_gb()
        print(
            f"hamming search ({label}): {seconds:.1f} s (target < {HAMMING_TIME_TARGET_S:.0f} s), "
            f"brute force extrapolated {brute_full:.0f} s, speed-up {brute_full / seconds:.0f}x"
        )
        print(
            f"  found {len(pairs):,} pairs; planted recovered {recovered}/{len(expected)}; "
            f"exact agreement on {len(sample_rows)} queries vs all {args.train:,}: {'yes' if agree else 'NO'} "
            f"({len(reference)} reference pairs)"
        )
        print(
            f"  memory: peak RSS {rss:.2f} GB (target < {HAMMING_RSS_TARGET_GB:.0f} GB), "
            f"numpy peak during search {traced_peak / 2**30:.2f} GB"
        )
        ok &= agree and recovered == len(expected) and seconds < HAMMING_TIME_TARGET_S and rss < HAMMING_RSS_TARGET_GB
    return ok


def numpy_scan(query: np.ndarray, base: np.ndarray, max_distance: int, max_candidates: int = 2_000_000) -> set:
    """The engine ``method="brute"`` used before faiss: XOR + popcount over base blocks of
    ``max_candidates / len(query)`` rows (a 16 MB distance block at the defaults)."""
    found = set()
    block = max(1, max_candidates // len(query))
    for start in range(0, len(base), block):
        dist = np.bitwise_count(query[:, None] ^ base[None, start : start + block])
        qi, bi = np.nonzero(dist <= max_distance)
        found.update(zip(qi.tolist(), (bi + start).tolist(), dist[qi, bi].astype(int).tolist()))
    return found


def bench_hamming_scan(args: argparse.Namespace, rng: np.random.Generator) -> bool:
    """(a') faiss IndexBinaryFlat (the library's scan engine) vs a numpy popcount scan, one thread each."""
    n_base, n_query = min(args.train, 200_000), args.scan_queries
    print(f"\n== (a') brute-force Hamming: {n_base:,} x {n_query:,} hashes, distance <= {args.max_distance}, 1 thread")
    base = rng.integers(0, 2**64, size=n_base, dtype=np.uint64)
    query = rng.integers(0, 2**64, size=n_query, dtype=np.uint64)
    query[: n_query // 4] = base[rng.choice(n_base, size=n_query // 4, replace=False)] ^ np.uint64(0b1011)
    hamming_pairs(query[:8], base, max_distance=args.max_distance, method="brute", n_threads=1)  # warm-up
    t0 = time.perf_counter()
    pairs = hamming_pairs(query, base, max_distance=args.max_distance, method="brute", n_threads=1)
    faiss_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = numpy_scan(query, base, args.max_distance)
    numpy_s = time.perf_counter() - t0
    got = set(zip(pairs["query_idx"].tolist(), pairs["base_idx"].tolist(), pairs["distance"].tolist()))
    n_pairs = n_base * n_query
    print(f"faiss IndexBinaryFlat {faiss_s:.2f} s ({faiss_s / n_pairs * 1e9:.2f} ns/pair), numpy scan {numpy_s:.2f} s "
          f"({numpy_s / n_pairs * 1e9:.2f} ns/pair): ratio {numpy_s / faiss_s:.1f}x; "
          f"identical pairs: {'yes' if got == reference else 'NO'} ({len(reference):,})")
    return got == reference


# ------------------------------------------------------------------ (b) embeddings


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_embeddings(args: argparse.Namespace, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """base (B, D) float16, queries (Q, D) float32, and the base row each query copies (-1: fresh)."""
    dim = args.dim
    centres = unit_rows(rng.standard_normal((args.centres, dim), dtype=np.float32))
    spread = 0.8  # noise norm relative to the centre: cosine to the centre ~0.78, within a cluster ~0.6

    def draw(n: int) -> np.ndarray:
        x = centres[rng.integers(args.centres, size=n)]
        x += (spread / np.sqrt(dim)) * rng.standard_normal((n, dim), dtype=np.float32)
        return unit_rows(x)

    base = np.empty((args.train, dim), dtype=np.float16)
    for start in range(0, args.train, 1 << 16):
        stop = min(start + (1 << 16), args.train)
        base[start:stop] = draw(stop - start)
    n_dup = args.test // 5
    source = np.full(args.test, -1, dtype=np.int64)
    source[:n_dup] = rng.choice(args.train, size=n_dup, replace=False)
    queries = np.empty((args.test, dim), dtype=np.float32)
    near = base[source[:n_dup]].astype(np.float32)
    near += (0.15 / np.sqrt(dim)) * rng.standard_normal(near.shape, dtype=np.float32)  # cosine ~0.99
    queries[:n_dup] = unit_rows(near)
    queries[n_dup:] = draw(args.test - n_dup)
    order = rng.permutation(args.test)
    return base, queries[order], source[order]


def bench_embeddings(args: argparse.Namespace, rng: np.random.Generator) -> bool:
    print(f"\n== (b) embedding search: {args.train:,} x {args.test:,} at {args.dim} dims, {args.centres} clusters")
    t0 = time.perf_counter()
    base, queries, source = make_embeddings(args, rng)
    print(
        f"data: {time.perf_counter() - t0:.1f} s; base float16 {base.nbytes / 2**30:.2f} GB "
        f"(float32 would be {base.nbytes * 2 / 2**30:.2f} GB), queries {queries.nbytes / 2**30:.2f} GB; "
        f"RSS {current_rss_gb():.2f} GB"
    )
    t0 = time.perf_counter()
    built = build_embedding_index(
        base, index="ivf", nlist=args.nlist, nprobe=args.nprobe, storage="float16", seed=args.seed
    )
    build_s = time.perf_counter() - t0
    index_gb = built.size * (args.dim * 2 + 8) / 2**30
    print(
        f"index: IVF nlist={built.faiss_index.nlist} nprobe={built.nprobe} float16 storage, built in {build_s:.1f} s, "
        f"~{index_gb:.2f} GB; RSS {current_rss_gb():.2f} GB"
    )
    t0 = time.perf_counter()
    pairs = embedding_pairs(queries, base, min_similarity=0.95, k=10, index=built)
    search_s = time.perf_counter() - t0
    dup_rows = np.flatnonzero(source >= 0)
    found = set(zip(pairs["query_idx"].tolist(), pairs["base_idx"].tolist()))
    recovered = sum((int(q), int(source[q])) in found for q in dup_rows)
    print(
        f"embedding search: {search_s:.1f} s for {args.test:,} queries (k=10, cosine >= 0.95), "
        f"{len(pairs):,} pairs; planted near-duplicates recovered {recovered}/{len(dup_rows)}"
    )
    t0 = time.perf_counter()
    recall = recall_check(queries, base, index=built, sample=args.recall_sample, seed=args.seed)
    check_s = time.perf_counter() - t0
    exact_full = check_s * args.test / args.recall_sample
    print(
        f"recall@1 vs exact on {args.recall_sample} queries: {recall:.4f} (target >= {RECALL_TARGET}); "
        f"exact search (recall_check time) extrapolated {exact_full:.0f} s vs {build_s + search_s:.0f} s build+search, "
        f"speed-up {exact_full / (build_s + search_s):.1f}x"
    )
    print(
        f"  memory: peak RSS {peak_rss_gb():.2f} GB "
        f"(data {(base.nbytes + queries.nbytes) / 2**30:.2f} GB + index ~{index_gb:.2f} GB)"
    )
    return recall >= RECALL_TARGET and recovered == len(dup_rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    ok = True
    if not args.skip_hamming:
        ok &= bench_hamming(args, rng)
        ok &= bench_hamming_scan(args, rng)
    if not args.skip_embedding:
        ok &= bench_embeddings(args, rng)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; all targets met: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
