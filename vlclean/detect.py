"""Detectors of dataset issues from features and embeddings: the local stand-in for Visual Layer.

Detection (thresholds are arguments, from ``params.yaml`` via the analyze stage):

``duplicates``  hierarchical groups, one issue per similarity level like VL: the graph of pairs with
                cosine similarity >= level (plus identical file bytes or decoded pixels, similarity 1)
                is split into connected components; each component of 2+ images is a group.
                ``confidence`` = the image's best similarity inside its group.
``outliers``    images whose mean similarity to their ``k`` nearest neighbours is far below the
                dataset's: robust z-score ``(median - s) / (1.4826 MAD)`` >= ``z``. Images past the dark or
                bright limit are not called outliers (their exposure, not their content, sets them apart).
``mislabels``   cleanlab on out-of-sample predicted probabilities of a classifier on the embeddings
                (or pixel features); ``confidence = 1 - label quality``; the suggested label is the
                most probable class. Outliers and invalid images are not judged (an out-of-domain
                image has no right label to suggest). The classifier scales with the data
                (:func:`resolve_classifier`): an RBF SVM (cross-validated, isotonic-calibrated) on small
                data, else leave-one-out kNN votes from the one neighbour search every detector
                shares. Probabilities are float32; up to :data:`DENSE_PROBS_MAX` entries cleanlab's
                ``find_label_issues`` sees them whole, beyond it they are made chunk by chunk and
                judged by cleanlab's batched ``LabelInspector`` (two passes), so a 1.33M x 1,000
                matrix (5.3 GB) never exists.
``dark``, ``bright``  mean brightness below / above an absolute limit AND far below / above the
                image's class (robust z-score), so a class of naturally dark photos is not flagged
                wholesale (:func:`quality_flags`).
``blur``        variance of the Laplacian (at the analyzer's ``blur_side``) below an absolute limit AND
                its logarithm far below the class's; dark and bright images are not judged for blur
                (low exposure flattens every edge).
``invalid``     unreadable images (kept, with the decoder's reason).

Confidences of threshold rules are 0.5 at the threshold and grow to 1 away from it, matching VL's
UI default filter of 0.5.

The result (:class:`Analysis`) is written in VL's export format by :mod:`vlclean.vl_export`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from vlclean.params import DetectParams, DuplicateParams, MislabelParams, OutlierParams, QualityParams
from vlclean.search.embedding import embedding_self_pairs, nearest_neighbors
from vlclean.search.hamming import self_pairs

# uuid5 namespace of every id the analysis and its export mint (duplicate groups, clusters, media)
NAMESPACE = uuid.UUID("6f1d3a52-9a0e-4c4e-9d0b-0c1e5b2a7f11")


# classifier "auto": the RBF SVM fits K(K-1)/2 one-vs-one models on an O(N^2) kernel (499,500 models
# for ImageNet's 1,000 classes): only while both stay small; kNN otherwise.
SVM_MAX_IMAGES = 20_000
SVM_MAX_CLASSES = 50
# Up to this many probability entries (N x K, float32: 40 MB) cleanlab sees the matrix whole. Beyond,
# the batched LabelInspector is both bounded in memory and faster: at 20,000 x 1,000 it took 2.2 s
# against 19.7 s for find_label_issues, with recall 0.71 vs 0.74 of 3 % flipped labels
# (bench/bench_mislabels_scale.py's synthetic neighbours).
DENSE_PROBS_MAX = 10_000_000
_PROBS_CHUNK_ROWS = 16_384
CLASSIFIERS: tuple[str, ...] = ("auto", "knn", "logistic", "svm")



def _group_id(level: float, members: list[str]) -> str:
    return str(uuid.uuid5(NAMESPACE, f"dup:{level:.4f}:{min(members)}"))


def duplicate_pairs(
    embeddings: np.ndarray, exact_keys: np.ndarray, hashes: pd.DataFrame | None, p: DuplicateParams, *,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Candidate duplicate pairs ``a < b`` with a similarity in [0, 1]: columns ``a, b, similarity``.

    Evidence, the best per pair kept: identical ``exact_keys`` (similarity 1); pHash and dHash both
    within ``p.hash_distance`` bits, comparing mirrored hashes too (similarity ``1 - (d_p + d_d) / 128``);
    embedding cosine similarity >= the lowest level among each image's ``p.k`` nearest neighbours.
    ``hashes`` has columns ``phash, dhash, phash_mirror, dhash_mirror`` (uint64), rows as ``embeddings``.
    ``neighbours``: ``(sims, ids)`` of a neighbour search already made (its first ``p.k`` columns used).
    """
    n = len(embeddings)
    parts = []
    if n >= 2 and neighbours is not None:
        sims, ids = neighbours[0][:, : p.k], neighbours[1][:, : p.k]
        row, col = np.nonzero((ids >= 0) & (np.nan_to_num(sims, nan=-1.0) >= min(p.levels)))
        a, b = row, ids[row, col]
        parts.append(pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b), "similarity": sims[row, col]}))
    elif n >= 2:
        emb = embedding_self_pairs(embeddings, min_similarity=min(p.levels), k=min(p.k, n - 1))
        parts.append(pd.DataFrame({"a": emb["query_idx"], "b": emb["base_idx"], "similarity": emb["similarity"]}))
    keys = pd.Series(exact_keys)
    same = keys[keys.duplicated(keep=False) & (keys != "")]
    for idx in same.groupby(same).groups.values():
        idx = np.sort(np.asarray(idx))
        parts.append(pd.DataFrame({"a": idx[:-1], "b": idx[1:], "similarity": 1.0}))
    if hashes is not None and n >= 2:
        parts.append(perceptual_pairs(hashes, p.hash_distance))
    if not parts:
        return pd.DataFrame({"a": [], "b": [], "similarity": []})
    pairs = pd.concat(parts, ignore_index=True)
    return pairs.groupby(["a", "b"], as_index=False)["similarity"].max()


