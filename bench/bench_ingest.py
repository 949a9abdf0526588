"""Benchmark of VL export ingestion at ImageNet scale: a 1.33M-item platform ``metadata.json``.

A synthetic export in the real shape (schema 1.1: ``info`` + ``media_items``; every item with an
``image_label``, a long signed ``url``, a size string; about a third with 1-3 issues carrying
confidences; 6% with six nested ``duplicates`` levels; some user tags) is streamed to a temporary
folder (> 1 GB at full size). ``read_export`` is timed on it, with its peak RSS (getrusage, and a
sampler thread for the phase alone). The baseline, in the same process afterwards, is ``json.load``
of a file 1/20 the size, its time and memory extrapolated x20.

Usage: ``python bench/bench_ingest.py [--items 1330000] [--quick] [--keep DIR]``.
Exits 1 when a target is missed (time, memory, or a wrong count of media / issues).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from _common import current_rss_gb, peak_rss_gb  # noqa: E402  (bench/ is on sys.path when run)

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlclean.vl_ingest import read_export  # noqa: E402

TIME_TARGET_S_PER_M = 90.0  # seconds per million items (measured: about 25-35 on 2 cores)
RSS_TARGET_GB = (0.25, 0.75)  # peak RSS growth: fixed + per million items (measured: 0.9 GB at 1.33M)
ISSUE_TYPES = ("mislabels", "outliers", "blur", "dark", "bright", "label_outlier", "normal")
LEVELS = (0.9159, 0.9229, 0.9267, 0.9306, 0.9348, 0.9451)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_330_000, help="media items in the export")
    parser.add_argument("--fraction", type=int, default=20, help="the json.load baseline reads 1/fraction of it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    parser.add_argument("--quick", action="store_true", help="small run: 100K items")
    args = parser.parse_args(argv)
    if args.quick:
        args.items = 100_000
    return args


class RssSampler:
    """Highest RSS seen while the ``with`` block runs (sampled every 20 ms)."""

    def __enter__(self) -> RssSampler:
        self.start = current_rss_gb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, current_rss_gb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_gb())


# ------------------------------------------------------------------ synthetic export


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64).view(np.uint64)
    out = []
    for a, b in raw:
        h = f"{int(a):016x}{int(b):016x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def write_export(path: Path, n: int, seed: int) -> tuple[int, int]:
    """Stream a platform metadata.json of ``n`` items; return (bytes, issue rows expected)."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{rng.integers(10**7, 10**8)}" for _ in range(1000)]
    names = [f"class name {i}" for i in range(1000)]
    clusters = _uuids(rng, 20_000)
    expected_issues = 0
    block = 10_000
    info = {"schema_version": "1.1", "dataset": "ImageNet_1k", "description": "synthetic", "dataset_url": "",
            "export_time": "2026-02-01T00:00:00Z", "dataset_creation_time": "2026-01-20T00:00:00Z",
            "exported_by": "bench", "total_media_items": n}
    with path.open("w", encoding="utf-8") as fh:
        fh.write('{"info": ' + json.dumps(info) + ', "media_items": [\n')
        for start in range(0, n, block):
            m = min(block, n - start)
            ids = _uuids(rng, m)
            groups = _uuids(rng, m)
            cls = rng.integers(0, 1000, m)
            val = rng.random(m) < 0.04
            sizes = rng.uniform(20, 400, m)
            uniq = rng.random(m)
            clu = rng.integers(0, len(clusters), m)
            n_issues = np.where(rng.random(m) < 0.35, rng.integers(1, 4, m), 0)
            dup = rng.random(m) < 0.06
            tagged = rng.random(m) < 0.01
            parts = []
            for i in range(m):
                k = start + i
                fname = f"ILSVRC2012_val_{k:08d}.JPEG" if val[i] else f"{wnids[cls[i]]}_{k}.JPEG"
                meta = [f'{{"type": "image_label", "properties": {{"category_name": "{names[cls[i]]}", '
                        f'"source": "User", "original_id": "{wnids[cls[i]]}"}}}}']
                for j in range(n_issues[i]):
                    t = ISSUE_TYPES[(k + j) % len(ISSUE_TYPES)]
                    expected_issues += t != "normal"
                    meta.append(f'{{"type": "issue", "properties": {{"issue_type": "{t}", '
                                f'"confidence": {(k * 7 + j) % 1000 / 1000:.3f}}}}}')
                if dup[i]:
                    for lvl in LEVELS:
                        meta.append(f'{{"type": "issue", "properties": {{"issue_type": "duplicates", "confidence": '
                                    f'0.8{k % 10}, "duplicate_group_id": "{groups[i][:-4]}{int(lvl * 1e4)}", '
                                    f'"duplicate_threshold": {lvl}}}}}')
                    expected_issues += len(LEVELS)
                if tagged[i]:
                    meta.append('{"type": "user_tag", "properties": {"tag_name": "review", '
                                '"assigned_date": "2026-02-01T00:00:00Z"}}')
                parts.append(
                    f'{{"media_id": "{ids[i]}", "media_type": "image", "file_name": "{fname}", '
                    f'"file_path": "imagenet1k/{fname}", "file_size": "{sizes[i]:.2f}KB", "height": 375, '
                    f'"width": 500, "url": "https://app.visual-layer.com/image/{ids[i]}/{fname}'
                    f'?Expires=1770000000&Key-Pair-Id=APKAEXAMPLEKEYPAIR01&Signature={groups[i]}", '
                    f'"cluster_id": "{clusters[clu[i]]}", '
                    f'"uniqueness_score": {uniq[i]:.4f}, "media_status": "indexed", '
                    f'"insertion_time": "2026-01-20T12:00:00.000000", "metadata_items": [{", ".join(meta)}]}}'
                )
            fh.write(("" if start == 0 else ",\n") + ",\n".join(parts))
        fh.write("\n]}\n")
    return path.stat().st_size, expected_issues


