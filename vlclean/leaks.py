"""Train/test leak detection: find copies of test images in train (and duplicates within a split).

Encodings in, pairs out: the caller passes each side's features (hashes, digests) and embeddings;
the search is always an index (multi-index hashing for hashes, faiss for embeddings), never a dense
matrix or a Python double loop. Every pair keeps the evidence of every method that found it.

Methods
-------
``exact``       identical file bytes (sha256) or identical decoded pixels (pixel md5).
``perceptual``  pHash within ``phash_max`` AND dHash within ``dhash_max`` bits, comparing the test
                image's mirrored hashes too (flip-robust) and the hashes of its centred crops at
                ``crop_scales`` (crop-robust query expansion: a train copy that *is* the central 90 %
                of a test image has that crop's hashes).
``embedding``   cosine similarity >= ``min_similarity`` among each image's ``k`` nearest neighbours,
                confirmed so that two different photos of one scene are not called copies: images of
                at least :data:`vlclean.copies.MIN_SIDE` px with detail by their copy score (thumbnails
                aligned over re-crops, rotations and strips, :func:`vlclean.copies.pair_scores`)
                >= ``confirm_copy_min``, which survives the edits that break pHash; smaller or nearly
                blank images (thumbnails hold no more than their hashes) by a loose pHash distance <=
                ``confirm_phash_max`` (flip-aware).
``copy``        content thumbnails (uniform borders trimmed) correlated over re-crops, small rotations
                and views without a top or bottom strip, with agreement along the edges counted in,
                >= ``copy_min_score`` (:mod:`vlclean.copies`):
                finds copies re-cropped off centre, rotated, padded, letterboxed or captioned, which
                break pHash and CNN embeddings.

Sides: :func:`dataset_sides` reads a pipeline's index and features (no image is decoded: analyze
decoded each image once and stored the hashes of each test image's crops); :func:`folder_side`
streams an ImageFolder tree for the standalone command, hashing each file as it is read (at most a
few chunks of bytes in memory, never a split's). A train side checked by ``perceptual`` alone takes
the hash-only path (:func:`vlclean.features.compute_hashes`: JPEGs decoded at reduced size).

Tiers (best evidence wins): ``exact``; ``near_duplicate`` (perceptual, copy, or embedding similarity
>= ``near_similarity``); ``similar`` (embedding only).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vlclean.datasets import RawDataset, folder_paths
from vlclean.embeddings import Embedder
from vlclean.copies import BASE_LOW_DETAIL, BASE_MIN_SIDE, LOW_DETAIL, MIN_SIDE, copy_pairs, detail, pair_scores
from vlclean.encode import (EncodeOptions, crops_by_scale, encode_images, load_content_thumbnails, load_crop_hashes,
                            load_embeddings, load_features)
from vlclean.features import compute_hashes, make_pool

from vlclean.errors import ParamsError
from vlclean.params import LEAK_METHODS, LEAK_SCOPES, LeakParams
from vlclean.search.embedding import embedding_pairs, embedding_self_pairs
from vlclean.search.hamming import hamming_pairs, self_pairs

METHODS = LEAK_METHODS
TIERS: tuple[str, ...] = ("exact", "near_duplicate", "similar")
SCOPES = LEAK_SCOPES
PAIR_COLUMNS: tuple[str, ...] = (
    "test_id", "test_path", "train_id", "train_path", "method", "distance", "tier", "scope",
    "phash_distance", "dhash_distance", "similarity", "mirrored", "query_crop",
)  # fmt: skip
BY_TEST_COLUMNS: tuple[str, ...] = ("test_id", "test_path", "leaked", "tier", "method", "matches", "train_ids")


@dataclass(frozen=True)
class Side:
    """One set of images: ids, display paths, features (FEATURES columns) and embeddings (N, D) or None."""

    ids: np.ndarray
    paths: np.ndarray
    features: pd.DataFrame
    embeddings: np.ndarray | None
    crop_hashes: dict[float, dict[str, np.ndarray]] = field(default_factory=dict)  # query expansion
    contents: np.ndarray | None = None  # (N, 2, side, side) uint8 copy thumbnails (methods copy, embedding)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # derived once per side

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.paths) != n or len(self.features) != n or (self.embeddings is not None and len(self.embeddings) != n):
            raise ValueError(f"side has {n} ids but {len(self.paths)} paths, {len(self.features)} feature rows")


def dataset_sides(raw_dir: str | Path, features_dir: str | Path, p: LeakParams) -> tuple[Side, Side, pd.DataFrame]:
    """``(test side with its crop hashes, train side, planted truth)`` of a pipeline's raw dataset, read
    from the index and the features only: no image is decoded here."""
    raw = RawDataset.open(raw_dir, images=False)
    index = raw.index()
    features = load_features(features_dir)
    emb = load_embeddings(features_dir) if "embedding" in p.methods else None
    contents = load_content_thumbnails(features_dir) if {"copy", "embedding"} & set(p.methods) else None
    paths = folder_paths(index).to_numpy()

    def side(split: str) -> Side:
        rows = np.flatnonzero(index["split"].to_numpy() == split)
        return Side(ids=index["image_id"].to_numpy()[rows], paths=paths[rows],
                    features=features.iloc[rows].reset_index(drop=True),
                    embeddings=None if emb is None else emb[rows],
                    contents=None if contents is None else contents[rows])

    test = side("test")
    crops = load_crop_hashes(features_dir, test.ids, p.crop_scales) if "perceptual" in p.methods else {}
    return dataclasses.replace(test, crop_hashes=crops), side("train"), raw.truth()


def folder_side(root: str | Path, p: LeakParams, *, test: bool, embedder: Embedder | None, workers: int = 2) -> Side:
    """Every file below ``root`` as a side, streamed (module docstring); refused and unreadable files
    are reported on stderr. ``embedder`` is needed for the ``embedding`` method."""
    from vlclean.datasets.folder import list_image_files

    root = Path(root)
    files, refused = list_image_files(root)
    for rel, why in refused:
        print(f"skipped: {root / rel}: {why}", file=sys.stderr)
    paths = np.array([str(root / rel) for rel in files], dtype=object)

    def stream() -> Iterator[tuple[str, bytes, bool]]:
        for path in paths:
            yield path, Path(path).read_bytes(), test

    if not test and set(p.methods) <= {"perceptual"}:  # the hash-only path
        features = compute_hashes(((i, d) for i, d, _ in stream()), workers=workers, progress=True)
        crops: dict = {}
        emb = contents = None
    else:
        if "embedding" in p.methods and embedder is None:
            raise ParamsError("method 'embedding' needs an embedder for the standalone sides")
        options = EncodeOptions(workers=workers, crop_scales=tuple(p.crop_scales) if test and "perceptual" in p.methods else ())
        with make_pool(workers) if workers > 1 else _no_pool() as pool:
            enc = encode_images(stream(), embedder if "embedding" in p.methods else None, options, pool=pool,
                                total=len(paths), desc=f"encode {root.name}")
        features = enc.features
        emb = None if enc.embeddings is None else enc.embeddings.astype(np.float32)
        crops = crops_by_scale(enc.crops, paths, options.crop_scales) if options.crop_scales else {}
        contents = enc.contents if {"copy", "embedding"} & set(p.methods) else None
    for row in features.loc[~features["valid"]].itertuples():
        print(f"unreadable: {row.image_id}: {row.error}", file=sys.stderr)
    return Side(ids=paths.copy(), paths=paths, features=features, embeddings=emb, crop_hashes=crops, contents=contents)


class _no_pool:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _hashes(side: Side) -> dict[str, np.ndarray]:
    return {c: side.features[c].to_numpy(np.uint64) for c in ("phash", "dhash", "phash_mirror", "dhash_mirror")}


def _pair_distances(q: dict, b: dict, qi: np.ndarray, bi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip-aware (pHash, dHash, mirrored) distances of given pairs."""
    plain = np.bitwise_count(q["phash"][qi] ^ b["phash"][bi])
    flipped = np.bitwise_count(q["phash_mirror"][qi] ^ b["phash"][bi])
    mirrored = flipped < plain
    dp = np.minimum(plain, flipped)
    dd = np.where(mirrored, np.bitwise_count(q["dhash_mirror"][qi] ^ b["dhash"][bi]),
                  np.bitwise_count(q["dhash"][qi] ^ b["dhash"][bi]))
    return dp.astype(np.int64), dd.astype(np.int64), mirrored


