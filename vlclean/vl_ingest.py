"""Read Visual Layer exports into two normalised tables, and match them to the dataset index.

Formats read (facts in ``../shared/VL_EXPORT_FORMAT.md``); :func:`detect_format` names them:

``platform_json``     ``metadata.json`` (``info`` + ``media_items``), or a folder holding one (an
                      unzipped platform export, ``images/`` beside it). Streamed with ijson.
``platform_zip``      the platform's ZIP holding ``metadata.json`` or ``metadata.parquet`` (at its
                      root or in one folder), optionally with ``images/``. JSON is streamed from
                      the archive; images are not extracted (see :func:`extract_images`).
``platform_parquet``  ``metadata.parquet``: ``image_filename`` and ``uniqueness_score`` are
                      documented; issues are read from ``metadata_items``, a list column of issue
                      structs, or flat ``issue_type``/``confidence`` columns (one row per media x
                      issue); every other column goes into ``extra``.
``vl_datasets_csv``   the published clean lists ``*_issue_file_list.csv`` (``filename, reason,
                      value, prototype``); a companion ``*_issue_count.csv`` is read for stats only.
``hub_enriched``      Hub parquet with ``image_uri``/``image_id``, ``image_label``/``label`` and a list
                      column ``image_issues``/``issues``.
``fastdup``           a fastdup output folder (``similarity.csv``, ``outliers.csv``,
                      ``atrain_features.dat.csv``, ``atrain_stats.csv``, ``atrain_features.bad.csv``,
                      ``connected_components.csv``).

Output: :class:`VLExport` with ``media`` (``schema.VL_MEDIA``, one row per media item) and ``issues``
(``schema.VL_ISSUES``, one row per media item x issue; every nested duplicate level is its own row).
Issue types are normalised with :data:`ISSUE_ALIASES`; ``normal`` means no issue (no row); unknown
types are kept lower-cased and counted in ``stats``. Fields the format notes do not name are kept
in the ``extra`` JSON columns. :func:`match_to_index` then fills ``image_id`` and ``match``.

Everything read is untrusted: a malformed export raises :class:`ExportFormatError` naming the
file, the item index or row and the field; a path with a ``..`` component or an absolute path
raises :class:`UnsafePathError`. Media items are never dropped silently.
"""

from __future__ import annotations

import array
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any

import ijson
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from vlclean import schema
from vlclean.errors import ExportFormatError, SchemaError, UnsafePathError

FORMATS: tuple[str, ...] = (
    "platform_json", "platform_zip", "platform_parquet", "vl_datasets_csv", "hub_enriched", "fastdup",
)  # fmt: skip
MATCH_KINDS: tuple[str, ...] = ("path", "name", "stem", "unmatched", "ambiguous", "no_index")

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

FASTDUP_FILES: tuple[str, ...] = (
    "similarity.csv", "outliers.csv", "atrain_features.dat.csv", "atrain_stats.csv",
    "atrain_features.bad.csv", "connected_components.csv", "component_info.csv",
)  # fmt: skip
PLATFORM_FILES: tuple[str, ...] = ("metadata.json", "metadata.parquet")

_CHUNK_ROWS = 50_000  # rows of Python tuples held before they become an arrow table
_EXACT_JSON_POSITION_MAX_BYTES = 16 * 2**20  # re-parse with json for a line/column up to this size
_EMPTY_EXTRA = "{}"
_NAN = float("nan")
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# Columns of the media / issue row tuples the readers build (the rest are constant per file).
_MEDIA_ROW = ("media_key", "file_name", "file_path", "label_name", "label_source", "uniqueness_score",
              "cluster_id", "user_tags", "extra")
_ISSUE_ROW = ("media_key", "issue_type", "raw_issue_type", "confidence", "group_id", "group_threshold",
              "related_file", "raw_value", "description", "extra")
# Low-cardinality string columns stored as categoricals (arrow dictionaries) to keep frames small.
_DICTIONARY_COLUMNS = {
    "media": ("match", "label_name", "label_source", "cluster_id", "source_format", "source_file"),
    "issues": ("issue_type", "raw_issue_type", "source"),
}


@dataclass(frozen=True)
class FastdupThresholds:
    """Threshold rules applied to ``atrain_stats.csv`` (fastdup's defaults; ``dark_below`` per VL's guides)."""

    blur_below: float = 150.0
    dark_below: float = 13.0
    bright_above: float = 253.0


@dataclass(frozen=True)
class VLExport:
    """One or several Visual Layer exports, normalised.

    ``media``   ``schema.VL_MEDIA`` columns, one row per media item; ``media_key`` unique.
    ``issues``  ``schema.VL_ISSUES`` columns, one row per media item x issue.
    ``images_dir``  folder of the exported images when the export includes them as files.
    ``images_zip`` / ``images_zip_dir``  the ZIP (and the member folder inside it) holding the
                exported images when they were not extracted; :func:`extract_images` unpacks them.
    ``stats``   counts per file and per format, issue type counts, unknown types, ``info`` blocks.
    ``match_details``  set by :func:`match_to_index`: why each unmatched / ambiguous item failed.
    """

    media: pd.DataFrame
    issues: pd.DataFrame
    images_dir: Path | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    images_zip: Path | None = None
    images_zip_dir: str = ""
    match_details: pd.DataFrame | None = None


@dataclass
class _Part:
    """What one reader returns for one input path."""

    media: pa.Table
    issues: pa.Table
    stats: dict[str, Any]
    images_dir: Path | None = None
    images_zip: Path | None = None
    images_zip_dir: str = ""
    key_hashes: array.array | None = None  # hash() of each media key, in row order


# -- small helpers ---------------------------------------------------------------------------------
def normalise_issue_type(raw: str) -> str | None:
    """The ISSUE_TYPES name of a raw issue type, the raw type lower-cased when unknown, None for ``normal``."""
    key = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    if key in ISSUE_ALIASES:
        return ISSUE_ALIASES[key]
    return raw.strip().lower()


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def check_export_path(value: str, where: str) -> str:
    """``value`` with ``\\`` as ``/``; refuse absolute paths, ``..`` components and NUL bytes.

    ``where`` names the file, item or row and field for the message.
    """
    if ".." not in value and "\\" not in value and "\x00" not in value and value[:1] != "/" and value[1:2] != ":":
        return value  # the common case, checked cheaply
    if "\x00" in value:
        raise UnsafePathError(f"{where}: {_short(value)} contains a NUL byte (paths from an export are untrusted)")
    path = value.replace("\\", "/")
    if path.startswith("/") or _WINDOWS_ABS.match(value):
        raise UnsafePathError(f"{where}: {_short(value)} is an absolute path (paths from an export are untrusted)")
    if ".." in path.split("/"):
        raise UnsafePathError(f"{where}: {_short(value)} has a '..' component (paths from an export are untrusted)")
    return path


def _unit(value: Any, where: str) -> float:
    """A score in [0, 1] (numbers or numeric strings); NaN when missing."""
    number = _number(value, where)
    if not (0.0 <= number <= 1.0 or math.isnan(number)):
        if -1e-9 <= number <= 1.0 + 1e-9:
            return min(max(number, 0.0), 1.0)
        raise ExportFormatError(f"{where}: {_short(value)} is outside [0, 1]")
    return number


def _number(value: Any, where: str) -> float:
    """A finite float (numbers or numeric strings); NaN when missing or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return _NAN
    if isinstance(value, bool) or not isinstance(value, (int, float, str, np.integer, np.floating)):
        raise ExportFormatError(f"{where}: expected a number, got {_kind(value)} {_short(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError) as err:
        raise ExportFormatError(f"{where}: {_short(value)} is not a number") from err
    if math.isinf(number) or (math.isnan(number) and isinstance(value, str)):
        raise ExportFormatError(f"{where}: {_short(value)} is not a finite number")
    return number


def _text(value: Any, where: str) -> str:
    """A string field: strings as they are, numbers as text, null as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return str(value)
    raise ExportFormatError(f"{where}: expected a string, got {_kind(value)} {_short(value)}")


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


def _jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of a parquet / CSV value (bytes summarised, NaN as null)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return str(value)


def _dumps(extra: dict[str, Any]) -> str:
    return _encode_json(extra) if extra else _EMPTY_EXTRA


def _uri_path(value: str, where: str) -> str:
    """The path part of a URI (``s3://bucket/a/b.jpg`` -> ``bucket/a/b.jpg``), else the checked path."""
    m = _URI.match(value)
    if m:
        rest = value[m.end():].split("?", 1)[0].split("#", 1)[0].lstrip("/")
        return check_export_path(rest, where)
    return check_export_path(value, where)


