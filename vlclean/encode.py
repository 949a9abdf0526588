"""Encode a raw dataset once: every image is decoded exactly once, and everything later stages need
from its pixels is computed from that one decode and stored as artifacts.

Layout of the output directory (``data/features``)::

    features.parquet          FEATURES table, one row per image, in index order
    crop_hashes.parquet       CROP_HASHES: hashes of each test image's centred crops (detect_leaks)
    embeddings/<shard>.npy    (rows of that raw shard, dim) float16/float32, L2-normalised;
                              all-zero rows for invalid images
    thumbnails/<shard>.npy    (rows, side, side) uint8 grey thumbnails (pixel features of noise,
                              denoise and the mislabel detector); zeros for invalid images
    content/<shard>.npy       (rows, 2, side, side) uint8 copy thumbnails, grey: [0] inside uniform
                              borders, [1] the whole frame (detect_leaks' copy method,
                              :func:`vlclean.copies.copy_thumbnails`); zeros for invalid
    embeddings.json           model, dim, dtype, input size, shard list
    features.json             thumbnail side, crop scales, copy thumbnail side and version
                              (:data:`vlclean.copies.THUMBNAIL_VERSION`), shard list

The decode happens in worker processes (:func:`vlclean.features.measure`); a worker also cuts the
embedder's input (:func:`vlclean.embeddings.prepare_input`), so only that small array travels to
the model in this process. ``detect_leaks``, ``noise`` and ``denoise`` read these artifacts and
never the image bytes.

Work is done raw shard by raw shard (bounded memory), and each finished shard is kept in a work
directory outside DVC's outputs, so an interrupted run resumes at the first unfinished shard.
Scale-out: with ``world_size > 1`` (``torchrun``) rank ``r`` encodes the shards ``r, r + world_size,
...`` whole, every rank waits at ``barrier``, and rank 0 assembles the output from the shared work
directory (one machine, or a shared file system).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from vlclean import schema
from vlclean.copies import CONTENT_SIDE, THUMBNAIL_VERSION, THUMBS, copy_views
from vlclean.datasets import RawDataset
from vlclean.datasets.raw import fingerprint
from vlclean.embeddings import Embedder, InputSpec, prepare_input, read_embedding_shard, write_embedding_shard
from vlclean.errors import SchemaError
from vlclean.features import _columns_of, _map_chunks, chunks, crop_hash_inputs, fill_hashes, hashes_of, make_pool, measure, thumbnail
from vlclean.storage import atomic_dir, atomic_path, write_json, write_parquet

_HASHES = ("phash", "dhash", "phash_mirror", "dhash_mirror")


@dataclass(frozen=True)
class EncodeOptions:
    workers: int = 2
    chunk_size: int = 256
    draft: bool = True
    dtype: str = "float16"
    blur_side: int | None = None
    thumbnail_side: int = 16  # grey thumbnails stored for pixel features (any side up to this)
    crop_scales: tuple[float, ...] = (0.9, 0.8)  # centred crops hashed for each test image
    content_side: int = CONTENT_SIDE  # content thumbnails for copy detection (vlclean.copies)
    progress: bool = True


def _encode_chunk(
    chunk: Sequence[tuple[str, bytes, bool]], *, draft: bool, blur_side: int | None, thumbnail_side: int,
    crop_scales: tuple[float, ...], input_spec: InputSpec | None, content_side: int = CONTENT_SIDE,
) -> dict:
    """Everything of a chunk of ``(image_id, bytes, is_test)`` from one decode per image (worker side)."""
    n, size = len(chunk), (input_spec.size if input_spec is not None else 0)
    rows, inputs, crop_rows, crop_inputs = [], [], [], []
    thumbs = np.zeros((n, thumbnail_side, thumbnail_side), dtype=np.uint8)
    contents = np.zeros((n, len(THUMBS), content_side, content_side), dtype=np.uint8)
    model_inputs = np.zeros((n, size, size, 3) if input_spec is not None else (n, 0, 0, 3), dtype=np.uint8)
    for i, (image_id, data, is_test) in enumerate(chunk):
        m = measure(image_id, data, draft=draft, blur_side=blur_side)
        rows.append(m.row)
        inputs.append(m.inputs)
        if m.gray is None or m.rgb is None:
            continue
        thumbs[i] = thumbnail(m.gray, thumbnail_side)
        contents[i], m.row["content_aspect"] = copy_views(m.gray, content_side)
        if input_spec is not None:
            model_inputs[i] = prepare_input(m.rgb, input_spec)
        if is_test and crop_scales:
            crop_rows.append(i)
            crop_inputs.append(crop_hash_inputs(m.gray, crop_scales, draft=draft))
    fill_hashes(rows, inputs)
    crops = {s: hashes_of([c[j] for c in crop_inputs]) for j, s in enumerate(crop_scales)}
    return {"columns": _columns_of(rows, list(schema.FEATURES)), "thumbnails": thumbs, "contents": contents,
            "inputs": model_inputs,
            "crop_rows": np.asarray(crop_rows, dtype=np.int64), "crops": crops}


@dataclass(frozen=True)
class Encoded:
    """What one decode per image yields for a stream of images, rows in input order."""

    features: pd.DataFrame  # FEATURES
    embeddings: np.ndarray | None  # (N, dim) of options.dtype, zeros for invalid images; None without embedder
    thumbnails: np.ndarray  # (N, side, side) uint8
    crops: pd.DataFrame  # CROP_HASHES of the items marked as test
    contents: np.ndarray | None = None  # (N, 2, side, side) uint8 copy thumbnails (vlclean.copies)


def encode_images(
    items: Iterable[tuple[str, bytes, bool]], embedder: Embedder | None, options: EncodeOptions, *,
    pool: Executor | None = None, total: int | None = None, desc: str = "encode",
) -> Encoded:
    """Decode each ``(image_id, bytes, is_test)`` once (streamed: at most ``2 * workers`` chunks of
    bytes are held at a time) and compute everything of :class:`Encoded` from that decode."""
    o = options
    spec = embedder.input_spec if embedder is not None else None
    work_fn = partial(_encode_chunk, draft=o.draft, blur_side=o.blur_side, thumbnail_side=o.thumbnail_side,
                      crop_scales=tuple(o.crop_scales), input_spec=spec, content_side=o.content_side)
    columns, thumbs, embs, crop_frames, contents = [], [], [], [], []
    with tqdm(total=total, unit="img", desc=desc, disable=not o.progress) as bar:
        for part in _map_chunks(work_fn, chunks(items, o.chunk_size), workers=o.workers, pool=pool):
            n = len(part["thumbnails"])
            if embedder is not None:
                emb = np.zeros((n, embedder.dim), dtype=o.dtype)
                rows = np.flatnonzero(part["columns"]["valid"])
                if len(rows):
                    emb[rows] = embedder.embed([Image.fromarray(a) for a in part["inputs"][rows]]).astype(o.dtype)
                embs.append(emb)
            columns.append(part["columns"])
            thumbs.append(part["thumbnails"])
            contents.append(part["contents"])
            ids = part["columns"]["image_id"]
            crop_frames.extend(pd.DataFrame({"image_id": ids[part["crop_rows"]], "scale": np.float32(s), **h})
                               for s, h in part["crops"].items())
            bar.update(n)
    if columns:
        feats = schema.conform(pd.DataFrame({c: np.concatenate([p[c] for p in columns]) for c in schema.FEATURES}),
                               schema.FEATURES, "features")
    else:
        feats = schema.empty_frame(schema.FEATURES)
    side = o.thumbnail_side
    thumbs_all = np.concatenate(thumbs) if thumbs else np.zeros((0, side, side), dtype=np.uint8)
    cs = o.content_side
    contents_all = np.concatenate(contents) if contents else np.zeros((0, len(THUMBS), cs, cs), dtype=np.uint8)
    emb_all = None
    if embedder is not None:
        emb_all = np.concatenate(embs) if embs else np.zeros((0, embedder.dim), dtype=o.dtype)
    crops = pd.concat(crop_frames, ignore_index=True) if crop_frames else schema.empty_frame(schema.CROP_HASHES)
    return Encoded(feats, emb_all, thumbs_all, schema.conform(crops, schema.CROP_HASHES, "crop_hashes"), contents_all)


def encode_dataset(
    raw: RawDataset, out_dir: str | Path, *, work_dir: str | Path, make_embedder: Callable[[], Embedder],
    embedder_key: dict, options: EncodeOptions = EncodeOptions(), rank: int = 0, world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> pd.DataFrame | None:
    """Compute features, crop hashes, thumbnails and embeddings of ``raw`` into ``out_dir``; return
    the features (rank 0; other ranks return ``None`` once their shards are done).

    ``make_embedder`` builds the model lazily (only if a shard needs encoding); ``embedder_key``
    describes it for the resumability fingerprint. With ``world_size > 1`` this rank encodes every
    ``world_size``-th shard from ``rank`` and then calls ``barrier`` (see the module docstring).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    if world_size > 1 and barrier is None:
        raise ValueError("world_size > 1 needs a barrier (e.g. torch.distributed.barrier)")
    index = raw.index()
    key = {"embedder": embedder_key, "draft": options.draft, "dtype": options.dtype, "blur_side": options.blur_side,
           "thumbnail_side": options.thumbnail_side, "crop_scales": list(options.crop_scales),
           "content_side": options.content_side, "version": 7}
    work = Path(work_dir) / fingerprint(key)
    work.mkdir(parents=True, exist_ok=True)
    shards = raw.shards()
    mine = shards[rank::world_size]
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(make_pool(options.workers)) if options.workers > 1 and mine else None
        encoder = _ShardEncoder(make_embedder, options, pool)
        for shard in tqdm(mine, desc="encode shards", unit="shard", disable=not options.progress or len(mine) < 2):
            encoder.encode(shard, work)
    if world_size > 1 and barrier is not None:
        barrier()
    if rank != 0:
        return None
    done = [_ShardFiles.of(shard, work) for shard in shards]
    missing = [d.features.name for d in done if not d.complete()]
    if missing:
        raise SchemaError(f"{work}: shard outputs missing after every rank finished: {missing[:3]}")
    return _assemble(done, shards, out_dir, index, embedder_key, options)


