"""Leak detection on real photographs: recall and precision per copy transform, default settings.

Builds :func:`vlclean.photo_leaks.write_photo_leak_set` for each seed (crops of the package
photographs as test images; train = transformed copies, hard negatives, unrelated crops), runs the
standalone ``python -m stages.detect_leaks --train_dir ... --test_dir ...`` with the code defaults
(``--params`` pointing at no file) and prints one table over all seeds (markdown, for the README).

Seeds 0-9 tuned ``detect_leaks.copy_min_score`` and ``confirm_copy_min`` and the constants of
:mod:`vlclean.copies` (most on seeds 0-2; the thumbnail filter on 0-5; the edge term, the train-side detail
floor, the search bands, the trim through JPEG ringing, the descriptor floor, frames against frames and cubic
sampling on 0-9); the README reports seeds 30-34 and 40-44, which no tuning saw, and fresh seeds 50-54,
55-59, 60-69, 70-74 and 75-84, each drawn to check one change against the code before it (60-69 first ran
with that code alone; 75-84 checked cubic sampling, and 60-74 were rerun once with it; 85-88 checked windows
turned in the image's pixels, 89-93 the same with ``--transforms rotate+resize_jpeg``, 94-118 every transform
with that code alone, 119-143 the train side down to 48 px and the search from 0.70, paired, and 144-168 both
candidates of every pair refined, from which the README reads off ``VIEW_FIRST_MARGIN``; seeds 169-188 checked
that rule and the pad trim with the copy method alone, and then ran here with that code; 189-212 with
``--transforms pad+resize_jpeg`` and 213-236 with ``--transforms rotate+resize_jpeg text+resize_jpeg`` drew the
weakest transforms in sets of their own, copy method alone). Rotation
sets, seeds 1000-1019 with ``--transforms rotate rotate+resize_jpeg`` (every copy turned), tuned ``ASPECT_STEP``
and ``INSIDE_SLACK``.
Earlier tables (seeds 20-24, 10-14) were drawn by the previous generator, whose same-scene negatives could
land on another test crop: the same seed now draws other sets.

``--baseline DIR`` also runs another checkout of this project (``git worktree add DIR <commit>``) on the
same sets, scored against the same truth, and prints a paired comparison: copies found by one and not the
other (McNemar's exact test on those), and false pairs of each.

Usage: ``python bench/bench_photo_leaks.py --seeds 10 11 12 13 14 [--methods copy] [--copies 3] [--quick]
[--baseline DIR] [--curve] [--misses] [--transforms T ...]``. ``--curve`` also prints the copy method's
calibration curve: recall and pair precision per ``copy_min_score``, the copy method alone. ``--misses`` lists
the missed copies of detailed test images and the false pairs, by seed and file (a seed always draws the same set).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages import detect_leaks  # noqa: E402
from vlclean.copies import LOW_DETAIL, REFINE_MARGIN  # noqa: E402
from vlclean.photo_leaks import COPY_TRANSFORMS, score_photo_leaks, write_photo_leak_set  # noqa: E402


def run_seed(seed: int, root: Path, methods: str | None, copies: int, baseline: Path | None = None,
             curve: bool = False, transforms: tuple[str, ...] = COPY_TRANSFORMS,
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """This code's score table for one seed, the per-copy / per-false-pair outcomes of this code and of
    ``baseline`` (a checkout run as a subprocess on the same folders), and the copy method's counts per
    threshold (``curve``)."""
    s = write_photo_leak_set(root / f"seed{seed}", seed=seed, copies=copies, transforms=transforms)
    out = root / f"seed{seed}.csv"
    argv = ["--params", str(root / "no-params.yaml"), "--train_dir", str(s.train_dir), "--test_dir", str(s.test_dir),
            "--output", str(out)]
    if methods:
        argv += ["--methods", methods]
    start = time.perf_counter()
    if detect_leaks.main(argv) != 0:
        raise SystemExit(f"detect_leaks failed on seed {seed}")
    seconds = time.perf_counter() - start
    n_test, n_train = (sum(1 for p in d.rglob("*") if p.is_file()) for d in (s.test_dir, s.train_dir))
    print(f"seed {seed}: detect_leaks {seconds:.1f} s for {n_test} test x {n_train} train images (decode included)")
    reports = {"new": pd.read_csv(out, keep_default_na=False)}
    if baseline is not None:
        base_out = root / f"seed{seed}-baseline.csv"
        argv[argv.index("--output") + 1] = str(base_out)
        env = {**os.environ, "PYTHONPATH": str(baseline)}
        subprocess.run([sys.executable, "-m", "stages.detect_leaks", *argv], cwd=baseline, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        reports["baseline"] = pd.read_csv(base_out, keep_default_na=False)
    table = score_photo_leaks(reports["new"], s.truth, s.negatives).assign(seed=seed)
    counts = copy_curve(s, root / f"seed{seed}-curve") if curve else None
    return table, outcomes(reports, s.truth).assign(seed=seed), counts


CURVE = np.round(np.arange(0.84, 1.0001, 0.01), 2)  # copy_min_score values of the calibration curve


def copy_curve(s, root: Path) -> pd.DataFrame:
    """The copy method alone (``--methods copy``), searched once at ``copy_min_score`` = ``CURVE[0]``: per
    threshold, copies found (all, detailed) and false test-train pairs among the pairs scoring at least it."""
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(f"detect_leaks:\n  copy_min_score: {CURVE[0]}\n")
    out = root / "report.csv"
    argv = ["--params", str(root / "params.yaml"), "--train_dir", str(s.train_dir), "--test_dir", str(s.test_dir),
            "--output", str(out), "--methods", "copy"]
    if detect_leaks.main(argv) != 0:
        raise SystemExit("detect_leaks failed (curve)")
    rep = pd.read_csv(out, keep_default_na=False)
    rep = rep[rep["scope"] == "test-train"]
    score = 1.0 - rep["distance"].to_numpy(dtype=float)  # method copy alone: distance = 1 - copy score
    keys = list(zip(rep["test_path"], rep["train_path"]))
    detailed = dict(zip(zip(s.truth["test_path"], s.truth["train_path"]), s.truth["test_detail"] >= LOW_DETAIL))
    true = np.array([k in detailed for k in keys], dtype=bool)
    det = np.array([detailed.get(k, False) for k in keys], dtype=bool)
    n_detailed = int((s.truth["test_detail"] >= LOW_DETAIL).sum())
    return pd.DataFrame({"threshold": CURVE, "n": len(s.truth), "n_detailed": n_detailed,
                         "found": [int((true & (score >= t - 1e-9)).sum()) for t in CURVE],
                         "found_detailed": [int((det & (score >= t - 1e-9)).sum()) for t in CURVE],
                         "false_pairs": [int((~true & (score >= t - 1e-9)).sum()) for t in CURVE]})


def curve_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Counts summed over seeds: recall (all, detailed) and pair precision of the copy method per threshold."""
    g = counts.groupby("threshold").sum()
    return pd.DataFrame({"copy_min_score": g.index, "recall": (g["found"] / g["n"]).round(3),
                         "recall_detailed": (g["found_detailed"] / g["n_detailed"]).round(3),
                         "precision": (g["found"] / (g["found"] + g["false_pairs"]).clip(lower=1)).round(3),
                         "false_pairs": g["false_pairs"]}).reset_index(drop=True)