def _exact_pairs(q: Side, b: Side, same: bool) -> pd.DataFrame:
    qv, bv = _valid_rows(q), _valid_rows(b)
    frames = []
    for col in ("sha256", "pixel_md5"):
        left = pd.DataFrame({"key": q.features[col].to_numpy()[qv], "qi": qv})
        right = pd.DataFrame({"key": b.features[col].to_numpy()[bv], "bi": bv})
        m = left.merge(right, on="key")[["qi", "bi"]]
        frames.append(m[m["qi"] < m["bi"]] if same else m)
    out = pd.concat(frames, ignore_index=True).drop_duplicates()
    return out.assign(method="exact")


def _perceptual_pairs(q: Side, b: Side, p: LeakParams, same: bool) -> pd.DataFrame:
    """Unreadable images (hashes 0) never take part. Columns ``qi, bi, method, dp, dd, crop``."""
    qv, bv = _valid_rows(q), _valid_rows(b)
    bh = _hashes(b)
    variants = [(1.0, _hashes(q))] + ([] if same else [(s, q.crop_hashes[s]) for s in p.crop_scales if s in q.crop_hashes])
    frames = []
    for scale, qh in variants:
        if same:
            cand = self_pairs(qh["phash"][qv], max_distance=p.phash_max, mirror=qh["phash_mirror"][qv])
            qi, bi = qv[cand["query_idx"].to_numpy()], qv[cand["base_idx"].to_numpy()]
        else:
            cand = hamming_pairs(qh["phash"][qv], bh["phash"][bv], max_distance=p.phash_max,
                                 query_mirror=qh["phash_mirror"][qv])
            qi, bi = qv[cand["query_idx"].to_numpy()], bv[cand["base_idx"].to_numpy()]
        dp, dd, _ = _pair_distances(qh, bh, qi, bi)
        keep = dd <= p.dhash_max
        frames.append(pd.DataFrame({"qi": qi[keep], "bi": bi[keep], "method": "perceptual", "dp": dp[keep],
                                    "dd": dd[keep], "crop": scale}))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["dp", "dd"]).drop_duplicates(["qi", "bi"], keep="first")