def _assemble(done: list[_ShardFiles], shards: list[Path], out_dir: str | Path, index: pd.DataFrame,
              embedder_key: dict, options: EncodeOptions) -> pd.DataFrame:
    frames = [pd.read_parquet(d.features) for d in done]
    features = pd.concat(frames, ignore_index=True) if frames else schema.empty_frame(schema.FEATURES)
    features = schema.validate_features(features)
    if list(features["image_id"]) != list(index["image_id"]):
        raise SchemaError("features are not in index order: the raw shards and index.parquet disagree")
    crop_frames = [pd.read_parquet(d.crops) for d in done]
    crops = pd.concat(crop_frames, ignore_index=True) if crop_frames else schema.empty_frame(schema.CROP_HASHES)
    with atomic_dir(out_dir) as tmp:
        write_parquet(tmp / "features.parquet", schema.to_arrow(features, schema.FEATURES, "features"))
        write_parquet(tmp / "crop_hashes.parquet", schema.to_arrow(crops, schema.CROP_HASHES, "crop_hashes"))
        (tmp / "embeddings").mkdir()
        (tmp / "thumbnails").mkdir()
        (tmp / "content").mkdir()
        names = []
        dim = 0
        for d, shard in zip(done, shards):
            arr = read_embedding_shard(d.embeddings, mmap=True)
            dim = arr.shape[1]
            names.append(f"{shard.stem}.npy")
            write_embedding_shard(tmp / "embeddings" / names[-1], np.asarray(arr))
            _write_npy(tmp / "thumbnails" / names[-1], np.load(d.thumbnails, mmap_mode="r"))
            _write_npy(tmp / "content" / names[-1], np.load(d.contents, mmap_mode="r"))
        write_json(tmp / "embeddings.json", {**embedder_key, "dim": dim, "dtype": options.dtype, "shards": names})
        write_json(tmp / "features.json", {"thumbnail_side": options.thumbnail_side,
                                           "crop_scales": list(options.crop_scales),
                                           "content_side": options.content_side,
                                           "content_version": THUMBNAIL_VERSION, "shards": names})
    return features