def outcomes(reports: dict[str, pd.DataFrame], truth: pd.DataFrame) -> pd.DataFrame:
    """One row per planted copy (``kind`` "copy", with ``transform`` and ``detailed``) and per false pair of
    any report (``kind`` "false"), a boolean column per report: found / reported."""
    keys = list(zip(truth["test_path"], truth["train_path"]))
    found = {}
    for name, rep in reports.items():
        cross = rep[rep["scope"] == "test-train"] if "scope" in rep else rep
        found[name] = set(zip(cross["test_path"], cross["train_path"]))
    false = sorted(set().union(*found.values()) - set(keys))
    rows = pd.DataFrame({"kind": ["copy"] * len(keys) + ["false"] * len(false),
                         "transform": list(truth["transform"]) + [""] * len(false),
                         "detailed": list(truth["test_detail"] >= LOW_DETAIL) + [False] * len(false),
                         "test": [_short(t) for t, _ in keys + false], "train": [_short(b) for _, b in keys + false]})
    for name, pairs in found.items():
        rows[name] = [k in pairs for k in keys + false]
    return rows


def _short(path: str) -> str:
    """``split/class/file``: the same on every run of a seed (the sets lie in a fresh temporary folder)."""
    return "/".join(Path(path).parts[-3:])


def misses(rows: pd.DataFrame) -> str:
    """Markdown: the copies of detailed test images this code missed and its false pairs, by seed (a seed
    draws the same set every time, so each can be looked at again)."""
    missed = (rows["kind"] == "copy") & rows["detailed"] & ~rows["new"]
    false = (rows["kind"] == "false") & rows["new"]
    sel = rows.loc[missed | false, ["seed", "kind", "transform", "test", "train"]]
    return sel.replace({"kind": {"copy": "missed copy", "false": "false pair"}}).to_markdown(index=False)