def perceptual_pairs(hashes: pd.DataFrame, max_distance: int) -> pd.DataFrame:
    """Pairs whose pHash AND dHash are within ``max_distance`` bits, flips included (see above)."""
    ph, dh = hashes["phash"].to_numpy(np.uint64), hashes["dhash"].to_numpy(np.uint64)
    phm, dhm = hashes["phash_mirror"].to_numpy(np.uint64), hashes["dhash_mirror"].to_numpy(np.uint64)
    cand = self_pairs(ph, max_distance=max_distance, mirror=phm)
    a, b = cand["query_idx"].to_numpy(), cand["base_idx"].to_numpy()
    mirrored = cand["mirrored"].to_numpy(dtype=bool)
    d_dh = np.where(mirrored, np.bitwise_count(dhm[a] ^ dh[b]), np.bitwise_count(dh[a] ^ dh[b]))
    keep = d_dh <= max_distance
    sim = 1.0 - (cand["distance"].to_numpy()[keep] + d_dh[keep]) / 128.0
    return pd.DataFrame({"a": a[keep], "b": b[keep], "similarity": sim.astype(np.float32)})


def find_duplicates(image_ids: np.ndarray, pairs: pd.DataFrame, levels: list[float]) -> pd.DataFrame:
    """Duplicate groups per level from candidate ``pairs``: columns ``image_id, level, group_id, similarity``.

    At each level the pairs with similarity >= level form a graph; each connected component of 2+
    images is one group (so groups nest: a tighter level splits looser groups, like VL's).
    """
    n = len(image_ids)
    a, b, s = pairs["a"].to_numpy(), pairs["b"].to_numpy(), pairs["similarity"].to_numpy()
    rows = []
    for level in sorted(levels):
        keep = s >= level
        if not keep.any():
            continue
        graph = coo_matrix((np.ones(keep.sum()), (a[keep], b[keep])), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        best = np.zeros(n, dtype=np.float32)
        np.maximum.at(best, a[keep], s[keep])
        np.maximum.at(best, b[keep], s[keep])
        sizes = np.bincount(comp)
        for c in np.flatnonzero(sizes >= 2):
            members = np.flatnonzero(comp == c)
            gid = _group_id(level, [image_ids[m] for m in members])
            rows.extend((image_ids[m], level, gid, float(min(best[m], 1.0))) for m in members)
    return pd.DataFrame(rows, columns=["image_id", "level", "group_id", "similarity"])


def neighbour_scores(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(best similarity to another image, mean similarity to the k nearest neighbours)`` per row."""
    k = max(1, min(k, len(embeddings) - 1))
    nn = nearest_neighbors(embeddings, k=k)[0]
    return np.nan_to_num(nn[:, 0], nan=0.0), np.nanmean(nn, axis=1)


def uniqueness_score(best_similarity: np.ndarray, duplicate_level: float) -> np.ndarray:
    """VL-style uniqueness in [0, 1] (low = has look-alikes), anchored so that 0.3 is the loosest
    duplicate level: an image is below 0.3 exactly when it has a near-duplicate.

    Piecewise linear in the best similarity ``s``: ``0.3 (1 - s) / (1 - level)`` above the level,
    ``0.3 + 0.7 (level - s) / level`` below it. Raw ``1 - s`` would put almost every image of a
    homogeneous dataset (such as the built-in digits, median ``s`` 0.84) below VL's usual 0.3 cut.
    """
    s = np.clip(best_similarity, 0.0, 1.0)
    lv = min(max(duplicate_level, 1e-6), 1 - 1e-6)
    return np.where(s >= lv, 0.3 * (1.0 - s) / (1.0 - lv), 0.3 + 0.7 * (lv - s) / lv)


def find_outliers(mean_sim: np.ndarray, p: OutlierParams) -> tuple[np.ndarray, np.ndarray]:
    """``(flag, confidence)``: robust z-score of low neighbour similarity (see module doc)."""
    med = np.median(mean_sim)
    mad = 1.4826 * np.median(np.abs(mean_sim - med)) + 1e-9
    z = (med - mean_sim) / mad
    conf = np.clip(z / (2 * p.z), 0.0, 1.0)
    return z >= p.z, conf


def resolve_classifier(name: str, n_images: int, n_classes: int) -> str:
    """The classifier ``auto`` stands for: ``svm`` while ``n_images <= SVM_MAX_IMAGES`` and
    ``n_classes <= SVM_MAX_CLASSES``, else ``knn``; any other name as it is."""
    if name != "auto":
        return name
    return "svm" if n_images <= SVM_MAX_IMAGES and n_classes <= SVM_MAX_CLASSES else "knn"


def out_of_sample_probs(
    features: np.ndarray, labels: np.ndarray, n_classes: int, p: MislabelParams, seed: int
) -> np.ndarray:
    """Cross-validated predicted probabilities (N, n_classes) float32: each row from a model that never
    saw it (``svm``, ``logistic``; ``knn`` and ``auto`` as :func:`label_issues` picks). Averaged over
    ``p.repeats`` repetitions with different folds. Dense: for small data (see :func:`label_issues`)."""
    from sklearn.model_selection import StratifiedKFold

    kind = resolve_classifier(p.classifier, len(labels), n_classes)
    if kind == "knn":
        sims, ids = _knn(features, p)
        return np.concatenate([c for _, c in _knn_prob_chunks(sims, ids, labels, n_classes)()])
    counts = np.bincount(labels, minlength=n_classes)
    folds = max(2, int(min(p.folds, counts[counts > 0].min())))
    probs = np.zeros((len(labels), n_classes), dtype=np.float32)
    for r in range(p.repeats):
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + r)
        for train, test in cv.split(features, labels):
            probs[test] += _fit_predict(features[train], labels[train], features[test], n_classes, kind, p, seed)
    return probs / p.repeats


def _knn(features: np.ndarray, p: MislabelParams) -> tuple[np.ndarray, np.ndarray]:
    from vlclean.search.embedding import nearest_neighbors

    x = np.array(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    # a flat image's pixel row is all zeros: give it one fixed direction rather than no neighbours
    x[norms < 0.5] = 1.0 / np.sqrt(max(1, x.shape[1]))
    return nearest_neighbors(x, k=max(1, min(p.knn_k, len(x) - 1)))


def _knn_prob_chunks(sims: np.ndarray, ids: np.ndarray, labels: np.ndarray, n_classes: int
                     ) -> Callable[[], Iterator[tuple[int, np.ndarray]]]:
    """Leave-one-out kNN probabilities, float32, ``_PROBS_CHUNK_ROWS`` rows at a time: each image's
    neighbours (itself excluded: out of sample by construction) vote for their labels with weight
    ``exp(10 s)``, plus a floor of 1e-3 per class, normalised."""

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(ids), _PROBS_CHUNK_ROWS):
            s, i = sims[start : start + _PROBS_CHUNK_ROWS], ids[start : start + _PROBS_CHUNK_ROWS]
            found = i >= 0
            w = np.where(found, np.exp(np.nan_to_num(s, nan=0.0) * 10.0), 0.0).astype(np.float32)
            out = np.full((len(i), n_classes), 1e-3, dtype=np.float32)
            rows = np.repeat(np.arange(len(i)), i.shape[1])
            np.add.at(out, (rows, labels[np.where(found, i, 0)].ravel()), w.ravel())
            out /= out.sum(axis=1, keepdims=True)
            yield start, out

    return chunks


def _fit_predict(
    x: np.ndarray, y: np.ndarray, xt: np.ndarray, n_classes: int, kind: str, p: MislabelParams, seed: int
) -> np.ndarray:
    out = np.zeros((len(xt), n_classes), dtype=np.float32)
    if kind == "svm":
        model = _CalibratedSVC(C=p.C, random_state=seed)
    else:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=p.C, max_iter=2000)
    model.fit(x, y)
    out[:, model.classes_] = model.predict_proba(xt)
    return out


class _CalibratedSVC:
    """RBF SVM with probabilities calibrated the supported way (``CalibratedClassifierCV``;
    ``SVC(probability=True)`` is deprecated): one SVM per fold, isotonic calibration on the held-out
    fold, probabilities averaged. Measured on scikit-learn's digits with 45 flipped labels (3 seeds,
    cleanlab ``prune_by_noise_rate``): mislabel F1 0.91 against 0.88 for libsvm's Platt scaling and 0.78
    for a sigmoid on one SVM's one-vs-rest scores. Small datasets only (an RBF SVM is quadratic in the
    images)."""

    def __init__(self, *, C: float, random_state: int, folds: int = 5) -> None:
        self.C, self.random_state, self.folds = C, random_state, folds
        self._model = None

    @property
    def classes_(self) -> np.ndarray:
        return self._model.classes_

    def fit(self, x: np.ndarray, y: np.ndarray) -> _CalibratedSVC:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import StratifiedKFold
        from sklearn.svm import SVC

        svc = SVC(C=self.C, gamma="scale", random_state=self.random_state)
        smallest = int(np.bincount(y)[np.unique(y)].min())
        if smallest >= 2:
            cv = StratifiedKFold(n_splits=min(self.folds, smallest), shuffle=True, random_state=self.random_state)
            self._model = CalibratedClassifierCV(svc, method="isotonic", cv=cv, ensemble=True).fit(x, y)
        else:  # a class with one image cannot be held out: calibrate one SVM on its training scores
            from sklearn.frozen import FrozenEstimator

            every = np.arange(len(y))
            self._model = CalibratedClassifierCV(FrozenEstimator(svc.fit(x, y)), method="isotonic",
                                                 cv=[(every, every)]).fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(x)


def find_mislabels(probs: np.ndarray, labels: np.ndarray, p: MislabelParams) -> tuple[np.ndarray, np.ndarray]:
    """``(flag, confidence)`` from cleanlab on out-of-sample ``probs`` (N, K) and given ``labels``."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flag = find_label_issues(labels, probs, filter_by=p.filter_by)
    quality = get_label_quality_scores(labels, probs)
    return np.asarray(flag, dtype=bool), 1.0 - quality


