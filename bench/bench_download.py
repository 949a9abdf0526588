"""Benchmark: the Hub conversion path (parquet shards in the Hub's schema -> raw layout), images/s.

Usage: ``python bench/bench_download.py [--n 4000] [--shards 4] [--workers 2] [--quick]``

Writes N realistic 256-px JPEGs as Hub-style parquet shards, then in the same process times
(a) baseline: streaming the shards with pyarrow and hashing the bytes (the I/O floor), and
(b) ours: the full conversion (verify-decode every image, sha256, write shards + index), with 1 and
``--workers`` processes. Prints images/s and the ratio of each to the baseline, plus peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_hashing import make_jpegs  # noqa: E402

from vlclean.datasets.convert import convert  # noqa: E402
from vlclean.params import DownloadParams  # noqa: E402
from vlclean.params import parse  # noqa: E402


def write_shards(root: Path, items: list[tuple[str, bytes]], shards: int, n_classes: int = 10) -> None:
    features = {"image": {"_type": "Image"}, "label": {"names": [f"c{i}" for i in range(n_classes)], "_type": "ClassLabel"}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    sch = pa.schema([("image", image_type), ("label", pa.int64())], metadata=meta)
    (root / "data").mkdir(parents=True)
    per = int(np.ceil(len(items) / shards))
    for s in range(shards):
        chunk = items[s * per : (s + 1) * per]
        table = pa.table({"image": [{"bytes": b, "path": f"{i}.JPEG"} for i, b in chunk],
                          "label": [k % n_classes for k in range(len(chunk))]}, schema=sch)
        pq.write_table(table, root / "data" / f"train-{s:05d}-of-{shards:05d}-x.parquet")


def baseline(root: Path) -> int:
    n = 0
    for path in sorted((root / "data").glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=512, columns=["image"]):
            for item in batch.column(0).to_pylist():
                hashlib.sha256(item["bytes"]).hexdigest()
                n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small run (600 images)")
    args = ap.parse_args()
    n = 600 if args.quick else args.n
    tmp = Path(tempfile.mkdtemp(prefix="bench_download_"))
    try:
        items = make_jpegs(n, np.random.default_rng(0))
        write_shards(tmp / "hub", items, args.shards)
        mb = sum(len(b) for _, b in items) / 2**20
        t0 = time.perf_counter()
        assert baseline(tmp / "hub") == n
        t_base = time.perf_counter() - t0
        print(f"fixture: {n} JPEGs, {mb:.1f} MB in {args.shards} Hub-style shards")
        print(f"baseline (pyarrow stream + sha256): {n / t_base:8.0f} images/s")
        for workers in sorted({1, args.workers}):
            params = parse(DownloadParams, {"source": "hf",
                                            "hf": {"local_dir": str(tmp / "hub"), "split_map": {"train": "train"}}},
                           "download")
            out, work = tmp / f"raw{workers}", tmp / f"work{workers}"
            t0 = time.perf_counter()
            convert(params, 0, out, work, workers=workers)
            dt = time.perf_counter() - t0
            print(f"hub conversion, {workers} worker(s):  {n / dt:8.0f} images/s  "
                  f"({dt / t_base:.1f}x the baseline's time; decode-verify dominates)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {rss:.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
