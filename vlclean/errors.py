"""One base error for everything the pipeline reports to a user, with a few specific kinds.

Every message names *where* (file, row, item index, params key) and *what* is wrong, so that a
user can fix the input without reading a traceback. Stages catch :class:`VLCleanError` at the top,
print it and exit non-zero.
"""

from __future__ import annotations


class VLCleanError(Exception):
    """Base class for errors caused by user input (params, files, exports)."""


class ParamsError(VLCleanError):
    """A params.yaml key is unknown, of the wrong type, or out of range."""


class DatasetError(VLCleanError):
    """A dataset source (Hub shards, ImageFolder tree, raw shards) is missing or malformed."""


class SchemaError(VLCleanError):
    """A table crossing a stage boundary lacks a column or holds a bad value."""


class ExportFormatError(VLCleanError):
    """A Visual Layer export (JSON, ZIP, parquet, CSV, fastdup folder) cannot be read."""


class UnsafePathError(VLCleanError):
    """A path from untrusted input escapes its root (``..``, absolute, symlink out of tree)."""


class ConsistencyError(VLCleanError):
    """Counts written together disagree (e.g. kept + dropped != images): a bug to report, never ignored."""