def _embedding_pairs(q: Side, b: Side, p: LeakParams, same: bool) -> pd.DataFrame:
    if q.embeddings is None or b.embeddings is None:
        raise ParamsError("method 'embedding' needs embeddings for both sides (run analyze, or drop the method)")
    qv, bv = _valid_rows(q), _valid_rows(b)
    if len(qv) == 0 or len(bv) < (2 if same else 1):
        return pd.DataFrame({"qi": [], "bi": [], "method": []})
    if same:
        found = embedding_self_pairs(q.embeddings[qv], min_similarity=p.min_similarity, k=min(p.k, len(qv) - 1),
                                     index=p.index)
    else:
        found = embedding_pairs(q.embeddings[qv], b.embeddings[bv], min_similarity=p.min_similarity, k=p.k, index=p.index)
    qi = qv[found["query_idx"].to_numpy()]
    bi = (qv if same else bv)[found["base_idx"].to_numpy()]
    keep = _confirmed(q, b, qi, bi, p)
    return pd.DataFrame({"qi": qi[keep], "bi": bi[keep], "method": "embedding"})


def _confirmed(q: Side, b: Side, qi: np.ndarray, bi: np.ndarray, p: LeakParams) -> np.ndarray:
    """Which embedding candidates their confirmation keeps (module doc): the copy score where it applies to
    both images (:func:`_copy_matchable`) and thumbnails are at hand, the loose pHash distance otherwise."""
    dp, _, _ = _pair_distances(_hashes(q), _hashes(b), qi, bi)
    keep = dp <= p.confirm_phash_max
    if q.contents is not None and b.contents is not None and len(qi):
        scored = _copy_matchable(q)[qi] & _copy_matchable(b, base=q is not b)[bi]
        keep[scored] = pair_scores(q.contents, b.contents, qi[scored], bi[scored],
                                   query_aspect=_thumb_aspects(q)) >= p.confirm_copy_min
    return keep


