"""Benchmark of the review site at scale: N flagged images -> pages of at most 1,000 images / 16 MB + an index.

Each run is a fresh child process (its own peak RSS): the site is written as the stage writes it
(thumbnails spooled to a temporary file, ``write_review_site`` rendering one page at a time) from N
synthetic flagged items over 1,000 classes, some in duplicate groups, with safe thumbnails of 64-px JPEGs
(smooth random pictures; 400 distinct ones made once and reused, so Pillow's time is left out). The
baseline, in another child, is the old single page (``render_review_page`` with every thumbnail in
memory) for min(N, 20,000) items.

Usage: ``python bench/bench_review_pages.py [--images 100000] [--quick]``.
Prints sizes, seconds and peak RSS of both, and the ratios; exits 1 when a page reaches 20 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import peak_rss_gb  # noqa: E402  (bench/ is on sys.path when run)

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAGE_LIMIT_BYTES = 20 * 10**6
DISTINCT = 400


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000, help="flagged images on the review site")
    parser.add_argument("--baseline_images", type=int, default=20_000, help="the single-page baseline's cap")
    parser.add_argument("--quick", action="store_true", help="small run: 3,000 images")
    parser.add_argument("--child", choices=("site", "single"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.baseline_images = 3_000, 1_000
    return args


def _jpegs(rng: np.random.Generator) -> list[bytes]:
    from PIL import Image

    out = []
    for _ in range(DISTINCT):
        small = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((64, 64), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _manifest(n: int, rng: np.random.Generator):
    import pandas as pd

    cls = rng.integers(0, 1000, n)
    group = np.where(rng.random(n) < 0.1, (np.arange(n) // 3).astype(str), "")
    issues = np.array(["mislabel:0.91", "duplicate:0.97", "blur:0.66;dark:0.51", "outlier:0.72"])[np.arange(n) % 4]
    return pd.DataFrame({
        "image_id": [f"i{k:07d}" for k in range(n)], "review_name": [f"n{c:08d}_{k}.JPEG" for k, c in enumerate(cls)],
        "split": "train", "class_name": [f"class name {c}" for c in cls], "issues": issues,
        "tags": "mislabeled", "action": np.array(["drop", "review", "relabel", "keep"])[np.arange(n) % 4],
        "reasons": "rule mislabel >= 0.9 | duplicate of group",
        "new_label": np.where(np.arange(n) % 4 == 2, "class name 1", ""),
        "duplicate_group": np.where(group == "", "", "g" + group),
    })


def child(kind: str, n: int, out: Path) -> None:
    from vlclean import tag_manifest
    from vlclean.review import ThumbnailSpool, render_review_page, safe_thumbnail, write_review_site
    from vlclean.storage import write_text

    rng = np.random.default_rng(0)
    thumbs = [safe_thumbnail(b) for b in _jpegs(rng)]  # made once: the bench measures pages, not Pillow
    manifest = _manifest(n, rng)
    items = tag_manifest.review_items(manifest)
    taxonomy = {"mislabeled": "The label is wrong", "duplicate": "A copy"}
    classes = [f"class name {c}" for c in range(1000)]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if kind == "site":  # the stage's path: thumbnails spooled to disk, pages rendered one at a time
            spool = ThumbnailSpool(tmp)
            for k, image_id in enumerate(items["image_id"]):
                spool.add(image_id, thumbs[k % DISTINCT])
            pages = write_review_site(Path(tmp) / "site", items, thumbnails=spool.get, taxonomy=taxonomy,
                                      class_names=classes, title="bench")
            spool.close()
            sizes = [p.bytes for p in pages]
            index = (Path(tmp) / "site" / "index.html").stat().st_size
        else:  # the old path: one page, every thumbnail in memory
            by_id = {i: thumbs[k % DISTINCT] for k, i in enumerate(items["image_id"])}
            text = render_review_page(items, thumbnails=by_id, taxonomy=taxonomy, class_names=classes, title="bench")
            write_text(Path(tmp) / "review.html", text)
            sizes, index = [len(text.encode("utf-8"))], 0
        seconds = time.perf_counter() - start
    out.write_text(json.dumps({"images": n, "pages": len(sizes), "max_page_bytes": max(sizes),
                               "total_bytes": sum(sizes), "index_bytes": index, "seconds": seconds,
                               "peak_rss_gb": peak_rss_gb()}))


def run_child(kind: str, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run([sys.executable, __file__, "--child", kind, "--images", str(n), "--out", str(out)], check=True)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args.child, args.images, args.out)
        return 0
    site = run_child("site", args.images)
    base = run_child("single", min(args.images, args.baseline_images))
    mb = 2**20
    print(f"site:     {site['images']:,} images -> {site['pages']} pages, "
          f"largest {site['max_page_bytes'] / mb:.1f} MB, "
          f"total {site['total_bytes'] / mb:.0f} MB (+ index {site['index_bytes'] / 1024:.0f} kB), "
          f"{site['seconds']:.0f} s, peak RSS {site['peak_rss_gb']:.2f} GB")
    print(f"baseline: {base['images']:,} images -> one page of {base['max_page_bytes'] / mb:.0f} MB, "
          f"{base['seconds']:.0f} s, peak RSS {base['peak_rss_gb']:.2f} GB")
    per_image = (site["seconds"] / site["images"]) / (base["seconds"] / base["images"])
    print(f"ratios: largest page / baseline page {site['max_page_bytes'] / base['max_page_bytes']:.3f}; peak RSS "
          f"site ({site['images']:,}) / baseline ({base['images']:,}) {site['peak_rss_gb'] / base['peak_rss_gb']:.2f}; "
          f"seconds per image site / baseline {per_image:.2f}")
    return 0 if site["max_page_bytes"] < PAGE_LIMIT_BYTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
