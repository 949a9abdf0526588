"""What readers return (:class:`Part`) and what :func:`read_export` returns (:class:`VLExport`)."""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from vlclean.vl_ingest.limits import IngestLimits

if TYPE_CHECKING:
    from vlclean.vl_ingest.probe import Probe


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
class Part:
    """What one reader returns for one input path."""

    media: pa.Table
    issues: pa.Table
    stats: dict[str, Any]
    images_dir: Path | None = None
    images_zip: Path | None = None
    images_zip_dir: str = ""
    key_hashes: array.array | None = None  # hash() of each media key, in row order



@dataclass(frozen=True)
class ReadOptions:
    """What every reader is given besides the path."""

    progress: bool = False  # byte progress bar while streaming JSON
    fastdup_thresholds: FastdupThresholds = field(default_factory=FastdupThresholds)
    limits: IngestLimits = field(default_factory=IngestLimits)


@dataclass(frozen=True)
class Reader:
    """One export format in the registry (``vlclean.vl_ingest.registry.READERS``).

    ``kinds``      container kinds it reads (``probe.KINDS``: dir, zip, parquet, json, csv).
    ``looks_for``  per kind, what ``detect`` looks for (shown when no reader accepts a path).
    ``detect``     True when the probed path is this format; raises :class:`ExportFormatError` naming
                   what is wrong when the container is clearly this format's but malformed.
    ``read``       the path as a :class:`Part`.
    """

    name: str
    kinds: tuple[str, ...]
    looks_for: dict[str, str]
    detect: Callable[[Probe], bool]
    read: Callable[[Probe, ReadOptions], Part]