def _copy_pairs(q: Side, b: Side, p: LeakParams, same: bool) -> pd.DataFrame:
    if q.contents is None or b.contents is None:
        raise ParamsError("method 'copy' needs content thumbnails for both sides (run analyze, or drop the method)")
    qv, bv = _copy_rows(q), _copy_rows(b, base=not same)
    if len(qv) == 0 or len(bv) < (2 if same else 1):
        return pd.DataFrame({"qi": [], "bi": [], "method": []})
    found = copy_pairs(q.contents[qv], b.contents[qv if same else bv], min_score=p.copy_min_score, k=p.k,
                       index=p.index, same=same, query_aspect=_thumb_aspects(q)[qv])
    qi = qv[found["query_idx"].to_numpy()]
    bi = (qv if same else bv)[found["base_idx"].to_numpy()]
    return pd.DataFrame({"qi": qi, "bi": bi, "method": "copy", "cs": found["score"].to_numpy()})


def _thumb_aspects(side: Side) -> np.ndarray:
    """``(N, 2)`` width / height of what each image's two copy thumbnails show: its content, its frame (NaN: the
    copy method takes the thumbnail as square)."""
    f = side.features
    return np.stack([f["content_aspect"].to_numpy(dtype=np.float64), f["aspect_ratio"].to_numpy(dtype=np.float64)],
                    axis=1)


def _copy_matchable(side: Side, base: bool = False) -> np.ndarray:
    """The images the copy score applies to: valid, a shorter side of at least :data:`vlclean.copies.MIN_SIDE`
    px and detail (:func:`vlclean.copies.detail`) of at least :data:`vlclean.copies.LOW_DETAIL`, or
    :data:`vlclean.copies.BASE_MIN_SIDE` px and :data:`vlclean.copies.BASE_LOW_DETAIL` as the ``base`` (train) of a
    test-train search."""
    if "detail" not in side._memo:
        f = side.features
        short = np.minimum(f["width"].to_numpy(), f["height"].to_numpy())
        ok = f["valid"].to_numpy(dtype=bool) & (short >= min(MIN_SIDE, BASE_MIN_SIDE))
        d = np.zeros(len(ok), dtype=np.float32)
        rows = np.flatnonzero(ok)
        if side.contents is not None and len(rows):
            d[rows] = detail(side.contents[rows, 0])
        else:
            d[rows] = np.inf
        side._memo["detail"] = (ok, short, d)
    ok, short, d = side._memo["detail"]
    if base:
        return ok & (short >= BASE_MIN_SIDE) & (d >= BASE_LOW_DETAIL)
    return ok & (short >= MIN_SIDE) & (d >= LOW_DETAIL)


def _copy_rows(side: Side, base: bool = False) -> np.ndarray:
    return np.flatnonzero(_copy_matchable(side, base))


def _valid_rows(side: Side) -> np.ndarray:
    return np.flatnonzero(side.features["valid"].to_numpy(dtype=bool))


def find_pairs(q: Side, b: Side, p: LeakParams, *, scope: str) -> pd.DataFrame:
    """All pairs between ``q`` (query side) and ``b`` found by ``p.methods``; ``q is b`` for a within-split scope."""
    same = q is b
    finders = {"exact": _exact_pairs, "perceptual": _perceptual_pairs, "embedding": _embedding_pairs, "copy": _copy_pairs}
    parts = []
    for method in p.methods:
        parts.append(finders[method](q, b, same) if method == "exact" else finders[method](q, b, p, same))
    found = pd.concat([x for x in parts if len(x)], ignore_index=True) if any(len(x) for x in parts) else None
    if found is None:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    found["qi"] = found["qi"].astype(np.int64)
    found["bi"] = found["bi"].astype(np.int64)
    order = {m: i for i, m in enumerate(METHODS)}
    grouped = found.groupby(["qi", "bi"])["method"].agg(lambda s: ";".join(sorted(set(s), key=order.get))).reset_index()
    qi, bi = grouped["qi"].to_numpy(), grouped["bi"].to_numpy()
    dp, dd, mirrored = _pair_distances(_hashes(q), _hashes(b), qi, bi)
    crop = np.ones(len(qi))
    if "dp" in found:  # a crop variant may have matched more closely than the whole image
        best = found.dropna(subset=["dp"]).set_index(["qi", "bi"])[["dp", "dd", "crop"]]
        hit = pd.MultiIndex.from_arrays([qi, bi]).isin(best.index)
        sel = best.reindex(pd.MultiIndex.from_arrays([qi[hit], bi[hit]]))
        closer = sel["dp"].to_numpy() < dp[hit]
        idx = np.flatnonzero(hit)[closer]
        dp[idx] = sel["dp"].to_numpy()[closer]
        dd[idx] = sel["dd"].to_numpy()[closer]
        crop[idx] = sel["crop"].to_numpy()[closer]
    sim = _similarities(q, b, qi, bi)
    methods = grouped["method"]
    copy_score = np.full(len(qi), np.nan)
    if "cs" in found:
        scores = found.dropna(subset=["cs"]).set_index(["qi", "bi"])["cs"]
        copy_score = scores.reindex(pd.MultiIndex.from_arrays([qi, bi])).to_numpy(dtype=float)
    near = methods.str.contains("perceptual") | methods.str.contains("copy") | (sim >= p.near_similarity)
    tier = np.where(methods.str.contains("exact"), "exact", np.where(near, "near_duplicate", "similar"))
    distance = np.where(tier == "exact", 0.0, np.where(
        methods.str.contains("perceptual"), dp.astype(float),
        np.where(methods.str.contains("embedding") | np.isnan(copy_score), np.round(1.0 - sim, 4),
                 np.round(1.0 - copy_score, 4))))
    return pd.DataFrame({
        "test_id": q.ids[qi], "test_path": q.paths[qi], "train_id": b.ids[bi], "train_path": b.paths[bi],
        "method": methods.to_numpy(), "distance": distance, "tier": tier, "scope": scope,
        "phash_distance": dp, "dhash_distance": dd, "similarity": np.round(sim, 4), "mirrored": mirrored,
        "query_crop": crop,
    })[list(PAIR_COLUMNS)]


