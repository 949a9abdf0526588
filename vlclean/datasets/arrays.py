"""In-memory image arrays (IDX files, CIFAR pickles) as conversion units of lossless PNGs.

Sources that ship pixels rather than files (MNIST-format IDX, CIFAR's python pickles) decode into a
``uint8`` array per split: ``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB, plus integer labels. This
module turns such arrays into :class:`~vlclean.datasets.raw.Unit` s of PNG-encoded
:class:`~vlclean.datasets.raw.RawRecord` s (PNG is lossless: the raw shards hold exactly the
distributed pixels), applying the class subset and ``max_per_class`` in array order so every run
picks the same images. Image ids are ``<split>_<row:05d>`` (the row in the distributed array), file
names ``<id>.png``, and ``source`` names the distributed file and row.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from vlclean.datasets.raw import RawRecord, Unit
from vlclean.errors import DatasetError, ParamsError


@dataclass(frozen=True)
class ArraySplit:
    """One split of an array source: pixels ``(N, H, W[, 3])`` uint8, labels ``(N,)``, and where they came
    from (``origins[i]`` names the file each row came from, ``rows[i]`` the row within it)."""

    split: str
    images: np.ndarray
    labels: np.ndarray
    origins: Sequence[str]
    rows: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise DatasetError(f"{self.split}: images must be uint8 (N, H, W[, 3]), got {self.images.dtype} "
                               f"{self.images.shape}")
        if not (len(self.labels) == len(self.origins) == len(self.rows) == n):
            raise DatasetError(f"{self.split}: {n} images but {len(self.labels)} labels")


def class_slug(name: str) -> str:
    """A class name as a folder-safe id: lower case, runs of other characters as ``_`` ('T-shirt/top' ->
    't_shirt_top')."""
    slug = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
    return slug or "class"


def classes_from_names(names: Sequence[str]) -> pd.DataFrame:
    """Classes table (label, class_id, class_name) for names in label order; ids are unique slugs."""
    ids = [class_slug(n) for n in names]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"class names {list(names)} do not give unique ids {ids}")
    return pd.DataFrame({"label": range(len(names)), "class_id": ids, "class_name": list(names)})


def subset_labels(classes: pd.DataFrame, wanted: Sequence[str]) -> dict[int, int] | None:
    """Map original label -> new label for the requested class ids/names/label numbers (None: keep all)."""
    if not wanted:
        return None
    keys = {str(int(l)): int(l) for l in classes["label"]}
    keys |= {str(c): int(l) for l, c in zip(classes["label"], classes["class_id"])}
    keys |= {str(n): int(l) for l, n in zip(classes["label"], classes["class_name"])}
    missing = [w for w in wanted if str(w) not in keys]
    if missing:
        raise ParamsError(f"params key 'download.classes': {missing} are not classes of this dataset "
                          f"(classes: {list(classes['class_name'])})")
    old = sorted({keys[str(w)] for w in wanted})
    return {o: n for n, o in enumerate(old)}


def selected_rows(labels: np.ndarray, label_map: dict[int, int] | None, max_per_class: int | None) -> np.ndarray:
    """Row numbers kept after the class subset and the per-class cap (first rows of each class)."""
    keep = np.ones(len(labels), dtype=bool) if label_map is None else np.isin(labels, list(label_map))
    rows = np.flatnonzero(keep)
    if max_per_class is None:
        return rows
    rank = pd.Series(labels[rows]).groupby(labels[rows]).cumcount().to_numpy()
    return rows[rank < max_per_class]


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def array_units(
    splits: Sequence[ArraySplit], *, label_map: dict[int, int] | None, max_per_class: int | None,
    unit_size: int = 10_000,
) -> list[Unit]:
    """Units of at most ``unit_size`` images each, split by split (see module doc)."""
    units = []
    for s in splits:
        rows = selected_rows(np.asarray(s.labels, dtype=np.int64), label_map, max_per_class)
        for start in range(0, len(rows), unit_size):
            chunk = rows[start : start + unit_size]
            units.append(Unit(name=f"{s.split}-{start // unit_size:04d}",
                              records=lambda s=s, chunk=chunk: _records(s, chunk, label_map)))
    return units


def _records(s: ArraySplit, rows: np.ndarray, label_map: dict[int, int] | None) -> Iterator[RawRecord]:
    for i in rows:
        label = int(s.labels[i])
        image_id = f"{s.split}_{i:05d}"
        yield RawRecord(image_id=image_id, split=s.split, label=label_map[label] if label_map else label,
                        file_name=f"{image_id}.png", data=png_bytes(s.images[i]),
                        source=f"{s.origins[i]}:{int(s.rows[i])}")