# -- row collection --------------------------------------------------------------------------------
class _Rows:
    """Row tuples gathered in chunks of ``_CHUNK_ROWS`` and turned into arrow tables (bounded memory).

    With ``hash_keys``, the ``hash()`` of each row's first field is kept (8 bytes a row) so that
    duplicate keys can be found without holding the keys as Python objects.
    """

    def __init__(self, names: Sequence[str], columns: Mapping[str, pa.DataType], *, hash_keys: bool = False) -> None:
        self.names = list(names)
        self.types = [_build_type(columns[n]) for n in names]
        self.rows: list[tuple] = []
        self.tables: list[pa.Table] = []
        self.count = 0
        self.hashes = array.array("q") if hash_keys else None

    def append(self, row: tuple) -> None:
        self.rows.append(row)
        if self.hashes is not None:
            self.hashes.append(hash(row[0]))
        if len(self.rows) >= _CHUNK_ROWS:
            self.flush()

    def __len__(self) -> int:
        return self.count + len(self.rows)

    def flush(self) -> None:
        if not self.rows:
            return
        cols = list(zip(*self.rows))
        self.tables.append(pa.table([pa.array(c, type=t) for c, t in zip(cols, self.types)], names=self.names))
        self.count += len(self.rows)
        self.rows = []

    def table(self) -> pa.Table:
        self.flush()
        if not self.tables:
            return pa.schema([pa.field(n, t) for n, t in zip(self.names, self.types)]).empty_table()
        table = pa.concat_tables(self.tables)
        self.tables = []
        return table


def _build_type(dtype: pa.DataType) -> pa.DataType:
    """Strings are built as ``large_string``: pandas' ``str`` dtype holds those, so no copy on conversion."""
    return pa.large_string() if dtype == pa.string() else dtype


def _constant(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.large_string()))


def _complete(table: pa.Table, columns: Mapping[str, pa.DataType], constants: Mapping[str, str], kind: str) -> pa.Table:
    """Add the constant columns, dictionary-encode the low-cardinality ones, order as the schema."""
    n = table.num_rows
    arrays = []
    for name in columns:
        if name in constants:
            value = constants[name]
            arrays.append(_constant(value, n) if name in _DICTIONARY_COLUMNS[kind]
                          else pa.repeat(pa.scalar(value, pa.large_string()), n))
        else:
            col = table.column(name)
            if name in _DICTIONARY_COLUMNS[kind]:
                col = col.dictionary_encode()
            arrays.append(col)
    return pa.table(arrays, names=list(columns))


class _Builder:
    """Collects media and issue rows of one export file, with its counters."""

    def __init__(self, source_format: str, source_file: str) -> None:
        self.source_format = source_format
        self.file = source_file
        self.media = _Rows(_MEDIA_ROW, schema.VL_MEDIA, hash_keys=True)
        self.issues = _Rows(_ISSUE_ROW, schema.VL_ISSUES)
        self.normal = 0
        self.other_metadata: Counter[str] = Counter()
        self._types: dict[str, str | None] = {}

    def issue_type(self, raw: Any, where: str) -> str | None:
        """Normalised type of a raw issue type (cached); None for ``normal``, which is counted."""
        if type(raw) is str:
            norm = self._types.get(raw, "?")
            if norm != "?":
                if norm is None:
                    self.normal += 1
                return norm
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ExportFormatError(f"{where}: issue type is missing or empty")
        if not isinstance(raw, str):
            raise ExportFormatError(f"{where}: issue type must be a string, got {_kind(raw)} {_short(raw)}")
        norm = normalise_issue_type(raw)
        self._types[raw] = norm
        if norm is None:
            self.normal += 1
        return norm

    def parts(self, **extra_stats: Any) -> _Part:
        media = self.media.table()
        issues = self.issues.table()
        consts = {"source_format": self.source_format, "source_file": self.file, "image_id": "", "match": "no_index"}
        media = _complete(media, schema.VL_MEDIA, consts, "media")
        issues = _complete(issues, schema.VL_ISSUES, {"image_id": "", "source": self.source_format}, "issues")
        counts: Counter[str] = Counter()
        if issues.num_rows:
            for entry in pc.value_counts(issues.column("issue_type").combine_chunks().dictionary_decode()).to_pylist():
                counts[entry["values"]] = entry["counts"]
        unknown = {t: c for t, c in counts.items() if t not in schema.ISSUE_TYPES}
        stats = {
            "path": self.file, "format": self.source_format, "media": media.num_rows, "issues": issues.num_rows,
            "issue_types": dict(sorted(counts.items())), "normal": self.normal,
            "unknown_issue_types": dict(sorted(unknown.items())),
        }
        if self.other_metadata:
            stats["other_metadata_types"] = dict(self.other_metadata)
        stats.update(extra_stats)
        return _Part(media, issues, stats, key_hashes=self.media.hashes)


def _check_unique_keys(part: _Part, where_of: Callable[[int], str]) -> None:
    """Duplicate media keys inside one export are an error naming both positions.

    Compares the 64-bit hashes gathered while reading; only rows whose hashes collide are looked at.
    """
    column = part.media.column("media_key")
    if part.key_hashes is not None and len(part.key_hashes) == part.media.num_rows:
        hashes = np.frombuffer(part.key_hashes, dtype=np.int64)
        order = np.argsort(hashes, kind="stable")
        same = hashes[order[1:]] == hashes[order[:-1]]
        if not same.any():
            return
        rows = np.unique(np.concatenate([order[1:][same], order[:-1][same]]))
        keys = pd.Series(column.take(pa.array(rows)).to_pylist(), index=rows)
    else:
        keys = column.to_pandas()
    dup = keys.duplicated(keep=False)
    if dup.any():
        first = keys[dup].iloc[0]
        pos = list(keys.index[keys == first][:3])
        raise ExportFormatError(
            f"{part.stats['path']}: media key {first!r} appears more than once "
            f"({', '.join(where_of(int(p)) for p in pos)}); media ids must be unique within one export"
        )


# -- platform items (JSON, and parquet rows shaped like them) ---------------------------------------
_MEDIA_HANDLED = frozenset({
    "media_id", "file_name", "file_path", "uniqueness_score", "cluster_id", "metadata_items", "media_type",
    "file_size", "height", "width", "media_status", "url", "insertion_time",
})  # fmt: skip
_ISSUE_HANDLED = frozenset({"issue_type", "confidence", "duplicate_group_id", "duplicate_threshold",
                            "issues_description", "description"})


