"""Platform ``metadata.json`` (``info`` + ``media_items``), or a folder holding one; also our own analyze export.

Our ``analyze`` stage writes exactly this format (``vlclean/vl_export.py``, schema 1.1, ``info.exported_by:
vlclean.analyze``), so it is read here rather than by a reader of its own. Streamed with ijson: memory is
bounded by the output tables; an ``images/`` folder beside the file is recorded as ``images_dir``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import ijson
from tqdm import tqdm

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.items import PlatformItems
from vlclean.vl_ingest.limits import IngestLimits, JsonGuard, LimitExceededError
from vlclean.vl_ingest.model import Part, ReadOptions, Reader
from vlclean.vl_ingest.probe import Probe, platform_file
from vlclean.vl_ingest.rows import check_unique_keys

_EXACT_JSON_POSITION_MAX_BYTES = 16 * 2**20  # re-parse with json for a line/column up to this size
_READ_BYTES = 2**20  # bytes handed to the parser at a time (each checked by JsonGuard first)
def _ijson_backend() -> Any:
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:  # pragma: no cover - the C backend ships in ijson's wheels
        return ijson


def json_error(display: str, err: Exception, reader: JsonGuard, opener: Callable[[], IO[bytes]],
                size: int | None, after: int | None) -> ExportFormatError:
    """An ExportFormatError for invalid JSON, with a line/column when the file is small enough."""
    message = err.args[0] if err.args else str(err)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    message = " ".join(str(message).split())
    where = f"near byte {reader.pos}"
    if size is not None and size <= _EXACT_JSON_POSITION_MAX_BYTES:
        try:
            with opener() as fh:
                json.loads(fh.read())
        except json.JSONDecodeError as exact:
            where = f"line {exact.lineno} column {exact.colno} (char {exact.pos}): {exact.msg}"
        except UnicodeDecodeError as exact:
            where = f"byte {exact.start}: not UTF-8"
        except (ValueError, RecursionError):
            pass
    context = f" (after media_items[{after}])" if after is not None and after >= 0 else ""
    return ExportFormatError(f"{display}: invalid JSON at {where}{context}; parser: {message}")


def scan_top_level(reader: JsonGuard, display: str) -> tuple[Any, bool]:
    """Read the top level up to ``media_items``: ``(info or None, media_items found)``.

    Checks that the document is an object and that ``media_items`` is a list; ``info`` is built
    when it comes before ``media_items`` (it does in VL's exports).
    """
    events = _ijson_backend().parse(reader, use_float=True)
    first = next(events, None)
    if first is None:
        raise ExportFormatError(f"{display}: empty JSON document")
    if first[1] != "start_map":
        raise ExportFormatError(
            f"{display}: top level is {_kind_of_event(first[1])}, expected an object with 'info' and 'media_items'")
    info = None
    for prefix, event, value in events:
        if prefix != "" or event != "map_key":
            continue
        if value == "media_items":
            _, start, _ = next(events, ("", "end of document", None))
            if start != "start_array":
                raise ExportFormatError(f"{display}: 'media_items' is {_kind_of_event(start)}, expected a list")
            return info, True
        if value == "info":
            builder = ijson.ObjectBuilder()
            depth = 0
            for _, ev, val in events:
                builder.event(ev, val)
                depth += ev in ("start_map", "start_array")
                depth -= ev in ("end_map", "end_array")
                if depth == 0:
                    break
            info = builder.value
    return info, False


def _kind_of_event(event: str) -> str:
    return {"start_map": "an object", "start_array": "a list", "string": "a string", "number": "a number",
            "boolean": "a boolean", "null": "null"}.get(event, event)


def read_json_stream(opener: Callable[[], IO[bytes]], display: str, size: int | None, *,
                     source_format: str, progress: bool, limits: IngestLimits) -> Part:
    """Stream ``media_items.item`` with ijson, every byte checked by :class:`JsonGuard` against ``limits``
    first; memory is bounded by the output tables and one media item."""
    backend = _ijson_backend()
    with opener() as fh:
        reader = JsonGuard(fh, display, limits)
        try:
            info, found = scan_top_level(reader, display)
        except ijson.JSONError as err:
            raise json_error(display, err, reader, opener, size, None) from err
    if not found:
        raise ExportFormatError(f"{display}: no 'media_items' key at the top level "
                                "(keys looked for: info, media_items)")
    items = PlatformItems(source_format, display)
    count = 0
    with opener() as fh, tqdm(total=size, unit="B", unit_scale=True, desc=f"read {Path(display).name}",
                              disable=not progress) as bar:
        reader = JsonGuard(fh, display, limits, on_read=bar.update)
        stream = backend.items(reader, "media_items.item", use_float=True, buf_size=_READ_BYTES)
        while True:
            try:
                item = next(stream)
            except StopIteration:
                break
            except ijson.JSONError as err:
                raise json_error(display, err, reader, opener, size, count - 1) from err
            if count >= limits.max_items:
                raise LimitExceededError(f"{display}: media_items[{count}]: more than {limits.max_items} media "
                                         "items (limit ingest_vl.limits.max_items)")
            try:
                items.add(item, f"{display}: media_items[{count}]")
            except RecursionError as err:
                raise ExportFormatError(f"{display}: media_items[{count}] is nested too deeply") from err
            count += 1
    if count == 0:
        raise ExportFormatError(f"{display}: empty export: 'media_items' holds no media items")
    if info is None:  # info after media_items (or absent): one more pass, skipping in C
        with opener() as fh:
            try:
                info = next(backend.items(JsonGuard(fh, display, limits), "info", use_float=True,
                                          buf_size=_READ_BYTES), None)
            except ijson.JSONError:
                info = None
    warnings = []
    if isinstance(info, dict) and isinstance(info.get("total_media_items"), int) and info["total_media_items"] != count:
        warnings.append(f"info.total_media_items says {info['total_media_items']}, media_items holds {count}")
    if info is None:
        warnings.append("no 'info' block")
    part = items.parts(info=info if isinstance(info, dict) else {"value": info}, warnings=warnings)
    check_unique_keys(part, lambda i: f"media_items[{i}]")
    return part


def detect(probe: Probe) -> bool:
    if probe.kind == "dir":
        return probe.platform_file is not None and probe.platform_file.suffix == ".json"
    if probe.path.name == "metadata.json":
        return True
    path = probe.path
    with path.open("rb") as fh:
        reader = JsonGuard(fh, str(path), probe.limits)
        try:
            _, found = scan_top_level(reader, str(path))
        except ijson.JSONError as err:
            raise json_error(str(path), err, reader, lambda: path.open("rb"), path.stat().st_size, None) from err
    return found


def read(probe: Probe, options: ReadOptions) -> Part:
    file = platform_file(probe)
    part = read_json_stream(lambda: file.open("rb"), str(file), file.stat().st_size,
                            source_format="platform_json", progress=options.progress, limits=options.limits)
    images = file.parent / "images"
    part.images_dir = images if images.is_dir() else None
    return part


READER = Reader("platform_json", ("dir", "json"),
                {"dir": "metadata.json (here or in one subfolder)",
                 "json": "a top-level object with 'info' and 'media_items'"}, detect, read)
