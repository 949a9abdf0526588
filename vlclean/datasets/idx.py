"""MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, ...) as a dataset source.

The quartet ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (each gzipped, ``.gz``, as distributed, or plain) in one folder. The IDX
format: a 4-byte magic ``0x00 0x00 <type> <ndim>`` (type ``0x08`` = unsigned byte), ``ndim``
big-endian uint32 sizes, then the values in C order.

The default folder is where Debian's package ``dataset-fashion-mnist`` installs Fashion-MNIST
(``apt-get install dataset-fashion-mnist``; ``dpkg -L dataset-fashion-mnist`` lists it): 60,000
train and 10,000 test 28x28 grey photos of 10 clothing classes. The same data is on the Hugging
Face Hub as ``zalando-datasets/fashion_mnist`` (``download.source: hf``, image column ``image``,
label column ``label``, splits train/test: ``split_map: {train: train, test: test}``).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from vlclean.datasets.arrays import ArraySplit
from vlclean.errors import DatasetError
from vlclean.params import FASHION_MNIST_CLASSES, IDX_DEFAULT_ROOT

__all__ = ["DEFAULT_ROOT", "FASHION_MNIST_CLASSES", "idx_listing", "read_idx_splits"]

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEFAULT_ROOT = IDX_DEFAULT_ROOT
HUB_ALTERNATIVE = "zalando-datasets/fashion_mnist"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file (gzipped when the name ends in ``.gz``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: cannot be read ({err})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DatasetError(f"{path}: not an IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{path}: IDX header says {shape} ({expected} bytes) but {len(data) - header} bytes follow")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def find_idx_file(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetError(_missing(root, f"{stem}.gz"))


def _missing(root: Path, what: str) -> str:
    hint = (f"install Debian's package '{DEBIAN_PACKAGE}' (apt-get install {DEBIAN_PACKAGE}) for Fashion-MNIST at "
            f"{DEFAULT_ROOT}, or use the Hugging Face Hub copy '{HUB_ALTERNATIVE}' (download.source: hf, "
            "hf.repo_id: zalando-datasets/fashion_mnist, image_column: image, label_column: label, "
            "split_map: {train: train, test: test})")
    return f"download.idx.root {root}: {what} is missing; {hint}"


def read_idx_splits(root: str | Path, n_classes: int) -> list[ArraySplit]:
    """Train and test splits of the IDX quartet in ``root``; labels checked against ``n_classes``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(_missing(root, "the folder"))
    out = []
    for split, (images_stem, labels_stem) in FILES.items():
        images_path, labels_path = find_idx_file(root, images_stem), find_idx_file(root, labels_stem)
        images, labels = read_idx(images_path), read_idx(labels_path).astype(np.int64)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DatasetError(f"{images_path}: expected (N, rows, cols) unsigned bytes, got {images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DatasetError(f"{labels_path}: {labels.shape} labels for {len(images)} images in {images_path.name}")
        bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
        if len(bad):
            raise DatasetError(f"{labels_path}: row {bad[0]} has label {labels[bad[0]]}, but download.idx.class_names "
                               f"names {n_classes} classes")
        out.append(ArraySplit(split, images, labels, [images_path.name] * len(images), np.arange(len(images))))
    return out


def idx_listing(root: str | Path) -> list[str]:
    """A description of the files (name, size, mtime) for the conversion fingerprint."""
    root = Path(root)
    return sorted(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in root.glob("*-ubyte*") if p.is_file())
