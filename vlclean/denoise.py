"""Cleaning arms for noisy train labels, each scored against the flips it was meant to find.

Every arm yields a :class:`DenoiseResult`: which images it flagged, which stay, and the labels
training then uses. ``detection_metrics`` scores the flags against the truth of the flips.

``none``       labels pass through.
``oracle``     a simulated cleaning tool of known quality: it catches a ``recall`` share of the flips
               and wrongly flags a ``false_positive_rate`` share of the clean labels. ``miss``:
               ``uniform`` (which flips it misses and which clean images it flags are chance) or
               ``hardest`` (as a real detector: it misses the flips with the smallest margins and
               its false positives are the clean images with the smallest margins; margins as in
               :mod:`vlclean.noise`, measured with the true labels, i.e. how close an image sits to
               another class). ``relabel``: a ``relabel_accuracy`` share of the caught flips gets
               the true class, the rest and every false positive get the detector's best other
               class (nearest class centroid of the noisy labels, other than the image's label and,
               for a flip, its true class).
``cleanlab``   cleanlab's ``find_label_issues`` on cross-validated probabilities (denoise's own
               classifier settings); relabel to the most probable class.
``analyzer``   the project's mislabel detector exactly as ``analyze`` + ``apply_tags`` run it (the
               ``analyze`` section's label features and classifier, the active rule set's
               ``mislabeled`` confidence threshold), on the noisy labels; relabel to its suggestion.
``vl_export``  the mislabel issues of a Visual Layer export made of the *noisy* dataset; refused
               when the export's labels are not the noisy labels (an export of the labels before
               noise cannot see a single flip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlclean.errors import DatasetError
from vlclean.noise import class_centroids, normalise
from vlclean.truth import score

DENOISE_METHODS: tuple[str, ...] = ("none", "oracle", "cleanlab", "analyzer", "vl_export")


@dataclass(frozen=True)
class DenoiseResult:
    keep: np.ndarray  # (N,) bool: image stays in training
    labels: np.ndarray  # (N,) labels to train with (meaningful where keep)
    flagged: np.ndarray  # (N,) bool: the method called this label wrong


def best_other_class(features: np.ndarray, noisy: np.ndarray, n_classes: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per image, the class whose centroid (of the noisy labels) is nearest, other than its own label and,
    where given, ``exclude`` (N,)."""
    x = normalise(features)
    sims = x @ class_centroids(x, noisy, n_classes).T
    rows = np.arange(len(noisy))
    sims[rows, noisy] = -np.inf
    if exclude is not None:
        sims[rows, exclude] = -np.inf
    return sims.argmax(axis=1)


def oracle_denoise(
    true: np.ndarray, noisy: np.ndarray, *, recall: float, false_positive_rate: float, action: str,
    rng: np.random.Generator, miss: str = "uniform", relabel_accuracy: float = 1.0,
    hardness: np.ndarray | None = None, best_other: np.ndarray | None = None,
    best_other_than_true: np.ndarray | None = None,
) -> DenoiseResult:
    """Simulated cleaning of known quality (see module doc). ``hardness`` (N,): margins, smaller = harder
    (needed for ``miss="hardest"``); ``best_other`` / ``best_other_than_true`` (N,): the detector's best
    class other than the noisy label (and other than the true class) for wrong relabels; without them
    the images that would get a wrong label are dropped instead."""
    flips = np.flatnonzero(true != noisy)
    clean = np.flatnonzero(true == noisy)
    n_caught = int(round(recall * len(flips)))
    n_fp = int(round(false_positive_rate * len(clean)))
    if miss == "hardest":
        if hardness is None:
            raise ValueError("oracle miss='hardest' needs the margins (hardness)")
        caught = flips[np.argsort(-hardness[flips], kind="stable")[:n_caught]]  # misses the smallest margins
        wrongly = clean[np.argsort(hardness[clean], kind="stable")[:n_fp]]
    else:
        caught = rng.choice(flips, size=n_caught, replace=False) if n_caught else flips[:0]
        wrongly = rng.choice(clean, size=n_fp, replace=False) if n_fp else clean[:0]
    flagged = np.zeros(len(true), dtype=bool)
    flagged[caught] = True
    flagged[wrongly] = True
    labels = noisy.copy()
    keep = np.ones(len(true), dtype=bool)
    if action != "relabel":
        keep[flagged] = False
        return DenoiseResult(keep=keep, labels=labels, flagged=flagged)
    right = rng.choice(caught, size=int(round(relabel_accuracy * len(caught))), replace=False) if len(caught) else caught
    wrong = np.setdiff1d(caught, right)
    labels[right] = true[right]
    for rows, guess in ((wrong, best_other_than_true), (wrongly, best_other)):
        if guess is None:
            keep[rows] = False
        else:
            labels[rows] = guess[rows]
    return DenoiseResult(keep=keep, labels=labels, flagged=flagged)


