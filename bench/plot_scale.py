"""Merge, plot and tabulate bench_scale.py results: time and peak memory vs images, per stage.

Usage: ``python bench/plot_scale.py bench/results/scale_*k.json --png bench/results/scale.png
--out bench/results/scale.json``

Every complete size of every file counts (runs of separate processes, e.g. one size each, combine);
the extrapolation to 1.33M is fitted over all of them (``bench_scale.extrapolate``) and written with
the merged runs to ``--out``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import IMAGENET_IMAGES, extrapolate  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(paths: list[str]) -> tuple[dict[int, dict], dict]:
    """``({images: stages}, merged result with the extrapolation over every size)``."""
    runs: dict[int, dict] = {}
    baselines: dict = {}
    for path in paths:
        result = json.loads(Path(path).read_text())
        baselines = baselines or result.get("baselines", {})
        for run in result.get("runs", []):
            runs[run["images"]] = run
    ordered = [runs[n] for n in sorted(runs)]
    merged = {"target_images": IMAGENET_IMAGES, "sources": [Path(p).name for p in paths], "baselines": baselines,
              "runs": ordered, "extrapolated": {"images": IMAGENET_IMAGES,
                                                "stages": extrapolate(ordered, baselines, IMAGENET_IMAGES)}}
    return {n: runs[n]["stages"] for n in sorted(runs)}, merged


def plot(points: dict[int, dict], extrapolated: dict, png: Path) -> None:
    stages = list(next(iter(points.values())))
    ns = list(points)
    target = extrapolated["images"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for stage in stages:
        for ax, key in zip(axes, ("seconds", "cpu_seconds", "peak_rss_mb")):
            line, = ax.plot(ns, [points[n][stage][key] for n in ns], marker="o", label=stage)
            ax.plot([ns[-1], target], [points[ns[-1]][stage][key], extrapolated["stages"][stage][key]],
                    linestyle=":", color=line.get_color())
    titles = ("wall seconds (shared 2-core machine)", "CPU seconds", "peak RSS of the process tree (MB)")
    for ax, title in zip(axes, titles):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("images (train + test); dotted: fitted growth to 1.33M")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].axhline(target / 1000, color="grey", linestyle="--", linewidth=1)
    axes[2].axhline(16 * 1024, color="grey", linestyle="--", linewidth=1)
    axes[0].legend(fontsize=8)
    fig.suptitle("bench_scale: every stage at ImageNet shape (1,000 classes); dashed: 1,000 img/s at 1.33M, 16 GB")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)


def table(points: dict[int, dict], extrapolated: dict) -> str:
    stages = list(next(iter(points.values())))
    ns = list(points)
    head = "| stage | " + " | ".join(f"{n:,} img: s / CPU s / MB" for n in ns) + \
           " | 1.33M (fit): s / CPU s / MB | img/CPU-s at 1.33M | b (CPU) | 16 GB | 1,000 img/s |"
    lines = [head, "|" + "---|" * (len(ns) + 6)]
    for stage in stages:
        cells = [f"{points[n][stage]['seconds']:.0f} / {points[n][stage]['cpu_seconds']:.0f} / "
                 f"{points[n][stage]['peak_rss_mb']:.0f}" for n in ns]
        e = extrapolated["stages"][stage]
        cells.append(f"{e['seconds']:.0f} / {e['cpu_seconds']:.0f} / {e['peak_rss_mb']:.0f}")
        cells.append(f"{e['images_per_cpu_s']:.0f}")
        cells.append(f"{e['cpu_seconds_growth_exponent']:.2f}")
        cells.append("yes" if e["meets_16gb"] else "**no**")
        cells.append("yes" if e["meets_1000_images_per_s"] else "**no**")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+")
    ap.add_argument("--png", default="bench/results/scale.png")
    ap.add_argument("--out", default=None, help="write the merged runs and the extrapolation here (JSON)")
    args = ap.parse_args()
    points, merged = load(args.results)
    plot(points, merged["extrapolated"], Path(args.png))
    if args.out:
        Path(args.out).write_text(json.dumps(merged, indent=1))
    print(table(points, merged["extrapolated"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
