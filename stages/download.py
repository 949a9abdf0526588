"""download: acquire the dataset (built-in, ImageFolder tree, Hugging Face Hub, IDX files, CIFAR) as raw parquet shards.

Inputs:  params ``base``, ``download`` (source: builtin | folder | hf | idx | cifar).
Outputs: ``--out`` (data/raw: shards/, index.parquet, classes.csv, quarantine.csv, truth.csv),
         ``--metrics`` (metrics/download.json), ``--plots`` (class histogram CSV + PNG).
Finished conversion units are kept in ``--work_dir`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vlclean import cli
from vlclean.datasets import RawDataset
from vlclean.datasets.convert import convert
from vlclean.params import load_params
from vlclean.reporting import bar_plot
from vlclean.storage import write_json


def report(out: Path, metrics_path: Path, plots_dir: Path, extra: dict) -> dict:
    ds = RawDataset.open(out)
    index, classes = ds.index(), ds.classes()
    shard_sizes = [s.stat().st_size for s in ds.shards()]
    metrics = {
        "images": len(index),
        "images_per_split": {k: int(v) for k, v in index["split"].value_counts().sort_index().items()},
        "classes": len(classes),
        "invalid": int((~index["valid"]).sum()),
        "quarantined": len(ds.quarantine()),
        "bytes": int(index["file_size"].sum()),
        "shards": len(shard_sizes),
        "shard_max_mb": round(max(shard_sizes, default=0) / 2**20, 3),
        "planted_issues": {k: int(v) for k, v in ds.truth()["issue"].value_counts().sort_index().items()},
        **extra,
    }
    write_json(metrics_path, metrics)
    hist = (
        index.groupby(["class_name", "split"]).size().rename("count").reset_index()
        .merge(classes[["class_name", "label"]], on="class_name").sort_values(["label", "split"])
        .drop(columns="label")
    )
    bar_plot(hist, x="class_name", y="count", hue="split", csv_path=plots_dir / "class_histogram.csv",
             png_path=plots_dir / "class_histogram.png", title="Images per class and split",
             horizontal=len(classes) > 30)
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--out", default="data/raw")
    p.add_argument("--metrics", default="metrics/download.json")
    p.add_argument("--plots", default="plots/download")
    p.add_argument("--work_dir", default="data/.cache/download", help="resumable conversion state (not a DVC output)")

    def body(args: argparse.Namespace) -> int:
        params = load_params(args.params)
        extra = convert(params.download, params.base.seed, Path(args.out), Path(args.work_dir),
                        workers=params.runtime.download.workers)
        metrics = report(Path(args.out), Path(args.metrics), Path(args.plots), extra)
        print(f"download: {metrics['images']} images ({metrics['images_per_split']}), "
              f"{metrics['invalid']} invalid, {metrics['shards']} shard(s)")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
