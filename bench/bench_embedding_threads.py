"""analyze's encode pass: torch threads beside the decode workers (``runtime.analyze.embedding.threads``).

The embedding runs in the analyze process while ``runtime.analyze.workers`` spawned processes decode
and hash. With torch's default (one thread per core) there are more busy threads than cores and
OpenMP's barriers spin against the decoders; ``auto`` gives torch the cores the workers leave (at
least 1). Both runs encode the same shards in this process, the first (torch's default) is the
baseline; the ratio is what ``auto`` buys. Run: ``python bench/bench_embedding_threads.py [--quick]``.
Measured on the project's 2-core machine with 2 workers, Fashion-MNIST in the study's setup (10,000
images a shard): ~4 min a shard with 2 threads, 37 s with 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_download import write_shards  # noqa: E402
from bench_hashing import make_jpegs  # noqa: E402

from vlclean.datasets.convert import convert  # noqa: E402
from vlclean.datasets.raw import RawDataset  # noqa: E402
from vlclean.embeddings import build_embedder, embedding_threads  # noqa: E402
from vlclean.encode import EncodeOptions, encode_dataset  # noqa: E402
from vlclean.params import DownloadParams, parse  # noqa: E402


def encode(raw: RawDataset, out: Path, *, threads: int, workers: int, input_size: int) -> float:
    options = EncodeOptions(workers=workers, progress=False)
    t0 = time.perf_counter()
    encode_dataset(raw, out / "features", work_dir=out / "work",
                   make_embedder=lambda: build_embedder("efficientnet_lite0", input_size=input_size, threads=threads),
                   embedder_key={"model": "efficientnet_lite0", "input_size": input_size, "threads": threads},
                   options=options)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--input_size", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="small run (600 images)")
    args = ap.parse_args()
    n = 600 if args.quick else args.n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    auto = embedding_threads("auto", args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="bench_embedding_threads_"))
    try:
        write_shards(tmp / "hub", make_jpegs(n, np.random.default_rng(0)), 2)
        params = parse(DownloadParams, {"source": "hf", "hf": {"local_dir": str(tmp / "hub"),
                                                               "split_map": {"train": "train"}}}, "download")
        convert(params, 0, tmp / "raw", tmp / "convert_work", workers=1)
        raw = RawDataset.open(tmp / "raw")
        print(f"{n} JPEGs, {args.workers} decode workers, {cores} cores, EfficientNet-Lite0 at {args.input_size} px")
        base = encode(raw, tmp / "default", threads=cores, workers=args.workers, input_size=args.input_size)
        print(f"baseline, torch threads = cores ({cores}): {n / base:7.0f} images/s")
        t = encode(raw, tmp / "auto", threads=auto, workers=args.workers, input_size=args.input_size)
        print(f"auto, torch threads = {auto}:              {n / t:7.0f} images/s  ({base / t:.2f}x the baseline's speed)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