def _similarities(q: Side, b: Side, qi: np.ndarray, bi: np.ndarray) -> np.ndarray:
    if q.embeddings is None or b.embeddings is None or len(qi) == 0:
        return np.full(len(qi), np.nan)
    a = np.asarray(q.embeddings[qi], dtype=np.float32)
    c = np.asarray(b.embeddings[bi], dtype=np.float32)
    return np.einsum("ij,ij->i", a, c)


def find_leaks(test: Side, train: Side, p: LeakParams) -> pd.DataFrame:
    """Every pair of every requested scope (test-train always), in one report frame."""
    frames = [find_pairs(test, train, p, scope="test-train")]
    if "test-test" in p.scopes:
        frames.append(find_pairs(test, test, p, scope="test-test"))
    if "train-train" in p.scopes:
        frames.append(find_pairs(train, train, p, scope="train-train"))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    return pd.concat(frames, ignore_index=True).sort_values(["scope", "test_id", "train_id"], ignore_index=True)


def leaks_by_test(pairs: pd.DataFrame, test: Side) -> pd.DataFrame:
    """One row per test image: leaked (has a train copy), best tier, methods, number of train matches."""
    cross = pairs[pairs["scope"] == "test-train"]
    rank = {t: i for i, t in enumerate(TIERS)}
    view = pd.DataFrame({"test_id": test.ids, "test_path": test.paths})
    if len(cross):
        agg = cross.assign(r=cross["tier"].map(rank)).groupby("test_id").agg(
            r=("r", "min"), method=("method", lambda s: ";".join(sorted(set(";".join(s).split(";")), key=METHODS.index))),
            matches=("train_id", "nunique"), train_ids=("train_id", lambda s: ";".join(sorted(set(s)))),
        ).reset_index()
        agg["tier"] = agg["r"].map(dict(enumerate(TIERS)))
        view = view.merge(agg.drop(columns="r"), on="test_id", how="left")
    else:
        view = view.assign(tier=None, method=None, matches=0, train_ids=None)
    view["leaked"] = view["tier"].notna()
    view["matches"] = view["matches"].fillna(0).astype(int)
    return view.fillna({"tier": "", "method": "", "train_ids": ""})[list(BY_TEST_COLUMNS)]


def leak_metrics(pairs: pd.DataFrame, by_test: pd.DataFrame) -> dict:
    """Leaked test images (count, fraction) per tier and per method; pairs per scope."""
    cross = pairs[pairs["scope"] == "test-train"]
    n_test = len(by_test)
    out: dict = {"test_images": n_test, "leaked_test_images": int(by_test["leaked"].sum()),
                 "leaked_fraction": round(float(by_test["leaked"].mean()) if n_test else 0.0, 4),
                 "pairs_per_scope": {s: int((pairs["scope"] == s).sum()) for s in SCOPES}}
    rank = {t: i for i, t in enumerate(TIERS)}
    out["leaked_per_tier"] = {}
    for t in TIERS:  # cumulative: a test image leaked at tier t or a stricter one
        ids = cross.loc[cross["tier"].map(rank) <= rank[t], "test_id"].nunique()
        out["leaked_per_tier"][t] = {"count": int(ids), "fraction": round(ids / n_test, 4) if n_test else 0.0}
    out["leaked_per_method"] = {}
    for m in METHODS:
        ids = cross.loc[cross["method"].str.contains(m), "test_id"].nunique()
        out["leaked_per_method"][m] = {"count": int(ids), "fraction": round(ids / n_test, 4) if n_test else 0.0}
    return out


