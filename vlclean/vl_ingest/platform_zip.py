"""The platform's ZIP: ``metadata.json`` or ``metadata.parquet`` at its root or in one folder, optionally ``images/``.

JSON is streamed from the archive; parquet is copied to a temporary file first (parquet needs seeking).
Images are not extracted while reading (:func:`extract_images` unpacks them on demand).
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from vlclean.errors import ExportFormatError, UnsafePathError
from vlclean.storage import scratch_dir
from vlclean.vl_ingest.limits import IngestLimits, LimitExceededError
from vlclean.vl_ingest.model import Part, Reader, VLExport
from vlclean.vl_ingest.platform_json import read_json_stream
from vlclean.vl_ingest.platform_parquet import read_parquet_file
from vlclean.vl_ingest.probe import PLATFORM_FILES, Probe
from vlclean.vl_ingest.validate import check_export_path

@dataclass(frozen=True)
class _ZipLayout:
    member: str
    flavour: str  # json | parquet
    images_dir: str  # member folder of images ("" when none)
    images: int


def zip_layout(path: Path, limits: IngestLimits | None = None) -> _ZipLayout:
    """Where the export sits in the archive; refuses unsafe names, members clashing as file and folder,
    and a metadata member over the extraction limits (checked on the sizes the archive declares)."""
    limits = limits or IngestLimits()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise ExportFormatError(f"{path}: not a readable ZIP archive ({err})") from err
    names = [i.filename for i in infos]
    for n in names:
        check_export_path(n, f"{path}: ZIP member")
    _check_no_clash(path, names)
    found = [n for n in names if PurePosixPath(n).name in PLATFORM_FILES and not n.startswith("__MACOSX/")]
    if not found:
        sample = ", ".join(names[:5]) or "none"
        raise ExportFormatError(f"{path}: ZIP holds no metadata.json or metadata.parquet "
                                f"({len(names)} members, e.g. {sample})")
    depth = min(n.count("/") for n in found)
    top = [n for n in found if n.count("/") == depth]
    folders = {str(PurePosixPath(n).parent) for n in top}
    if len(folders) > 1:
        raise ExportFormatError(f"{path}: ZIP holds several exports at the same level: {sorted(top)}")
    member = next((n for n in top if n.endswith(".json")), top[0])  # JSON first when both are there
    check_member(path, next(i for i in infos if i.filename == member), limits, limits.max_extract_bytes)
    folder = str(PurePosixPath(member).parent)
    prefix = "images/" if folder == "." else f"{folder}/images/"
    images = sum(1 for n in names if n.startswith(prefix) and not n.endswith("/"))
    return _ZipLayout(member, "json" if member.endswith(".json") else "parquet", prefix if images else "", images)


def _check_no_clash(path: Path, names: list[str]) -> None:
    """A member that is a file and also the folder of other members cannot be unpacked: name both."""
    files = {n for n in names if not n.endswith("/")}
    for name in names:
        parts = name.rstrip("/").split("/")
        for k in range(1, len(parts)):
            folder = "/".join(parts[:k])
            if folder in files:
                raise ExportFormatError(f"{path}: ZIP member {folder!r} is a file and also the folder of "
                                        f"{name!r}; the archive cannot be unpacked")


def check_member(path: Path, info: zipfile.ZipInfo, limits: IngestLimits, budget: int) -> None:
    """Refuse a member larger than ``budget`` bytes or compressed more than ``max_compression_ratio``."""
    if info.file_size > budget:
        raise LimitExceededError(f"{path}: ZIP member {info.filename!r} unpacks to {info.file_size} bytes, over the "
                                 f"{limits.max_extract_bytes} bytes allowed (limit ingest_vl.limits.max_extract_bytes)")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > 2**20 and ratio > limits.max_compression_ratio:
        raise LimitExceededError(f"{path}: ZIP member {info.filename!r} unpacks to {ratio:.0f} times its compressed "
                                 f"size (a ZIP bomb?); the limit is {limits.max_compression_ratio:g} "
                                 "(ingest_vl.limits.max_compression_ratio)")


class _Bounded:
    """A member's stream that stops with an error past the bytes it declared (never trusting the header)."""

    def __init__(self, fh: IO[bytes], path: Path, info: zipfile.ZipInfo) -> None:
        self.fh, self.path, self.info, self.count = fh, path, info, 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.count += len(data)
        if self.count > self.info.file_size:
            raise LimitExceededError(f"{self.path}: ZIP member {self.info.filename!r} unpacks to more than the "
                                     f"{self.info.file_size} bytes it declares")
        return data

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def read_platform_zip(path: Path, *, progress: bool, limits: IngestLimits | None = None) -> Part:
    limits = limits or IngestLimits()
    layout = zip_layout(path, limits)
    display = f"{path}!{layout.member}"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(layout.member)
        if layout.flavour == "json":
            try:
                part = read_json_stream(lambda: _Bounded(zf.open(layout.member), path, info), display,
                                        info.file_size, source_format="platform_json", progress=progress,
                                        limits=limits)
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise ExportFormatError(f"{display}: cannot decompress ({err})") from err
        else:
            with scratch_dir("vl_zip_") as tmp:
                local = Path(tmp) / "metadata.parquet"
                try:
                    with _Bounded(zf.open(layout.member), path, info) as src, local.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 2**20)
                except (zipfile.BadZipFile, EOFError, OSError) as err:
                    raise ExportFormatError(f"{display}: cannot decompress ({err})") from err
                part = read_parquet_file(local, display=display, limits=limits)
    part.stats.update(format="platform_zip", member=layout.member, images=layout.images)
    if layout.images:
        part.images_zip = path
        part.images_zip_dir = layout.images_dir
    return part


def extract_images(export: VLExport, dest: str | Path, *, limits: IngestLimits | None = None) -> Path:
    """The folder of the export's images: ``images_dir``, or ``images_zip`` unpacked into ``dest``.

    Member names were checked when the ZIP was read; each target is checked again to stay in ``dest``.
    The images together may unpack to at most ``limits.max_extract_bytes``, each compressed at most
    ``max_compression_ratio`` times (checked before anything is written, and while copying).
    Raises :class:`ExportFormatError` when the export has no images.
    """
    limits = limits or IngestLimits()
    if export.images_dir is not None:
        return export.images_dir
    if export.images_zip is None:
        raise ExportFormatError("this export includes no images (no images/ folder)")
    dest = Path(dest)
    root = dest.resolve()
    prefix = export.images_zip_dir
    with zipfile.ZipFile(export.images_zip) as zf:
        members = [i for i in zf.infolist() if i.filename.startswith(prefix) and not i.is_dir()]
        budget = limits.max_extract_bytes
        for info in members:
            check_member(export.images_zip, info, limits, budget)
            budget -= info.file_size
        for info in members:
            rel = check_export_path(info.filename[len(prefix):], f"{export.images_zip}: ZIP member")
            target = (dest / rel).resolve()
            if root not in target.parents:
                raise UnsafePathError(f"{export.images_zip}: member {info.filename!r} would land outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with _Bounded(zf.open(info), export.images_zip, info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 2**20)
    return dest


def detect(probe: Probe) -> bool:
    zip_layout(probe.path, probe.limits)  # raises naming what is wrong with the archive
    return True


READER = Reader("platform_zip", ("zip",), {"zip": "metadata.json or metadata.parquet inside"}, detect,
                lambda probe, options: read_platform_zip(probe.path, progress=options.progress, limits=options.limits))
