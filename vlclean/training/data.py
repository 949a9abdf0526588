"""Data for training and evaluation: label files, decoding, map-style datasets over the raw shards,
resumable sampling orders and the DataLoader (see :mod:`vlclean.training` for the ``memory`` and
``stream`` loaders)."""

from __future__ import annotations

import math
import os
import random
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from vlclean.datasets import RawDataset
from vlclean.errors import DatasetError, SchemaError
from vlclean.images import ImageDecodeError, load_rgb
from vlclean.params import Loader
from vlclean.storage import read_csv

if TYPE_CHECKING:
    import torch


# -- label files ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledImages:
    """Images to read, in label-file order: where each lives and the label to use.

    ``frame`` columns: image_id, label (int), leaked (bool; False for train files), shard, row.
    """

    frame: pd.DataFrame
    source: str  # the label file, for messages

    def __len__(self) -> int:
        return len(self.frame)


def _as_bool(values: pd.Series, path: Path, column: str) -> np.ndarray:
    if values.dtype == bool:
        return values.to_numpy()
    text = values.astype(str).str.strip().str.lower()
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    bad = text[~text.isin(mapping)]
    if len(bad):
        raise SchemaError(f"{path}: row {bad.index[0]} column '{column}' is {values[bad.index[0]]!r}, not true/false")
    return text.map(mapping).to_numpy(dtype=bool)