def _write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


@dataclass(frozen=True)
class _ShardFiles:
    """The work files of one raw shard; the features parquet is written last and marks it done."""

    features: Path
    embeddings: Path
    thumbnails: Path
    crops: Path
    contents: Path

    @classmethod
    def of(cls, shard: Path, work: Path) -> _ShardFiles:
        stamp = fingerprint({"shard": shard.name, "size": shard.stat().st_size, "rows": pq.read_metadata(shard).num_rows})
        stem = work / f"{shard.stem}-{stamp}"
        return cls(Path(f"{stem}.parquet"), Path(f"{stem}.npy"), Path(f"{stem}.thumbs.npy"), Path(f"{stem}.crops.parquet"),
                   Path(f"{stem}.content.npy"))

    def complete(self) -> bool:
        return all(p.exists() for p in (self.features, self.embeddings, self.thumbnails, self.crops, self.contents))


class _ShardEncoder:
    """Encodes one raw shard into its work files, once: one decode per image (in the pool's workers),
    the embedder (in this process) fed chunk by chunk while the workers decode the next chunks."""

    def __init__(self, make_embedder: Callable[[], Embedder], options: EncodeOptions, pool: Executor | None) -> None:
        self._make_embedder = make_embedder
        self._embedder: Embedder | None = None
        self.options = options
        self.pool = pool

    def encode(self, shard: Path, work: Path) -> _ShardFiles:
        o = self.options
        files = _ShardFiles.of(shard, work)
        if files.complete():
            return files
        if self._embedder is None:
            self._embedder = self._make_embedder()
        table = pq.read_table(shard, columns=["image_id", "image", "split"])
        items = zip(table.column("image_id").to_pylist(), table.column("image").to_pylist(),
                    [s == "test" for s in table.column("split").to_pylist()])
        enc = encode_images(items, self._embedder, o, pool=self.pool, total=table.num_rows, desc=f"encode {shard.stem}")
        del table, items
        feats, emb_all, thumbs_all, crops, contents = enc.features, enc.embeddings, enc.thumbnails, enc.crops, enc.contents
        # an image the download refused (e.g. a symlink out of the tree, stored without bytes) keeps its reason
        meta = pq.read_table(shard, columns=["valid", "error"])
        refused = ~np.asarray(meta.column("valid").to_pylist(), dtype=bool)
        if refused.any():
            feats.loc[refused, "valid"] = False
            feats.loc[refused, "error"] = np.asarray(meta.column("error").to_pylist(), dtype=object)[refused]
            emb_all[refused] = 0
            thumbs_all[refused] = 0
            contents[refused] = 0
            crops = crops[~crops["image_id"].isin(set(feats.loc[refused, "image_id"]))]
        write_embedding_shard(files.embeddings, emb_all)
        _write_npy(files.thumbnails, thumbs_all)
        _write_npy(files.contents, contents)
        write_parquet(files.crops, schema.to_arrow(crops, schema.CROP_HASHES, "crop_hashes"))
        write_parquet(files.features, schema.to_arrow(feats, schema.FEATURES, "features"))  # last: marks done
        return files


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


