"""Hugging Face Hub "vl-enriched" parquet: ``image_uri``/``image_id``, ``image_label``/``label`` and a list
column ``image_issues``/``issues``."""

from __future__ import annotations

from pathlib import Path

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.items import PlatformItems
from vlclean.vl_ingest.limits import IngestLimits
from vlclean.vl_ingest.model import Part, Reader
from vlclean.vl_ingest.platform_parquet import issue_list, iter_parquet_rows, open_parquet, readable_columns
from vlclean.vl_ingest.probe import Probe
from vlclean.vl_ingest.rows import check_unique_keys
from vlclean.vl_ingest.validate import NAN, as_text, dumps_extra, jsonable, kind_of, uri_path

_HUB_KEY = ("image_uri", "image_id")
_HUB_LABEL = ("image_label", "label")
_HUB_ISSUES = ("image_issues", "issues")


def read_hub_enriched(path: Path, limits: IngestLimits) -> Part:
    display = str(path)
    pf = open_parquet(path, display)
    keep, skipped = readable_columns(pf.schema_arrow)
    cols = {c.lower(): c for c in keep}
    key_col = next((cols[c] for c in _HUB_KEY if c in cols), None)
    issues_col = next((cols[c] for c in _HUB_ISSUES if c in cols), None)
    if key_col is None or issues_col is None:
        raise ExportFormatError(f"{display}: Hub enriched parquet needs {'|'.join(_HUB_KEY)} and "
                                f"{'|'.join(_HUB_ISSUES)} columns; has {pf.schema_arrow.names}")
    label_col = next((cols[c] for c in _HUB_LABEL if c in cols), None)
    known = {key_col, issues_col, label_col}
    items = PlatformItems("hub_enriched", display)
    for row, rec in iter_parquet_rows(pf, keep, display, limits):
        where = f"{display}: row {row}"
        key = rec[key_col]
        if key is None or key == "":
            raise ExportFormatError(f"{where}.{key_col}: required field is missing or empty")
        key = as_text(key, f"{where}.{key_col}")
        fpath = uri_path(key, f"{where}.{key_col}")
        label = as_text(rec[label_col], f"{where}.{label_col}") if label_col else ""
        extra = {c: jsonable(v) for c, v in rec.items() if c not in known and v is not None}
        items.media.append((key, fpath.rsplit("/", 1)[-1], fpath, label, "", NAN, "", "", dumps_extra(extra)))
        for k, entry in enumerate(issue_list(rec[issues_col], f"{where}.{issues_col}")):
            if not isinstance(entry, dict):
                raise ExportFormatError(f"{where}.{issues_col}[{k}]: expected an object, got {kind_of(entry)}")
            props = {k2: jsonable(v) for k2, v in entry.items() if v is not None}
            items.add_issue(key, props, f"{where}.{issues_col}[{k}]")
    if not len(items.media):
        raise ExportFormatError(f"{display}: empty export: no rows")
    part = items.parts(skipped_columns=skipped)
    check_unique_keys(part, lambda i: f"row {i}")
    return part


def detect(probe: Probe) -> bool:
    lower = {n.lower() for n in probe.parquet_columns}
    return bool(lower & set(_HUB_KEY) and lower & set(_HUB_ISSUES))


READER = Reader("hub_enriched", ("parquet",),
                {"parquet": f"{'|'.join(_HUB_KEY)} + {'|'.join(_HUB_ISSUES)} (Hub enriched)"},
                detect, lambda probe, options: read_hub_enriched(probe.path, options.limits))
