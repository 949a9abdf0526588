"""CSV export files (vl-datasets lists, fastdup folders) read as a stream of rows, with the limits enforced
while reading.

:class:`CsvRows` reads the header when opened and yields ``(line, row)`` pairs on each iteration (a
fresh pass over the file each time, so a reader may take two), holding one record at a time: memory
is bounded by the longest record allowed, never by the file. Rows are dicts of strings keyed by the
stripped header names (repeated names get ``.1``, ``.2``; an empty one ``Unnamed: <i>``, as pandas
names them); spaces after a delimiter are skipped, empty cells and missing trailing cells are ``""``,
blank lines are skipped; ``line`` is the physical line the record starts on.

Bounds (``ingest_vl.limits``): a cell over ``max_string_bytes`` (UTF-8) and a file of more than
``max_items`` rows are refused naming the file, the line, the field and the limit (a cell that is not
UTF-8 text too, naming its line and field); so is a record
whose raw text passes ``(columns + 1) x (2 x max_string_bytes + 3)`` characters (what the largest
allowed cells take fully quoted) before it ends, checked as each physical line arrives.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.limits import IngestLimits, LimitExceededError

_DIALECT = {"skipinitialspace": True, "strict": False}


class _RecordTooLong(Exception):
    """The raw text of one record passed the record bound (raised inside the line feed)."""


class _Lines:
    """The physical lines of a text file (newline kept) for :mod:`csv`, each read with a bounded
    ``readline``; raises :class:`_RecordTooLong` once the lines fed since the last finished record pass
    ``cap`` characters. ``pending`` keeps those lines, so an over-long record can be re-read to name
    its field."""

    def __init__(self, fh: io.TextIOBase, cap: int) -> None:
        self.fh, self.cap = fh, cap
        self.pending: list[str] = []
        self.size = 0
        self.lines = 0  # physical lines read

    def record_done(self) -> None:
        self.pending.clear()
        self.size = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.fh.readline(self.cap + 1 - self.size)
        if not line:
            raise StopIteration
        self.lines += 1
        self.pending.append(line)
        self.size += len(line)
        if self.size > self.cap:
            raise _RecordTooLong
        return line


class CsvRows:
    """One CSV file: ``columns`` (header, read on open) and ``(line, row)`` pairs per iteration (see module doc)."""

    def __init__(self, path: Path, limits: IngestLimits, display: str | None = None) -> None:
        self.path, self.limits = Path(path), limits
        self.display = display or str(path)
        self.columns: list[str] = []
        self._header_line = 0
        with self._open() as fh:
            lines = _Lines(fh, self._cap(64))  # a header of up to 64 names of the largest cell size
            for line, fields in self._records(lines):
                self._check_cells(line, fields)
                self.columns = _names(fields)
                self._header_line = line
                break
        if not self.columns:
            raise ExportFormatError(f"{self.display}: empty CSV file (no header)")
        self.cols = {c.lower(): c for c in self.columns}  # lower-case name -> name

    def _open(self) -> io.TextIOWrapper:
        try:
            # undecodable bytes become lone surrogates, refused per cell: the error names the line and field
            return open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115
        except OSError as err:
            raise ExportFormatError(f"{self.display}: not a readable CSV file ({err.strerror or err})") from err

    def _cap(self, columns: int) -> int:
        return (columns + 1) * (2 * self.limits.max_string_bytes + 3)

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        n_cols, rows = len(self.columns), 0
        with self._open() as fh:
            lines = _Lines(fh, self._cap(n_cols))
            for line, fields in self._records(lines):
                if line <= self._header_line:
                    continue
                rows += 1
                if rows > self.limits.max_items:
                    raise LimitExceededError(f"{self.display}: line {line}: more than {self.limits.max_items} rows "
                                             "(limit ingest_vl.limits.max_items)")
                if len(fields) > n_cols:
                    raise ExportFormatError(f"{self.display}: line {line}: {len(fields)} fields, the header has "
                                            f"{n_cols} ({', '.join(self.columns)})")
                self._check_cells(line, fields)
                if len(fields) < n_cols:
                    fields = fields + [""] * (n_cols - len(fields))
                yield line, dict(zip(self.columns, fields))

    def _records(self, lines: _Lines) -> Iterator[tuple[int, list[str]]]:
        """Non-blank records with the physical line each starts on; decoding and size errors named by line."""
        old_limit = csv.field_size_limit()
        csv.field_size_limit(max(old_limit, lines.cap))  # the record bound is the one that holds
        reader = csv.reader(lines, **_DIALECT)
        try:
            while True:
                start = lines.lines + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except _RecordTooLong:
                    raise self._too_long(start, lines) from None
                except csv.Error as err:
                    raise ExportFormatError(f"{self.display}: line {start}: not a readable CSV record ({err})") from err
                lines.record_done()
                if fields:
                    yield start, fields
        finally:
            csv.field_size_limit(old_limit)

    def _check_cells(self, line: int, fields: list[str]) -> None:
        """Each cell is UTF-8 text of at most ``max_string_bytes`` bytes."""
        limit = self.limits.max_string_bytes
        for i, cell in enumerate(fields):
            size = len(cell)
            if not cell.isascii():
                try:
                    size = len(cell.encode("utf-8"))
                except UnicodeEncodeError as err:
                    raise ExportFormatError(f"{self._where(line, i)}: not UTF-8 text (byte "
                                            f"0x{ord(cell[err.start]) - 0xDC00:02x} at character {err.start})") from None
            if size > limit:
                raise LimitExceededError(f"{self._where(line, i)}: a cell of {size} bytes, longer than {limit} "
                                         "(limit ingest_vl.limits.max_string_bytes)")

    def _where(self, line: int, i: int) -> str:
        name = self.columns[i] if i < len(self.columns) else f"#{i + 1}"
        return f"{self.display}: line {line}, field {name!r}"

    def _too_long(self, start: int, lines: _Lines) -> Exception:
        """The error for a record that passed the bound: the first over-long cell in what was read of it."""
        text = "".join(lines.pending)
        fields = next(csv.reader(io.StringIO(text, newline=""), **_DIALECT), [])
        try:
            self._check_cells(start, fields)
        except ExportFormatError as err:
            return err
        return LimitExceededError(f"{self.display}: line {start}: a record longer than {lines.cap} characters "
                                  f"({len(fields)} fields so far; limit ingest_vl.limits.max_string_bytes bounds "
                                  "each cell)")


def _names(fields: list[str]) -> list[str]:
    """Header names as pandas gives them: stripped, ``Unnamed: <i>`` for an empty one, repeats ``name.1``..."""
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(fields):
        name = raw.strip() or f"Unnamed: {i}"
        base, k = name, 0
        while name in seen:
            k += 1
            name = f"{base}.{k}"
        seen.add(name)
        out.append(name)
    return out
