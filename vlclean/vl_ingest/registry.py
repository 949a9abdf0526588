"""The export formats, in detection order: adding a format is one module with a ``READER`` and one line here.

:func:`detect_format` probes the path's container kind (:class:`~vlclean.vl_ingest.probe.Probe`) and asks
each reader of that kind, in order, whether the path is its format; the first that says yes reads it.
When none does, the error names the path and what every reader of that kind looked for.
"""

from __future__ import annotations

from pathlib import Path

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest import fastdup, hub_enriched, platform_json, platform_parquet, platform_zip, vl_datasets_csv
from vlclean.vl_ingest.limits import IngestLimits
from vlclean.vl_ingest.model import Part, ReadOptions, Reader
from vlclean.vl_ingest.probe import KINDS, Probe

READERS: tuple[Reader, ...] = (
    platform_json.READER,
    platform_zip.READER,
    platform_parquet.READER,
    vl_datasets_csv.READER,
    hub_enriched.READER,
    fastdup.READER,
)
FORMATS: tuple[str, ...] = tuple(r.name for r in READERS)


def detect(path: str | Path, limits: IngestLimits | None = None) -> tuple[Probe, Reader]:
    """The probed path and the reader of its format; raises :class:`ExportFormatError` when none reads it."""
    probe = Probe.of(path, limits)
    candidates = [r for r in READERS if probe.kind in r.kinds]
    for reader in candidates:
        if reader.detect(probe):
            return probe, reader
    looked = " or ".join(r.looks_for[probe.kind] for r in candidates if probe.kind in r.looks_for)
    detail = {"parquet": lambda: f"; columns: {probe.parquet_columns}",
              "csv": lambda: f"; header: {probe.csv_header[:200]!r}"}.get(probe.kind, lambda: "")()
    raise ExportFormatError(
        f"{probe.path}: {KINDS[probe.kind]} is not a Visual Layer export: looked for {looked}{detail}")


def detect_format(path: str | Path) -> str:
    """Which export ``path`` is: one of :data:`FORMATS`.

    Looks at names and content (ZIP / parquet magic, JSON top level, CSV header, folder listing).
    Raises :class:`ExportFormatError` naming the path and what was looked for when it is none of them.
    """
    return detect(path)[1].name


def read_one(path: str | Path, options: ReadOptions) -> Part:
    probe, reader = detect(path, options.limits)
    return reader.read(probe, options)

