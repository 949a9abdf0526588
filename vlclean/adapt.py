"""The analyzer's settings that adapt to the data (``auto`` in ``params.yaml``), and its sanity guard.

No single value of these fits both 32-px digits and ImageNet photographs, so ``auto`` measures the
dataset and chooses; every choice is written to the analyzer's metrics (``choices``) and printed.

``embedding.input_size: auto``  the images' median shorter side rounded up to a multiple of 32, within
                                64..224 (224 is what the networks were trained at; past it a CNN sees
                                nothing new and costs the square). Digits (32 px): 64; 128-px crops:
                                128; ImageNet (~400 px): 224.
``blur_side: auto``             the median shorter side within 16..256: blur is judged at the size most
                                images have (none is resampled far from it); 256 for ImageNet.
``label_features: auto``        the mislabel classifier's input, chosen among the CNN embedding and grey
                                pixel thumbnails (sides 8 and 16, or ``label_pixels_side``) by the
                                cross-validated accuracy of the classifier on the given labels (at most
                                :data:`SELECTION_MAX_IMAGES` images, stratified; 3 folds; kNN classifiers
                                by leave-one-out votes). Wrong labels lower every candidate alike.

The guard (:func:`implausible`): a detector that flags more of the dataset than
``analyze.detect.plausible_share`` allows is more likely misconfigured than right; it is said loudly,
with the evidence (the classifier's cross-validated accuracy), in the metrics and on the console.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vlclean.params import AnalyzeParams, MislabelParams

INPUT_SIZE_RANGE = (64, 224)
BLUR_SIDE_RANGE = (16, 256)
AUTO_PIXEL_SIDES = (8, 16)
SELECTION_MAX_IMAGES = 5000
SELECTION_FOLDS = 3


def _median_side(shorter_sides: np.ndarray) -> float:
    s = np.asarray(shorter_sides, dtype=np.float64)
    s = s[np.isfinite(s) & (s > 0)]
    return float(np.median(s)) if len(s) else float(INPUT_SIZE_RANGE[1])


def auto_input_size(shorter_sides: np.ndarray) -> int:
    """Embedding input side for images of these shorter sides (see the module docstring)."""
    lo, hi = INPUT_SIZE_RANGE
    return int(min(hi, max(lo, 32 * math.ceil(_median_side(shorter_sides) / 32))))


def auto_blur_side(shorter_sides: np.ndarray) -> int:
    """The side blur is judged at for images of these shorter sides (see the module docstring)."""
    lo, hi = BLUR_SIDE_RANGE
    return int(min(hi, max(lo, round(_median_side(shorter_sides)))))


def label_candidates(setting: str, side: int | str, thumbnail_side: int) -> list[str]:
    """Names of the label feature candidates: ``embedding`` and ``pixels:<side>``."""
    sides = [s for s in AUTO_PIXEL_SIDES if s <= thumbnail_side] if side == "auto" else [int(side)]
    pixels = [f"pixels:{s}" for s in sides]
    if setting == "embedding":
        return ["embedding"]
    if setting == "pixels":
        return pixels
    return ["embedding", *pixels]


def cv_accuracy(x: np.ndarray, labels: np.ndarray, kind: str, p: MislabelParams, seed: int) -> float:
    """Cross-validated accuracy of the mislabel classifier ``kind`` on ``x`` (module docstring)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(labels))
    if len(idx) > SELECTION_MAX_IMAGES:
        idx = np.sort(rng.permutation(len(idx))[:SELECTION_MAX_IMAGES])  # random: every class in its share
    x, y = np.ascontiguousarray(x[idx], dtype=np.float32), labels[idx]
    if kind == "knn":
        from vlclean.search import nearest_neighbors

        sims, ids = nearest_neighbors(x, k=max(1, min(p.knn_k, len(x) - 1)))
        votes = np.zeros((len(y), int(labels.max()) + 1))
        w = np.where(ids >= 0, np.exp(np.nan_to_num(sims) * 10.0), 0.0)
        np.add.at(votes, (np.repeat(np.arange(len(y)), ids.shape[1]), y[np.where(ids >= 0, ids, 0)].ravel()), w.ravel())
        return float((votes.argmax(axis=1) == y).mean())
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    counts = np.bincount(y)
    folds = int(max(2, min(SELECTION_FOLDS, counts[counts > 0].min())))
    if kind == "svm":
        from sklearn.svm import SVC

        model = SVC(C=p.C, gamma="scale")
    else:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=p.C, max_iter=2000)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, y, cv=cv).mean())


