"""An ImageFolder tree as a dataset source: ``<root>/<split>/<class>/**/<file>``.

Split folders are mapped to our splits by ``split_map`` (e.g. ``val -> test``). Every regular file
below a class folder is an image candidate, whatever its extension (unreadable ones end up in the
quarantine with a reason). Files that cannot be given a label (outside a split or class folder,
hidden files) are listed in the quarantine too, so nothing in the tree goes unaccounted for.
Symlinks that point outside the tree are refused.

Image ids are file stems (unique in ImageNet); when stems collide, the colliding files get their
relative path (without suffix, ``/`` -> ``__``) as id instead.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vlclean import schema
from vlclean.datasets.imagenet import class_names_for
from vlclean.datasets.raw import RawRecord, Unit
from vlclean.errors import DatasetError


@dataclass(frozen=True)
class FolderFile:
    path: Path
    rel: str
    split: str
    class_dir: str


@dataclass(frozen=True)
class FolderScan:
    files: list[FolderFile]
    classes: pd.DataFrame
    rejected: pd.DataFrame  # QUARANTINE rows for files that cannot be labelled


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name
        for d in dirnames:
            p = Path(dirpath) / d
            if p.is_symlink():  # os.walk does not descend into symlinked dirs: account for them
                yield p


def scan_folder(
    root: str | Path, split_map: Mapping[str, str | None], *, no_split: str | None = None
) -> FolderScan:
    """List the tree's files, their split and class folder; see module doc.

    With ``no_split`` (e.g. ``"train"``), a tree whose top-level folders are not split names is
    read as ``<root>/<class>/**/<file>``, every image in split ``no_split``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"ImageFolder root {root} does not exist or is not a directory")
    top = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if no_split is not None and not (top & set(split_map)):
        split_map = {name: no_split for name in top}
        flat = True
    else:
        flat = False
    files: list[FolderFile] = []
    rejected: list[dict[str, str]] = []

    def reject(rel: str, split: str, error: str) -> None:
        rejected.append({"image_id": "", "split": split, "file_name": Path(rel).name, "source": rel, "error": error})

    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/")
        if any(p.startswith(".") for p in parts):
            reject(rel, "", "hidden file ignored")
            continue
        if flat:
            if len(parts) < 2:
                reject(rel, "", "not inside a <class>/ folder")
                continue
            files.append(FolderFile(path=path, rel=rel, split=split_map[parts[0]], class_dir=parts[0]))
            continue
        if len(parts) < 3:
            reject(rel, "", "not inside <split>/<class>/ folders")
            continue
        if parts[0] not in split_map:
            reject(rel, "", f"folder '{parts[0]}' is not a known split; known: {sorted(split_map)}")
            continue
        split = split_map[parts[0]]
        if split is None:
            reject(rel, "", f"split folder '{parts[0]}' is mapped to null (skipped by params)")
            continue
        files.append(FolderFile(path=path, rel=rel, split=split, class_dir=parts[1]))
    if not files:
        raise DatasetError(f"ImageFolder root {root} holds no files under <split>/<class>/ (splits: {sorted(split_map)})")
    class_dirs = sorted({f.class_dir for f in files})
    classes = pd.DataFrame(
        {"label": range(len(class_dirs)), "class_id": class_dirs, "class_name": class_names_for(class_dirs)}
    )
    return FolderScan(files, classes, pd.DataFrame(rejected, columns=list(schema.QUARANTINE)))


def assign_ids(files: list[FolderFile]) -> list[str]:
    """Stable unique ids: the file stem, or the relative path where stems collide."""
    stems = [Path(f.rel).stem for f in files]
    counts = Counter(stems)
    ids = [s if counts[s] == 1 else str(Path(f.rel).with_suffix("")).replace("/", "__") for s, f in zip(stems, files)]
    dup = [i for i, c in Counter(ids).items() if c > 1]
    if dup:  # two files differing only by suffix, e.g. a.jpg and a.png in one folder
        ids = [f"{i}__{Path(f.rel).suffix.lstrip('.')}" if i in dup else i for i, f in zip(ids, files)]
    return ids


def _resolve(path: Path) -> tuple[Path | None, str]:
    """``(real path, "")``, or ``(None, reason)`` for a link that cannot be followed (a symlink loop
    raises RuntimeError before Python 3.13, OSError after)."""
    try:
        return path.resolve(), ""
    except RuntimeError:
        return None, "symlink loop (refused)"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return None, "symlink loop (refused)"
        return None, f"cannot resolve path: {err.strerror or err}"


def _read(f: FolderFile, real_root: Path) -> tuple[bytes, str]:
    target, why = _resolve(f.path)
    if target is None:
        return b"", why
    if f.path.is_symlink() and not target.is_relative_to(real_root):
        return b"", "symlink points outside the dataset root (refused)"
    if not target.is_file():
        return b"", "not a regular file"
    try:
        return target.read_bytes(), ""
    except OSError as err:
        return b"", f"cannot read file: {err}"


def folder_units(
    root: str | Path, files: list[FolderFile], classes: pd.DataFrame, *, unit_size: int = 10_000,
    max_per_class: int | None = None,
) -> list[Unit]:
    """Conversion units of ``unit_size`` files each, in sorted path order.

    Only files of the class folders listed in ``classes`` (``class_id`` = folder name) are used,
    with at most ``max_per_class`` per split and class.
    """
    real_root = Path(root).resolve()
    label_of = {c: int(l) for l, c in zip(classes["label"], classes["class_id"])}
    ids = assign_ids(files)
    keep: list[tuple[FolderFile, str]] = []
    per_class: Counter[tuple[str, str]] = Counter()
    for f, iid in zip(files, ids):
        if f.class_dir not in label_of:
            continue
        if max_per_class is not None and per_class[(f.split, f.class_dir)] >= max_per_class:
            continue
        per_class[(f.split, f.class_dir)] += 1
        keep.append((f, iid))

    def make(chunk: list[tuple[FolderFile, str]]) -> Iterator[RawRecord]:
        for f, iid in chunk:
            data, error = _read(f, real_root)
            yield RawRecord(iid, f.split, label_of[f.class_dir], Path(f.rel).name, data, f.rel, error)

    chunks = [keep[i : i + unit_size] for i in range(0, len(keep), unit_size)]
    return [Unit(name=f"folder-{i:05d}", records=lambda c=c: make(c)) for i, c in enumerate(chunks)]


def list_image_files(root: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Every regular file below ``root`` (any depth, any extension) as sorted relative paths, and the
    refused ones with a reason (hidden files, symlinks pointing outside ``root``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} does not exist or is not a directory")
    real_root = root.resolve()
    files, refused = [], []
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        target, why = _resolve(path)
        if any(part.startswith(".") for part in rel.split("/")):
            refused.append((rel, "hidden file ignored"))
        elif target is None:
            refused.append((rel, why))
        elif path.is_symlink() and not target.is_relative_to(real_root):
            refused.append((rel, "symlink points outside the folder (refused)"))
        elif target.is_file():
            files.append(rel)
        else:
            refused.append((rel, "not a regular file"))
    return files, refused
