"""Train and apply a ResNet-18 classifier on the raw parquet shards: resumable, deterministic, DDP-aware.

Data
----
Label files name the images and the label to use (``image_id, label`` for training; ``image_id,
label, leaked`` for evaluation). Images are read straight from ``data/raw/shards`` by ``(shard, row)``
from the raw index and decoded with :func:`vlclean.images.load_rgb` to ``image_size`` (shorter side
resized, centre crop). Two loaders share that decoding:

* ``memory``: every image decoded once into a uint8 tensor ``[N, 3, S, S]`` (the built-in dataset:
  1,838 x 3 KB = 6 MB). Batches are slices of that tensor, no worker processes.
* ``stream``: a map-style dataset indexed by ``(shard, row group, row)`` (shards are written with
  1,024-row row groups). A block-shuffle sampler permutes row groups and shuffles images inside a
  window of ``stream_window_blocks`` row groups, so each DataLoader worker keeps only a small LRU of
  decoded-on-demand row groups (window + 1) instead of the dataset: ImageNet never has to fit in RAM.

``loader: auto`` picks ``memory`` when ``N x 3 x S^2`` bytes fit in ``cache_max_mb``.

Training
--------
Augmentation (random crop with padding, optional horizontal flip) runs on whole batches after loading,
driven by a generator seeded from ``(seed, epoch, rank)``; sampling order is a function of
``(seed, epoch)`` too. Epoch ``e`` therefore depends only on the state after epoch ``e - 1``, which
the per-epoch checkpoint holds exactly (model, optimizer, scheduler, loss scaler, RNG states, metric
history): a run killed at any point and rerun ends bitwise identical to an uninterrupted one on CPU.
Checkpoints live under ``checkpoint_dir/<fingerprint>/`` where the fingerprint covers the params
that change results, the label files' and raw index's hashes and the world size; a changed config
never resumes a stale run.

Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised (``nccl`` on CUDA, ``gloo`` on
CPU), every rank trains on its share of each epoch and only rank 0 logs, checkpoints and writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from vlclean.datasets import RawDataset
from vlclean.errors import DatasetError, ParamsError, SchemaError
from vlclean.devices import resolve_device
from vlclean.images import IMAGENET_MEAN, IMAGENET_STD, ImageDecodeError, load_rgb
from vlclean.params import Device, Loader, TrainParams, TrainRuntime
from vlclean.storage import atomic_path, read_csv
from vlclean.tracking import RunLoggers, check_wandb

if TYPE_CHECKING:
    import torch

log = logging.getLogger("vlclean.training")

SMALL_STEM_MAX_SIZE = 64  # at or below: CIFAR-style stem (3x3 conv, stride 1, no max-pool)
CRASH_ENV = "VLCLEAN_TRAIN_CRASH_AFTER_EPOCH"  # tests: os._exit(137) right after this epoch's checkpoint
MODEL_FORMAT = 1
CHECKPOINT_FORMAT = 1


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
    rng = np.random.default_rng(_seed_for(seed, 7))
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
        for x, _, pos in make_loader(source, _Batches(order.tolist(), 256), workers=workers):
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
def _seed_for(*parts: int) -> int:
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
    rng = np.random.default_rng(_seed_for(seed, epoch, 7))
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


class _Batches:
    """Consecutive batches of an index list; with ``drop_single`` a trailing batch of one is dropped
    (BatchNorm needs two). :class:`_EpochBatches` recomputes the list each epoch."""

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


class _EpochBatches(_Batches):
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


def make_loader(dataset: ShardImages | CachedImages, batches: _Batches, *, workers: int, pin_memory: bool = False,
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


# -- model ---------------------------------------------------------------------------------------
def small_stem(stem: str, image_size: int) -> bool:
    """Whether ``stem`` (auto | small | imagenet) means the CIFAR-style stem at ``image_size``."""
    return stem == "small" or (stem == "auto" and image_size <= SMALL_STEM_MAX_SIZE)


def build_model(num_classes: int, *, small: bool) -> torch.nn.Module:
    """torchvision ResNet-18 without pretrained weights; with ``small`` the CIFAR-style stem
    (3x3 conv, stride 1, no max-pool: 16x more activations than the ImageNet stem at the same size)."""
    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if small:
        model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        torch.nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = torch.nn.Identity()
    return model


def save_model(path: str | Path, model: torch.nn.Module, *, num_classes: int, image_size: int, small: bool,
               classes: Sequence[str], wandb_run: dict | None = None) -> None:
    """Write the model file atomically: weights plus what :func:`load_model` needs to rebuild it, and the
    W&B run it was trained in, when there was one (so ``evaluate`` can add its results there)."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "arch": "resnet18", "small_stem": bool(small),
               "num_classes": num_classes, "image_size": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
               "classes": list(classes), "state_dict": state}
    if wandb_run is not None:  # only then: without W&B the file is byte-for-byte what it always was
        payload["wandb_run"] = dict(wandb_run)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # torch.nn.Module
    num_classes: int
    image_size: int
    classes: list[str]
    wandb_run: dict | None = None  # the W&B run the model was trained in (see vlclean.tracking)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model written by :func:`save_model` (evaluation mode, on ``device``)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"model file {path} does not exist (run the train stage)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a corrupt or foreign file
        raise DatasetError(f"model file {path} cannot be read: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT or payload.get("arch") != "resnet18":
        raise DatasetError(f"model file {path} is not a vlclean ResNet-18 model (format {MODEL_FORMAT})")
    model = build_model(payload["num_classes"], small=bool(payload["small_stem"]))
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return LoadedModel(model, payload["num_classes"], payload["image_size"], list(payload["classes"]),
                       payload.get("wandb_run"))


# -- devices, distribution -----------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    """Where this process runs: rank, world size and device."""

    rank: int
    world_size: int
    device: Any  # torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: Device) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (nccl on CUDA, gloo on CPU)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, key="runtime.train.device", local_rank=local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank if world > 1 else 0, world_size=world, device=dev)


def _all_sum(values: list[float], dist_ctx: Dist) -> list[float]:
    if not dist_ctx.distributed:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=dist_ctx.device if dist_ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def _barrier(dist_ctx: Dist) -> None:
    if dist_ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


# -- batches on the device -----------------------------------------------------------------------
def normalise(x_u8: torch.Tensor) -> torch.Tensor:
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=x_u8.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x_u8.device).view(1, 3, 1, 1)
    return (x_u8.float() / 255.0 - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, *, padding: int, hflip: bool) -> torch.Tensor:
    """Random crop with ``padding`` (reflect) and optional horizontal flip of a normalised batch ``[B,3,S,S]``."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding), mode="reflect")
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
        x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def _autocast(device: torch.device, amp: bool, dtype_name: str):
    import torch

    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype_name))


@dataclass
class Predictions:
    """Per-image results in dataset order: predicted label, true label, cross-entropy loss."""

    positions: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    loss: np.ndarray


def predict(
    model: torch.nn.Module, dataset: ShardImages | CachedImages, *, device: torch.device, batch_size: int,
    workers: int = 0, amp: bool = False, amp_dtype: str = "bfloat16", positions: Sequence[int] | None = None,
) -> Predictions:
    """Run ``model`` over ``positions`` of ``dataset`` (default all) in order; no gradients."""
    import torch
    import torch.nn.functional as F

    order = list(range(len(dataset))) if positions is None else list(positions)
    out_pos, out_pred, out_lab, out_loss = [], [], [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for x, y, pos in make_loader(dataset, _Batches(order, batch_size), workers=workers,
                                     pin_memory=device.type == "cuda"):
            x, y = normalise(x.to(device, non_blocking=True)), y.to(device)
            with _autocast(device, amp, amp_dtype):
                logits = model(x)
            logits = logits.float()
            out_loss.append(F.cross_entropy(logits, y, reduction="none").cpu().numpy())
            out_pred.append(logits.argmax(1).cpu().numpy())
            out_lab.append(y.cpu().numpy())
            out_pos.append(pos.numpy())
    model.train(was_training)

    def cat(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return Predictions(cat(out_pos, np.int64), cat(out_pred, np.int64), cat(out_lab, np.int64),
                       cat(out_loss, np.float64))


# -- schedule, checkpoints -----------------------------------------------------------------------
def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str, milestones: Sequence[float],
              gamma: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (linear warmup, then the schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return gamma ** sum(step >= m * total_steps for m in milestones)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_fingerprint(params: TrainParams, *, seed: int, files: Sequence[str | Path], world_size: int,
                    device_type: str, data_seed: int | None = None) -> str:
    """A key for resumable state: results-relevant params, seeds, input file hashes, world size, device type."""
    desc = {"params": params.results_key(), "seed": seed, "files": [file_sha256(f) for f in files],
            **({} if data_seed is None or data_seed == seed else {"data_seed": data_seed}),
            "world_size": world_size, "device": device_type, "format": CHECKPOINT_FORMAT}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state() -> dict:
    import torch

    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the training run ----------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a run produced; ``metrics`` is meaningful on rank 0 (``is_main``)."""

    metrics: dict
    history: list[dict]
    is_main: bool
    resumed_from_epoch: int


