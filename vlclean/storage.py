"""Atomic writes: an output is either complete or absent, never half-written.

Every stage writes through these helpers. A file is written to a temporary sibling and renamed
into place with :func:`os.replace` (atomic on POSIX); a directory is built in a temporary sibling
and swapped in. A crash therefore never leaves a partial output that DVC would cache.

Durability: before the rename the new data is flushed to disk (``fsync`` of the file; for a directory,
of every file and folder in it, or one ``sync`` when it holds more than ``_FSYNC_MAX_FILES`` files),
and after it the parent folder is fsynced so the rename itself survives a power cut. Without that, a
crash shortly after a "successful" write could leave the new name pointing at empty or partial data.

Temporaries are hidden siblings named ``.<name>.<host>-<pid>.<random>.tmp`` (the previous version of a
directory being swapped out: ``.<name>.<host>-<pid>.old``). A process killed with SIGKILL cannot remove
its own; the next write of the same path removes those whose process on this host is gone.
Scratch folders (:func:`scratch_dir`, e.g. a standalone command's temporary dataset) are swept the
same way by the next run that asks for one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vlclean import csvio


# Above this many files in a new directory, one os.sync() is cheaper than an fsync per file.
_FSYNC_MAX_FILES = 256


def _fsync_path(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (``root`` included) to disk."""
    entries = [root]
    for folder, dirs, files in os.walk(root):
        entries.extend(Path(folder, name) for name in dirs + files)
        if len(entries) > _FSYNC_MAX_FILES:
            os.sync()
            return
    for entry in entries:
        if not entry.is_symlink():
            _fsync_path(entry)


def _owner() -> str:
    """``<host>-<pid>``: who owns a temporary (host: so a shared filesystem never loses a live one)."""
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by killed processes of this host; return what was removed."""
    path = Path(path)
    host = _owner().rsplit("-", 1)[0]
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{re.escape(host)}-(\d+)\.(?:[^/]*\.tmp|old)")
    removed = []
    try:
        siblings = list(path.parent.glob(f".{glob.escape(path.name)}.{host}-*"))
    except OSError:
        return removed
    for sibling in siblings:
        match = pattern.fullmatch(sibling.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """A temporary folder ``<parent>/<prefix><host>-<pid>.<random>`` (default parent: the system's temp
    folder), removed on exit. A process killed with SIGKILL runs no cleanup, so entering first removes
    the folders of the same prefix whose process on this host is gone: the next run sweeps them."""
    parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    host = _owner().rsplit("-", 1)[0]
    pattern = re.compile(rf"{re.escape(prefix)}{re.escape(host)}-(\d+)\.[^/]+")
    for stale in parent.glob(f"{glob.escape(prefix)}{host}-*"):
        match = pattern.fullmatch(stale.name)
        if match and not _alive(int(match.group(1))) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{_owner()}.", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs are shared data
        _fsync_path(tmp_path)
        os.replace(tmp_path, path)
        _fsync_path(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _fsync_tree(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{_owner()}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_csv(path: str | Path, frame: pd.DataFrame, *, escape_formulas: bool = True) -> None:
    """Write a CSV atomically: exact round trips and spreadsheet formulas neutralised (see :mod:`vlclean.csvio`)."""
    with atomic_path(path) as tmp:
        csvio.write_csv_file(tmp, frame, escape_formulas=escape_formulas)


def write_parquet(path: str | Path, table: pa.Table | pd.DataFrame, **kwargs: Any) -> None:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def read_csv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Read a CSV we wrote (formula escapes undone; ``columns=`` a schema table types it, see :mod:`vlclean.csvio`)."""
    return csvio.read_csv(path, **kwargs)
