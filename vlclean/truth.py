"""Scoring detectors against the built-in dataset's planted truth (``data/raw/truth.csv``).

Every detector (analyzer, leak finder, denoiser) reports precision and recall through these
functions, so "it works" is a number in a DVC metrics file, not an impression.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def score(predicted: Iterable[object], actual: Iterable[object]) -> dict[str, float | int]:
    """Precision, recall and F1 of a predicted set against the actual set (images or pairs).

    Empty predictions give precision 1.0 only when nothing was to be found (then recall is 1.0 too).
    """
    pred, true = set(predicted), set(actual)
    tp = len(pred & true)
    fp = len(pred - true)
    fn = len(true - pred)
    precision = tp / (tp + fp) if pred else (1.0 if not true else 0.0)
    recall = tp / (tp + fn) if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": tp, "fp": fp, "fn": fn, "predicted": len(pred), "actual": len(true)}


def truth_images(truth: pd.DataFrame, issue: str, *, include_related: bool = False) -> set[str]:
    """Image ids carrying a planted ``issue`` (and, for pair issues, optionally their partners)."""
    rows = truth[truth["issue"] == issue]
    ids = set(rows["image_id"])
    if include_related:
        ids |= {r for r in rows["related_image_id"].fillna("") if r}
    return ids


def truth_pairs(truth: pd.DataFrame, issues: Iterable[str]) -> set[frozenset[str]]:
    """Unordered ``{image_id, related_image_id}`` pairs of the given pair issues."""
    rows = truth[truth["issue"].isin(list(issues))]
    return {frozenset((a, b)) for a, b in zip(rows["image_id"], rows["related_image_id"].fillna("")) if b}