# -- scoring against planted truth ----------------------------------------------------------------
def score_leaks(pairs: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Pair precision/recall of the test-train pairs against planted ``leakage`` truth, overall and per
    transform (recall), plus train-train pairs against planted ``duplicate`` truth."""
    from vlclean.truth import score, truth_pairs

    cross = pairs[pairs["scope"] == "test-train"]
    found = {frozenset(x) for x in zip(cross["test_id"], cross["train_id"])}
    leak_truth = truth[truth["issue"] == "leakage"]
    actual = truth_pairs(truth, ["leakage"])
    out = {"test-train": score(found, actual), "per_transform": {}}
    for detail, rows in leak_truth.groupby("detail"):
        want = {frozenset(x) for x in zip(rows["image_id"], rows["related_image_id"])}
        out["per_transform"][detail] = {"recall": round(len(want & found) / len(want), 4), "pairs": len(want)}
    within = pairs[pairs["scope"] == "train-train"]
    if len(within) or (truth["issue"] == "duplicate").any():
        found_w = {frozenset(x) for x in zip(within["test_id"], within["train_id"])}
        out["train-train"] = score(found_w, truth_pairs(truth, ["duplicate"]))
    return out


def calibration(test: Side, train: Side, truth: pd.DataFrame, p: LeakParams) -> pd.DataFrame:
    """Precision and recall of each method against the planted leaks as its threshold varies.

    Columns ``method, threshold, precision, recall``: the curve that tells users which threshold to
    pick. Candidates are searched with loose thresholds, then every threshold is applied to them.
    """
    from vlclean.truth import truth_pairs

    actual = truth_pairs(truth, ["leakage"])
    rows = []
    qh, bh = _hashes(test), _hashes(train)
    qv, bv = _valid_rows(test), _valid_rows(train)
    cand = hamming_pairs(qh["phash"][qv], bh["phash"][bv], max_distance=16, query_mirror=qh["phash_mirror"][qv])
    qi, bi = qv[cand["query_idx"].to_numpy()], bv[cand["base_idx"].to_numpy()]
    dp, dd, _ = _pair_distances(qh, bh, qi, bi)
    keys = np.array([frozenset(x) for x in zip(test.ids[qi], train.ids[bi])], dtype=object)
    hit = np.array([k in actual for k in keys], dtype=bool)
    for t in range(0, 17):
        sel = (dp <= t) & (dd <= max(t, p.dhash_max))
        rows.append(("perceptual (pHash bits)", float(t), *_pr(hit[sel], len(actual))))
    if test.embeddings is not None and train.embeddings is not None:
        found = embedding_pairs(test.embeddings[qv], train.embeddings[bv], min_similarity=0.5, k=p.k, index=p.index)
        qi, bi = qv[found["query_idx"].to_numpy()], bv[found["base_idx"].to_numpy()]
        sim = found["similarity"].to_numpy()
        confirmed = _confirmed(test, train, qi, bi, p)
        keys = np.array([frozenset(x) for x in zip(test.ids[qi], train.ids[bi])], dtype=object)
        hit = np.array([k in actual for k in keys], dtype=bool)
        for t in np.round(np.arange(0.80, 1.0001, 0.01), 2):
            sel = (sim >= t) & confirmed
            rows.append(("embedding (cosine)", float(t), *_pr(hit[sel], len(actual))))
    return pd.DataFrame(rows, columns=["method", "threshold", "precision", "recall"])


def _pr(hits: np.ndarray, n_actual: int) -> tuple[float, float]:
    tp = int(hits.sum())
    precision = tp / len(hits) if len(hits) else 1.0
    recall = tp / n_actual if n_actual else 1.0
    return round(precision, 4), round(recall, 4)
