"""Row collection shared by the readers: row tuples -> arrow tables in bounded chunks, with counters."""

from __future__ import annotations

import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vlclean import schema
from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.model import Part
from vlclean.vl_ingest.validate import kind_of, normalise_issue_type, shorten

_CHUNK_ROWS = 50_000  # rows of Python tuples held before they become an arrow table
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

# -- row collection --------------------------------------------------------------------------------
class Rows:
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


class Builder:
    """Collects media and issue rows of one export file, with its counters."""

    def __init__(self, source_format: str, source_file: str) -> None:
        self.source_format = source_format
        self.file = source_file
        self.media = Rows(_MEDIA_ROW, schema.VL_MEDIA, hash_keys=True)
        self.issues = Rows(_ISSUE_ROW, schema.VL_ISSUES)
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
            raise ExportFormatError(f"{where}: issue type must be a string, got {kind_of(raw)} {shorten(raw)}")
        norm = normalise_issue_type(raw)
        self._types[raw] = norm
        if norm is None:
            self.normal += 1
        return norm

    def parts(self, **extra_stats: Any) -> Part:
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
        return Part(media, issues, stats, key_hashes=self.media.hashes)


def check_unique_keys(part: Part, where_of: Callable[[int], str]) -> None:
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