@dataclass(frozen=True)
class LabelIssues:
    """Per image: ``flag`` (label judged wrong), ``confidence`` (1 - label quality), ``suggested`` (most
    probable class)."""

    flag: np.ndarray
    confidence: np.ndarray
    suggested: np.ndarray


def label_issues(
    features: np.ndarray, labels: np.ndarray, n_classes: int, p: MislabelParams, seed: int, *,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> LabelIssues:
    """Label issues of ``labels`` (N,) judged from ``features`` (N, D) (module docstring).

    ``neighbours``: ``(sims, ids)`` of a neighbour search already made over ``features`` (kNN reuses
    it; at least ``p.knn_k`` columns are used when present)."""
    kind = resolve_classifier(p.classifier, len(labels), n_classes)
    if kind == "knn":
        sims, ids = neighbours if neighbours is not None else _knn(features, p)
        chunks = _knn_prob_chunks(sims[:, : p.knn_k], ids[:, : p.knn_k], labels, n_classes)
    else:
        probs = out_of_sample_probs(features, labels, n_classes, p.model_copy(update={"classifier": kind}), seed)

        def chunks() -> Iterator[tuple[int, np.ndarray]]:
            yield 0, probs

    if len(labels) * n_classes <= DENSE_PROBS_MAX:
        dense = np.concatenate([c for _, c in chunks()]) if len(labels) else np.zeros((0, n_classes), np.float32)
        flag, conf = find_mislabels(dense, labels, p)
        return LabelIssues(flag, conf.astype(np.float32), dense.argmax(axis=1))
    return _batched_label_issues(chunks, labels, n_classes)


def _batched_label_issues(chunks: Callable[[], Iterator[tuple[int, np.ndarray]]], labels: np.ndarray,
                          n_classes: int) -> LabelIssues:
    """cleanlab's ``LabelInspector``: per-class confident thresholds in a first pass over the chunks,
    label quality and the number of issues in a second; the lowest-quality images are the issues."""
    from cleanlab.experimental.label_issues_batched import LabelInspector

    inspector = LabelInspector(num_class=n_classes, verbose=False)
    for start, c in chunks():
        inspector.update_confident_thresholds(labels[start : start + len(c)], c)
    quality = np.empty(len(labels), dtype=np.float32)
    suggested = np.empty(len(labels), dtype=np.int64)
    for start, c in chunks():
        quality[start : start + len(c)] = inspector.score_label_quality(labels[start : start + len(c)], c)
        suggested[start : start + len(c)] = c.argmax(axis=1)
    flag = np.zeros(len(labels), dtype=bool)
    flag[inspector.get_label_issues()] = True
    return LabelIssues(flag, 1.0 - quality, suggested)


# Floors of the robust spread (1.4826 MAD) in quality_flags: a class of near-identical images (one texture,
# one exposure) would otherwise make a few grey levels, or a few per cent of sharpness, look extreme.
BRIGHTNESS_SPREAD_FLOOR = 8.0  # grey levels
LOG_BLUR_SPREAD_FLOOR = 0.25  # natural log of the Laplacian variance


def robust_z(values: np.ndarray, groups: np.ndarray | None = None, *, min_group: int = 2,
             spread_floor: float = 0.0) -> np.ndarray:
    """``(x - median) / max(1.4826 MAD, spread_floor)`` of each value against its group (``groups``: one
    key per value; values of groups smaller than ``min_group``, or without groups, against all values)."""
    x = np.asarray(values, dtype=np.float64)

    def z_of(v: np.ndarray) -> np.ndarray:
        med = np.nanmedian(v) if np.isfinite(v).any() else 0.0
        spread = max(1.4826 * float(np.nanmedian(np.abs(v - med))) if np.isfinite(v).any() else 0.0, spread_floor,
                     1e-9)
        return (v - med) / spread

    z = z_of(x)
    if groups is None:
        return z
    g = pd.Series(np.asarray(groups))
    for _, rows in g.groupby(g, sort=False).groups.items():
        rows = np.asarray(rows)
        if len(rows) >= min_group:
            z[rows] = z_of(x[rows])
    return z


def quality_flags(features: pd.DataFrame, p: QualityParams, labels: np.ndarray | None = None,
                  suggested: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{issue: (flag, confidence)}`` for dark, bright and blur: an absolute limit AND a robust z-score.

    ``dark``: brightness < ``dark_below`` and its robust z-score (median, 1.4826 MAD) <= ``-z``;
    ``bright``: brightness > ``bright_above`` and z >= ``z``; ``blur``: Laplacian variance <
    ``blur_below`` and the z-score of its logarithm <= ``-z``; dark and bright images are not judged
    for blur (low exposure flattens every edge). The z-score compares an image with the other images of its class
    (``labels``; an image whose label the analyzer calls wrong must also stand out in the ``suggested``
    class, so a dark photo filed under a bright class is not called dark for it; classes
    under ``min_class_images`` and unlabelled data: with the whole dataset): a class of naturally soft
    or dark photos (night scenes, macro shots) is not flagged wholesale, while a photo far darker or
    softer than its class is. Confidence: 0.5 where the nearer of the two limits is just crossed,
    growing to 1 away from both.
    """
    b = features["brightness"].to_numpy(dtype=np.float64)
    sharp = features["blur"].to_numpy(dtype=np.float64)
    log_sharp = np.log1p(np.maximum(sharp, 0.0))
    contexts = [None if labels is None else np.asarray(labels)]
    if labels is not None and suggested is not None:
        contexts.append(np.where(np.asarray(suggested) >= 0, suggested, labels))
    zbs = [robust_z(b, g, min_group=p.min_class_images, spread_floor=BRIGHTNESS_SPREAD_FLOOR) for g in contexts]
    zss = [robust_z(log_sharp, g, min_group=p.min_class_images, spread_floor=LOG_BLUR_SPREAD_FLOOR) for g in contexts]
    low_b, high_b, zs = np.max(zbs, axis=0), np.min(zbs, axis=0), np.max(zss, axis=0)  # the milder context
    zt = max(p.z, 1e-9)

    def conf(abs_excess: np.ndarray, z_excess: np.ndarray) -> np.ndarray:
        return np.clip(0.5 + 0.5 * np.minimum(abs_excess, z_excess / zt), 0.0, 1.0)

    dark = (b < p.dark_below) & (low_b <= -p.z)
    bright = (b > p.bright_above) & (high_b >= p.z)
    blur = (sharp < p.blur_below) & (zs <= -p.z) & ~dark & ~bright
    return {
        "dark": (dark, conf((p.dark_below - b) / max(p.dark_below, 1e-9), -low_b - p.z)),
        "bright": (bright, conf((b - p.bright_above) / max(255 - p.bright_above, 1e-9), high_b - p.z)),
        "blur": (blur, conf((p.blur_below - sharp) / max(p.blur_below, 1e-9), -zs - p.z)),
    }


def kmeans_clusters(embeddings: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    import faiss

    n_clusters = max(1, min(n_clusters, len(embeddings)))
    if n_clusters == 1:
        return np.zeros(len(embeddings), dtype=np.int64)
    km = faiss.Kmeans(embeddings.shape[1], n_clusters, niter=20, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1)
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    km.train(x)
    return km.index.search(x, 1)[1][:, 0].astype(np.int64)


# -- the whole analysis ----------------------------------------------------------------------------
@dataclass
class Analysis:
    """Per-image results: ``media`` (one row per image) and ``issues`` (one row per image x issue)."""

    media: pd.DataFrame
    issues: pd.DataFrame


def analyze(
    index: pd.DataFrame, features: pd.DataFrame, embeddings: np.ndarray, classes: pd.DataFrame,
    p: DetectParams, *, seed: int, label_features: np.ndarray | None = None,
) -> Analysis:
    """Detect every issue type. ``embeddings`` (N_valid, D) are the valid images' rows in index order.

    ``label_features`` (N_valid, F), when given, replace the embeddings for the label classifier.
    """
    feats = features.set_index("image_id").loc[index["image_id"]].reset_index()
    valid = feats["valid"].to_numpy(dtype=bool)
    if embeddings.shape[0] != valid.sum():
        raise ValueError(f"{embeddings.shape[0]} embeddings for {valid.sum()} valid images")
    ids = index["image_id"].to_numpy()
    vids = ids[valid]
    issues: list[pd.DataFrame] = []

    def add(issue: str, where: np.ndarray, conf: np.ndarray, **extra: object) -> None:
        issues.append(pd.DataFrame({"image_id": vids[where], "issue": issue, "confidence": conf[where], **{
            k: (np.asarray(v)[where] if isinstance(v, np.ndarray) else v) for k, v in extra.items()}}))

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    context = index.loc[valid, "label"].to_numpy(dtype=np.int64)  # quality is judged within the class,
    suggested = np.full(len(vids), -1, dtype=np.int64)  # and within the suggested one when mislabelled
    uniqueness = np.ones(len(vids))
    cluster = np.full(len(ids), "", dtype=object)
    if len(vids) >= 2:
        # one neighbour search serves outliers, duplicates and (on the embeddings) the kNN classifier
        share_knn = label_features is None and resolve_classifier(p.mislabels.classifier, len(vids),
                                                                  len(classes)) == "knn"
        k = min(len(vids) - 1, max(p.outliers.k, p.duplicates.k, p.mislabels.knn_k if share_knn else 1))
        nn_sims, nn_ids = nearest_neighbors(emb, k=k)
        best_sim = np.nan_to_num(nn_sims[:, 0], nan=0.0)
        mean_sim = np.nanmean(nn_sims[:, : max(1, min(p.outliers.k, k))], axis=1)
        uniqueness = uniqueness_score(best_sim, min(p.duplicates.levels))
        out_flag, out_conf = find_outliers(mean_sim, p.outliers)
        b = feats.loc[valid, "brightness"].to_numpy(dtype=np.float64)
        out_flag &= (b >= p.quality.dark_below) & (b <= p.quality.bright_above)  # exposure, not content
        add("outlier", out_flag, out_conf)
        hashes = feats.loc[valid, ["phash", "dhash", "phash_mirror", "dhash_mirror"]].reset_index(drop=True)
        pairs = duplicate_pairs(emb, feats.loc[valid, "pixel_md5"].to_numpy(), hashes, p.duplicates,
                                neighbours=(nn_sims, nn_ids))
        dups = find_duplicates(vids, pairs, p.duplicates.levels)
        if len(dups):
            issues.append(dups.rename(columns={"level": "duplicate_threshold", "group_id": "duplicate_group_id",
                                               "similarity": "confidence"}).assign(issue="duplicate"))
        labels = index.loc[valid, "label"].to_numpy(dtype=np.int64)
        found = label_issues(label_features if label_features is not None else emb, labels, len(classes),
                             p.mislabels, seed, neighbours=(nn_sims, nn_ids) if share_knn else None)
        mis_flag = found.flag & ~out_flag
        add("mislabel", mis_flag, found.confidence, suggested_label=found.suggested)
        suggested = np.where(found.flag, found.suggested, -1)
        n_clusters = p.clusters or int(round(math.sqrt(len(vids))))
        cluster[valid] = [str(uuid.uuid5(NAMESPACE, f"cluster:{c}")) for c in kmeans_clusters(emb, n_clusters, seed)]
    quality = quality_flags(feats.loc[valid], p.quality, context, suggested)
    for issue, (flag, conf) in quality.items():
        add(issue, flag, conf)
    bad = feats.loc[~valid]
    if len(bad):
        issues.append(pd.DataFrame({"image_id": bad["image_id"], "issue": "invalid", "confidence": 1.0,
                                    "description": bad["error"]}))
    all_issues = pd.concat(issues, ignore_index=True) if issues else pd.DataFrame(columns=["image_id", "issue"])
    for col in ("duplicate_group_id", "duplicate_threshold", "suggested_label", "description"):
        if col not in all_issues:
            all_issues[col] = pd.NA
    media = index[["image_id", "file_name", "split", "label", "class_id", "class_name", "width", "height",
                   "file_size"]].copy()
    media["uniqueness_score"] = np.nan
    media.loc[valid, "uniqueness_score"] = uniqueness
    media["cluster_id"] = cluster
    return Analysis(media=media, issues=all_issues)