# ------------------------------------------------------------------ run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_ingest_")
        folder = Path(tmp.name)
    else:
        folder = args.keep
        folder.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, folder)
    finally:
        if tmp is not None:
            tmp.cleanup()


def run(args: argparse.Namespace, folder: Path) -> int:
    n = args.items
    small_n = max(1, n // args.fraction)
    t0 = time.perf_counter()
    big, expected = write_export(folder / "metadata.json", n, args.seed)
    (folder / "small").mkdir(exist_ok=True)
    small, _ = write_export(folder / "small" / "metadata.json", small_n, args.seed + 1)
    print(f"generated {n:,} items ({big / 1e9:.2f} GB, {expected:,} issue rows) and {small_n:,} items "
          f"({small / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")

    gc.collect()
    base = current_rss_gb()
    with RssSampler() as rss:
        t0 = time.perf_counter()
        export = read_export(folder / "metadata.json")
        ingest_s = time.perf_counter() - t0
    ingest_peak = peak_rss_gb()
    media_mb = export.media.memory_usage(deep=True).sum() / 2**20
    issues_mb = export.issues.memory_usage(deep=True).sum() / 2**20
    ok_counts = len(export.media) == n and len(export.issues) == expected
    del export
    gc.collect()

    small_path = folder / "small" / "metadata.json"
    with small_path.open("rb") as fh:
        t0 = time.perf_counter()
        doc = json.load(fh)
        json_s = time.perf_counter() - t0
    json_items = len(doc["media_items"])
    del doc
    gc.collect()
    tracemalloc.start()  # a second, untimed load: the peak of its Python allocations (file text + objects)
    with small_path.open("rb") as fh:
        doc = json.load(fh)
    json_held_gb = tracemalloc.get_traced_memory()[0] / 2**30
    json_peak_gb = tracemalloc.get_traced_memory()[1] / 2**30
    tracemalloc.stop()
    del doc
    factor = n / json_items

    m = n / 1e6
    print(f"ingest {m:.2f}M items: {ingest_s:.0f} s ({n / ingest_s:,.0f} items/s, {big / 2**20 / ingest_s:.0f} MB/s), "
          f"peak RSS {ingest_peak:.2f} GB (process before: {base:.2f} GB, growth {rss.peak - base:.2f} GB); "
          f"frames: media {media_mb:.0f} MB, issues {issues_mb:.0f} MB")
    print(f"json.load of {json_items:,} items: {json_s:.1f} s, peak +{json_peak_gb:.2f} GB "
          f"(document {json_held_gb:.2f} GB);"
          f" extrapolated x{factor:.0f}: {json_s * factor:.0f} s, peak {json_peak_gb * factor:.1f} GB "
          f"(document {json_held_gb * factor:.1f} GB), before any normalisation")
    failures = []
    if not ok_counts:
        failures.append(f"counts: expected {n} media and {expected} issues")
    time_target = TIME_TARGET_S_PER_M * max(m, 0.1)
    rss_target = RSS_TARGET_GB[0] + RSS_TARGET_GB[1] * m
    if ingest_s > time_target:
        failures.append(f"time {ingest_s:.0f} s > {time_target:.0f} s")
    if rss.peak - base > rss_target:
        failures.append(f"RSS growth {rss.peak - base:.2f} GB > {rss_target:.2f} GB")
    for f in failures:
        print(f"TARGET MISSED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