def paired(rows: pd.DataFrame) -> str:
    """Markdown: this code against the baseline on the same copies (all, detailed), McNemar's exact test."""
    from scipy.stats import binomtest

    lines = ["| copies | n | found by both | this code only | baseline only | neither | McNemar p |",
             "|---|---|---|---|---|---|---|"]
    copies = rows[rows["kind"] == "copy"]
    for name, sel in (("all", copies), ("detailed test images", copies[copies["detailed"]])):
        a, b = sel["new"].to_numpy(), sel["baseline"].to_numpy()
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
        lines.append(f"| {name} | {len(sel)} | {int((a & b).sum())} | {only_a} | {only_b} | {int((~a & ~b).sum())} "
                     f"| {p:.2g} |")
    false = rows[rows["kind"] == "false"]
    lines.append(f"\nfalse pairs: this code {int(false['new'].sum())}, baseline {int(false['baseline'].sum())} "
                 f"(both {int((false['new'] & false['baseline']).sum())})")
    lines += ["", "| transform | n | this code | baseline | n detailed | this code | baseline |",
              "|---|---|---|---|---|---|---|"]
    for name, g in copies.groupby("transform", sort=False):
        d = g[g["detailed"]]
        lines.append(f"| {name} | {len(g)} | {g['new'].mean():.3f} | {g['baseline'].mean():.3f} | {len(d)} | "
                     f"{d['new'].mean():.3f} | {d['baseline'].mean():.3f} |")
    return "\n".join(lines)


def summarise(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Counts summed over seeds: recall per transform, over all copies and over copies of test images with
    detail; precision over all pairs (every false pair of the set, whatever its kind); false pairs per
    negative kind; 95 % Wilson intervals of each proportion (copies and pairs counted as independent)."""
    counts = ["n", "found", "n_detailed", "found_detailed", "false_pairs"]
    g = per_seed.groupby("row", sort=False)[counts].sum(min_count=1)
    g["recall"] = (g["found"] / g["n"]).round(3)
    g["recall_detailed"] = (g["found_detailed"] / g["n_detailed"]).round(3)
    copies = ~g.index.str.startswith("negative")
    g["precision"] = pd.NA
    g.loc["all", "precision"] = round(g.loc["all", "found"] / (g.loc["all", "found"] + g.loc["all", "false_pairs"]), 3)
    g.loc[copies & (g.index != "all"), "false_pairs"] = pd.NA
    g["recall_ci"] = [wilson(f, n) for f, n in zip(g["found"], g["n"])]
    g["recall_detailed_ci"] = [wilson(f, n) for f, n in zip(g["found_detailed"], g["n_detailed"])]
    g["precision_ci"] = ""
    g.loc["all", "precision_ci"] = wilson(g.loc["all", "found"], g.loc["all", "found"] + g.loc["all", "false_pairs"])
    cols = ["n", "found", "recall", "recall_ci", "n_detailed", "found_detailed", "recall_detailed",
            "recall_detailed_ci", "false_pairs", "precision", "precision_ci"]
    return g[cols].astype({c: "Int64" for c in counts}).reset_index()


def wilson(k: float, n: float) -> str:
    """The 95 % Wilson interval of the proportion ``k / n`` (scipy), "" when there is nothing to count."""
    from scipy.stats import binomtest

    if pd.isna(k) or pd.isna(n) or n == 0:
        return ""
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return f"[{ci.low:.3f}, {ci.high:.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    ap.add_argument("--methods", default=None, help="subset of exact,perceptual,embedding,copy (default: params)")
    ap.add_argument("--copies", type=int, default=3, help="copies per test image")
    ap.add_argument("--transforms", nargs="+", default=None,
                    help="copy transforms, cycled (default: all of vlclean.photo_leaks.COPY_TRANSFORMS)")
    ap.add_argument("--quick", action="store_true", help="seed 10 only (make bench: checks the bench runs)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout of the project, run on the same sets for a paired comparison")
    ap.add_argument("--curve", action="store_true",
                    help="also the copy method's precision and recall per copy_min_score (calibration curve)")
    ap.add_argument("--misses", action="store_true",
                    help="also list the missed copies of detailed test images and the false pairs")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds = [10]
    with tempfile.TemporaryDirectory(prefix="photo-leaks-") as tmp:
        transforms = tuple(args.transforms) if args.transforms else COPY_TRANSFORMS
        runs = [run_seed(s, Path(tmp), args.methods, args.copies, args.baseline, args.curve, transforms)
                for s in args.seeds]
    table = summarise(pd.concat([t for t, _, _ in runs], ignore_index=True))
    print(f"seeds {args.seeds}, methods {args.methods or 'default'}")
    print(table.to_markdown(index=False))
    if args.baseline is not None:
        print(f"\npaired against {args.baseline} (same sets, same truth):")
        print(paired(pd.concat([o for _, o, _ in runs], ignore_index=True)))
    if args.curve:
        print(f"\ncopy method alone, searched at {CURVE[0]}, per threshold (a point can hold pairs that a run at "
              f"that threshold would not refine: candidates are refined within {REFINE_MARGIN} of the search "
              "threshold):")
        print(curve_table(pd.concat([c for _, _, c in runs], ignore_index=True)).to_markdown(index=False))
    if args.misses:
        print("\nmissed copies of detailed test images, and false pairs (this code):")
        print(misses(pd.concat([o for _, o, _ in runs], ignore_index=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