def _accuracy_sums(pred: Predictions, leaked: np.ndarray) -> list[float]:
    correct = pred.predicted == pred.labels
    clean = ~leaked[pred.positions]
    return [float(pred.loss.sum()), float(correct.sum()), float(len(correct)),
            float(correct[clean].sum()), float(clean.sum())]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def train(
    params: TrainParams,
    *,
    seed: int,
    raw_dir: str | Path,
    train_labels: str | Path,
    val_labels: str | Path,
    model_path: str | Path,
    checkpoint_dir: str | Path,
    live_dir: str | Path | None = None,
    progress: bool = True,
    data_seed: int | None = None,
    runtime: TrainRuntime | None = None,
) -> TrainResult:
    """Train (or resume training) and write the model; see the module doc. Runs under torchrun too.

    ``seed`` drives the training randomness (init, order, augmentation); ``data_seed`` (default
    ``seed``) picks the ``max_train_images`` subset and the ``val_fraction`` hold-out, so replicates
    that vary only ``seed`` train on the same images. ``runtime`` (device, DataLoader workers) changes
    speed, not the model.
    """
    import torch

    rt = runtime if runtime is not None else TrainRuntime()

    check_wandb(params.wandb.enabled)
    if params.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dist_ctx = init_distributed(rt.device)
    device = dist_ctx.device
    if params.amp and params.amp_dtype == "float16" and device.type != "cuda":
        raise ParamsError("params key 'train.amp_dtype': float16 autocast needs CUDA; use bfloat16 on CPU")
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(params.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not params.deterministic
    try:
        return _train(params, rt, seed, dist_ctx, Path(raw_dir), Path(train_labels), Path(val_labels), Path(model_path),
                      Path(checkpoint_dir), None if live_dir is None else Path(live_dir), progress,
                      seed if data_seed is None else data_seed)
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        if dist_ctx.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class _Inputs:
    """What a run reads: the label files located in the raw shards, opened with the chosen loader."""

    train_set: LabelledImages
    val_set: LabelledImages
    train_data: ShardImages | CachedImages
    val_data: ShardImages | CachedImages
    class_names: list[str]  # by label
    num_classes: int  # largest label + 1
    fingerprint_files: list[Path]  # the files whose contents the checkpoint key covers


def _read_inputs(params: TrainParams, rt: TrainRuntime, seed: int, raw_dir: Path, train_labels: Path,
                 val_labels: Path) -> _Inputs:
    raw = RawDataset.open(raw_dir)
    index = raw.index()
    classes = raw.classes().sort_values("label")
    train_set = read_label_file(train_labels, raw, with_leaked=False, index=index)
    train_set = subset(train_set, params.max_train_images, seed)
    if params.val_fraction > 0:  # the per-epoch curves come from held-out train images; test waits for evaluate
        train_set, val_set = holdout(train_set, params.val_fraction, seed)
    else:
        val_set = read_label_file(val_labels, raw, with_leaked=True, index=index)
    if len(train_set) < 2:
        raise DatasetError(f"{train_labels}: {len(train_set)} image(s) to train on; need at least 2")
    overlap = set(train_set.frame["image_id"]) & set(val_set.frame["image_id"])
    if overlap:
        log.warning("%d image(s) are both in %s and %s (e.g. %s)", len(overlap), train_labels, val_labels,
                    sorted(overlap)[0])
    opened = [open_images(raw_dir, images, params.image_size, loader=params.loader, cache_max_mb=params.cache_max_mb,
                          workers=rt.workers, window_blocks=params.stream_window_blocks)
              for images in (train_set, val_set)]
    return _Inputs(train_set, val_set, opened[0], opened[1], classes["class_name"].astype(str).tolist(),
                   int(classes["label"].max()) + 1, [train_labels, val_labels, raw.root / "index.parquet"])


@dataclass
class _Trainer:
    """Everything one optimisation step touches and a checkpoint holds (besides the RNG states)."""

    model: Any  # torch.nn.Module (unwrapped: what is saved)
    net: Any  # the module that runs forward passes: ``model``, or its DDP wrapper (see :func:`_distribute`)
    optimizer: Any
    scheduler: Any
    scaler: Any
    batches: _EpochBatches
    loader: Any  # DataLoader over ``batches``


def _build_trainer(params: TrainParams, rt: TrainRuntime, seed: int, dist_ctx: Dist, inputs: _Inputs) -> _Trainer:
    """Model, optimizer, schedule and batches, built in a fixed order from ``seed`` (resume relies on it)."""
    import torch

    device = dist_ctx.device
    torch.manual_seed(seed)
    model = build_model(inputs.num_classes, small=small_stem(params.stem, params.image_size)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum,
                                weight_decay=params.weight_decay)
    data = inputs.train_data
    batches = _EpochBatches(len(inputs.train_set), params.batch_size, seed=seed, rank=dist_ctx.rank,
                            world_size=dist_ctx.world_size, window_blocks=params.stream_window_blocks,
                            blocks=data.block if isinstance(data, ShardImages) else None)
    loader = make_loader(data, batches, workers=rt.workers, pin_memory=device.type == "cuda", persistent=True)
    total_steps = len(batches) * params.epochs
    warmup_steps = round(params.warmup_epochs * len(batches))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, total_steps=total_steps, warmup_steps=warmup_steps, schedule=params.schedule,
        milestones=params.step_milestones, gamma=params.step_gamma))
    scaler = torch.amp.GradScaler(device.type, enabled=params.amp and params.amp_dtype == "float16")
    return _Trainer(model, model, optimizer, scheduler, scaler, batches, loader)


