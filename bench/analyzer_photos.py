"""The analyzer with default settings on data its tuning never saw (issue 13): real-photograph sets
(vlclean/photo_sets.py) and Fashion-MNIST with planted wrong labels, run as a new user would:
``python -m stages.analyze --images_dir DIR --output export.json`` without a params file.

    nice -n 5 python bench/analyzer_photos.py --seeds 2,3,4 --kinds planted,soft_dark --fashion 2000

Prints one JSON line per set (precision/recall/F1 per planted issue, flagged shares, the analyzer's
choices and warnings) and a summary; ``--out`` writes them all to a JSON file. Tuning seeds were 0 and 1
(README: Analyzer on real photographs); report on others.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlclean.photo_sets import ISSUES, PhotoSetSpec, build_photo_set, score_export  # noqa: E402


def run_standalone(tree: Path, out: Path) -> dict:
    """The standalone analyzer on ``tree`` with built-in defaults (no params file); its metrics."""
    from stages import analyze

    metrics = out / "metrics.json"
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        rc = analyze.main(["--params", str(out / "no-params.yaml"), "--images_dir", str(tree),
                           "--output", str(out / "export.json"), "--metrics", str(metrics)])
    if rc != 0:
        raise RuntimeError(f"analyze failed on {tree}:\n{console.getvalue()}")
    return json.loads(metrics.read_text())


def photo_set(seed: int, kind: str, size: int, per_class: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vlclean-photos-") as tmp:
        t = Path(tmp)
        truth = build_photo_set(t / "tree", PhotoSetSpec(seed=seed, kind=kind, size=size, per_class=per_class))
        start = time.perf_counter()
        m = run_standalone(t / "tree", t)
        return {"set": f"photos/{kind}", "seed": seed, "size": size, **score_export(t, truth),
                "choices": m["choices"], "warnings": m["warnings"], "seconds": round(time.perf_counter() - start, 1)}


def fashion_set(n: int, seed: int, flip: float, root: str = "/usr/share/datasets/fashion-mnist") -> dict:
    """``n`` Fashion-MNIST train images (random, all classes), ``flip`` of them given a random other label."""
    from PIL import Image

    from vlclean.datasets.idx import read_idx

    images = read_idx(Path(root) / "train-images-idx3-ubyte.gz")
    labels = read_idx(Path(root) / "train-labels-idx1-ubyte.gz").astype(int)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(labels), n, replace=False)
    given = labels[pick].copy()
    wrong = rng.choice(n, int(round(flip * n)), replace=False)
    given[wrong] = (given[wrong] + rng.integers(1, 10, len(wrong))) % 10
    with tempfile.TemporaryDirectory(prefix="vlclean-fashion-") as tmp:
        t = Path(tmp)
        rows = []
        for i, (j, g) in enumerate(zip(pick, given)):
            rel = f"c{g}/{i:05d}.png"
            (t / "tree" / f"c{g}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[j]).save(t / "tree" / rel)
            if i in set(wrong.tolist()):
                rows.append({"file": rel, "issue": "mislabel", "detail": f"true_label={labels[j]}"})
        start = time.perf_counter()
        m = run_standalone(t / "tree", t)
        result = score_export(t, pd.DataFrame(rows))
    return {"set": "fashion-mnist", "seed": seed, "n": n, "flip": flip, **result, "choices": m["choices"],
            "warnings": m["warnings"], "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="2,3,4")
    p.add_argument("--kinds", default="planted,soft_dark")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--per_class", type=int, default=25)
    p.add_argument("--fashion", type=int, default=0, help="Fashion-MNIST images (0: skip)")
    p.add_argument("--fashion_flip", type=float, default=0.05)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    results = []
    for kind in [k for k in args.kinds.split(",") if k]:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            results.append(photo_set(seed, kind, args.size, args.per_class))
            print(json.dumps(results[-1]), flush=True)
    if args.fashion:
        results.append(fashion_set(args.fashion, int(args.seeds.split(",")[0]), args.fashion_flip))
        print(json.dumps(results[-1]), flush=True)
    planted = [r for r in results if r["set"] == "photos/planted"]
    if planted:
        summary = {i: {k: round(float(np.mean([r[i][k] for r in planted])), 4) for k in ("precision", "recall", "f1")}
                   for i in ISSUES}
        print("mean over planted photo sets:", json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
