"""Cost of the copy search (:func:`vlclean.copies.copy_pairs`): the frame passes against contents alone.

Builds a photo leak set (:func:`vlclean.photo_leaks.write_photo_leak_set`; tuning seed 3 by default), makes
the copy thumbnails once, and times ``copy_pairs`` (best of ``--repeat`` runs, one process) on the test
images against the train images that take part in the copy method (``MIN_SIDE`` and ``BASE_MIN_SIDE``, the
detail floors):

- **contents only**: every frame thumbnail replaced by its content thumbnail, so no image counts as
  trimmed and only contents are searched against contents (the baseline);
- **as stored**: contents against contents, and for the images whose trim removed something their frame
  against the other side's contents and, where both were trimmed, frame against frame.

It prints both times, their ratio, the trimmed share of each side (the frame passes grow with it) and the
pairs each finds at ``copy_min_score``. Usage: ``python bench/bench_copy_search.py [--seed 3] [--repeat 3]
[--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlclean import copies  # noqa: E402
from vlclean.features import measure  # noqa: E402
from vlclean.params import LeakParams  # noqa: E402
from vlclean.photo_leaks import write_photo_leak_set  # noqa: E402


def thumbnails(folder: Path, floor: float, min_side: int) -> np.ndarray:
    """Copy thumbnails of the images under ``folder`` that take part in the copy method (a shorter side of at
    least ``min_side`` px, detail of at least ``floor``), from the grey image that analyze decodes
    (:func:`vlclean.features.measure`)."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        gray = measure(str(path), path.read_bytes()).gray
        if min(gray.size) >= min_side:
            out.append(copies.copy_thumbnails(gray))
    thumbs = np.stack(out)
    return thumbs[copies.detail(thumbs[:, 0]) >= floor]


def best_time(query: np.ndarray, base: np.ndarray, threshold: float, repeat: int) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        found = len(copies.copy_pairs(query, base, min_score=threshold))
        times.append(time.perf_counter() - start)
    return min(times), found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3, help="photo leak set (a tuning seed)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    ap.add_argument("--quick", action="store_true", help="one run each (make bench: checks the bench runs)")
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    threshold = LeakParams().copy_min_score
    with tempfile.TemporaryDirectory(prefix="copy-search-") as tmp:
        s = write_photo_leak_set(Path(tmp), seed=args.seed, copies=3)
        query = thumbnails(s.test_dir, copies.LOW_DETAIL, copies.MIN_SIDE)
        base = thumbnails(s.train_dir, copies.BASE_LOW_DETAIL, copies.BASE_MIN_SIDE)
    flat_q, flat_b = query.copy(), base.copy()
    flat_q[:, 1], flat_b[:, 1] = flat_q[:, 0], flat_b[:, 0]
    base_s, base_found = best_time(flat_q, flat_b, threshold, repeat)
    full_s, full_found = best_time(query, base, threshold, repeat)
    qf, bf = len(copies._frame_rows(query)), len(copies._frame_rows(base))
    print(f"seed {args.seed}: {len(query)} test x {len(base)} train thumbnails; trimmed: {qf} test "
          f"({qf / len(query):.0%}), {bf} train ({bf / len(base):.0%}); best of {repeat}")
    print(f"contents only: {base_s:.2f} s, {base_found} pairs >= {threshold}")
    print(f"as stored:     {full_s:.2f} s, {full_found} pairs >= {threshold}")
    print(f"ratio: {full_s / base_s:.2f}x ({1000 * full_s / len(query):.0f} ms a test image)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