def _meta(features_dir: Path) -> dict:
    path = features_dir / "features.json"
    if not path.exists():
        raise SchemaError(f"{features_dir}: features.json is missing (features from an older analyze: rerun analyze)")
    return json.loads(path.read_text())


def load_thumbnails(features_dir: str | Path) -> np.ndarray:
    """All grey thumbnails ``(N, side, side)`` uint8 in index order (invalid images: zeros)."""
    root = Path(features_dir)
    meta = _meta(root)
    side = int(meta["thumbnail_side"])
    parts = [np.load(root / "thumbnails" / name, mmap_mode="r") for name in meta["shards"]]
    out = np.concatenate(parts) if parts else np.zeros((0, side, side), dtype=np.uint8)
    if out.dtype != np.dtype(schema.THUMBNAIL_DTYPE) or out.shape[1:] != (side, side):
        raise SchemaError(f"{root / 'thumbnails'}: expected (N, {side}, {side}) uint8, got {out.shape} {out.dtype}")
    return out


def load_content_thumbnails(features_dir: str | Path) -> np.ndarray:
    """All copy thumbnails ``(N, 2, side, side)`` uint8 in index order (:func:`vlclean.copies.copy_thumbnails`)."""
    root = Path(features_dir)
    meta = _meta(root)
    if "content_side" not in meta:
        raise SchemaError(f"{root}: no content thumbnails (features from an older analyze: rerun analyze)")
    if meta.get("content_version", 1) != THUMBNAIL_VERSION:
        raise SchemaError(f"{root}: copy thumbnails of version {meta.get('content_version', 1)}, this code makes "
                          f"version {THUMBNAIL_VERSION} (features from an older analyze: rerun analyze)")
    side = int(meta["content_side"])
    parts = [np.load(root / "content" / name, mmap_mode="r") for name in meta["shards"]]
    shape = (len(THUMBS), side, side)
    out = np.concatenate(parts) if parts else np.zeros((0, *shape), dtype=np.uint8)
    if out.dtype != np.uint8 or out.shape[1:] != shape:
        raise SchemaError(f"{root / 'content'}: expected (N, {', '.join(map(str, shape))}) uint8, got {out.shape} "
                          f"{out.dtype} (features from an older analyze: rerun analyze)")
    return out


