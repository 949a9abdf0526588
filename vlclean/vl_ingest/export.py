"""Read one or several exports into one :class:`~vlclean.vl_ingest.model.VLExport` (merging repeats)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from vlclean import schema
from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.limits import IngestLimits
from vlclean.vl_ingest.model import FastdupThresholds, Part, ReadOptions, VLExport
from vlclean.vl_ingest.registry import read_one

def read_export(
    path_or_paths: str | Path | Sequence[str | Path],
    *,
    progress: bool = False,
    fastdup_thresholds: FastdupThresholds | None = None,
    limits: IngestLimits | None = None,
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
    options = ReadOptions(progress=progress, fastdup_thresholds=fastdup_thresholds or FastdupThresholds(),
                          limits=limits or IngestLimits())
    parts = [read_one(path, options) for path in paths]
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


def _summary(parts: list[Part], issues: pd.DataFrame, merged: int) -> dict[str, Any]:
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