class _PlatformItems(_Builder):
    """Turns platform ``media_items`` (dicts) into media and issue rows.

    Dropped on purpose: ``url`` (an expiring signed link) and ``insertion_time`` (platform bookkeeping);
    ``media_type`` / ``media_status`` only when they say the usual ``image`` / ``indexed``. Width,
    height and the file size in bytes go into ``extra`` (useful to verify a match).
    """

    def add(self, item: Any, where: str) -> None:
        if type(item) is not dict:
            raise ExportFormatError(f"{where}: expected a media item object, got {_kind(item)} {_short(item)}")
        name = item.get("file_name")
        if type(name) is not str or not name:
            if name is None or name == "":
                raise ExportFormatError(f"{where}.file_name: required field is missing or empty")
            raise ExportFormatError(f"{where}.file_name: expected a string, got {_kind(name)} {_short(name)}")
        name = check_export_path(name, f"{where}.file_name")
        path = item.get("file_path")
        if path is None or path == "":
            path = name
        elif type(path) is not str:
            raise ExportFormatError(f"{where}.file_path: expected a string, got {_kind(path)} {_short(path)}")
        else:
            path = check_export_path(path, f"{where}.file_path")
        key = item.get("media_id")
        if type(key) is not str or not key:
            key = path if key is None or key == "" else _text(key, f"{where}.media_id")
        uniq = item.get("uniqueness_score")
        if type(uniq) is not float or not 0.0 <= uniq <= 1.0:
            uniq = _unit(uniq, f"{where}.uniqueness_score")
        cluster = item.get("cluster_id")
        if type(cluster) is not str:
            cluster = _text(cluster, f"{where}.cluster_id")

        extra: dict[str, Any] = {}
        for k in item:
            if k not in _MEDIA_HANDLED:
                extra[k] = item[k]
        for k in ("width", "height"):
            if item.get(k) is not None:
                extra[k] = item[k]
        size = item.get("file_size")
        if size is not None:
            nbytes = parse_file_size(size)
            if nbytes is None:
                extra["file_size"] = size
            else:
                extra["file_size_bytes"] = nbytes
        if item.get("media_type") not in (None, "image"):
            extra["media_type"] = item["media_type"]
        if item.get("media_status") not in (None, "indexed"):
            extra["media_status"] = item["media_status"]

        label_name = label_source = tags = ""
        meta = item.get("metadata_items")
        if meta is not None:
            if type(meta) is not list:
                raise ExportFormatError(f"{where}.metadata_items: expected a list, got {_kind(meta)} {_short(meta)}")
            label_name, label_source, tags = self._metadata(key, meta, f"{where}.metadata_items", extra)
        self.media.append((key, name, path, label_name, label_source, uniq, cluster, tags, _dumps(extra)))

    def _metadata(self, key: str, meta: list, where: str, extra: dict[str, Any]) -> tuple[str, str, str]:
        labels: list[tuple[str, str, dict]] = []
        tags: list[str] = []
        for j, m in enumerate(meta):
            at = f"{where}[{j}]"
            if type(m) is not dict:
                raise ExportFormatError(f"{at}: expected an object, got {_kind(m)} {_short(m)}")
            mtype = m.get("type")
            props = m.get("properties")
            if props is None:
                props = {}
            elif type(props) is not dict:
                raise ExportFormatError(f"{at}.properties: expected an object, got {_kind(props)} {_short(props)}")
            if mtype == "issue":
                self.add_issue(key, props, f"{at}.properties")
            elif mtype == "image_label":
                labels.append((_text(props.get("category_name"), f"{at}.properties.category_name"),
                               _text(props.get("source"), f"{at}.properties.source"), props))
            elif mtype == "user_tag":
                tag = _text(props.get("tag_name"), f"{at}.properties.tag_name")
                if tag:
                    tags.append(tag)
            elif mtype == "object_label":
                self._object(key, m, props, j, at, extra)
            elif mtype == "caption":
                text = props.get("text", props.get("caption"))
                extra.setdefault("captions", []).append({"text": text, "source": props.get("source")})
            elif mtype == "video_info":
                extra["video_info"] = props
            else:
                self.other_metadata[str(mtype)] += 1
                extra.setdefault("other_metadata_items", []).append(m)
        if not labels:
            return "", "", ";".join(tags)
        chosen = next((lab for lab in labels if lab[1].lower() == "user"), labels[0])
        original = chosen[2].get("original_id")
        if original is not None:
            extra["label_original_id"] = original
        rest = {k: v for k, v in chosen[2].items() if k not in ("category_name", "source", "original_id")}
        if rest:
            extra["label_properties"] = rest
        if len(labels) > 1:
            extra["other_labels"] = [lab[2] for lab in labels if lab is not chosen]
        return chosen[0], chosen[1], ";".join(tags)

    def _object(self, key: str, m: dict, props: dict, j: int, at: str, extra: dict[str, Any]) -> None:
        obj = {k: v for k, v in props.items() if k != "metadata_items"}
        obj["index"] = j
        extra.setdefault("object_labels", []).append(obj)
        nested = props.get("metadata_items", m.get("metadata_items"))
        if nested is None:
            return
        if type(nested) is not list:
            raise ExportFormatError(f"{at}.metadata_items: expected a list, got {_kind(nested)} {_short(nested)}")
        note = {"object": {"index": j, "bbox": props.get("bbox"), "category_name": props.get("category_name")}}
        for k, sub in enumerate(nested):
            sat = f"{at}.metadata_items[{k}]"
            if type(sub) is not dict:
                raise ExportFormatError(f"{sat}: expected an object, got {_kind(sub)} {_short(sub)}")
            sprops = sub.get("properties") or {}
            if type(sprops) is not dict:
                raise ExportFormatError(f"{sat}.properties: expected an object, got {_kind(sprops)}")
            if sub.get("type") == "issue":
                self.add_issue(key, sprops, f"{sat}.properties", note)
            else:
                obj.setdefault("metadata_items", []).append(sub)

    def add_issue(self, key: str, props: dict, where: str, note: dict | None = None,
                  related: str = "", raw_value: float = _NAN) -> None:
        raw = props.get("issue_type")
        norm = self.issue_type(raw, f"{where}.issue_type")
        if norm is None:
            return
        conf = props.get("confidence")
        if type(conf) is not float or not 0.0 <= conf <= 1.0:
            conf = _unit(conf, f"{where}.confidence")
        gid = props.get("duplicate_group_id")
        if type(gid) is not str:
            gid = _text(gid, f"{where}.duplicate_group_id")
        thr = props.get("duplicate_threshold")
        if type(thr) is not float:
            thr = _number(thr, f"{where}.duplicate_threshold")
        desc = props.get("issues_description", props.get("description"))
        if type(desc) is not str:
            desc = _text(desc, f"{where}.issues_description")
        extra = {k: v for k, v in props.items() if k not in _ISSUE_HANDLED}
        if note:
            extra.update(note)
        self.issues.append((key, norm, raw, conf, gid, thr, related, raw_value, desc, _dumps(extra)))


# -- platform JSON ---------------------------------------------------------------------------------
def _ijson_backend() -> Any:
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError:  # pragma: no cover - the C backend ships in ijson's wheels
        return ijson


class _CountingReader:
    """A binary file wrapper counting bytes read (for error positions and the progress bar)."""

    def __init__(self, fh: IO[bytes], bar: tqdm | None = None) -> None:
        self.fh = fh
        self.pos = 0
        self.bar = bar

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.pos += len(data)
        if self.bar is not None:
            self.bar.update(len(data))
        return data