def choose_label_features(candidates: Mapping[str, np.ndarray], labels: np.ndarray, kind: str, p: MislabelParams,
                          seed: int) -> tuple[str, dict[str, float]]:
    """``(best name, {name: cross-validated accuracy})``; one candidate is taken without a measurement,
    ties go to the earlier candidate."""
    names = list(candidates)
    if len(names) == 1:
        return names[0], {}
    acc = {n: round(cv_accuracy(candidates[n], labels, kind, p, seed), 4) for n in names}
    return max(names, key=lambda n: (acc[n], -names.index(n))), acc


def implausible(counts: Mapping[str, int], n_valid: int, plausible: Mapping[str, float],
                evidence: Mapping[str, str]) -> list[str]:
    """One loud line per detector that flags more than its plausible share of the ``n_valid`` images."""
    out = []
    for issue, limit in plausible.items():
        c = int(counts.get(issue, 0))
        if n_valid and c / n_valid > limit:
            why = evidence.get(issue, "")
            out.append(f"IMPLAUSIBLE: {issue} flags {c} of {n_valid} images ({c / n_valid:.0%} > the plausible "
                       f"{limit:.0%}); check the settings before acting on them{'; ' + why if why else ''}")
    return out


def label_feature_matrices(features_dir: str | Path, names: list[str], image_ids: np.ndarray | None = None,
                           embedding: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{candidate: (N, D) float32}`` read from ``features_dir`` (no image decoded): the valid images in
    index order, or the rows of ``image_ids``; ``embedding``: those rows of the embeddings, already
    loaded (not read twice: 6.5 GB for ImageNet)."""
    from vlclean.encode import feature_matrix, load_label_features

    out = {}
    for name in names:
        if name == "embedding" and embedding is not None:
            out[name] = embedding
            continue
        space, _, side = name.partition(":")
        kw = {"side": int(side)} if side else {}
        if image_ids is None:
            out[name] = load_label_features(features_dir, space, **kw)[1]
        else:
            out[name] = feature_matrix(features_dir, image_ids, kind=space, **kw)
    return out


def resolve_label_features(features_dir: str | Path, a: AnalyzeParams, labels: np.ndarray, n_classes: int, seed: int,
                           image_ids: np.ndarray | None = None, embedding: np.ndarray | None = None
                           ) -> tuple[str, np.ndarray, dict]:
    """``(chosen candidate, its matrix, choice record)`` for ``analyze.label_features`` (auto or fixed):
    the record holds the setting, the candidates' cross-validated accuracies and the classifier."""
    from vlclean.detect import resolve_classifier

    names = label_candidates(a.label_features, a.label_pixels_side, a.thumbnail_side)
    mats = label_feature_matrices(features_dir, names, image_ids, embedding)
    kind = resolve_classifier(a.detect.mislabels.classifier, len(labels), n_classes)
    name, acc = choose_label_features(mats, labels, kind, a.detect.mislabels, seed)
    if name not in acc:
        acc[name] = round(cv_accuracy(mats[name], labels, kind, a.detect.mislabels, seed), 4)
    record = {"setting": a.label_features if a.label_features != "pixels" else f"pixels:{a.label_pixels_side}",
              "chosen": name, "classifier": kind, "cv_accuracy": acc}
    return name, mats[name], record