def read_label_file(
    path: str | Path, raw: RawDataset, *, with_leaked: bool, index: pd.DataFrame | None = None
) -> LabelledImages:
    """Read a label CSV (``image_id, label`` [+ ``leaked``]) and locate its images in the raw shards.

    Raises :class:`SchemaError` for a missing column, a non-integer or unknown label, a repeated id;
    :class:`DatasetError` naming the first image that is not in the raw dataset or is invalid there.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"label file {path} does not exist")
    frame = read_csv(path, dtype={"image_id": str})
    need = ["image_id", "label"] + (["leaked"] if with_leaked else [])
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise SchemaError(f"{path} lacks column(s) {missing}; has {list(frame.columns)}")
    if frame["image_id"].isna().any():
        raise SchemaError(f"{path}: row {frame.index[frame['image_id'].isna()][0]} has an empty image_id")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | (labels != labels.round())
    if bad.any():
        i = frame.index[bad][0]
        raise SchemaError(f"{path}: row {i} ({frame.at[i, 'image_id']}) has label {frame.at[i, 'label']!r}, "
                          "not an integer")
    dup = frame["image_id"][frame["image_id"].duplicated()]
    if len(dup):
        raise SchemaError(f"{path}: image '{dup.iloc[0]}' appears more than once")
    classes = raw.classes()
    known = set(classes["label"].astype(int))
    labels = labels.astype(np.int64)
    unknown_label = ~labels.isin(known)
    if unknown_label.any():
        i = frame.index[unknown_label][0]
        raise SchemaError(f"{path}: row {i} ({frame.at[i, 'image_id']}) has label {labels[i]}, "
                          f"not one of the {len(known)} classes of {raw.root}")
    index = raw.index() if index is None else index
    located = frame[["image_id"]].merge(
        index[["image_id", "valid", "error", "shard", "row"]], on="image_id", how="left", validate="one_to_one"
    )
    absent = located["shard"].isna()
    if absent.any():
        first = located.loc[absent, "image_id"].iloc[0]
        raise DatasetError(f"{path}: image '{first}' is not in the raw dataset {raw.root} "
                           f"({int(absent.sum())} of {len(frame)} ids unknown)")
    invalid = ~located["valid"].astype(bool)
    if invalid.any():
        row = located.loc[invalid].iloc[0]
        raise DatasetError(f"{path}: image '{row['image_id']}' is invalid in the raw dataset ({row['error']}); "
                           f"{int(invalid.sum())} invalid image(s) listed")
    leaked = _as_bool(frame["leaked"], path, "leaked") if with_leaked else np.zeros(len(frame), dtype=bool)
    out = pd.DataFrame({
        "image_id": frame["image_id"].to_numpy(),
        "label": labels.to_numpy(),
        "leaked": leaked,
        "shard": located["shard"].to_numpy(),
        "row": located["row"].astype(np.int64).to_numpy(),
    })
    return LabelledImages(out, str(path))


def subset(images: LabelledImages, max_images: int, seed: int) -> LabelledImages:
    """A seeded random subset of ``max_images`` (0: all), kept in label-file order."""
    if max_images <= 0 or max_images >= len(images):
        return images
    keep = np.sort(np.random.default_rng(seed).choice(len(images), size=max_images, replace=False))
    return LabelledImages(images.frame.iloc[keep].reset_index(drop=True), images.source)


def raw_train_labels(raw: RawDataset) -> pd.DataFrame:
    """Every readable train image with its given label (``train.labels: raw``: no cleaning, no noise)."""
    index = raw.index()
    train = index[(index["split"] == "train") & index["valid"].astype(bool)]
    return pd.DataFrame({"image_id": train["image_id"].to_numpy(), "label": train["label"].astype(np.int64).to_numpy()})


def holdout(images: LabelledImages, fraction: float, seed: int) -> tuple[LabelledImages, LabelledImages]:
    """``(train, validation)``: a seeded, per-class share ``fraction`` of ``images`` held out for the
    per-epoch curves (at least one image of every class with two or more), both in label-file order."""
    labels = images.frame["label"].to_numpy()
    rng = np.random.default_rng(seed_for(seed, 7))
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n = min(len(rows) - 1, max(1, int(round(fraction * len(rows))))) if len(rows) > 1 else 0
        held[rng.permutation(rows)[:n]] = True
    f = images.frame
    return (LabelledImages(f[~held].reset_index(drop=True), images.source),
            LabelledImages(f[held].reset_index(drop=True), f"{images.source} (held out: {fraction:g})"))


# -- decoding and datasets -----------------------------------------------------------------------
def decode_square(data: bytes, size: int, *, image_id: str = "?", where: str = "") -> np.ndarray:
    """Decode to RGB, resize the shorter side to ``size`` and centre-crop: uint8 ``[3, size, size]``."""
    from PIL import Image

    try:
        img = load_rgb(data, draft_size=(size, size))
    except ImageDecodeError as err:
        raise DatasetError(f"image '{image_id}'{where} cannot be decoded: {err.reason}") from err
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None if max(w, h) < 4 * size else 3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def _row_group_starts(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


class ShardImages:
    """Map-style dataset over raw shards (see module doc, ``stream`` loader).

    Item ``i`` is image ``i`` of ``images``; :meth:`__getitems__` returns a batch
    ``(uint8 [B, 3, S, S], int64 labels [B], int64 positions [B])``. Row groups are read on demand and
    kept in a per-process LRU of ``lru_blocks`` row groups (a DataLoader worker gets its own).
    """

    def __init__(self, root: str | Path, images: LabelledImages, image_size: int, *, lru_blocks: int = 5) -> None:
        self.root = Path(root)
        self.image_size = image_size
        self.lru_blocks = lru_blocks
        f = images.frame
        self.ids = f["image_id"].to_numpy(dtype=object)
        self.labels = f["label"].to_numpy(dtype=np.int64)
        shards = f["shard"].to_numpy(dtype=object)
        rows = f["row"].to_numpy(dtype=np.int64)
        self.block_keys: list[tuple[str, int, int]] = []  # (shard, row group, first row of the group)
        block = np.empty(len(f), dtype=np.int64)
        for shard in sorted(set(shards)):
            starts = _row_group_starts(self.root / "shards" / shard)
            sel = np.flatnonzero(shards == shard)
            beyond = sel[(rows[sel] >= starts[-1]) | (rows[sel] < 0)]
            if len(beyond):
                raise DatasetError(f"raw index: image '{self.ids[beyond[0]]}' is at row {rows[beyond[0]]} of {shard}, "
                                   f"which has {starts[-1]} rows (rebuild data/raw)")
            groups, inverse = np.unique(np.searchsorted(starts, rows[sel], side="right") - 1, return_inverse=True)
            block[sel] = len(self.block_keys) + inverse
            self.block_keys.extend((shard, int(g), int(starts[g])) for g in groups)
        self.block = block
        self.offset = rows - np.array([k[2] for k in self.block_keys], dtype=np.int64)[block]
        self._pid = -1
        self._lru: OrderedDict[int, tuple[list, list]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.ids)

    def _read_block(self, b: int) -> tuple[list, list]:
        import pyarrow.parquet as pq

        if self._pid != os.getpid():  # a fresh worker: never share file handles or caches across fork
            self._lru, self._pid = OrderedDict(), os.getpid()
        if b in self._lru:
            self._lru.move_to_end(b)
            return self._lru[b]
        shard, rg, _ = self.block_keys[b]
        table = pq.ParquetFile(self.root / "shards" / shard).read_row_group(rg, columns=["image_id", "image"])
        value = (table.column("image_id").to_pylist(), table.column("image").to_pylist())
        self._lru[b] = value
        while len(self._lru) > self.lru_blocks:
            self._lru.popitem(last=False)
        return value

    def load(self, i: int) -> np.ndarray:
        b = self.block[i]
        ids, data = self._read_block(b)
        j = int(self.offset[i])
        if ids[j] != self.ids[i]:
            shard, _, start = self.block_keys[b]
            raise DatasetError(f"raw index says image '{self.ids[i]}' is row {start + j} of {shard}, "
                               f"but that row holds '{ids[j]}' (rebuild data/raw)")
        shard, _, start = self.block_keys[b]
        return decode_square(data[j], self.image_size, image_id=str(self.ids[i]), where=f" ({shard} row {start + j})")

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        idx = np.asarray(indices, dtype=np.int64)
        size = self.image_size
        x = np.stack([self.load(int(i)) for i in idx]) if len(idx) else np.zeros((0, 3, size, size), np.uint8)
        return torch.from_numpy(x), torch.from_numpy(self.labels[idx]), torch.from_numpy(idx)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, p = self.__getitems__([i])
        return x[0], y[0], p[0]


class CachedImages:
    """Every image decoded once into a uint8 tensor (``memory`` loader); same batches as ShardImages."""

    def __init__(self, source: ShardImages, *, workers: int = 0) -> None:
        import torch

        self.image_size = source.image_size
        self.labels = torch.from_numpy(source.labels.copy())
        self.images = torch.empty((len(source), 3, self.image_size, self.image_size), dtype=torch.uint8)
        order = np.lexsort((source.offset, source.block))  # read every row group once, in order
        for x, _, pos in make_loader(source, Batches(order.tolist(), 256), workers=workers):
            self.images[pos] = x

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self.images[idx], self.labels[idx], idx

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, p = self.__getitems__([i])
        return x[0], y[0], p[0]


def choose_loader(loader: Loader, n_images: int, image_size: int, cache_max_mb: int) -> Literal["memory", "stream"]:
    """``auto``: ``memory`` when the decoded uint8 cache fits in ``cache_max_mb``, else ``stream``."""
    if loader != "auto":
        return loader
    return "memory" if n_images * 3 * image_size * image_size <= cache_max_mb * 2**20 else "stream"


def open_images(
    raw_dir: str | Path, images: LabelledImages, image_size: int, *, loader: Loader, cache_max_mb: int,
    workers: int, window_blocks: int = 4,
) -> ShardImages | CachedImages:
    """The dataset object for ``images`` with the chosen loader (see :func:`choose_loader`)."""
    source = ShardImages(raw_dir, images, image_size, lru_blocks=window_blocks + 1)
    if choose_loader(loader, len(images), image_size, cache_max_mb) == "memory":
        return CachedImages(source, workers=workers)
    return source


# -- sampling ------------------------------------------------------------------------------------
def seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_order(
    n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1, blocks: np.ndarray | None = None,
    window_blocks: int = 4,
) -> list[int]:
    """This rank's item order for ``epoch``: a pure function of its arguments (resumable).

    Without ``blocks``: a uniform permutation. With ``blocks`` (row group of each item): row groups
    are permuted and items shuffled inside windows of ``window_blocks`` row groups. The order is
    padded by wrapping to a multiple of ``world_size`` and split into contiguous equal parts.
    """
    rng = np.random.default_rng(seed_for(seed, epoch, 7))
    if blocks is None:
        order = rng.permutation(n)
    else:
        by_block = np.argsort(blocks, kind="stable")
        _, starts, counts = np.unique(blocks[by_block], return_index=True, return_counts=True)
        parts = []
        shuffled = rng.permutation(len(starts))
        for w in range(0, len(shuffled), window_blocks):
            window = shuffled[w : w + window_blocks]
            members = np.concatenate([by_block[starts[k] : starts[k] + counts[k]] for k in window])
            parts.append(rng.permutation(members))
        order = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    per_rank = math.ceil(n / world_size) if n else 0
    if per_rank * world_size > n:
        order = np.concatenate([order, order[: per_rank * world_size - n]])
    return order[rank * per_rank : (rank + 1) * per_rank].tolist()


class Batches:
    """Consecutive batches of an index list; with ``drop_single`` a trailing batch of one is dropped
    (BatchNorm needs two). :class:`EpochBatches` recomputes the list each epoch."""

    def __init__(self, order: Sequence[int], batch_size: int, *, drop_single: bool = False) -> None:
        self.order, self.batch_size, self.drop_single = list(order), batch_size, drop_single

    def _count(self, n: int) -> int:
        batches = math.ceil(n / self.batch_size)
        return batches - 1 if self.drop_single and n % self.batch_size == 1 else batches

    def __len__(self) -> int:
        return self._count(len(self.order))

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order
        for i in range(self._count(len(order))):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


class EpochBatches(Batches):
    """Training batches: the order of epoch ``self.epoch`` from :func:`epoch_order` (set before iterating).

    The order is computed in the main process when iteration starts, so persistent DataLoader
    workers (and their row-group LRUs) survive from one epoch to the next.
    """

    def __init__(self, n: int, batch_size: int, **order_kwargs: Any) -> None:
        super().__init__([], batch_size, drop_single=True)
        self.n, self.order_kwargs, self.epoch = n, order_kwargs, 1
        world = order_kwargs.get("world_size", 1)
        self.per_rank = math.ceil(n / world) if n else 0

    def __len__(self) -> int:
        return self._count(self.per_rank)

    def __iter__(self) -> Iterator[list[int]]:
        self.order = epoch_order(self.n, epoch=self.epoch, **self.order_kwargs)
        return super().__iter__()


def _keep_batch(batch: Any) -> Any:
    return batch


def _seed_worker(worker_id: int) -> None:
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: ShardImages | CachedImages, batches: Batches, *, workers: int, pin_memory: bool = False,
                persistent: bool = False):
    """A DataLoader yielding ``(uint8 images, labels, positions)`` batches in ``batches`` order.

    A :class:`CachedImages` dataset is sliced in the main process (workers would only add copies).
    """
    import torch
    from torch.utils.data import DataLoader

    workers = 0 if isinstance(dataset, CachedImages) else workers
    return DataLoader(
        dataset, batch_sampler=batches, collate_fn=_keep_batch, num_workers=workers, pin_memory=pin_memory,
        worker_init_fn=_seed_worker if workers else None, generator=torch.Generator().manual_seed(0),
        prefetch_factor=4 if workers else None, persistent_workers=persistent and workers > 0,
    )