def predicted_denoise(flagged: np.ndarray, noisy: np.ndarray, suggested: np.ndarray | None, *, action: str) -> DenoiseResult:
    """Drop the flagged labels, or relabel them to ``suggested`` (N,; -1: no suggestion, dropped)."""
    labels = noisy.copy()
    keep = np.ones(len(noisy), dtype=bool)
    if action == "relabel" and suggested is not None:
        has = flagged & (suggested >= 0)
        labels[has] = suggested[has]
        keep[flagged & ~has] = False
    else:
        keep[flagged] = False
    return DenoiseResult(keep=keep, labels=labels, flagged=flagged)


def detection_metrics(flagged: np.ndarray, true: np.ndarray, noisy: np.ndarray, ids: np.ndarray) -> dict:
    """Precision, recall and F1 of the flagged labels against the actual flips."""
    return score(set(ids[flagged]), set(ids[true != noisy]))


# -- a VL export of the noisy dataset --------------------------------------------------------------------
def _norm(name: object) -> str:
    return str(name).strip().lower()


def vl_export_flags(
    media: pd.DataFrame, issues: pd.DataFrame, ids: np.ndarray, noisy: np.ndarray, classes: pd.DataFrame, *,
    min_confidence: float, where: str,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(flagged, suggested, stats)`` from a matched VL export (``media``/``issues`` after
    ``vl_ingest.match_to_index``) of the noisy train set ``ids`` / ``noisy``.

    Each train image's exported label (class id or name, e.g. its ImageFolder folder) must be its noisy
    label: otherwise the export was made of other labels and a :class:`DatasetError` names how many
    disagree, with examples. ``suggested`` holds the export's suggested class (-1: none or unknown).
    """
    label_of = {}
    for label, cid, name in zip(classes["label"], classes["class_id"], classes["class_name"]):
        label_of.setdefault(_norm(cid), int(label))
        label_of.setdefault(_norm(name), int(label))
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    matched = media[media["image_id"].isin(row_of.index)]
    if matched.empty:
        raise DatasetError(f"{where}: none of the {len(ids)} noisy train images is in this export "
                           "(export the noisy dataset: see README, 'Cleaning arms')")
    rows = row_of.loc[matched["image_id"]].to_numpy()
    exported = matched["label_name"].fillna("").map(_norm).map(label_of).fillna(-1).to_numpy(dtype=np.int64)
    bad = exported != noisy[rows]
    if bad.any():
        classes_by_label = dict(zip(classes["label"], classes["class_name"]))
        examples = [f"{iid}: export says {lab!r}, noisy label is {classes_by_label[int(noisy[r])]!r}"
                    for iid, lab, r in zip(matched["image_id"][bad][:3], matched["label_name"][bad][:3], rows[bad][:3])]
        raise DatasetError(
            f"{where}: {int(bad.sum())} of {len(matched)} train images carry another label in this export than in "
            f"the noisy labels ({'; '.join(examples)}). The export must be made of the noisy dataset (README, "
            "'Cleaning arms'); an export of the labels before noise cannot see the flips."
        )
    hits = issues[(issues["issue_type"] == "mislabel") & (issues["confidence"].fillna(1.0) >= min_confidence)
                  & issues["image_id"].isin(row_of.index)]
    flagged = np.zeros(len(ids), dtype=bool)
    flagged[row_of.loc[hits["image_id"]].to_numpy()] = True
    suggested = np.full(len(ids), -1, dtype=np.int64)
    for iid, extra in zip(hits["image_id"], hits.get("extra", pd.Series([""] * len(hits)))):
        try:
            name = json.loads(extra or "{}").get("suggested_label")
        except (TypeError, ValueError):
            name = None
        if name is not None and _norm(name) in label_of:
            suggested[row_of[iid]] = label_of[_norm(name)]
    stats = {"export_images_matched": int(len(matched)), "train_images_not_in_export": int(len(ids) - len(set(matched["image_id"])))}
    return flagged, suggested, stats