def _distribute(trainer: _Trainer, dist_ctx: Dist) -> None:
    """Under torchrun, run forward passes through a DDP wrapper (built after any resume, so every rank
    starts from the checkpoint's weights)."""
    import torch

    if dist_ctx.distributed:
        device = dist_ctx.device
        trainer.net = torch.nn.parallel.DistributedDataParallel(
            trainer.model, device_ids=[device.index] if device.type == "cuda" else None)


@dataclass(frozen=True)
class _Resumed:
    start_epoch: int = 1
    history: list[dict] = field(default_factory=list)
    wandb_id: str | None = None


def load_checkpoint(path: Path, fp: str, trainer: _Trainer) -> _Resumed:
    """Restore ``trainer`` and the RNG states from the checkpoint at ``path`` when it belongs to run ``fp``
    (same format and fingerprint); otherwise leave everything as built and start at epoch 1."""
    import torch

    if not path.exists():
        return _Resumed()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fp:
        return _Resumed()
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return _Resumed(int(state["epoch"]) + 1, list(state["history"]), state.get("wandb_id"))


def save_checkpoint(path: Path, *, fp: str, epoch: int, trainer: _Trainer, history: list[dict],
                    wandb_id: str | None) -> None:
    """Write everything :func:`load_checkpoint` restores, atomically (a kill leaves the previous one)."""
    import torch

    state = {"format": CHECKPOINT_FORMAT, "fingerprint": fp, "epoch": epoch, "live_step": epoch,
             "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
             "scheduler": trainer.scheduler.state_dict(), "scaler": trainer.scaler.state_dict(),
             "rng": _rng_state(), "history": history, "wandb_id": wandb_id}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_one_epoch(trainer: _Trainer, params: TrainParams, *, seed: int, epoch: int, dist_ctx: Dist) -> dict:
    """One pass over this rank's share of epoch ``epoch``; returns the loss, accuracy, last learning rate
    and throughput summed over every rank. Augmentation draws from a generator seeded by
    ``(seed, epoch, rank)``, so the epoch depends only on the state after the previous one."""
    import torch
    import torch.nn.functional as F

    device = dist_ctx.device
    t0 = time.perf_counter()
    trainer.batches.epoch = epoch
    gen = torch.Generator().manual_seed(_seed_for(seed, epoch, dist_ctx.rank, 11))
    trainer.net.train()
    optimizer = trainer.optimizer
    loss_sum = correct = seen = 0.0
    lr_used = optimizer.param_groups[0]["lr"]
    for x, y, _ in trainer.loader:
        x, y = normalise(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        if params.augmentation == "standard":
            x = augment(x, gen, padding=params.crop_padding, hflip=params.hflip)
        with _autocast(device, params.amp, params.amp_dtype):
            logits = trainer.net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=params.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        lr_used = optimizer.param_groups[0]["lr"]
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(optimizer)
        trainer.scaler.update()
        trainer.scheduler.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += float((logits.detach().argmax(1) == y).sum())
        seen += len(y)
    seconds = time.perf_counter() - t0
    loss_sum, correct, seen, seconds = _all_sum([loss_sum, correct, seen, seconds], dist_ctx)
    seconds /= dist_ctx.world_size
    return {"train/loss": round(loss_sum / seen, 6), "train/accuracy": round(correct / seen, 6), "lr": lr_used,
            "images_per_s": round(seen / seconds, 1), "train_seconds": round(seconds, 3), "images": int(seen)}


def validate(model: torch.nn.Module, inputs: _Inputs, params: TrainParams, dist_ctx: Dist, *,
             workers: int = 0) -> dict:
    """Loss and accuracy on the validation images (each rank predicts its share), overall and leak-free."""
    val_share = np.array_split(np.arange(len(inputs.val_set)), dist_ctx.world_size)[dist_ctx.rank].tolist()
    pred = predict(model, inputs.val_data, device=dist_ctx.device, batch_size=max(params.batch_size, 256),
                   workers=workers, amp=params.amp, amp_dtype=params.amp_dtype, positions=val_share)
    leaked = inputs.val_set.frame["leaked"].to_numpy(dtype=bool)
    v_loss, v_correct, v_n, v_clean_correct, v_clean = _all_sum(_accuracy_sums(pred, leaked), dist_ctx)
    return {"val/loss": _ratio(v_loss, v_n), "val/accuracy": _ratio(v_correct, v_n),
            "val/accuracy_leak_free": _ratio(v_clean_correct, v_clean)}


def _epoch_record(epoch: int, trained: dict, validated: dict, seconds: float) -> dict:
    return {"epoch": epoch, "train/loss": trained["train/loss"], "train/accuracy": trained["train/accuracy"],
            **validated, "lr": trained["lr"], "images_per_s": trained["images_per_s"],
            "epoch_seconds": round(seconds, 2), "train_seconds": trained["train_seconds"],
            "images": trained["images"]}


def _train(params: TrainParams, rt: TrainRuntime, seed: int, dist_ctx: Dist, raw_dir: Path, train_labels: Path,
           val_labels: Path, model_path: Path, checkpoint_dir: Path, live_dir: Path | None, progress: bool,
           data_seed: int) -> TrainResult:
    t0 = time.perf_counter()
    inputs = _read_inputs(params, rt, data_seed, raw_dir, train_labels, val_labels)
    fp = run_fingerprint(params, seed=seed, files=inputs.fingerprint_files, world_size=dist_ctx.world_size,
                         device_type=dist_ctx.device.type, data_seed=data_seed)
    ckpt_path = checkpoint_dir / fp / "last.pt"
    if dist_ctx.is_main:
        log.info("train: %d train / %d val images at %d px, %s loader, decoded in %.1f s; device %s x %d; run %s",
                 len(inputs.train_set), len(inputs.val_set), params.image_size,
                 "stream" if isinstance(inputs.train_data, ShardImages) else "memory", time.perf_counter() - t0,
                 dist_ctx.device, dist_ctx.world_size, fp)
    trainer = _build_trainer(params, rt, seed, dist_ctx, inputs)
    resumed = load_checkpoint(ckpt_path, fp, trainer)
    if resumed.start_epoch > 1 and dist_ctx.is_main:
        log.info("train: resuming run %s after epoch %d of %d", fp, resumed.start_epoch - 1, params.epochs)
    _distribute(trainer, dist_ctx)
    history = resumed.history
    run_config = {**params.model_dump(), "runtime": rt.model_dump(), "seed": seed, "world_size": dist_ctx.world_size,
                  "n_train": len(inputs.train_set), "n_val": len(inputs.val_set)}
    loggers = RunLoggers(live_dir, params.wandb, run_config, resumed.wandb_id) if dist_ctx.is_main else None
    if loggers is not None:
        for record in history:
            loggers.log_epoch(record, replay=True)
    crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
    try:
        for epoch in range(resumed.start_epoch, params.epochs + 1):
            t_epoch = time.perf_counter()
            trained = train_one_epoch(trainer, params, seed=seed, epoch=epoch, dist_ctx=dist_ctx)
            validated = validate(trainer.model, inputs, params, dist_ctx, workers=rt.workers)
            record = _epoch_record(epoch, trained, validated, time.perf_counter() - t_epoch)
            history.append(record)
            if dist_ctx.is_main:
                save_checkpoint(ckpt_path, fp=fp, epoch=epoch, trainer=trainer, history=history,
                                wandb_id=loggers.wandb_id)
                loggers.log_epoch(record)
                if progress:
                    _log_progress(record, params.epochs)
                if crash_after == epoch:
                    os._exit(137)  # tests: die like a killed job, right after the checkpoint
            _barrier(dist_ctx)
        if dist_ctx.is_main:
            save_model(model_path, trainer.model, num_classes=inputs.num_classes, image_size=params.image_size,
                       small=small_stem(params.stem, params.image_size), classes=inputs.class_names,
                       wandb_run=loggers.run_info())
    finally:
        if loggers is not None:
            loggers.close()
    _barrier(dist_ctx)
    metrics = final_metrics(history, n_train=len(inputs.train_set), val=inputs.val_set,
                            world_size=dist_ctx.world_size, epochs=params.epochs)
    if dist_ctx.is_main:
        shutil.rmtree(ckpt_path.parent, ignore_errors=True)  # finished: the model file is the result
    return TrainResult(metrics, history, dist_ctx.is_main, resumed.start_epoch - 1)


def _log_progress(record: dict, epochs: int) -> None:
    log.info("epoch %d/%d  loss %.4f  acc %.4f  val_acc %s  leak-free %s  %.0f img/s  %.1f s", record["epoch"],
             epochs, record["train/loss"], record["train/accuracy"], record["val/accuracy"],
             record["val/accuracy_leak_free"], record["images_per_s"], record["epoch_seconds"])


def final_metrics(history: list[dict], *, n_train: int, val: LabelledImages, world_size: int, epochs: int) -> dict:
    """The last epoch's metrics plus ``throughput`` (the only part that varies between identical runs):
    training images per second (training passes only), mean epoch seconds (with validation and
    checkpointing) and their total, over every epoch, also those run before a resume."""
    last = history[-1] if history else {}
    timed = [h for h in history if h.get("train_seconds")]
    train_seconds = sum(h["train_seconds"] for h in timed)
    n_leaked = int(val.frame["leaked"].sum())
    return {
        "epochs": epochs,
        "n_train": n_train,
        "n_val": len(val),
        "n_val_leak_free": len(val) - n_leaked,
        "world_size": world_size,
        "train_loss": last.get("train/loss"),
        "train_accuracy": last.get("train/accuracy"),
        "val_loss": last.get("val/loss"),
        "val_accuracy": last.get("val/accuracy"),
        "val_accuracy_leak_free": last.get("val/accuracy_leak_free"),
        "throughput": {
            "images_per_s": round(sum(h["images"] for h in timed) / train_seconds, 1) if train_seconds else None,
            "seconds_per_epoch": round(float(np.mean([h["epoch_seconds"] for h in timed])), 2) if timed else None,
            "total_seconds": round(float(sum(h["epoch_seconds"] for h in timed)), 1),
        },
    }


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
