"""Scoring a model's predictions on the test split: overall, leak-free, per class, per image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlclean.training.data import LabelledImages
from vlclean.training.model import Predictions


# -- evaluation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluationReport:
    """Accuracy on the full and the leak-free test split, per class, and one row per test image."""

    metrics: dict
    per_class: pd.DataFrame  # class_name, accuracy, images
    confusion: pd.DataFrame  # image_id, actual, predicted, leaked (DVC confusion: x=actual, y=predicted)


def evaluation_report(images: LabelledImages, pred: Predictions, class_names: Sequence[str]) -> EvaluationReport:
    """Score ``pred`` (from :func:`predict` over ``images``) against the labels of ``images``.

    ``leak_inflation = accuracy - accuracy_leak_free``: how much train copies of test images inflate
    the headline number. Leak-free figures are ``None`` when every test image leaked.
    """
    f = images.frame
    if len(pred.positions) != len(f) or not np.array_equal(np.sort(pred.positions), np.arange(len(f))):
        raise ValueError(f"predictions cover {len(pred.positions)} positions, the label file {len(f)} images")
    order = np.argsort(pred.positions)
    predicted = pred.predicted[order]
    actual = f["label"].to_numpy()
    leaked = f["leaked"].to_numpy(dtype=bool)
    correct = predicted == actual
    names = np.asarray(list(class_names), dtype=object)
    n, n_clean = len(f), int((~leaked).sum())
    acc = float(correct.mean()) if n else None
    acc_clean = float(correct[~leaked].mean()) if n_clean else None
    acc_leaked = float(correct[leaked].mean()) if n - n_clean else None
    rows = []
    for label, name in enumerate(names):
        mine = actual == label
        rows.append({"class_name": str(name), "accuracy": round(float(correct[mine].mean()), 6) if mine.any() else None,
                     "images": int(mine.sum())})
    per_class = pd.DataFrame(rows, columns=["class_name", "accuracy", "images"])
    metrics = {
        "accuracy": None if acc is None else round(acc, 6),
        "accuracy_leak_free": None if acc_clean is None else round(acc_clean, 6),
        "accuracy_leaked": None if acc_leaked is None else round(acc_leaked, 6),
        "leak_inflation": None if acc is None or acc_clean is None else round(acc - acc_clean, 6),
        "n_test": n,
        "n_leak_free": n_clean,
        "n_leaked": n - n_clean,
        "per_class_accuracy": {r["class_name"]: r["accuracy"] for r in rows},
    }
    confusion = pd.DataFrame({"image_id": f["image_id"].to_numpy(), "actual": names[actual],
                              "predicted": names[predicted], "leaked": leaked})
    return EvaluationReport(metrics, per_class, confusion)


def prediction_table(images: LabelledImages, pred: Predictions) -> pd.DataFrame:
    """One row per test image (``schema.PREDICTIONS``), sorted by ``image_id``: the paired-comparison input."""
    f = images.frame
    if len(pred.positions) != len(f):
        raise ValueError(f"predictions cover {len(pred.positions)} positions, the label file {len(f)} images")
    predicted = pred.predicted[np.argsort(pred.positions)]
    label = f["label"].to_numpy(dtype=np.int64)
    table = pd.DataFrame({"image_id": f["image_id"].astype(str).to_numpy(), "label": label,
                          "predicted": predicted.astype(np.int64), "correct": label == predicted})
    return table.sort_values("image_id", kind="stable").reset_index(drop=True)
