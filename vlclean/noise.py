"""Label-noise injection (random vs "intelligent") and denoising (simulated or real), with their truth.

Noise
-----
``random``       each flipped label goes to one of the other classes uniformly.
``intelligent``  each flipped label goes to a class the image plausibly belongs to: the other classes
                 are weighted by ``softmax(similarity(image, class centroid) / temperature)`` in a
                 feature space (embeddings, or grey thumbnails for tiny images). This mimics human
                 annotators, who confuse look-alike classes (a 3 for an 8, a husky for a malamute),
                 not arbitrary ones. Which images are flipped is chosen uniformly in both kinds, so
                 the two differ only in where the wrong labels point.

Denoising
---------
``none``       labels pass through.
``oracle``     simulates a cleaning tool of known quality (e.g. VL at 80 % recall): catches a
               ``recall`` share of the flipped labels plus a ``false_positive_rate`` share of clean
               ones; caught labels are dropped, or relabelled (flips to their true label, false
               positives to the model's best other guess is unknowable, so those are dropped).
``cleanlab``   real detection on the noisy labels: cleanlab's ``find_label_issues`` on
               cross-validated out-of-sample probabilities from the features; drop or relabel to
               the most probable class.
``vl_export``  the images a VL export flags as mislabels (ingested issues) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlclean.truth import score

NOISE_KINDS: tuple[str, ...] = ("random", "intelligent")
DENOISE_METHODS: tuple[str, ...] = ("none", "oracle", "cleanlab", "vl_export")


def class_centroids(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """L2-normalised mean feature per class (n_classes, D); classes without images get zeros."""
    sums = np.zeros((n_classes, features.shape[1]))
    np.add.at(sums, labels, features)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.where(norms == 0, 1.0, norms)


def inject_noise(
    labels: np.ndarray, n_classes: int, *, rate: float, kind: str, rng: np.random.Generator,
    features: np.ndarray | None = None, temperature: float = 0.05,
) -> np.ndarray:
    """Noisy copy of ``labels`` (N,) with ``round(rate * N)`` flips to other classes (see module doc)."""
    n = len(labels)
    noisy = labels.copy()
    flip = rng.choice(n, size=int(round(rate * n)), replace=False) if n else np.array([], dtype=int)
    if len(flip) == 0:
        return noisy
    if kind == "random" or n_classes < 2:
        offsets = rng.integers(1, max(n_classes, 2), size=len(flip))
        noisy[flip] = (labels[flip] + offsets) % n_classes
        return noisy
    if features is None:
        raise ValueError("intelligent noise needs features")
    centroids = class_centroids(features, labels, n_classes)
    sims = features[flip] @ centroids.T  # (F, K)
    sims[np.arange(len(flip)), labels[flip]] = -np.inf
    logits = sims / temperature
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    cum = probs.cumsum(axis=1)
    u = rng.random(len(flip))[:, None]
    noisy[flip] = np.minimum((u > cum).sum(axis=1), n_classes - 1)
    return noisy


def confusion_share(true: np.ndarray, noisy: np.ndarray, n_classes: int) -> float:
    """Share of flips that land in each true class's most frequent wrong class (1/(K-1) for uniform)."""
    flipped = true != noisy
    if not flipped.any():
        return 0.0
    top = 0
    for c in range(n_classes):
        wrong = noisy[flipped & (true == c)]
        if len(wrong):
            top += np.bincount(wrong, minlength=n_classes).max()
    return round(top / flipped.sum(), 4)


@dataclass(frozen=True)
class DenoiseResult:
    keep: np.ndarray  # (N,) bool: image stays in training
    labels: np.ndarray  # (N,) labels to train with (meaningful where keep)
    flagged: np.ndarray  # (N,) bool: the method called this label wrong


def oracle_denoise(
    true: np.ndarray, noisy: np.ndarray, *, recall: float, false_positive_rate: float, action: str,
    rng: np.random.Generator,
) -> DenoiseResult:
    """Simulated cleaning of known quality (see module doc)."""
    flipped = np.flatnonzero(true != noisy)
    clean = np.flatnonzero(true == noisy)
    caught = rng.choice(flipped, size=int(round(recall * len(flipped))), replace=False) if len(flipped) else flipped
    wrongly = rng.choice(clean, size=int(round(false_positive_rate * len(clean))), replace=False) if len(clean) else clean
    flagged = np.zeros(len(true), dtype=bool)
    flagged[caught] = True
    flagged[wrongly] = True
    labels = noisy.copy()
    keep = np.ones(len(true), dtype=bool)
    if action == "relabel":
        labels[caught] = true[caught]
        keep[wrongly] = False
    else:
        keep[flagged] = False
    return DenoiseResult(keep=keep, labels=labels, flagged=flagged)


def predicted_denoise(flagged: np.ndarray, noisy: np.ndarray, suggested: np.ndarray | None, *, action: str) -> DenoiseResult:
    """Drop the flagged labels, or relabel them to ``suggested`` (cleanlab's most probable class)."""
    labels = noisy.copy()
    keep = np.ones(len(noisy), dtype=bool)
    if action == "relabel" and suggested is not None:
        labels[flagged] = suggested[flagged]
    else:
        keep[flagged] = False
    return DenoiseResult(keep=keep, labels=labels, flagged=flagged)


def detection_metrics(flagged: np.ndarray, true: np.ndarray, noisy: np.ndarray, ids: np.ndarray) -> dict:
    """Precision, recall and F1 of the flagged labels against the actual flips."""
    return score(set(ids[flagged]), set(ids[true != noisy]))


def noisy_labels_frame(ids: np.ndarray, true: np.ndarray, noisy: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ids, "true_label": true, "label": noisy, "flipped": true != noisy})
