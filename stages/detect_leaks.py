"""detect_leaks: train/test duplicates (exact, perceptual, embedding), a leaks report and a per-test view.

Inputs:  ``--raw`` (data/raw), ``--features`` (data/features), params ``base``, ``detect_leaks``.
Outputs: ``--output`` (data/manifests/<dataset>_leaks_report.csv: one row per pair, every scope),
         ``--by_test`` (one row per test image), ``--metrics`` (leaked counts per tier/method; on the
         built-in dataset precision/recall per transform), ``--plots`` (distances, calibration curve).
Standalone, without DVC, on two ImageFolder trees (files streamed and hashed as they are read):
         ``python -m stages.detect_leaks --dataset imagenet1k --train_dir TRAIN --test_dir VAL
         --output F.csv --methods perceptual``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from vlclean import cli
from vlclean.leaks import (Side, calibration, dataset_sides, find_leaks, folder_side, leak_metrics, leaks_by_test,
                           score_leaks)
from vlclean.params import EmbeddingParams, EmbeddingRuntime, LeakParams, load_params, parse
from vlclean.reporting import distance_histogram_plot, line_plot
from vlclean.storage import write_csv, write_json


def standalone_sides(train_dir: Path, test_dir: Path, p: LeakParams, workers: int, e: EmbeddingParams,
                     rt: EmbeddingRuntime) -> tuple[Side, Side]:
    """The two ImageFolder trees as sides (streamed; the embedder from params ``analyze.embedding``)."""
    embedder = None
    if "embedding" in p.methods:
        from vlclean.embeddings import build_embedder

        embedder = build_embedder(e.model, input_size=e.input_size, batch_size=rt.batch_size, device=rt.device,
                                  weights_path=e.weights_path, allow_download=e.allow_download)
    return (folder_side(test_dir, p, test=True, embedder=embedder, workers=workers),
            folder_side(train_dir, p, test=False, embedder=embedder, workers=workers))


def report(pairs: pd.DataFrame, test: Side, truth: pd.DataFrame, p: LeakParams, train: Side,
           output: Path, by_test_path: Path | None, metrics_path: Path | None, plots: Path | None) -> dict:
    write_csv(output, pairs)
    by_test = leaks_by_test(pairs, test)
    if by_test_path is not None:
        write_csv(by_test_path, by_test)
    metrics = leak_metrics(pairs, by_test)
    if not truth.empty:
        metrics["truth"] = score_leaks(pairs, truth)
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    if plots is not None:
        distance_histogram_plot(pairs[pairs["scope"] == "test-train"], csv_path=plots / "distances.csv",
                                png_path=plots / "distances.png")
        # every dataset writes the declared plot; only the built-in one has planted leaks to calibrate on
        if not truth.empty:
            curve = calibration(test, train, truth, p)
            title = "Leak detection on the planted truth: precision and recall by threshold"
        else:
            curve = pd.DataFrame(columns=["method", "threshold", "precision", "recall"])
            title = "No planted leaks in this dataset (built-in only): nothing to calibrate on"
        line_plot(curve, x="threshold", ys=["precision", "recall"], facet="method",
                  csv_path=plots / "calibration.csv", png_path=plots / "calibration.png", title=title)
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--features", default="data/features")
    p.add_argument("--dataset", default=None, help="dataset name (default: params base.dataset)")
    p.add_argument("--output", default=None, help="leaks report CSV (default data/manifests/<dataset>_leaks_report.csv)")
    p.add_argument("--by_test", default=None, help="per-test-image view CSV")
    p.add_argument("--metrics", default=None)
    p.add_argument("--plots", default=None)
    p.add_argument("--train_dir", default=None, help="standalone: ImageFolder tree of train images")
    p.add_argument("--test_dir", default=None, help="standalone: ImageFolder tree of test images")
    p.add_argument("--methods", default=None, help="comma-separated subset of exact,perceptual,embedding,copy")
    p.add_argument("--workers", type=int, default=None, help="standalone: processes (default runtime.analyze.workers)")

    def body(args: argparse.Namespace) -> int:
        standalone = bool(args.train_dir or args.test_dir)
        every = load_params(args.params, missing_ok=standalone)
        dataset = args.dataset or every.base.dataset
        params = every.detect_leaks
        if args.methods:
            methods = [m.strip() for m in args.methods.split(",") if m.strip()]
            params = parse(LeakParams, {**params.model_dump(), "methods": methods}, "detect_leaks")
        output = Path(args.output or f"data/manifests/{dataset}_leaks_report.csv")
        if standalone:
            if not (args.train_dir and args.test_dir):
                raise cli.UsageError("--train_dir and --test_dir go together")
            rt = every.runtime.analyze
            workers, e = args.workers or rt.workers, every.analyze.embedding
            test, train = standalone_sides(Path(args.train_dir), Path(args.test_dir), params, workers, e, rt.embedding)
            params = params.model_copy(update={"scopes": ["test-train", "test-test", "train-train"]})
            truth = pd.DataFrame(columns=["issue", "image_id", "related_image_id", "detail"])
        else:
            test, train, truth = dataset_sides(Path(args.raw), Path(args.features), params)
        pairs = find_leaks(test, train, params)
        m = report(pairs, test, truth, params, train, output, Path(args.by_test) if args.by_test else None,
                   Path(args.metrics) if args.metrics else None, Path(args.plots) if args.plots else None)
        print(f"detect_leaks: {m['leaked_test_images']} of {m['test_images']} test images have a train copy "
              f"({m['leaked_fraction']:.2%}); report: {output}")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
