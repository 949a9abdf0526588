"""CIFAR-10 and CIFAR-100 in their "python version" distribution as a dataset source.

``download.cifar.path`` is the archive exactly as distributed (``cifar-10-python.tar.gz``,
``cifar-100-python.tar.gz``) or the folder it extracts to (``cifar-10-batches-py/``,
``cifar-100-python/``). Each batch file is a pickled dict with byte-string keys: ``data`` (N, 3072)
uint8, rows holding the red, green and blue 32x32 planes in turn, ``filenames``, and the labels
(``labels`` for CIFAR-10; ``fine_labels`` and ``coarse_labels`` for CIFAR-100). The meta file
(``batches.meta``: ``label_names``; ``meta``: ``fine_label_names``, ``coarse_label_names``) gives the
class names in label order. CIFAR-10: ``data_batch_1..5`` are train, ``test_batch`` test;
CIFAR-100: ``train`` and ``test``. ``download.cifar.label`` picks CIFAR-100's 100 fine classes or
20 coarse superclasses.

Pickles can run code when loaded; these are read with an unpickler that admits only the few
callables a numpy array needs, so a tampered archive fails instead of running anything.

Hub alternatives (``download.source: hf``): ``uoft-cs/cifar10`` (image column ``img``, label
``label``) and ``uoft-cs/cifar100`` (``img``, ``fine_label`` / ``coarse_label``), both with
labelled train/test splits (``split_map: {train: train, test: test}``).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from vlclean.datasets.arrays import ArraySplit
from vlclean.errors import DatasetError, ParamsError

CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR100_FILES = {"train": ["train"], "test": ["test"]}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # fmt: skip


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR batch)")
        return super().find_class(module, name)


def load_batch(data: bytes, where: str) -> dict[str, object]:
    """One CIFAR pickle as a dict with str keys (see module doc)."""
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise DatasetError(f"{where}: not a CIFAR python batch ({err})") from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: not a CIFAR python batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


@dataclass(frozen=True)
class CifarArchive:
    """The files of one CIFAR distribution (a tar.gz or its extracted folder), read by base name."""

    path: Path
    files: dict[str, bytes]
    variant: str  # cifar10 | cifar100

    @classmethod
    def open(cls, path: str | Path) -> CifarArchive:
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"download.cifar.path {path} does not exist (expected cifar-10-python.tar.gz, "
                               "cifar-100-python.tar.gz or the folder they extract to)")
        files: dict[str, bytes] = {}
        if path.is_file():
            try:
                with tarfile.open(path, "r:*") as tar:
                    for m in tar.getmembers():
                        if m.isfile():
                            files[PurePosixPath(m.name).name] = tar.extractfile(m).read()  # type: ignore[union-attr]
            except (tarfile.TarError, OSError, EOFError) as err:
                raise DatasetError(f"download.cifar.path {path}: not a readable tar archive ({err})") from err
        else:
            candidates = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
            folder = next((c for c in candidates if (c / "batches.meta").is_file() or (c / "meta").is_file()), None)
            if folder is None:
                raise DatasetError(f"download.cifar.path {path}: no batches.meta (CIFAR-10) or meta (CIFAR-100) in it")
            files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        if "batches.meta" in files:
            variant = "cifar10"
        elif "meta" in files:
            variant = "cifar100"
        else:
            raise DatasetError(f"download.cifar.path {path}: no batches.meta (CIFAR-10) or meta (CIFAR-100) in it")
        return cls(path, files, variant)

    def batch(self, name: str) -> dict[str, object]:
        if name not in self.files:
            raise DatasetError(f"download.cifar.path {self.path}: {self.variant} file '{name}' is missing")
        return load_batch(self.files[name], f"{self.path}:{name}")


def cifar_class_names(archive: CifarArchive, label: str) -> list[str]:
    """Class names in label order from the archive's meta file."""
    if archive.variant == "cifar10":
        if label != "fine":
            raise ParamsError(f"params key 'download.cifar.label': {label!r}; CIFAR-10 has one label set (use fine)")
        key, meta = "label_names", archive.batch("batches.meta")
    else:
        key, meta = f"{label}_label_names", archive.batch("meta")
    if key not in meta:
        raise DatasetError(f"{archive.path}: meta file has no '{key}' (keys: {sorted(meta)})")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]  # type: ignore[union-attr]


def read_cifar_splits(archive: CifarArchive, label: str, n_classes: int) -> list[ArraySplit]:
    """Train and test splits as (N, 32, 32, 3) uint8 arrays with the chosen labels."""
    names = CIFAR10_FILES if archive.variant == "cifar10" else CIFAR100_FILES
    key = "labels" if archive.variant == "cifar10" else f"{label}_labels"
    out = []
    for split, files in names.items():
        images, labels, origins, rows = [], [], [], []
        for name in files:
            b = archive.batch(name)
            where = f"{archive.path}:{name}"
            for k in ("data", key):
                if k not in b:
                    raise DatasetError(f"{where}: key '{k}' missing (keys: {sorted(b)})")
            data = np.asarray(b["data"])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise DatasetError(f"{where}: data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
            lab = np.asarray(b[key], dtype=np.int64)
            if len(lab) != len(data):
                raise DatasetError(f"{where}: {len(lab)} labels for {len(data)} images")
            bad = np.flatnonzero((lab < 0) | (lab >= n_classes))
            if len(bad):
                raise DatasetError(f"{where}: row {bad[0]} has label {lab[bad[0]]} outside the {n_classes} classes")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(lab)
            origins += [name] * len(data)
            rows.append(np.arange(len(data)))
        out.append(ArraySplit(split, np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels),
                              origins, np.concatenate(rows)))
    return out


def cifar_listing(path: str | Path) -> list[str]:
    """A description of the distribution (file names and sizes) for the conversion fingerprint."""
    path = Path(path)
    if path.is_file():
        return [f"{path.name}:{path.stat().st_size}:{int(path.stat().st_mtime)}"]
    return sorted(f"{p.relative_to(path)}:{p.stat().st_size}" for p in path.rglob("*") if p.is_file())
