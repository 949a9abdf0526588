"""What a path looks like before a reader is chosen: folder, ZIP, parquet, JSON or CSV, and its first bytes.

:class:`Probe` sniffs the container kind once (magic bytes first, then the suffix) and caches what
several readers' ``detect`` functions look at (the head bytes, the platform metadata file of a folder,
a parquet file's column names), so detection reads each file at most once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlclean.errors import ExportFormatError, UnsafePathError
from vlclean.vl_ingest.limits import IngestLimits

PLATFORM_FILES: tuple[str, ...] = ("metadata.json", "metadata.parquet")
KINDS: dict[str, str] = {"dir": "folder", "zip": "ZIP", "parquet": "parquet", "json": "JSON", "csv": "CSV"}
_HEAD_BYTES = 4096


@dataclass
class Probe:
    """One input path and its container kind (one of :data:`KINDS`)."""

    path: Path
    kind: str = ""
    head: bytes = b""
    limits: IngestLimits = field(default_factory=IngestLimits)

    @classmethod
    def of(cls, path: str | Path, limits: IngestLimits | None = None) -> Probe:
        path = Path(path)
        limits = limits or IngestLimits()
        if path.is_dir():
            return cls(path, "dir", limits=limits)
        if not path.is_file():
            raise ExportFormatError(f"{path}: no such file or folder")
        try:
            with path.open("rb") as fh:
                head = fh.read(_HEAD_BYTES)
        except OSError as err:
            raise ExportFormatError(f"{path}: cannot be read ({err})") from err
        suffix = path.suffix.lower()
        if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06" or suffix == ".zip":
            kind = "zip"
        elif head[:4] == b"PAR1" or suffix in (".parquet", ".pq"):
            kind = "parquet"
        elif suffix == ".json" or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
            kind = "json"
        elif suffix in (".csv", ".txt") or (head and b"\x00" not in head and b"," in head.split(b"\n", 1)[0]):
            kind = "csv"
        else:
            raise ExportFormatError(
                f"{path}: not a Visual Layer export: looked for a ZIP, metadata.json / JSON with info+media_items, "
                "parquet (platform or Hub enriched), a vl-datasets CSV or a fastdup folder")
        return cls(path, kind, head, limits)

    @cached_property
    def platform_file(self) -> Path | None:
        """A folder's ``metadata.json`` / ``metadata.parquet`` (here or in its only subfolder); a file: itself."""
        return platform_in_dir(self.path) if self.kind == "dir" else self.path

    @cached_property
    def parquet_columns(self) -> list[str]:
        try:
            return pq.read_schema(self.path).names
        except (pa.ArrowException, OSError, ValueError) as err:
            raise ExportFormatError(f"{self.path}: not a readable parquet file ({err})") from err

    @cached_property
    def csv_header(self) -> str:
        return self.head.decode("utf-8-sig", "replace").splitlines()[0] if self.head else ""


def platform_in_dir(folder: Path) -> Path | None:
    """``metadata.json`` / ``metadata.parquet`` in ``folder`` or in its only subfolder."""
    for name in PLATFORM_FILES:
        if (folder / name).is_file():
            return folder / name
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
    if len(subs) == 1:
        for name in PLATFORM_FILES:
            if (subs[0] / name).is_file():
                return subs[0] / name
    return None


def platform_file(probe: Probe) -> Path:
    """The platform metadata file to read (it was there at detection; a folder may change since)."""
    file = probe.platform_file if probe.kind != "dir" else platform_in_dir(probe.path)
    if file is None:
        raise ExportFormatError(f"{probe.path}: metadata.json / metadata.parquet disappeared while reading")
    return inside(probe.path, file) if probe.kind == "dir" else file


def inside(folder: Path, path: Path) -> Path:
    """``path`` when it resolves inside ``folder``; a symlink out of an unzipped export is refused."""
    if folder.resolve() not in path.resolve().parents:
        raise UnsafePathError(f"{path}: a symlink out of the export folder {folder} (to {path.resolve()}); "
                              "files of an export are read only from inside it")
    return path
