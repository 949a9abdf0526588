"""Checks shared by every reader: untrusted paths, scores, numbers, strings, sizes, issue types.

Everything an export holds is untrusted: each helper takes ``where`` (file, item or row, field) and
raises :class:`~vlclean.errors.ExportFormatError` (or :class:`~vlclean.errors.UnsafePathError` for
paths) naming it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from vlclean.errors import ExportFormatError, UnsafePathError

# Raw issue type (lower-cased, spaces and hyphens as underscores) -> ISSUE_TYPES; None: no issue.
ISSUE_ALIASES: dict[str, str | None] = {
    "duplicates": "duplicate", "duplicate": "duplicate", "duplicated": "duplicate",
    "outliers": "outlier", "outlier": "outlier",
    "mislabels": "mislabel", "mislabel": "mislabel", "mislabeled": "mislabel", "mislabelled": "mislabel",
    "label_outlier": "label_outlier", "label_outliers": "label_outlier",
    "blur": "blur", "blurry": "blur", "blurred": "blur",
    "dark": "dark", "bright": "bright",
    "leakage": "leakage", "leak": "leakage", "leaks": "leakage", "leaked": "leakage",
    "invalid": "invalid", "corrupt": "invalid", "corrupted": "invalid",
    "normal": None,
}  # fmt: skip
EMPTY_EXTRA = "{}"
NAN = float("nan")
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# -- small helpers ---------------------------------------------------------------------------------
def normalise_issue_type(raw: str) -> str | None:
    """The ISSUE_TYPES name of a raw issue type, the raw type lower-cased when unknown, None for ``normal``."""
    key = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    if key in ISSUE_ALIASES:
        return ISSUE_ALIASES[key]
    return raw.strip().lower()


def kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def check_export_path(value: str, where: str) -> str:
    """``value`` with ``\\`` as ``/``; refuse absolute paths, ``..`` components and NUL bytes.

    ``where`` names the file, item or row and field for the message.
    """
    if ".." not in value and "\\" not in value and "\x00" not in value and value[:1] != "/" and value[1:2] != ":":
        return value  # the common case, checked cheaply
    if "\x00" in value:
        raise UnsafePathError(f"{where}: {shorten(value)} contains a NUL byte (paths from an export are untrusted)")
    path = value.replace("\\", "/")
    if path.startswith("/") or WINDOWS_ABS.match(value):
        raise UnsafePathError(f"{where}: {shorten(value)} is an absolute path (paths from an export are untrusted)")
    if ".." in path.split("/"):
        raise UnsafePathError(f"{where}: {shorten(value)} has a '..' component (paths from an export are untrusted)")
    return path


def as_unit(value: Any, where: str) -> float:
    """A score in [0, 1] (numbers or numeric strings); NaN when missing."""
    number = as_number(value, where)
    if not (0.0 <= number <= 1.0 or math.isnan(number)):
        if -1e-9 <= number <= 1.0 + 1e-9:
            return min(max(number, 0.0), 1.0)
        raise ExportFormatError(f"{where}: {shorten(value)} is outside [0, 1]")
    return number


def as_number(value: Any, where: str) -> float:
    """A finite float (numbers or numeric strings); NaN when missing or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return NAN
    if isinstance(value, bool) or not isinstance(value, (int, float, str, np.integer, np.floating)):
        raise ExportFormatError(f"{where}: expected a number, got {kind_of(value)} {shorten(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError) as err:
        raise ExportFormatError(f"{where}: {shorten(value)} is not a number") from err
    if math.isinf(number) or (math.isnan(number) and isinstance(value, str)):
        raise ExportFormatError(f"{where}: {shorten(value)} is not a finite number")
    return number


def as_text(value: Any, where: str) -> str:
    """A string field: strings as they are, numbers as text, null as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return str(value)
    raise ExportFormatError(f"{where}: expected a string, got {kind_of(value)} {shorten(value)}")


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?i?b|bytes?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_file_size(value: Any) -> int | None:
    """Bytes of a size like ``"185.09KB"`` / ``"1.2 MB"`` / ``1234`` (binary units, like VL's); None if unreadable."""
    if type(value) is str and value.endswith("KB"):  # the common case: "185.09KB"
        try:
            nbytes = int(round(float(value[:-2]) * 1024))
            if nbytes >= 0:
                return nbytes
        except (ValueError, OverflowError):  # "nanKB", "infKB", "-KB": the full parser below decides
            pass
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return int(value)
    if not isinstance(value, str):
        return None
    m = _SIZE.match(value)
    if not m:
        return None
    unit = (m.group(2) or "").lower()
    unit = unit if unit.startswith("byte") else unit[:1] if unit != "b" else "b"
    return int(round(float(m.group(1)) * _SIZE_UNITS.get(unit, 1)))


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of a parquet / CSV value (bytes summarised, NaN as null)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return str(value)


def dumps_extra(extra: dict[str, Any]) -> str:
    return _encode_json(extra) if extra else EMPTY_EXTRA


def uri_path(value: str, where: str) -> str:
    """The path part of a URI (``s3://bucket/a/b.jpg`` -> ``bucket/a/b.jpg``), else the checked path."""
    m = _URI.match(value)
    if m:
        rest = value[m.end():].split("?", 1)[0].split("#", 1)[0].lstrip("/")
        return check_export_path(rest, where)
    return check_export_path(value, where)
