"""vl-datasets' published clean lists: ``*_issue_file_list.csv`` (``filename, reason, value, prototype``).

A companion ``*_issue_count.csv`` (``reason, count, pct, split``) is read for stats only.
"""

from __future__ import annotations

import math
from pathlib import Path

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.csv_rows import CsvRows
from vlclean.vl_ingest.items import PlatformItems
from vlclean.vl_ingest.limits import IngestLimits
from vlclean.vl_ingest.model import Part, Reader
from vlclean.vl_ingest.probe import Probe
from vlclean.vl_ingest.rows import Builder
from vlclean.vl_ingest.validate import EMPTY_EXTRA, NAN, as_number, check_export_path, dumps_extra

def read_vl_datasets_csv(path: Path, limits: IngestLimits) -> Part:
    """``*_issue_file_list.csv``: one media row per filename, one issue row per CSV row (see module doc),
    streamed (one row in memory at a time; the limits hold while reading)."""
    display = str(path)
    table = CsvRows(path, limits)
    cols = table.cols
    if {"reason", "count"} <= set(cols) and "filename" not in cols:
        return _read_vl_issue_counts(table, display)
    missing = [c for c in ("filename", "reason") if c not in cols]
    if missing:
        raise ExportFormatError(f"{display}: missing column(s) {missing}; has {table.columns}")
    builder = PlatformItems("vl_datasets_csv", display)
    seen: set[str] = set()
    known = {cols[c] for c in ("filename", "reason", "value", "prototype") if c in cols}
    others = [c for c in table.columns if c not in known]
    value_col, proto_col = cols.get("value"), cols.get("prototype")
    for line, rec in table:
        where = f"{display}: line {line}"
        fname = rec[cols["filename"]].strip()
        if not fname:
            raise ExportFormatError(f"{where}, field 'filename': empty")
        fname = check_export_path(fname, f"{where}, field 'filename'")
        if fname not in seen:
            seen.add(fname)
            builder.media.append((fname, fname.rsplit("/", 1)[-1], fname, "", "", NAN, "", "", EMPTY_EXTRA))
        reason = rec[cols["reason"]]
        norm = builder.issue_type(reason.strip() or None, f"{where}, field 'reason'")
        if norm is None:
            continue
        value = as_number(rec[value_col].strip(), f"{where}, field 'value'") if value_col else NAN
        proto = rec[proto_col].strip() if proto_col else ""
        if proto:
            proto = check_export_path(proto, f"{where}, field 'prototype'")
        extra = {c: rec[c] for c in others if rec[c] != ""}
        builder.issues.append((fname, norm, reason.strip(), NAN, "", NAN, proto, value, "", dumps_extra(extra)))
    if not seen:
        raise ExportFormatError(f"{display}: empty export: no rows")
    return builder.parts()


def _read_vl_issue_counts(table: CsvRows, display: str) -> Part:
    """``*_issue_count.csv`` (``reason, count, pct, split``): stats only."""
    cols = table.cols
    counts = []
    for line, rec in table:
        where = f"{display}: line {line}"
        count = as_number(rec[cols["count"]], f"{where}, field 'count'")
        entry = {"reason": rec[cols["reason"]], "count": None if math.isnan(count) else int(count)}
        for c in ("pct", "split"):
            if c in cols:
                entry[c] = rec[cols[c]]
        counts.append(entry)
    return Builder("vl_datasets_csv", display).parts(issue_count_file=True, issue_counts=counts)


def detect(probe: Probe) -> bool:
    cols = {c.strip().strip('"').lower() for c in probe.csv_header.split(",")}
    return {"filename", "reason"} <= cols or {"reason", "count"} <= cols


READER = Reader("vl_datasets_csv", ("csv",),
                {"csv": "columns filename, reason (vl-datasets issue list) or reason, count (issue counts)"},
                detect, lambda probe, options: read_vl_datasets_csv(probe.path, options.limits))