def _json_error(display: str, err: Exception, reader: _CountingReader, opener: Callable[[], IO[bytes]],
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


def _scan_top_level(reader: _CountingReader, display: str) -> tuple[Any, bool]:
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


def _read_platform_json(opener: Callable[[], IO[bytes]], display: str, size: int | None, *,
                        source_format: str, progress: bool) -> _Part:
    """Stream ``media_items.item`` with ijson; memory is bounded by the output tables."""
    backend = _ijson_backend()
    with opener() as fh:
        reader = _CountingReader(fh)
        try:
            info, found = _scan_top_level(reader, display)
        except ijson.JSONError as err:
            raise _json_error(display, err, reader, opener, size, None) from err
    if not found:
        raise ExportFormatError(f"{display}: no 'media_items' key at the top level "
                                "(keys looked for: info, media_items)")
    items = _PlatformItems(source_format, display)
    count = 0
    with opener() as fh, tqdm(total=size, unit="B", unit_scale=True, desc=f"read {Path(display).name}",
                              disable=not progress) as bar:
        reader = _CountingReader(fh, bar)
        stream = backend.items(reader, "media_items.item", use_float=True)
        while True:
            try:
                item = next(stream)
            except StopIteration:
                break
            except ijson.JSONError as err:
                raise _json_error(display, err, reader, opener, size, count - 1) from err
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
                info = next(backend.items(_CountingReader(fh), "info", use_float=True), None)
            except ijson.JSONError:
                info = None
    warnings = []
    if isinstance(info, dict) and isinstance(info.get("total_media_items"), int) and info["total_media_items"] != count:
        warnings.append(f"info.total_media_items says {info['total_media_items']}, media_items holds {count}")
    if info is None:
        warnings.append("no 'info' block")
    part = items.parts(info=info if isinstance(info, dict) else {"value": info}, warnings=warnings)
    _check_unique_keys(part, lambda i: f"media_items[{i}]")
    return part


# -- platform ZIP ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ZipLayout:
    member: str
    flavour: str  # json | parquet
    images_dir: str  # member folder of images ("" when none)
    images: int


def _zip_layout(path: Path) -> _ZipLayout:
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


def _read_platform_zip(path: Path, *, progress: bool, **_: Any) -> _Part:
    layout = _zip_layout(path)
    display = f"{path}!{layout.member}"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(layout.member)
        if layout.flavour == "json":
            try:
                part = _read_platform_json(lambda: zf.open(layout.member), display, info.file_size,
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
                part = _read_platform_parquet(local, display=display)
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


# -- platform parquet ------------------------------------------------------------------------------
_PQ_FILE = ("image_filename", "file_name", "filename")
_PQ_LABEL = ("category_name", "label_name", "image_label", "label")
_PQ_LABEL_SOURCE = ("label_source",)
_PQ_ISSUE_LISTS = ("metadata_items", "issues", "image_issues")
_PQ_FLAT_ISSUE = ("issue_type", "confidence", "duplicate_group_id", "duplicate_threshold",
                  "issues_description", "description")


def _open_parquet(path: Path, display: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ExportFormatError(f"{display}: not a readable parquet file ({err})") from err


def _iter_parquet_rows(pf: pq.ParquetFile, columns: list[str], display: str) -> Iterator[tuple[int, dict]]:
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=20_000, columns=columns):
            for rec in batch.to_pylist():
                yield row, rec
                row += 1
    except (pa.ArrowException, OSError) as err:
        raise ExportFormatError(f"{display}: cannot read row {row}: {err}") from err


def _readable_columns(sch: pa.Schema) -> tuple[list[str], list[str]]:
    """Column names worth reading, and the ones skipped (image bytes and other binary data)."""

    def has_binary(t: pa.DataType) -> bool:
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            return True
        if pa.types.is_struct(t):
            return any(has_binary(t.field(i).type) for i in range(t.num_fields))
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return has_binary(t.value_type)
        return False

    keep, skip = [], []
    for f in sch:
        (skip if has_binary(f.type) else keep).append(f.name)
    return keep, skip


def _issue_list(value: Any, where: str) -> list:
    """A list of issue dicts from a list, a single struct or a JSON string."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as err:
            raise ExportFormatError(f"{where}: not valid JSON ({err})") from err
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    raise ExportFormatError(f"{where}: expected a list of issues, got {_kind(value)} {_short(value)}")


def _json_object(text: str, where: str) -> dict:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ExportFormatError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ExportFormatError(f"{where}: expected a JSON object, got {_kind(value)}")
    return value


def _read_platform_parquet(path: Path, *, display: str | None = None, **_: Any) -> _Part:
    """``metadata.parquet``: rows reshaped into platform media items (see module doc)."""
    display = display or str(path)
    pf = _open_parquet(path, display)
    keep, skipped = _readable_columns(pf.schema_arrow)
    cols = {c.lower(): c for c in keep}
    file_col = next((cols[c] for c in _PQ_FILE if c in cols), None)
    if file_col is None:
        raise ExportFormatError(f"{display}: no file name column (looked for {', '.join(_PQ_FILE)}); "
                                f"columns: {pf.schema_arrow.names}")
    role = {"file_name": file_col}
    for name, options in (("label", _PQ_LABEL), ("label_source", _PQ_LABEL_SOURCE)):
        role[name] = next((cols[c] for c in options if c in cols and cols[c] != file_col), "")
    lists = [cols[c] for c in _PQ_ISSUE_LISTS if c in cols]
    flat = "issue_type" in cols
    known = {file_col, role["label"], role["label_source"], *lists,
             *(cols[c] for c in ("media_id", "file_path", "uniqueness_score", "cluster_id", "user_tags") if c in cols)}
    if flat:
        known |= {cols[c] for c in _PQ_FLAT_ISSUE if c in cols}
    items = _PlatformItems("platform_parquet", display)
    for row, rec in _iter_parquet_rows(pf, keep, display):
        where = f"{display}: row {row}"
        fname = rec[file_col]
        if not isinstance(fname, str) or not fname:
            raise ExportFormatError(f"{where}.{file_col}: required file name is missing or not a string "
                                    f"({_short(fname)})")
        fname = check_export_path(fname, f"{where}.{file_col}")
        item: dict[str, Any] = {
            "file_name": fname.rsplit("/", 1)[-1], "file_path": rec.get(cols.get("file_path", ""), None) or fname,
            "media_id": rec.get(cols.get("media_id", "")),
            "uniqueness_score": rec.get(cols.get("uniqueness_score", "")),
            "cluster_id": rec.get(cols.get("cluster_id", "")),
        }
        meta: list[Any] = []
        if role["label"] and rec[role["label"]] is not None:
            meta.append({"type": "image_label", "properties": {
                "category_name": rec[role["label"]],
                "source": rec[role["label_source"]] if role["label_source"] else "",
            }})
        tags = rec.get(cols.get("user_tags", ""))
        if isinstance(tags, str):
            tags = [t for t in tags.split(";") if t]
        elif tags is not None and not isinstance(tags, (list, tuple, np.ndarray)):
            raise ExportFormatError(f"{where}.{cols['user_tags']}: expected a ';'-joined string or a list, "
                                    f"got {_kind(tags)} {_short(tags)}")
        for t in tags or ():
            meta.append({"type": "user_tag", "properties": {"tag_name": _jsonable(t)}})
        for col in lists:
            for k, entry in enumerate(_issue_list(rec[col], f"{where}.{col}")):
                if isinstance(entry, dict) and col == cols.get("metadata_items") and "type" in entry:
                    props = entry.get("properties")
                    if isinstance(props, str):  # properties stored as a JSON string
                        props = _json_object(props, f"{where}.{col}[{k}].properties")
                    meta.append({**_jsonable(entry), "properties": _jsonable(props)})
                elif isinstance(entry, dict):
                    meta.append({"type": "issue", "properties": {k2: _jsonable(v) for k2, v in entry.items()
                                                                 if v is not None}})
                else:
                    raise ExportFormatError(f"{where}.{col}[{k}]: expected an object, got {_kind(entry)}")
        others = {c: _jsonable(v) for c, v in rec.items() if c not in known and v is not None}
        if flat and rec[cols["issue_type"]] not in (None, ""):
            props = {c: rec[cols[c]] for c in _PQ_FLAT_ISSUE if c in cols and rec[cols[c]] is not None}
            props.update(others)  # row-level columns stay with the row's issue too
            meta.append({"type": "issue", "properties": _jsonable(props)})
        item["metadata_items"] = meta
        for k, v in others.items():  # a column named like a handled field keeps its value under column_<name>
            item[k if k not in item and k not in _MEDIA_HANDLED else f"column_{k}"] = v
        items.add(item, where)
    if not len(items.media):
        raise ExportFormatError(f"{display}: empty export: no rows")
    part = items.parts(skipped_columns=skipped, layout="flat" if flat else "one row per media item")
    if flat:  # one row per media x issue: keep the first row of each media item
        part.media = _dedupe_first(part.media)
    else:
        _check_unique_keys(part, lambda i: f"row {i}")
    return part


def _dedupe_first(table: pa.Table) -> pa.Table:
    keys = table.column("media_key").to_pandas()
    first = np.flatnonzero(~keys.duplicated().to_numpy())
    return table.take(pa.array(first)) if len(first) < table.num_rows else table


# -- vl-datasets CSV -------------------------------------------------------------------------------
def _read_csv_text(path: Path, display: str | None = None) -> pd.DataFrame:
    """A CSV as strings (empty cells ""), columns stripped; unreadable files raise ExportFormatError."""
    display = display or str(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig",
                            skipinitialspace=True)
    except pd.errors.EmptyDataError as err:
        raise ExportFormatError(f"{display}: empty CSV file (no header)") from err
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as err:
        raise ExportFormatError(f"{display}: not a readable CSV file ({' '.join(str(err).split())})") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _csv_columns(frame: pd.DataFrame) -> dict[str, str]:
    return {c.lower(): c for c in frame.columns}


def _read_vl_datasets_csv(path: Path, **_: Any) -> _Part:
    """``*_issue_file_list.csv``: one media row per filename, one issue row per CSV row (see module doc)."""
    display = str(path)
    frame = _read_csv_text(path)
    cols = _csv_columns(frame)
    if {"reason", "count"} <= set(cols) and "filename" not in cols:
        return _read_vl_issue_counts(frame, display)
    missing = [c for c in ("filename", "reason") if c not in cols]
    if missing:
        raise ExportFormatError(f"{display}: missing column(s) {missing}; has {list(frame.columns)}")
    builder = _PlatformItems("vl_datasets_csv", display)
    seen: set[str] = set()
    known = {cols[c] for c in ("filename", "reason", "value", "prototype") if c in cols}
    others = [c for c in frame.columns if c not in known]
    value_col, proto_col = cols.get("value"), cols.get("prototype")
    for i, rec in enumerate(frame.to_dict("records")):
        where = f"{display}: line {i + 2}"
        fname = rec[cols["filename"]].strip()
        if not fname:
            raise ExportFormatError(f"{where}, field 'filename': empty")
        fname = check_export_path(fname, f"{where}, field 'filename'")
        if fname not in seen:
            seen.add(fname)
            builder.media.append((fname, fname.rsplit("/", 1)[-1], fname, "", "", _NAN, "", "", _EMPTY_EXTRA))
        reason = rec[cols["reason"]]
        norm = builder.issue_type(reason.strip() or None, f"{where}, field 'reason'")
        if norm is None:
            continue
        value = _number(rec[value_col].strip(), f"{where}, field 'value'") if value_col else _NAN
        proto = rec[proto_col].strip() if proto_col else ""
        if proto:
            proto = check_export_path(proto, f"{where}, field 'prototype'")
        extra = {c: rec[c] for c in others if rec[c] != ""}
        builder.issues.append((fname, norm, reason.strip(), _NAN, "", _NAN, proto, value, "", _dumps(extra)))
    if not seen:
        raise ExportFormatError(f"{display}: empty export: no rows")
    return builder.parts()


def _read_vl_issue_counts(frame: pd.DataFrame, display: str) -> _Part:
    """``*_issue_count.csv`` (``reason, count, pct, split``): stats only."""
    cols = _csv_columns(frame)
    counts = []
    for i, rec in enumerate(frame.to_dict("records")):
        where = f"{display}: line {i + 2}"
        count = _number(rec[cols["count"]], f"{where}, field 'count'")
        entry = {"reason": rec[cols["reason"]], "count": None if math.isnan(count) else int(count)}
        for c in ("pct", "split"):
            if c in cols:
                entry[c] = rec[cols[c]]
        counts.append(entry)
    return _Builder("vl_datasets_csv", display).parts(issue_count_file=True, issue_counts=counts)


# -- Hub enriched parquet --------------------------------------------------------------------------
_HUB_KEY = ("image_uri", "image_id")
_HUB_LABEL = ("image_label", "label")
_HUB_ISSUES = ("image_issues", "issues")


def _read_hub_enriched(path: Path, **_: Any) -> _Part:
    display = str(path)
    pf = _open_parquet(path, display)
    keep, skipped = _readable_columns(pf.schema_arrow)
    cols = {c.lower(): c for c in keep}
    key_col = next((cols[c] for c in _HUB_KEY if c in cols), None)
    issues_col = next((cols[c] for c in _HUB_ISSUES if c in cols), None)
    if key_col is None or issues_col is None:
        raise ExportFormatError(f"{display}: Hub enriched parquet needs {'|'.join(_HUB_KEY)} and "
                                f"{'|'.join(_HUB_ISSUES)} columns; has {pf.schema_arrow.names}")
    label_col = next((cols[c] for c in _HUB_LABEL if c in cols), None)
    known = {key_col, issues_col, label_col}
    items = _PlatformItems("hub_enriched", display)
    for row, rec in _iter_parquet_rows(pf, keep, display):
        where = f"{display}: row {row}"
        key = rec[key_col]
        if key is None or key == "":
            raise ExportFormatError(f"{where}.{key_col}: required field is missing or empty")
        key = _text(key, f"{where}.{key_col}")
        fpath = _uri_path(key, f"{where}.{key_col}")
        label = _text(rec[label_col], f"{where}.{label_col}") if label_col else ""
        extra = {c: _jsonable(v) for c, v in rec.items() if c not in known and v is not None}
        items.media.append((key, fpath.rsplit("/", 1)[-1], fpath, label, "", _NAN, "", "", _dumps(extra)))
        for k, entry in enumerate(_issue_list(rec[issues_col], f"{where}.{issues_col}")):
            if not isinstance(entry, dict):
                raise ExportFormatError(f"{where}.{issues_col}[{k}]: expected an object, got {_kind(entry)}")
            props = {k2: _jsonable(v) for k2, v in entry.items() if v is not None}
            items.add_issue(key, props, f"{where}.{issues_col}[{k}]")
    if not len(items.media):
        raise ExportFormatError(f"{display}: empty export: no rows")
    part = items.parts(skipped_columns=skipped)
    _check_unique_keys(part, lambda i: f"row {i}")
    return part


# -- fastdup folder --------------------------------------------------------------------------------
class _FastdupFiles:
    """Index -> file name map and path normalisation of one fastdup folder.

    fastdup records the paths it was given, often absolute: when they are, the common folder of
    all of them is taken off (recorded in stats as ``root``) so that they become relative paths.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_index: dict[str, str] = {}
        self.order: list[str] = []
        self.root = ""  # the common folder taken off absolute paths, with its trailing "/"
        self._rel: dict[str, str] = {}

    @staticmethod
    def columns(frame: pd.DataFrame, display: str, options: dict[str, tuple[str, ...]],
                required: Sequence[str]) -> dict[str, str]:
        cols = _csv_columns(frame)
        found = {role: next((cols[o] for o in opts if o in cols), "") for role, opts in options.items()}
        missing = [f"{'|'.join(options[r])}" for r in required if not found[r]]
        if missing:
            raise ExportFormatError(f"{display}: missing column(s) {missing}; has {list(frame.columns)}")
        return found

    def set_root(self, raw_paths: Iterable[str]) -> None:
        absolute = [p.replace("\\", "/") for p in raw_paths if p.startswith(("/", "\\")) or _WINDOWS_ABS.match(p)]
        if absolute:  # the common prefix of the smallest and largest strings is that of all of them
            common = os.path.commonprefix([min(absolute), max(absolute)])
            self.root = common[: common.rfind("/") + 1]

    def rel(self, raw: str, where: str) -> str:
        """The relative path of a file name from the folder's CSVs (checked)."""
        hit = self._rel.get(raw)
        if hit is not None:
            return hit
        path = raw.replace("\\", "/")
        if self.root and path.startswith(self.root):
            path = path[len(self.root):]
        while path.startswith("./"):
            path = path[2:]
        if not path:
            raise ExportFormatError(f"{where}: empty file name")
        path = check_export_path(path, where)
        self._rel[raw] = path
        return path

    def resolve(self, value: str, where: str) -> str:
        """A ``from``/``to`` value: an index (mapped through atrain_features.dat.csv) or a file path."""
        value = value.strip()
        if value.isdigit() and self.by_index:
            name = self.by_index.get(str(int(value)))
            if name is None:
                raise ExportFormatError(f"{where}: index {value} is not in atrain_features.dat.csv / atrain_stats.csv")
            return name
        if value.isdigit():
            raise ExportFormatError(f"{where}: index {value} given, but the folder has no atrain_features.dat.csv "
                                    "to map indices to file names")
        return self.rel(value, where)


_FD_ID = ("index", "fastdup_id", "__id")
_FD_NAME = ("filename", "img_filename")


def _read_fastdup(folder: Path, *, fastdup_thresholds: FastdupThresholds | None = None, **_: Any) -> _Part:
    """A fastdup output folder: duplicates, outliers, quality rules and bad files (see module doc)."""
    thresholds = fastdup_thresholds or FastdupThresholds()
    files = _FastdupFiles(folder)
    frames: dict[str, pd.DataFrame] = {}
    for name in FASTDUP_FILES:
        p = folder / name
        if p.is_file():
            frames[name] = _read_csv_text(p)
    if not frames:
        raise ExportFormatError(f"{folder}: no fastdup files (looked for {', '.join(FASTDUP_FILES)})")

    # file names: collect every raw path first to find a common absolute root
    maps = []
    for name in ("atrain_features.dat.csv", "atrain_stats.csv", "atrain_features.bad.csv"):
        if name in frames:
            display = str(folder / name)
            c = files.columns(frames[name], display, {"id": _FD_ID, "name": _FD_NAME}, ["name"])
            maps.append((name, display, c))
    raw_paths = [v for name, _, c in maps for v in frames[name][c["name"]]]
    for name in ("similarity.csv", "outliers.csv"):
        if name in frames and not maps:
            frame = frames[name]
            raw_paths += [v for col in frame.columns[:2] for v in frame[col] if not v.strip().isdigit()]
    files.set_root(raw_paths)

    builder = _PlatformItems("fastdup", str(folder))
    media: dict[str, dict[str, Any]] = {}  # rel path -> extra

    def add_media(rel: str, extra: dict[str, Any] | None = None) -> None:
        if rel not in media:
            media[rel] = {}
        if extra:
            media[rel].update(extra)

    for name, display, c in maps:
        frame = frames[name]
        others = [col for col in frame.columns if col not in (c["id"], c["name"])]
        for i, rec in enumerate(frame.to_dict("records")):
            where = f"{display}: line {i + 2}, field '{c['name']}'"
            rel = files.rel(rec[c["name"]], where)
            if c["id"]:
                idx = rec[c["id"]].strip()
                if idx:
                    if not idx.isdigit():
                        raise ExportFormatError(f"{display}: line {i + 2}, field '{c['id']}': {idx!r} is not an index")
                    files.by_index[str(int(idx))] = rel
            extra = {"fastdup_index": int(rec[c["id"]])} if c["id"] and rec[c["id"]].strip() else {}
            if name == "atrain_stats.csv":
                extra.update({col: _maybe_number(rec[col]) for col in others if rec[col] != ""})
            add_media(rel, extra)

    issues: list[tuple[str, tuple]] = []  # (media key, issue row without the key)
    if "atrain_stats.csv" in frames:
        issues += _fastdup_quality(frames["atrain_stats.csv"], str(folder / "atrain_stats.csv"), files, thresholds)
    if "atrain_features.bad.csv" in frames:
        display = str(folder / "atrain_features.bad.csv")
        frame = frames["atrain_features.bad.csv"]
        c = files.columns(frame, display, {"name": _FD_NAME, "error": ("error_code", "error")}, ["name"])
        for i, rec in enumerate(frame.to_dict("records")):
            rel = files.rel(rec[c["name"]], f"{display}: line {i + 2}, field '{c['name']}'")
            code = rec[c["error"]] if c["error"] else ""
            issues.append((rel, ("invalid", "bad", 1.0, "", _NAN, "", _NAN, code, _EMPTY_EXTRA)))

    components = _fastdup_components(frames, folder, files)
    if "similarity.csv" in frames:
        issues += _fastdup_pairs(frames["similarity.csv"], str(folder / "similarity.csv"), files, components)
    if "outliers.csv" in frames:
        issues += _fastdup_outliers(frames["outliers.csv"], str(folder / "outliers.csv"), files)
    for rel, _ in issues:
        add_media(rel)

    if not media:
        raise ExportFormatError(f"{folder}: empty export: the fastdup files name no images")
    for rel, extra in media.items():
        builder.media.append((rel, rel.rsplit("/", 1)[-1], rel, "", "", _NAN, "", "", _dumps(extra)))
    for rel, row in issues:
        builder.issues.append((rel, *row))
    return builder.parts(root=files.root, files=sorted(frames), thresholds=vars(thresholds))


def _maybe_number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _fastdup_quality(frame: pd.DataFrame, display: str, files: _FastdupFiles,
                     t: FastdupThresholds) -> list[tuple[str, tuple]]:
    c = _FastdupFiles.columns(frame, display, {"name": _FD_NAME, "blur": ("blur",), "mean": ("mean",)}, ["name"])
    out = []
    for i, rec in enumerate(frame.to_dict("records")):
        line = f"{display}: line {i + 2}"
        rel = files.rel(rec[c["name"]], f"{line}, field '{c['name']}'")
        blur = _number(rec[c["blur"]], f"{line}, field 'blur'") if c["blur"] else _NAN
        mean = _number(rec[c["mean"]], f"{line}, field 'mean'") if c["mean"] else _NAN
        if mean < t.dark_below:
            note = _dumps({"rule": f"mean < {t.dark_below:g}"})
            conf = min(1.0, 0.5 + 0.5 * (t.dark_below - mean) / max(t.dark_below, 1e-9))
            out.append((rel, ("dark", "dark", conf, "", _NAN, "", mean, "", note)))
        if mean > t.bright_above:
            note = _dumps({"rule": f"mean > {t.bright_above:g}"})
            conf = min(1.0, 0.5 + 0.5 * (mean - t.bright_above) / max(255.0 - t.bright_above, 1e-9))
            out.append((rel, ("bright", "bright", conf, "", _NAN, "", mean, "", note)))
        if blur < t.blur_below:
            note = _dumps({"rule": f"blur < {t.blur_below:g}"})
            conf = min(1.0, 0.5 + 0.5 * (t.blur_below - blur) / max(t.blur_below, 1e-9))
            out.append((rel, ("blur", "blur", conf, "", _NAN, "", blur, "", note)))
    return out


def _fastdup_components(frames: dict[str, pd.DataFrame], folder: Path, files: _FastdupFiles) -> dict[str, str]:
    """rel path -> component id from connected_components.csv (empty when absent)."""
    if "connected_components.csv" not in frames:
        return {}
    frame = frames["connected_components.csv"]
    display = str(folder / "connected_components.csv")
    c = _FastdupFiles.columns(frame, display, {"id": ("__id", "index", "fastdup_id"), "name": _FD_NAME,
                                               "component": ("component_id",)}, ["component"])
    if not c["id"] and not c["name"]:
        raise ExportFormatError(f"{display}: needs an id (__id|index) or a filename column; has {list(frame.columns)}")
    out = {}
    for i, rec in enumerate(frame.to_dict("records")):
        where = f"{display}: line {i + 2}"
        if c["name"] and rec[c["name"]]:
            rel = files.rel(rec[c["name"]], f"{where}, field '{c['name']}'")
        else:
            rel = files.resolve(rec[c["id"]], f"{where}, field '{c['id']}'")
        out[rel] = rec[c["component"]].strip()
    return out


def _fastdup_pairs(frame: pd.DataFrame, display: str, files: _FastdupFiles,
                   components: dict[str, str]) -> list[tuple[str, tuple]]:
    """Duplicate rows for both sides of each pair (best similarity per unordered pair)."""
    c = _FastdupFiles.columns(frame, display, {"from": ("from",), "to": ("to",), "distance": ("distance",)},
                              ["from", "to", "distance"])
    best: dict[tuple[str, str], float] = {}
    for i, rec in enumerate(frame.to_dict("records")):
        where = f"{display}: line {i + 2}"
        a = files.resolve(rec[c["from"]], f"{where}, field 'from'")
        b = files.resolve(rec[c["to"]], f"{where}, field 'to'")
        sim = _number(rec[c["distance"]], f"{where}, field 'distance'")
        if math.isnan(sim):
            raise ExportFormatError(f"{where}, field 'distance': empty")
        if a == b:
            continue
        pair = (a, b) if a < b else (b, a)
        if sim > best.get(pair, -math.inf):
            best[pair] = sim
    out = []
    for (a, b), sim in best.items():
        conf = min(max(sim, 0.0), 1.0)
        out.append((a, ("duplicate", "similarity", conf, components.get(a, ""), _NAN, b, sim, "", _EMPTY_EXTRA)))
        out.append((b, ("duplicate", "similarity", conf, components.get(b, ""), _NAN, a, sim, "", _EMPTY_EXTRA)))
    return out


def _fastdup_outliers(frame: pd.DataFrame, display: str, files: _FastdupFiles) -> list[tuple[str, tuple]]:
    """One outlier row per ``from``: its nearest neighbour's similarity (the highest listed)."""
    c = _FastdupFiles.columns(frame, display, {"from": ("from",), "to": ("to",), "distance": ("distance",)},
                              ["from", "distance"])
    best: dict[str, tuple[float, str]] = {}
    for i, rec in enumerate(frame.to_dict("records")):
        where = f"{display}: line {i + 2}"
        a = files.resolve(rec[c["from"]], f"{where}, field 'from'")
        b = files.resolve(rec[c["to"]], f"{where}, field 'to'") if c["to"] and rec[c["to"]].strip() else ""
        dist = _number(rec[c["distance"]], f"{where}, field 'distance'")
        if math.isnan(dist):
            raise ExportFormatError(f"{where}, field 'distance': empty")
        if a not in best or dist > best[a][0]:
            best[a] = (dist, b)
    return [(a, ("outlier", "outliers", min(max(1.0 - d, 0.0), 1.0), "", _NAN, b, d, "", _EMPTY_EXTRA))
            for a, (d, b) in best.items()]


# -- detection -------------------------------------------------------------------------------------
def _platform_in_dir(folder: Path) -> Path | None:
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


def _detect_dir(folder: Path) -> str:
    meta = _platform_in_dir(folder)
    if meta is not None:
        return "platform_json" if meta.suffix == ".json" else "platform_parquet"
    if any((folder / name).is_file() for name in FASTDUP_FILES):
        return "fastdup"
    raise ExportFormatError(f"{folder}: folder is not a Visual Layer export: looked for metadata.json, "
                            "metadata.parquet (here or in one subfolder) or fastdup files "
                            f"({', '.join(FASTDUP_FILES)})")


def _detect_json(path: Path) -> str:
    if path.name == "metadata.json":
        return "platform_json"
    with path.open("rb") as fh:
        reader = _CountingReader(fh)
        try:
            _, found = _scan_top_level(reader, str(path))
        except ijson.JSONError as err:
            raise _json_error(str(path), err, reader, lambda: path.open("rb"), path.stat().st_size, None) from err
    if not found:
        raise ExportFormatError(f"{path}: JSON is not a Visual Layer export: looked for a top-level object with "
                                "'info' and 'media_items'")
    return "platform_json"


def _detect_parquet(path: Path) -> str:
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ExportFormatError(f"{path}: not a readable parquet file ({err})") from err
    lower = {n.lower() for n in names}
    if "image_filename" in lower or path.name == "metadata.parquet":
        return "platform_parquet"
    if lower & set(_HUB_KEY) and lower & set(_HUB_ISSUES):
        return "hub_enriched"
    if lower & set(_PQ_FILE):
        return "platform_parquet"
    raise ExportFormatError(f"{path}: parquet is not a Visual Layer export: looked for image_filename "
                            f"(platform) or {'|'.join(_HUB_KEY)} + {'|'.join(_HUB_ISSUES)} (Hub enriched); "
                            f"columns: {names}")


def _detect_csv(path: Path, head: bytes) -> str:
    first = head.decode("utf-8-sig", "replace").splitlines()[0] if head else ""
    cols = {c.strip().strip('"').lower() for c in first.split(",")}
    if {"filename", "reason"} <= cols or {"reason", "count"} <= cols:
        return "vl_datasets_csv"
    if path.name in FASTDUP_FILES:
        raise ExportFormatError(f"{path}: a fastdup file: pass its folder ({path.parent}) instead")
    raise ExportFormatError(f"{path}: CSV is not a Visual Layer export: looked for columns filename, reason "
                            f"(vl-datasets issue list) or reason, count (issue counts); header: {first[:200]!r}")


def detect_format(path: str | Path) -> str:
    """Which export ``path`` is: one of :data:`FORMATS` (see module doc).

    Looks at names and content (ZIP / parquet magic, JSON top level, CSV header, folder listing).
    Raises :class:`ExportFormatError` naming the path and what was looked for when it is none of them.
    """
    path = Path(path)
    if path.is_dir():
        return _detect_dir(path)
    if not path.is_file():
        raise ExportFormatError(f"{path}: no such file or folder")
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as err:
        raise ExportFormatError(f"{path}: cannot be read ({err})") from err
    suffix = path.suffix.lower()
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06" or suffix == ".zip":
        _zip_layout(path)
        return "platform_zip"
    if head[:4] == b"PAR1" or suffix in (".parquet", ".pq"):
        return _detect_parquet(path)
    if suffix == ".json" or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return _detect_json(path)
    if suffix in (".csv", ".txt") or (head and b"\x00" not in head and b"," in head.split(b"\n", 1)[0]):
        return _detect_csv(path, head)
    raise ExportFormatError(f"{path}: not a Visual Layer export: looked for a ZIP, metadata.json / JSON with "
                            "info+media_items, parquet (platform or Hub enriched), a vl-datasets CSV or a fastdup "
                            "folder")


# -- reading ---------------------------------------------------------------------------------------
def _platform_file(path: Path) -> Path:
    file = _platform_in_dir(path) if path.is_dir() else path
    if file is None:
        raise ExportFormatError(f"{path}: metadata.json / metadata.parquet disappeared while reading")
    return file


def _read_one(path: Path, fmt: str, *, progress: bool, fastdup_thresholds: FastdupThresholds | None) -> _Part:
    if fmt == "platform_json":
        file = _platform_file(path)
        part = _read_platform_json(lambda: file.open("rb"), str(file), file.stat().st_size,
                                   source_format="platform_json", progress=progress)
        images = file.parent / "images"
        part.images_dir = images if images.is_dir() else None
        return part
    if fmt == "platform_parquet":
        file = _platform_file(path)
        part = _read_platform_parquet(file)
        images = file.parent / "images"
        part.images_dir = images if images.is_dir() else None
        return part
    if fmt == "platform_zip":
        return _read_platform_zip(path, progress=progress)
    if fmt == "vl_datasets_csv":
        return _read_vl_datasets_csv(path)
    if fmt == "hub_enriched":
        return _read_hub_enriched(path)
    return _read_fastdup(path, fastdup_thresholds=fastdup_thresholds)


def read_export(
    path_or_paths: str | Path | Sequence[str | Path],
    *,
    progress: bool = False,
    fastdup_thresholds: FastdupThresholds | None = None,
) -> VLExport:
    """Read one or several exports (any of :data:`FORMATS`) into one :class:`VLExport`.

    ``image_id`` is "" and ``match`` is ``no_index`` until :func:`match_to_index`. Several paths
    are concatenated; a media key found in two files is kept once when its media row is the same
    in both (its issues are merged, exact repeats dropped), and is an error when the rows differ.
    Duplicate media keys inside one export are an error. ``progress`` shows a byte progress bar
    for JSON. ``fastdup_thresholds`` overrides the blur / dark / bright rules of fastdup folders.

    Raises :class:`ExportFormatError` (unreadable, malformed or empty export, naming file, item or
    row, and field) or :class:`UnsafePathError` (absolute or ``..`` paths inside the export).
    """
    paths = [Path(path_or_paths)] if isinstance(path_or_paths, (str, os.PathLike)) else [Path(p) for p in path_or_paths]
    if not paths:
        raise ExportFormatError("no export path given")
    parts = []
    for path in paths:
        fmt = detect_format(path)
        parts.append(_read_one(path, fmt, progress=progress, fastdup_thresholds=fastdup_thresholds))
    media = pa.concat_tables([p.media for p in parts]) if len(parts) > 1 else parts[0].media
    issues = pa.concat_tables([p.issues for p in parts]) if len(parts) > 1 else parts[0].issues
    if media.num_rows == 0:
        raise ExportFormatError(f"{', '.join(map(str, paths))}: no media items (issue count files hold none)")
    media_df = media.to_pandas()
    issues_df = issues.to_pandas()
    merged = 0
    if len(parts) > 1:
        media_df, issues_df, merged = _merge_repeats(media_df, issues_df)
    stats = _summary(parts, issues_df, merged)
    images_dir = next((p.images_dir for p in parts if p.images_dir is not None), None)
    zipped = next((p for p in parts if p.images_zip is not None), None)
    images_zip, images_zip_dir = (zipped.images_zip, zipped.images_zip_dir) if zipped else (None, "")
    del parts, media, issues, zipped  # the frames share the arrow buffers they need
    pa.default_memory_pool().release_unused()
    return VLExport(media=media_df, issues=issues_df, images_dir=images_dir, stats=stats, images_zip=images_zip,
                    images_zip_dir=images_zip_dir)


_MEDIA_CONTENT = ("media_key", "file_name", "file_path", "label_name", "label_source", "uniqueness_score",
                  "cluster_id", "user_tags")


def _merge_repeats(media: pd.DataFrame, issues: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Keep one row per media key found in several files when the rows agree; else raise."""
    dup = media["media_key"].duplicated(keep=False)
    if not dup.any():
        return media, issues, 0
    rows = media.loc[dup, list(_MEDIA_CONTENT) + ["source_file"]]  # file_path is in _MEDIA_CONTENT
    content = rows[list(_MEDIA_CONTENT)].astype(object).where(rows[list(_MEDIA_CONTENT)].notna(), None)
    distinct = content.drop_duplicates()
    clash = distinct["media_key"].duplicated(keep=False)
    if clash.any():
        key = distinct.loc[clash, "media_key"].iloc[0]
        files = sorted(set(rows.loc[rows["media_key"] == key, "source_file"].astype(str)))
        diff = [c for c in _MEDIA_CONTENT if content.loc[rows["media_key"] == key, c].nunique(dropna=False) > 1]
        where = rows.loc[rows["media_key"] == key, "file_path"].iloc[0]
        raise ExportFormatError(f"media key {key!r} (file {where!r}) appears in {' and '.join(files)} with "
                                f"different {diff}; "
                                "an item can be merged across files only when it is the same")
    keep = ~media["media_key"].duplicated(keep="first")
    media = media.loc[keep].reset_index(drop=True)
    repeated = issues["media_key"].isin(set(rows["media_key"]))
    content_cols = [c for c in issues.columns if c != "source"]
    dropped = repeated & issues[content_cols].astype(object).duplicated(keep="first")
    issues = issues.loc[~dropped].reset_index(drop=True)
    return media, issues, int((~keep).sum())


def _summary(parts: list[_Part], issues: pd.DataFrame, merged: int) -> dict[str, Any]:
    formats: dict[str, dict[str, int]] = {}
    for p in parts:
        f = formats.setdefault(p.stats["format"], {"files": 0, "media": 0, "issues": 0})
        f["files"] += 1
        f["media"] += p.stats["media"]
        f["issues"] += p.stats["issues"]
    counts = issues["issue_type"].astype(str).value_counts()
    return {
        "files": [p.stats for p in parts],
        "formats": formats,
        "media": int(sum(p.stats["media"] for p in parts) - merged),
        "issues": len(issues),
        "merged_media": merged,
        "issue_types": {str(k): int(v) for k, v in sorted(counts.items())},
        "unknown_issue_types": {str(k): int(v) for k, v in sorted(counts.items()) if k not in schema.ISSUE_TYPES},
        "normal": int(sum(p.stats["normal"] for p in parts)),
    }


# -- matching to the dataset index -----------------------------------------------------------------
# Vectorised on arrow strings: each level looks every exported key up among the index's keys of that
# level (hash lookups in C++), so 1.33M items match in seconds without millions of Python strings.
_NULL_TEXT = pa.scalar(None, pa.large_string())
_SLASH = pa.scalar("/", pa.large_string())


def _text_array(values: Any) -> pa.Array:
    """A large_string array of ``values`` (a Series or a sequence), missing values as ""."""
    if isinstance(values, pd.Series):
        try:  # arrow-backed strings and categoricals convert without Python objects
            arr = pa.array(values.array) if values.dtype != object else pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array(values.astype(str).array)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        arr = pc.cast(arr, pa.large_string())
    else:
        arr = pa.array(["" if v is None else str(v) for v in values], type=pa.large_string())
    return pc.fill_null(arr, "")


def _last_component(paths: pa.Array) -> pa.Array:
    paths = pc.replace_substring(paths, "\\", "/")
    if not pc.any(pc.match_substring(paths, "/")).as_py():
        return paths
    return pc.replace_substring_regex(paths, r"^.*/", "")


def _stem(names: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(names, r"^(.+)\.[^.]*$", r"\1")


def _strip_prefixes(paths: pa.Array, prefixes: Sequence[str], dirs: frozenset[str]) -> pa.Array:
    """Take off the first matching explicit prefix, then leading components that are not a split or
    class folder of the index (``imagenet1k/``, ``bucket/data/``), keeping at least the file name."""
    if pc.any(pc.match_substring(paths, "\\")).as_py():
        paths = pc.replace_substring(paths, "\\", "/")
    if pc.any(pc.starts_with(paths, "./")).as_py():
        paths = pc.replace_substring_regex(paths, r"^(\./)+", "")
    done = None
    for prefix in prefixes:
        hit = pc.starts_with(paths, prefix + "/")
        if done is not None:
            hit = pc.and_(hit, pc.invert(done))
        paths = pc.if_else(hit, pc.utf8_slice_codeunits(paths, len(prefix) + 1), paths)
        done = hit if done is None else pc.or_(done, hit)
    dir_set = pa.array(sorted(dirs), pa.large_string())
    while True:
        head = pc.replace_substring_regex(paths, r"(?s)/.*$", "")
        strip = pc.and_(pc.match_substring(paths, "/"), pc.invert(pc.is_in(head, value_set=dir_set)))
        if not pc.any(strip).as_py():
            return paths
        paths = pc.if_else(strip, pc.replace_substring_regex(paths, r"(?s)^[^/]*/", ""), paths)


class _IndexKeys:
    """The index's keys per matching level, built on first use (most exports need two or three levels)."""

    def __init__(self, index: pd.DataFrame) -> None:
        missing = [c for c in ("image_id", "file_name", "split") if c not in index.columns]
        if missing:
            raise SchemaError(f"table 'index' lacks column(s) {missing} needed to match an export; "
                              f"has {list(index.columns)}")
        self.image_ids = _text_array(index["image_id"])
        names = _last_component(_text_array(index["file_name"]))
        split = _text_array(index["split"])
        dirs = set(pc.unique(split).to_pylist())
        makers: list[tuple[str, str, Callable[[], pa.Array]]] = []
        cls = None
        if "class_id" in index.columns:
            cls = _text_array(index["class_id"])
            dirs |= set(pc.unique(cls).to_pylist())
            makers.append(("path", "<split>/<class>/<file>",
                           lambda: pc.binary_join_element_wise(split, cls, names, _SLASH)))
        if "source" in index.columns:  # ImageFolder sources: the original relative path (val/n01/x.JPEG)
            src = pc.replace_substring(_text_array(index["source"]), "\\", "/")
            is_rel = pc.and_(pc.match_substring(src, "/"), pc.invert(pc.match_substring(src, ":")))
            rel = pc.if_else(is_rel, src, "")
            folders = pc.unique(pc.replace_substring_regex(pc.filter(rel, is_rel), r"/[^/]*$", "")).to_pylist()
            dirs |= {part for folder in folders for part in folder.split("/")}
            makers.append(("path", "source path", lambda: rel))
        if cls is not None:
            makers.append(("path", "<class>/<file>", lambda: pc.binary_join_element_wise(cls, names, _SLASH)))
        makers.append(("path", "<split>/<file>", lambda: pc.binary_join_element_wise(split, names, _SLASH)))
        makers.append(("name", "file name", lambda: names))
        makers.append(("stem", "file stem", lambda: _stem(names)))
        makers.append(("stem", "image id", lambda: self.image_ids))
        dirs.discard("")
        self.dirs = frozenset(dirs)  # split and class folder names: never taken off as a dataset prefix
        self.levels = [(kind, what) for kind, what, _ in makers]
        self._makers = [m for _, _, m in makers]
        self._keys: dict[int, pa.Array] = {}

    def keys(self, level: int) -> pa.Array:
        if level not in self._keys:
            self._keys[level] = self._makers[level]()
        return self._keys[level]


def _lookup(query: pa.Array, keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the first index row holding it (-1 when none) and how many index rows hold it."""
    encoded = pc.if_else(pc.equal(keys, ""), _NULL_TEXT, keys).dictionary_encode()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.flatnonzero(codes >= 0)
    counts = np.bincount(codes[rows], minlength=len(encoded.dictionary))
    first = np.full(len(encoded.dictionary), -1, dtype=np.int64)
    first[codes[rows[::-1]]] = rows[::-1]  # the last write wins: the first row of each key
    where = pc.fill_null(pc.index_in(query, value_set=encoded.dictionary, skip_nulls=True), -1)
    where = where.to_numpy(zero_copy_only=False).astype(np.int64)
    found = where >= 0
    safe = np.where(found, where, 0)
    if not len(first):  # the level has no keys at all
        return np.full(len(where), -1, dtype=np.int64), np.zeros(len(where), dtype=np.int64)
    return np.where(found, first[safe], -1), np.where(found, counts[safe], 0)


def _candidates(keys: pa.Array, ids: pa.Array, wanted: list[str]) -> dict[str, list[str]]:
    """A few image ids for each ambiguous key."""
    rows = pc.filter(pa.table({"k": keys, "id": ids}), pc.is_in(keys, value_set=pa.array(wanted, pa.large_string())))
    out: dict[str, list[str]] = {}
    for k, i in zip(rows.column("k").to_pylist(), rows.column("id").to_pylist()):
        out.setdefault(k, []).append(i)
    return {k: v[:3] + (["..."] if len(v) > 3 else []) for k, v in out.items()}


def match_paths(
    paths: Sequence[str] | pd.Series,
    index: pd.DataFrame,
    *,
    names: Sequence[str] | pd.Series | None = None,
    dataset_prefixes: Sequence[str] = (),
) -> pd.DataFrame:
    """Match exported paths to index image ids: columns ``image_id, match, key, reason`` (rows as ``paths``).

    ``names`` are the exported base names ("" or None: the path's last component). Order: the path
    after prefix stripping (``<split>/<class>/<file>``, the ImageFolder source path, ``<class>/<file>``,
    ``<split>/<file>``), then the file name, then the stem (of the file name, or the image id). A key
    held by several index images makes the item ``ambiguous`` (the search stops there). Also usable
    for ``related_file`` values.
    """
    keys = _IndexKeys(index)
    prefixes = sorted({p.strip("/") for p in dataset_prefixes if p.strip("/")}, key=len, reverse=True)
    rel = _strip_prefixes(_text_array(paths), prefixes, keys.dirs)
    base = _last_component(rel)
    if names is not None:
        given = _last_component(_text_array(names))
        base = pc.if_else(pc.equal(given, ""), base, given)
    query = {"path": lambda: pc.if_else(pc.match_substring(rel, "/"), rel, _NULL_TEXT), "name": lambda: base,
             "stem": lambda: _stem(base)}
    queries: dict[str, pa.Array] = {}
    n = len(rel)
    row = np.full(n, -1, dtype=np.int64)
    level_of = np.full(n, -1, dtype=np.int64)
    ambiguous = np.zeros(n, dtype=bool)
    open_rows = np.ones(n, dtype=bool)
    for li, (kind, _) in enumerate(keys.levels):
        todo = np.flatnonzero(open_rows)
        if not len(todo):
            break
        if kind not in queries:
            queries[kind] = query[kind]()
        q = queries[kind] if len(todo) == n else pc.take(queries[kind], pa.array(todo))
        if q.null_count == len(q):
            continue
        first, count = _lookup(q, keys.keys(li))
        hit, amb = todo[count == 1], todo[count > 1]
        row[hit] = first[count == 1]
        level_of[hit] = li
        level_of[amb] = li
        ambiguous[amb] = True
        open_rows[hit] = False
        open_rows[amb] = False
    kinds = np.array([k for k, _ in keys.levels] + ["unmatched"], dtype=object)
    match = kinds[np.where(level_of >= 0, level_of, len(keys.levels))]
    match[ambiguous] = "ambiguous"
    matched = row >= 0
    image_id = pc.if_else(pa.array(matched), pc.take(keys.image_ids, pa.array(np.where(matched, row, 0))), "")
    key = np.full(n, "", dtype=object)
    reason = np.full(n, "", dtype=object)
    failed = np.flatnonzero(~matched)
    if len(failed):
        take = pa.array(failed)
        rel_f = pc.take(rel, take).to_pylist()
        base_f = pc.take(base, take).to_pylist()
        stem_f = pc.take(_stem(base), take).to_pylist()
        for li, (kind, what) in enumerate(keys.levels):
            at = np.flatnonzero(ambiguous[failed] & (level_of[failed] == li))
            if not len(at):
                continue
            source = {"path": rel_f, "name": base_f, "stem": stem_f}[kind]
            cands = _candidates(keys.keys(li), keys.image_ids, sorted({source[i] for i in at}))
            for i in at:
                k = source[i]
                key[failed[i]] = k
                reason[failed[i]] = f"{what} {k!r} matches several index images: {', '.join(cands.get(k, []))}"
        for i, r in enumerate(failed):
            if not ambiguous[r]:
                key[r] = rel_f[i]
                reason[r] = f"no index image has path {rel_f[i]!r}, name {base_f[i]!r} or stem {stem_f[i]!r}"
    return pd.DataFrame({"image_id": image_id.to_pandas(), "match": pd.Categorical(match, categories=list(MATCH_KINDS)),
                         "key": key, "reason": reason})


def match_to_index(export: VLExport, index: pd.DataFrame, *, dataset_prefixes: Sequence[str] = ()) -> VLExport:
    """Fill ``image_id`` and ``match`` (path | name | stem | unmatched | ambiguous) of media and issues.

    ``index`` has the ``schema.INDEX`` columns ``image_id, file_name, split`` (``class_id`` and
    ``source`` used when present). Dataset prefixes are stripped first: the given ones, then leading
    path components that are not a split or class folder of the index (``imagenet1k/...``).
    Nothing is dropped: unmatched and ambiguous items keep ``image_id`` "" (see :func:`match_report`).
    Returns a new VLExport; ``stats['match']`` counts the kinds.
    """
    media = export.media
    result = match_paths(media["file_path"], index, names=media["file_name"], dataset_prefixes=dataset_prefixes)
    new_media = media.copy()
    new_media["image_id"] = result["image_id"].to_numpy()
    new_media["match"] = result["match"].array
    issues = export.issues.copy()
    media_keys = pa.array(media["media_key"].array)
    at = pc.index_in(pa.array(issues["media_key"].array), value_set=media_keys)
    issue_ids = pc.fill_null(pc.take(pa.array(result["image_id"].array), at), "")
    issues["image_id"] = pd.Series(issue_ids.to_pandas(), index=issues.index) if len(issues) else issues["image_id"]
    failed = result["match"].isin(["unmatched", "ambiguous"]).to_numpy()
    details = pd.DataFrame({
        "media_key": media["media_key"].to_numpy()[failed],
        "file_name": media["file_name"].to_numpy()[failed],
        "file_path": media["file_path"].to_numpy()[failed],
        "source_file": media["source_file"].astype(str).to_numpy()[failed],
        "match": result["match"].to_numpy()[failed],
        "key": result["key"].to_numpy()[failed],
        "reason": result["reason"].to_numpy()[failed],
    })
    counts = {k: int(v) for k, v in result["match"].value_counts().items()}
    stats = {**export.stats, "match": {k: counts.get(k, 0) for k in MATCH_KINDS if k != "no_index"}}
    pa.default_memory_pool().release_unused()
    return replace(export, media=new_media, issues=issues, stats=stats, match_details=details)


def match_report(export: VLExport) -> pd.DataFrame:
    """Media items that did not match one index image: ``media_key, file_name, file_path, source_file,
    match, key, reason`` (empty when all matched; every item when :func:`match_to_index` was not run)."""
    if export.match_details is not None:
        return export.match_details.copy()
    media = export.media
    return pd.DataFrame({
        "media_key": media["media_key"].to_numpy(), "file_name": media["file_name"].to_numpy(),
        "file_path": media["file_path"].to_numpy(), "source_file": media["source_file"].astype(str).to_numpy(),
        "match": media["match"].astype(str).to_numpy(), "key": media["file_path"].to_numpy(),
        "reason": "not matched to an index yet (call match_to_index)",
    })
