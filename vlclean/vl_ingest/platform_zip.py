"""The platform's ZIP: ``metadata.json`` or ``metadata.parquet`` at its root or in one folder, optionally ``images/``.

JSON is streamed from the archive; parquet is copied to a temporary file first (parquet needs seeking).
Images are not extracted while reading (:func:`extract_images` unpacks them on demand).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vlclean.errors import ExportFormatError, UnsafePathError
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


def zip_layout(path: Path) -> _ZipLayout:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise ExportFormatError(f"{path}: not a readable ZIP archive ({err})") from err
    names = [i.filename for i in infos]
    for n in names:
        check_export_path(n, f"{path}: ZIP member")
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
    folder = str(PurePosixPath(member).parent)
    prefix = "images/" if folder == "." else f"{folder}/images/"
    images = sum(1 for n in names if n.startswith(prefix) and not n.endswith("/"))
    return _ZipLayout(member, "json" if member.endswith(".json") else "parquet", prefix if images else "", images)


def read_platform_zip(path: Path, *, progress: bool) -> Part:
    layout = zip_layout(path)
    display = f"{path}!{layout.member}"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(layout.member)
        if layout.flavour == "json":
            try:
                part = read_json_stream(lambda: zf.open(layout.member), display, info.file_size,
                                           source_format="platform_json", progress=progress)
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise ExportFormatError(f"{display}: cannot decompress ({err})") from err
        else:
            with tempfile.TemporaryDirectory(prefix="vl_zip_") as tmp:
                local = Path(tmp) / "metadata.parquet"
                try:
                    with zf.open(layout.member) as src, local.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 2**20)
                except (zipfile.BadZipFile, EOFError, OSError) as err:
                    raise ExportFormatError(f"{display}: cannot decompress ({err})") from err
                part = read_parquet_file(local, display=display)
    part.stats.update(format="platform_zip", member=layout.member, images=layout.images)
    if layout.images:
        part.images_zip = path
        part.images_zip_dir = layout.images_dir
    return part


def extract_images(export: VLExport, dest: str | Path) -> Path:
    """The folder of the export's images: ``images_dir``, or ``images_zip`` unpacked into ``dest``.

    Member names were checked when the ZIP was read; each target is checked again to stay in ``dest``.
    Raises :class:`ExportFormatError` when the export has no images.
    """
    if export.images_dir is not None:
        return export.images_dir
    if export.images_zip is None:
        raise ExportFormatError("this export includes no images (no images/ folder)")
    dest = Path(dest)
    root = dest.resolve()
    prefix = export.images_zip_dir
    with zipfile.ZipFile(export.images_zip) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            rel = check_export_path(info.filename[len(prefix):], f"{export.images_zip}: ZIP member")
            target = (dest / rel).resolve()
            if root not in target.parents:
                raise UnsafePathError(f"{export.images_zip}: member {info.filename!r} would land outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return dest


def detect(probe: Probe) -> bool:
    zip_layout(probe.path)  # raises naming what is wrong with the archive
    return True


READER = Reader("platform_zip", ("zip",), {"zip": "metadata.json or metadata.parquet inside"}, detect,
                lambda probe, options: read_platform_zip(probe.path, progress=options.progress))
