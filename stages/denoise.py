"""denoise: clean the (noisy) train labels: none, a simulated cleaner (oracle), cleanlab, or a VL export.

Inputs:  ``--noisy`` (data/noise/train_labels.csv with the truth of every flip), ``--raw``, ``--features``,
         ``--vl_issues`` (ingested VL issues, for method vl_export), params ``base``, ``denoise``.
Outputs: ``--output`` (data/denoise/train_labels.csv: image_id, label: what train uses),
         ``--metrics`` (precision, recall and F1 of the detection against the actual flips).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from vlclean import cli
from vlclean.config import check_range, from_dict, load_base, read_params_file
from vlclean.datasets import RawDataset
from vlclean.errors import ParamsError
from vlclean.encode import feature_matrix
from vlclean.noise import detection_metrics, oracle_denoise, predicted_denoise
from vlclean.storage import read_csv, write_csv, write_json
from vlclean.vl_export import MislabelParams, find_mislabels, out_of_sample_probs


@dataclass(frozen=True)
class DenoiseParams:
    method: Literal["none", "oracle", "cleanlab", "vl_export"] = "none"
    action: Literal["drop", "relabel"] = "drop"
    recall: float = 0.8  # oracle: share of flipped labels caught
    false_positive_rate: float = 0.02  # oracle: share of clean labels wrongly caught
    features: Literal["embedding", "pixels"] = "pixels"  # cleanlab's classifier input
    pixels_side: int = 8
    classifier: Literal["svm", "knn", "logistic"] = "svm"
    C: float = 3.0
    folds: int = 5
    vl_min_confidence: float = 0.5  # vl_export: mislabel issues at or above this confidence
    seed: int | None = None

    def validate(self, prefix: str) -> None:
        check_range(prefix, "recall", self.recall, 0.0, 1.0)
        check_range(prefix, "false_positive_rate", self.false_positive_rate, 0.0, 1.0)
        check_range(prefix, "folds", self.folds, 2, 20)
        check_range(prefix, "vl_min_confidence", self.vl_min_confidence, 0.0, 1.0)
        check_range(prefix, "pixels_side", self.pixels_side, 4, 64)
        if self.C <= 0:
            raise ParamsError(f"params key '{prefix}.C': {self.C} must be > 0")


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    for flag in ("noisy", "raw", "features", "vl_issues", "output", "metrics"):
        p.add_argument(f"--{flag}", required=True)

    def body(args: argparse.Namespace) -> int:
        base = load_base(args.params)
        params = from_dict(DenoiseParams, read_params_file(args.params).get("denoise"), "denoise")
        noisy_frame = read_csv(args.noisy)
        ids = noisy_frame["image_id"].to_numpy()
        true = noisy_frame["true_label"].to_numpy(dtype=np.int64)
        noisy = noisy_frame["label"].to_numpy(dtype=np.int64)
        rng = np.random.default_rng((params.seed if params.seed is not None else base.seed) + 1)
        if params.method == "none":
            keep, labels, flagged = np.ones(len(ids), bool), noisy, np.zeros(len(ids), bool)
        elif params.method == "oracle":
            r = oracle_denoise(true, noisy, recall=params.recall, false_positive_rate=params.false_positive_rate,
                               action=params.action, rng=rng)
            keep, labels, flagged = r.keep, r.labels, r.flagged
        elif params.method == "cleanlab":
            raw = RawDataset.open(args.raw)
            x = feature_matrix(raw, args.features, ids, kind=params.features, side=params.pixels_side)
            mp = MislabelParams(classifier=params.classifier, C=params.C, folds=params.folds)
            probs = out_of_sample_probs(x, noisy, len(raw.classes()), mp, base.seed)
            flag, _ = find_mislabels(probs, noisy, mp)
            r = predicted_denoise(flag, noisy, probs.argmax(axis=1), action=params.action)
            keep, labels, flagged = r.keep, r.labels, r.flagged
        else:
            issues = pd.read_parquet(Path(args.vl_issues))
            hit = issues[(issues["issue_type"] == "mislabel") & (issues["confidence"].fillna(0) >= params.vl_min_confidence)]
            flag = np.isin(ids, hit["image_id"].to_numpy())
            r = predicted_denoise(flag, noisy, None, action="drop")
            keep, labels, flagged = r.keep, r.labels, r.flagged
        write_csv(args.output, pd.DataFrame({"image_id": ids[keep], "label": labels[keep]}))
        metrics = {"method": params.method, "action": params.action, "train_images_in": len(ids),
                   "train_images_out": int(keep.sum()), "flagged": int(flagged.sum()),
                   "remaining_wrong_labels": int((labels[keep] != true[keep]).sum()),
                   "detection": detection_metrics(flagged, true, noisy, ids)}
        write_json(args.metrics, metrics)
        print(f"denoise ({params.method}): kept {metrics['train_images_out']} of {len(ids)}; "
              f"detection {metrics['detection']}")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
