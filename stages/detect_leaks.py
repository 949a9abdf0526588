"""detect_leaks: train/test duplicates (exact, perceptual, embedding), a leaks report and a per-test view.

Inputs:  ``--raw`` (data/raw), ``--features`` (data/features), params ``base``, ``detect_leaks``.
Outputs: ``--output`` (data/manifests/<dataset>_leaks_report.csv: one row per pair, every scope),
         ``--by_test`` (one row per test image), ``--metrics`` (leaked counts per tier/method; on the
         built-in dataset precision/recall per transform), ``--plots`` (distances, calibration curve).
Standalone, without DVC, on two ImageFolder trees (features computed on the fly):
         ``python -m stages.detect_leaks --dataset imagenet1k --train_dir TRAIN --test_dir VAL
         --output F.csv --methods perceptual``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vlclean import cli
from vlclean.datasets import RawDataset, folder_paths
from vlclean.encode import load_embeddings, load_features
from vlclean.features import centre_crop_hashes
from vlclean.leaks import (Side, calibration, find_leaks, leak_metrics, leaks_by_test, score_leaks)
from vlclean.params import EmbeddingParams, EmbeddingRuntime, LeakParams, load_params, parse
from vlclean.reporting import distance_histogram_plot, line_plot
from vlclean.storage import write_csv, write_json


def dataset_sides(raw_dir: Path, features_dir: Path, p: LeakParams) -> tuple[Side, Side, pd.DataFrame]:
    """The test and train sides of the raw dataset (test side with its centre-crop hashes)."""
    need_embeddings, methods, crop_scales = "embedding" in p.methods, p.methods, p.crop_scales
    raw = RawDataset.open(raw_dir)
    index = raw.index()
    features = load_features(features_dir)
    emb = load_embeddings(features_dir) if need_embeddings else None
    paths = folder_paths(index).to_numpy()

    def side(split: str) -> Side:
        rows = np.flatnonzero(index["split"].to_numpy() == split)
        return Side(ids=index["image_id"].to_numpy()[rows], paths=paths[rows],
                    features=features.iloc[rows].reset_index(drop=True),
                    embeddings=None if emb is None else emb[rows])

    test = side("test")
    data = raw.read_images(test.ids)
    crops = centre_crop_hashes([data[i] for i in test.ids], crop_scales) if "perceptual" in methods else {}
    return dataclasses.replace(test, crop_hashes=crops), side("train"), raw.truth()


def folder_side(root: Path, p: LeakParams, workers: int, e: EmbeddingParams, rt: EmbeddingRuntime) -> Side:
    """Features (and embeddings if needed) of every file below ``root``; unreadable ones reported."""
    from vlclean.datasets.folder import list_image_files
    from vlclean.embeddings import build_embedder
    from vlclean.features import compute_features
    from vlclean.images import load_rgb

    files, refused = list_image_files(root)
    for rel, why in refused:
        print(f"skipped: {root / rel}: {why}", file=sys.stderr)
    items = [(str(root / rel), (root / rel).read_bytes()) for rel in files]
    features = compute_features(items, workers=workers, progress=True)
    for row in features.loc[~features["valid"]].itertuples():
        print(f"unreadable: {row.image_id}: {row.error}", file=sys.stderr)
    emb = None
    if "embedding" in p.methods:
        embedder = build_embedder(e.model, input_size=e.input_size, batch_size=rt.batch_size, device=rt.device,
                                  weights_path=e.weights_path, allow_download=e.allow_download)
        valid = features["valid"].to_numpy()
        emb = np.zeros((len(items), embedder.dim), dtype=np.float32)
        size = (e.input_size, e.input_size)
        rows = np.flatnonzero(valid)
        for start in range(0, len(rows), embedder.batch_size):
            batch = rows[start : start + embedder.batch_size]
            emb[batch] = embedder.embed([load_rgb(items[r][1], draft_size=size) for r in batch])
    paths = np.array([str(root / rel) for rel in files], dtype=object)
    crops = centre_crop_hashes([d for _, d in items], p.crop_scales) if "perceptual" in p.methods else {}
    return Side(ids=paths.copy(), paths=paths, features=features, embeddings=emb, crop_hashes=crops)


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
    p.add_argument("--methods", default=None, help="comma-separated subset of exact,perceptual,embedding")
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
            train = folder_side(Path(args.train_dir), params, workers, e, rt.embedding)
            test = folder_side(Path(args.test_dir), params, workers, e, rt.embedding)
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
