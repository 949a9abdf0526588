"""denoise: clean the (noisy) train labels by one arm: none, oracle (simulated), cleanlab, analyzer, or a VL export.

Inputs:  ``--noisy`` (data/noise/train_labels.csv with the truth of every flip), ``--raw``, ``--features``,
         params ``base``, ``denoise`` (and, for the analyzer arm, ``analyze`` and ``apply_tags``);
         ``denoise.vl_export``: a Visual Layer export of the noisy dataset (arm vl_export).
Outputs: ``--output`` (data/denoise/train_labels.csv: image_id, label: what train uses),
         ``--metrics`` (precision, recall and F1 of the detection against the actual flips, the recall
         the arm was asked for where it has one, and what it kept, dropped and relabelled).
See vlclean/denoise.py for the arms.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from vlclean import cli
from vlclean.adapt import resolve_label_features
from vlclean.datasets import RawDataset
from vlclean.detect import label_issues
from vlclean.denoise import (best_other_class, detection_metrics, oracle_denoise, predicted_denoise,
                             vl_export_flags)
from vlclean.encode import feature_matrix
from vlclean.noise import margins, neighbours
from vlclean.params import MislabelParams, Params, load_params
from vlclean.storage import read_csv, write_csv, write_json


def analyzer_threshold(every: Params) -> float:
    """The active rule set's confidence threshold for the ``mislabeled`` tag (0 when it has none): what
    apply_tags uses, after analyze, to call a label wrong."""
    rule = next((r for r in every.apply_tags.rules if r.tag == "mislabeled" and r.issue and "mislabel" in r.issue),
                None)
    return rule.min_confidence if rule is not None and rule.min_confidence is not None else 0.0


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    for flag in ("noisy", "raw", "features", "output", "metrics"):
        p.add_argument(f"--{flag}", required=True)

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params)
        base, params = every.base, every.denoise
        noisy_frame = read_csv(args.noisy)
        ids = noisy_frame["image_id"].to_numpy()
        true = noisy_frame["true_label"].to_numpy(dtype=np.int64)
        noisy = noisy_frame["label"].to_numpy(dtype=np.int64)
        rng = np.random.default_rng((params.seed if params.seed is not None else base.seed) + 1)
        raw = RawDataset.open(args.raw, images=False)  # decode once: the tables, never the bytes
        classes = raw.classes().sort_values("label")
        n_classes = len(classes)
        extra: dict = {}
        if params.method == "none":
            r = predicted_denoise(np.zeros(len(ids), bool), noisy, None, action="drop")
        elif params.method == "oracle":
            hardness = other = other_than_true = None
            if params.miss == "hardest" or params.action == "relabel":
                x = feature_matrix(args.features, ids, kind=params.features, side=params.pixels_side)
                hardness = margins(true, neighbours(x, params.k)) if params.miss == "hardest" else None
                other = best_other_class(x, noisy, n_classes)
                other_than_true = best_other_class(x, noisy, n_classes, exclude=true)
            r = oracle_denoise(true, noisy, recall=params.recall, false_positive_rate=params.false_positive_rate,
                               action=params.action, rng=rng, miss=params.miss, relabel_accuracy=params.relabel_accuracy,
                               hardness=hardness, best_other=other, best_other_than_true=other_than_true)
            extra = {"recall_asked": params.recall, "false_positive_rate_asked": params.false_positive_rate,
                     "miss": params.miss}
        elif params.method in ("cleanlab", "analyzer"):
            if params.method == "cleanlab":
                mp, threshold = MislabelParams(classifier=params.classifier, C=params.C, folds=params.folds), 0.0
                x = feature_matrix(args.features, ids, kind=params.features, side=params.pixels_side)
            else:  # the analyzer's detector, its label features chosen (auto) on the noisy labels
                mp, threshold = every.analyze.detect.mislabels, analyzer_threshold(every)
                _, x, choice = resolve_label_features(args.features, every.analyze, noisy, n_classes, base.seed, ids)
                extra = {"analyzer": {"label_features": choice, **mp.model_dump(), "min_confidence": threshold}}
            found = label_issues(x, noisy, n_classes, mp, base.seed)
            r = predicted_denoise(found.flag & (found.confidence >= threshold), noisy, found.suggested,
                                  action=params.action)
        else:
            from vlclean.vl_ingest import match_to_index, read_export

            export = match_to_index(read_export(params.vl_export), raw.index())
            flag, suggested, extra = vl_export_flags(export.media, export.issues, ids, noisy, classes,
                                                     min_confidence=params.vl_min_confidence,
                                                     where=f"denoise.vl_export {params.vl_export}")
            r = predicted_denoise(flag, noisy, suggested, action=params.action)
        write_csv(args.output, pd.DataFrame({"image_id": ids[r.keep], "label": r.labels[r.keep]}))
        relabelled = r.keep & (r.labels != noisy)
        metrics = {"method": params.method, "action": params.action, "train_images_in": len(ids),
                   "train_images_out": int(r.keep.sum()), "flagged": int(r.flagged.sum()),
                   "relabelled": int(relabelled.sum()),
                   "relabelled_to_true_class": int((relabelled & (r.labels == true)).sum()),
                   "remaining_wrong_labels": int((r.labels[r.keep] != true[r.keep]).sum()),
                   "detection": detection_metrics(r.flagged, true, noisy, ids), **extra}
        write_json(args.metrics, metrics)
        d = metrics["detection"]
        print(f"denoise ({params.method}): kept {metrics['train_images_out']} of {len(ids)}; detection precision "
              f"{d['precision']}, recall {d['recall']}, F1 {d['f1']} against {d['actual']} flips")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
