"""Encode a raw dataset once: per-image features and embeddings, stored as artifacts for every later stage.

Layout of the output directory (``data/features``)::

    features.parquet          FEATURES table, one row per image, in index order
    embeddings/<shard>.npy    (rows of that raw shard, dim) float16/float32, L2-normalised;
                              all-zero rows for invalid images
    embeddings.json           model, dim, dtype, input size, shard list

Work is done raw shard by raw shard (bounded memory), and each finished shard is kept in a work
directory outside DVC's outputs, so an interrupted run resumes at the first unfinished shard.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from vlclean import schema
from vlclean.datasets import RawDataset
from vlclean.datasets.raw import fingerprint
from vlclean.embeddings import Embedder, read_embedding_shard, write_embedding_shard
from vlclean.errors import SchemaError
from vlclean.features import compute_features, make_pool
from vlclean.images import ImageDecodeError, load_rgb
from vlclean.storage import atomic_dir, write_json, write_parquet


@dataclass(frozen=True)
class EncodeOptions:
    workers: int = 2
    chunk_size: int = 256
    draft: bool = True
    dtype: str = "float16"
    blur_side: int | None = None
    progress: bool = True


def _embed_shard(items: list[tuple[str, bytes]], valid: np.ndarray, embedder: Embedder, dtype: str) -> np.ndarray:
    out = np.zeros((len(items), embedder.dim), dtype=dtype)
    rows = np.flatnonzero(valid)
    size = (embedder.spec.input_size, embedder.spec.input_size)
    for start in range(0, len(rows), embedder.batch_size):
        batch = rows[start : start + embedder.batch_size]
        images = []
        for r in batch:
            try:
                images.append(load_rgb(items[r][1], draft_size=size))
            except ImageDecodeError as err:  # the features pass decoded it: this would be a bug
                raise SchemaError(f"image {items[r][0]} decoded for features but not for embedding: {err}") from err
        out[batch] = embedder.embed(images).astype(dtype)
    return out


def encode_dataset(
    raw: RawDataset, out_dir: str | Path, *, work_dir: str | Path, make_embedder: Callable[[], Embedder],
    embedder_key: dict, options: EncodeOptions = EncodeOptions(),
) -> pd.DataFrame:
    """Compute features + embeddings for every image of ``raw`` into ``out_dir``; return the features.

    ``make_embedder`` builds the model lazily (only if a shard needs encoding); ``embedder_key``
    describes it for the resumability fingerprint.
    """
    index = raw.index()
    key = {"embedder": embedder_key, "draft": options.draft, "dtype": options.dtype,
           "blur_side": options.blur_side, "version": 1}
    work = Path(work_dir) / fingerprint(key)
    work.mkdir(parents=True, exist_ok=True)
    shards = raw.shards()
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(make_pool(options.workers)) if options.workers > 1 else None
        encoder = _ShardEncoder(make_embedder, options, pool)
        done = [encoder.encode(shard, work) for shard in
                tqdm(shards, desc="encode shards", unit="shard", disable=not options.progress or len(shards) < 2)]
    features = pd.concat([pd.read_parquet(f) for f, _ in done], ignore_index=True) if done else schema.empty_frame(schema.FEATURES)
    features = schema.validate_features(features)
    if list(features["image_id"]) != list(index["image_id"]):
        raise SchemaError("features are not in index order: the raw shards and index.parquet disagree")
    with atomic_dir(out_dir) as tmp:
        write_parquet(tmp / "features.parquet", schema.to_arrow(features, schema.FEATURES, "features"))
        (tmp / "embeddings").mkdir()
        names = []
        dim = 0
        for (_, emb_path), shard in zip(done, shards):
            arr = read_embedding_shard(emb_path, mmap=True)
            dim = arr.shape[1]
            names.append(f"{shard.stem}.npy")
            write_embedding_shard(tmp / "embeddings" / names[-1], np.asarray(arr))
        write_json(tmp / "embeddings.json", {**embedder_key, "dim": dim, "dtype": options.dtype, "shards": names})
    return features


class _ShardEncoder:
    """Encodes one raw shard into (features parquet, embeddings npy) in the work dir, once."""

    def __init__(self, make_embedder: Callable[[], Embedder], options: EncodeOptions, pool: Executor | None) -> None:
        self._make_embedder = make_embedder
        self._embedder: Embedder | None = None
        self.options = options
        self.pool = pool

    def encode(self, shard: Path, work: Path) -> tuple[Path, Path]:
        o = self.options
        stamp = fingerprint({"shard": shard.name, "size": shard.stat().st_size, "rows": pq.read_metadata(shard).num_rows})
        feat_path, emb_path = work / f"{shard.stem}-{stamp}.parquet", work / f"{shard.stem}-{stamp}.npy"
        if feat_path.exists() and emb_path.exists():
            return feat_path, emb_path
        table = pq.read_table(shard, columns=["image_id", "image", "valid", "error"])
        items = list(zip(table.column("image_id").to_pylist(), table.column("image").to_pylist()))
        feats = compute_features(items, workers=o.workers, chunk_size=o.chunk_size, draft=o.draft,
                                 progress=o.progress, pool=self.pool, blur_side=o.blur_side)
        # an image the download refused (e.g. a symlink out of the tree, stored without bytes) keeps its reason
        refused = ~np.asarray(table.column("valid").to_pylist(), dtype=bool)
        if refused.any():
            feats.loc[refused, "valid"] = False
            feats.loc[refused, "error"] = np.asarray(table.column("error").to_pylist(), dtype=object)[refused]
        if self._embedder is None:
            self._embedder = self._make_embedder()
        emb = _embed_shard(items, feats["valid"].to_numpy(), self._embedder, o.dtype)
        write_embedding_shard(emb_path, emb)  # written first: the parquet marks the shard as done
        write_parquet(feat_path, schema.to_arrow(feats, schema.FEATURES, "features"))
        return feat_path, emb_path


def load_features(features_dir: str | Path) -> pd.DataFrame:
    return schema.validate_features(pd.read_parquet(Path(features_dir) / "features.parquet"))


def load_embeddings(features_dir: str | Path) -> np.ndarray:
    """All embeddings (N, dim) in index order, float32 (invalid images: zero rows)."""
    root = Path(features_dir)
    meta = json.loads((root / "embeddings.json").read_text())
    parts = [read_embedding_shard(root / "embeddings" / name, mmap=True) for name in meta["shards"]]
    if not parts:
        return np.zeros((0, meta.get("dim", 0)), dtype=np.float32)
    return np.concatenate(parts, axis=0).astype(np.float32)


def pixel_features(raw: RawDataset, features: pd.DataFrame, *, side: int = 8, progress: bool = True) -> np.ndarray:
    """Grey-level thumbnails (N_valid, side*side) of the valid images in index order, each centred and
    scaled to unit norm (invariant to brightness and contrast): a label-classifier input for tiny
    images, where ImageNet CNN features see little."""
    from PIL import Image

    valid = set(features.loc[features["valid"], "image_id"])
    rows = []
    with tqdm(total=len(valid), desc="pixel features", unit="img", disable=not progress) as bar:
        for batch in raw.iter_images():
            for iid, data in zip(batch.column("image_id").to_pylist(), batch.column("image").to_pylist()):
                if iid not in valid:
                    continue
                gray = load_rgb(data, draft_size=(side * 4, side * 4)).convert("L").resize((side, side), Image.BOX)
                rows.append(np.asarray(gray, dtype=np.float32).ravel())
                bar.update(1)
    x = np.stack(rows) if rows else np.zeros((0, side * side), dtype=np.float32)
    x -= x.mean(axis=1, keepdims=True)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)


def feature_matrix(
    raw: RawDataset, features_dir: str | Path, image_ids: np.ndarray, *, kind: str, side: int = 8
) -> np.ndarray:
    """Features (len(image_ids), D) of valid images for classifiers and noise models, rows in the
    order of ``image_ids``: the stored embeddings (``kind="embedding"``) or grey thumbnails (``"pixels"``)."""
    features = load_features(features_dir)
    if kind == "embedding":
        matrix, ids = load_embeddings(features_dir), features["image_id"].to_numpy()
    elif kind == "pixels":
        matrix = pixel_features(raw, features, side=side, progress=False)
        ids = features.loc[features["valid"], "image_id"].to_numpy()
    else:
        raise ValueError(f"unknown feature kind {kind!r}; expected embedding or pixels")
    row_of = pd.Series(np.arange(len(ids)), index=ids)
    missing = [i for i in image_ids if i not in row_of.index]
    if missing:
        raise SchemaError(f"no features for {len(missing)} image(s), e.g. {missing[:3]} (unreadable or not analyzed)")
    return np.asarray(matrix[row_of.loc[image_ids].to_numpy()], dtype=np.float32)