def load_crop_hashes(
    features_dir: str | Path, image_ids: np.ndarray, scales: Sequence[float]
) -> dict[float, dict[str, np.ndarray]]:
    """``{scale: {"phash", "dhash", "phash_mirror", "dhash_mirror"}}``, arrays ``(len(image_ids),)``
    uint64 in the order of ``image_ids``; images without crops (unreadable, or not test) get zeros."""
    root = Path(features_dir)
    stored = [float(np.float32(s)) for s in _meta(root)["crop_scales"]]
    missing = [s for s in scales if float(np.float32(s)) not in stored]
    if missing:
        raise SchemaError(f"{root}: no crop hashes at scale(s) {missing} (analyze stored {stored}; rerun analyze "
                          "with detect_leaks.crop_scales as wanted)")
    return crops_by_scale(schema.validate_crop_hashes(pd.read_parquet(root / "crop_hashes.parquet")), image_ids, scales)


def crops_by_scale(frame: pd.DataFrame, image_ids: np.ndarray, scales: Sequence[float]) -> dict[float, dict[str, np.ndarray]]:
    """A CROP_HASHES frame as ``{scale: {hash: (len(image_ids),) uint64}}`` in the order of ``image_ids``
    (zeros where an image has no row)."""
    out = {}
    for s in scales:
        rows = frame[frame["scale"] == np.float32(s)].set_index("image_id")
        pos = rows.index.get_indexer(pd.Index(image_ids))
        found = pos >= 0
        out[s] = {}
        for h in _HASHES:
            col = np.zeros(len(image_ids), dtype=np.uint64)
            col[found] = rows[h].to_numpy(np.uint64)[pos[found]]
            out[s][h] = col
    return out


def _box_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` area weights of a box resampling (each output cell averages what it covers)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def pixel_rows(thumbnails: np.ndarray, side: int) -> np.ndarray:
    """Grey thumbnails ``(N, T, T)`` box-resampled to ``side`` x ``side`` (``side <= T``) and flattened,
    each row centred and scaled to unit norm (invariant to brightness and contrast): a classifier
    input for tiny images, where ImageNet CNN features see little. float32 ``(N, side * side)``."""
    t = thumbnails.shape[1]
    if side > t:
        raise SchemaError(f"pixel features of side {side} need thumbnails of at least that side; analyze stored "
                          f"{t} (raise analyze.thumbnail_side)")
    w = _box_weights(t, side).astype(np.float32)
    out = np.empty((len(thumbnails), side * side), dtype=np.float32)
    for start in range(0, len(thumbnails), 65536):
        block = np.asarray(thumbnails[start : start + 65536], dtype=np.float32)
        x = np.einsum("st,ntu,vu->nsv", w, block, w, optimize=True).reshape(len(block), -1)
        x -= x.mean(axis=1, keepdims=True)
        out[start : start + len(block)] = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
    return out


LABEL_FEATURE_SPACES: tuple[str, ...] = ("embedding", "pixels")


def load_label_features(features_dir: str | Path, space: str, *, side: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids, matrix)`` of the valid images in index order: the stored embeddings (``space =
    "embedding"``) or pixel rows of side ``side`` (``"pixels"``, see :func:`pixel_rows`), float32.
    Read from the features directory only (no image is decoded)."""
    if space not in LABEL_FEATURE_SPACES:
        raise ValueError(f"unknown feature space {space!r}; expected one of {list(LABEL_FEATURE_SPACES)}")
    features = load_features(features_dir)
    valid = features["valid"].to_numpy(dtype=bool)
    ids = features["image_id"].to_numpy()[valid]
    if space == "embedding":
        return ids, load_embeddings(features_dir)[valid]
    return ids, pixel_rows(load_thumbnails(features_dir)[valid], side)


def feature_matrix(features_dir: str | Path, image_ids: np.ndarray, *, kind: str, side: int = 8) -> np.ndarray:
    """Features (len(image_ids), D) of valid images for classifiers and noise models, rows in the
    order of ``image_ids`` (see :func:`load_label_features`)."""
    ids, matrix = load_label_features(features_dir, kind, side=side)
    pos = pd.Index(ids).get_indexer(pd.Index(image_ids))
    if (pos < 0).any():
        missing = np.asarray(image_ids)[pos < 0]
        raise SchemaError(f"no features for {len(missing)} image(s), e.g. {list(missing[:3])} (unreadable or not analyzed)")
    return np.ascontiguousarray(matrix[pos], dtype=np.float32)
