"""Read Visual Layer exports into two normalised tables, and match them to the dataset index.

Formats (facts in ``../shared/VL_EXPORT_FORMAT.md``), one module each behind the registry in
:mod:`vlclean.vl_ingest.registry` (detect -> read); :func:`detect_format` names them:

``platform_json``     ``metadata.json`` (``info`` + ``media_items``), or a folder holding one (an unzipped
                      platform export, ``images/`` beside it); also our own analyze export. Streamed.
``platform_zip``      the platform's ZIP holding ``metadata.json`` or ``metadata.parquet``, optionally ``images/``.
``platform_parquet``  ``metadata.parquet`` (issues from ``metadata_items``, issue structs or flat columns).
``vl_datasets_csv``   the published clean lists ``*_issue_file_list.csv`` (and ``*_issue_count.csv``).
``hub_enriched``      Hub parquet with ``image_uri``/``image_id``, ``image_label``/``label``, ``image_issues``.
``fastdup``           a fastdup output folder (``similarity.csv``, ``outliers.csv``, ``atrain_*.csv``, ...).

Shared parts: :mod:`~vlclean.vl_ingest.probe` (container kind), :mod:`~vlclean.vl_ingest.validate`
(untrusted values and paths), :mod:`~vlclean.vl_ingest.items` (platform items -> rows),
:mod:`~vlclean.vl_ingest.rows` (bounded row collection), :mod:`~vlclean.vl_ingest.matching` (index matching).

Output: :class:`VLExport` with ``media`` (``schema.VL_MEDIA``, one row per media item) and ``issues``
(``schema.VL_ISSUES``, one row per media item x issue; every nested duplicate level is its own row).
Issue types are normalised with :data:`ISSUE_ALIASES`; ``normal`` means no issue (no row); unknown
types are kept lower-cased and counted in ``stats``. Fields the format notes do not name are kept
in the ``extra`` JSON columns. :func:`match_to_index` then fills ``image_id`` and ``match``.

Everything read is untrusted: a malformed export raises :class:`ExportFormatError` naming the
file, the item index or row and the field; a path with a ``..`` component or an absolute path
raises :class:`UnsafePathError`. Media items are never dropped silently.
"""

from vlclean.vl_ingest.export import read_export
from vlclean.vl_ingest.fastdup import FASTDUP_FILES
from vlclean.vl_ingest.matching import MATCH_KINDS, match_paths, match_report, match_to_index
from vlclean.vl_ingest.model import FastdupThresholds, VLExport
from vlclean.vl_ingest.platform_zip import extract_images
from vlclean.vl_ingest.probe import PLATFORM_FILES
from vlclean.vl_ingest.registry import FORMATS, READERS, detect_format
from vlclean.vl_ingest.validate import ISSUE_ALIASES, check_export_path, normalise_issue_type, parse_file_size

__all__ = [
    "FASTDUP_FILES", "FORMATS", "ISSUE_ALIASES", "MATCH_KINDS", "PLATFORM_FILES", "READERS", "FastdupThresholds",
    "VLExport", "check_export_path", "detect_format", "extract_images", "match_paths", "match_report",
    "match_to_index", "normalise_issue_type", "parse_file_size", "read_export",
]
