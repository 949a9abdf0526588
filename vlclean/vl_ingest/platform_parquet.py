"""``metadata.parquet`` (a file, or in a folder): rows reshaped into platform media items.

``image_filename`` and ``uniqueness_score`` are documented; issues are read from ``metadata_items``, a
list column of issue structs, or flat ``issue_type``/``confidence`` columns (one row per media x
issue); every other column goes into ``extra``. Binary columns (image bytes) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.items import MEDIA_HANDLED, PlatformItems
from vlclean.vl_ingest.limits import IngestLimits, LimitExceededError
from vlclean.vl_ingest.model import Part, ReadOptions, Reader
from vlclean.vl_ingest.probe import Probe, platform_file
from vlclean.vl_ingest.rows import check_unique_keys
from vlclean.vl_ingest.validate import check_export_path, jsonable, kind_of, shorten

_PQ_FILE = ("image_filename", "file_name", "filename")
_PQ_LABEL = ("category_name", "label_name", "image_label", "label")
_PQ_LABEL_SOURCE = ("label_source",)
_PQ_ISSUE_LISTS = ("metadata_items", "issues", "image_issues")
_PQ_FLAT_ISSUE = ("issue_type", "confidence", "duplicate_group_id", "duplicate_threshold",
                  "issues_description", "description")


def open_parquet(path: Path, display: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ExportFormatError(f"{display}: not a readable parquet file ({err})") from err


def iter_parquet_rows(pf: pq.ParquetFile, columns: list[str], display: str,
                      limits: IngestLimits) -> Iterator[tuple[int, dict]]:
    """Rows as dicts, batch by batch; refuses more than ``max_items`` rows and string values longer than
    ``max_string_bytes``, top-level or nested in lists, structs and maps (checked per batch in arrow, before
    the rows become Python objects)."""
    if pf.metadata.num_rows > limits.max_items:
        raise LimitExceededError(f"{display}: {pf.metadata.num_rows} rows, more than {limits.max_items} "
                                 "(limit ingest_vl.limits.max_items)")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=20_000, columns=columns):
            check_string_lengths(batch, display, row, limits.max_string_bytes)
            for rec in batch.to_pylist():
                yield row, rec
                row += 1
    except (pa.ArrowException, OSError) as err:
        raise ExportFormatError(f"{display}: cannot read row {row}: {err}") from err


def check_string_lengths(batch: pa.RecordBatch, display: str, first_row: int, limit: int) -> None:
    """Refuse a string longer than ``limit`` bytes anywhere in ``batch``, naming the row and the column path
    (``caption``, ``metadata_items[].description``, ``tags{}.value``). Vectorised: arrow computes the
    lengths of each (flattened) string array; Python only walks the column types."""
    for name, column in zip(batch.schema.names, batch.columns):
        found = _over_limit(column, limit, name)
        if found is not None:
            size, at, path = found
            raise LimitExceededError(f"{display}: row {first_row + at}.{path}: a string of {size} bytes, longer "
                                     f"than {limit} (limit ingest_vl.limits.max_string_bytes)")


_LISTS = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list, pa.types.is_list_view,
          pa.types.is_large_list_view)


def _over_limit(array: pa.Array, limit: int, path: str) -> tuple[int, int, str] | None:
    """``(bytes, position in array, path)`` of the longest string over ``limit`` inside ``array`` (in the
    first part of its type that has one), or None."""
    t = array.type
    if not len(array):
        return None
    if pa.types.is_string_view(t):
        array, t = array.cast(pa.large_string()), pa.large_string()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _longest(pc.binary_length(array), limit, path)
    if pa.types.is_dictionary(t):
        values = t.value_type
        if not (pa.types.is_string(values) or pa.types.is_large_string(values)):
            return None
        return _longest(pc.take(pc.binary_length(array.dictionary), array.indices), limit, path)
    if pa.types.is_map(t):
        entries = pa.list_(pa.struct([t.key_field, t.item_field]))
        return _in_list(array.cast(entries), limit, path + "{}")
    if any(is_list(t) for is_list in _LISTS):
        return _in_list(array, limit, path + "[]")
    if pa.types.is_struct(t):
        for i, child in enumerate(array.flatten()):  # children with the struct's own nulls and offset applied
            found = _over_limit(child, limit, f"{path}.{t.field(i).name}")
            if found is not None:
                return found
    return None


def _in_list(array: pa.Array, limit: int, path: str) -> tuple[int, int, str] | None:
    found = _over_limit(array.flatten(), limit, path)
    if found is None:
        return None
    size, k, where = found
    return size, pc.list_parent_indices(array)[k].as_py(), where


def _longest(lengths: pa.Array, limit: int, path: str) -> tuple[int, int, str] | None:
    longest = pc.max(lengths).as_py()
    if longest is None or longest <= limit:
        return None
    return longest, pc.index(lengths, longest).as_py(), path


def readable_columns(sch: pa.Schema) -> tuple[list[str], list[str]]:
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


def issue_list(value: Any, where: str) -> list:
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
    raise ExportFormatError(f"{where}: expected a list of issues, got {kind_of(value)} {shorten(value)}")


def _json_object(text: str, where: str) -> dict:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ExportFormatError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ExportFormatError(f"{where}: expected a JSON object, got {kind_of(value)}")
    return value


def read_parquet_file(path: Path, *, display: str | None = None, limits: IngestLimits | None = None) -> Part:
    """``metadata.parquet``: rows reshaped into platform media items (see module doc)."""
    display = display or str(path)
    pf = open_parquet(path, display)
    keep, skipped = readable_columns(pf.schema_arrow)
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
    items = PlatformItems("platform_parquet", display)
    for row, rec in iter_parquet_rows(pf, keep, display, limits or IngestLimits()):
        where = f"{display}: row {row}"
        fname = rec[file_col]
        if not isinstance(fname, str) or not fname:
            raise ExportFormatError(f"{where}.{file_col}: required file name is missing or not a string "
                                    f"({shorten(fname)})")
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
                                    f"got {kind_of(tags)} {shorten(tags)}")
        for t in tags or ():
            meta.append({"type": "user_tag", "properties": {"tag_name": jsonable(t)}})
        for col in lists:
            for k, entry in enumerate(issue_list(rec[col], f"{where}.{col}")):
                if isinstance(entry, dict) and col == cols.get("metadata_items") and "type" in entry:
                    props = entry.get("properties")
                    if isinstance(props, str):  # properties stored as a JSON string
                        props = _json_object(props, f"{where}.{col}[{k}].properties")
                    meta.append({**jsonable(entry), "properties": jsonable(props)})
                elif isinstance(entry, dict):
                    meta.append({"type": "issue", "properties": {k2: jsonable(v) for k2, v in entry.items()
                                                                 if v is not None}})
                else:
                    raise ExportFormatError(f"{where}.{col}[{k}]: expected an object, got {kind_of(entry)}")
        others = {c: jsonable(v) for c, v in rec.items() if c not in known and v is not None}
        if flat and rec[cols["issue_type"]] not in (None, ""):
            props = {c: rec[cols[c]] for c in _PQ_FLAT_ISSUE if c in cols and rec[cols[c]] is not None}
            props.update(others)  # row-level columns stay with the row's issue too
            meta.append({"type": "issue", "properties": jsonable(props)})
        item["metadata_items"] = meta
        for k, v in others.items():  # a column named like a handled field keeps its value under column_<name>
            item[k if k not in item and k not in MEDIA_HANDLED else f"column_{k}"] = v
        items.add(item, where)
    if not len(items.media):
        raise ExportFormatError(f"{display}: empty export: no rows")
    part = items.parts(skipped_columns=skipped, layout="flat" if flat else "one row per media item")
    if flat:  # one row per media x issue: keep the first row of each media item
        part.media = _dedupe_first(part.media)
    else:
        check_unique_keys(part, lambda i: f"row {i}")
    return part


def _dedupe_first(table: pa.Table) -> pa.Table:
    keys = table.column("media_key").to_pandas()
    first = np.flatnonzero(~keys.duplicated().to_numpy())
    return table.take(pa.array(first)) if len(first) < table.num_rows else table


STRONG_COLUMNS = ("image_filename",)  # only the platform's parquet has these


def detect(probe: Probe) -> bool:
    if probe.kind == "dir":
        return probe.platform_file is not None and probe.platform_file.suffix == ".parquet"
    lower = {n.lower() for n in probe.parquet_columns}
    if lower & set(STRONG_COLUMNS) or probe.path.name == "metadata.parquet":
        return True
    from vlclean.vl_ingest import hub_enriched  # a weaker claim than the Hub's own columns

    return bool(lower & set(_PQ_FILE)) and not hub_enriched.detect(probe)


def read(probe: Probe, options: ReadOptions) -> Part:
    file = platform_file(probe)
    part = read_parquet_file(file, limits=options.limits)
    images = file.parent / "images"
    part.images_dir = images if images.is_dir() else None
    return part


READER = Reader("platform_parquet", ("dir", "parquet"),
                {"dir": "metadata.parquet (here or in one subfolder)", "parquet": "image_filename (platform)"},
                detect, read)
