"""CSV files people open in spreadsheets and stages read back: exact round trips, formulas neutralised.

Every CSV the project writes goes through :func:`write_csv` and every one it reads through
:func:`read_csv` (the review page's JavaScript export follows the same rules, and
:func:`vlclean.review.read_reviews_csv` undoes them):

- Quoting: RFC 4180 (fields holding ``,``, ``"`` or a line break are quoted). A lone carriage return
  inside a cell must be quoted too, which Python's csv writer only does when CR is part of the line
  terminator: a frame with a CR in any text cell is written with CRLF line ends; every other file keeps
  LF line ends (byte for byte as before).
- Formulas (OWASP "CSV injection"): a text cell a spreadsheet would execute - one starting with ``=``,
  ``+``, ``-``, ``@``, a tab or a CR, after any apostrophes - gets one leading apostrophe, which
  spreadsheets show as text. Plain numbers (``-0.5``) are not formulas and stay as they are; numeric
  columns are never touched.
- Reading takes exactly one apostrophe off a text cell that was escaped (an apostrophe followed by what
  would be escaped), so ``read_csv(write_csv(frame))`` gives every text cell back exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

_FORMULA = re.compile(r"^'*[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def needs_escape(text: str) -> bool:
    """True for a cell a spreadsheet would run as a formula (or one that already starts with apostrophes
    before such a character), except plain numbers."""
    return bool(_FORMULA.match(text)) and not _NUMBER.match(text)


def escape_formula(text: str) -> str:
    """``text`` with one leading apostrophe when :func:`needs_escape`; else unchanged."""
    return "'" + text if needs_escape(text) else text


def unescape_formula(text: str) -> str:
    """The inverse of :func:`escape_formula` on everything it writes."""
    return text[1:] if text[:1] == "'" and needs_escape(text[1:]) else text


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype)
            or isinstance(frame[c].dtype, pd.CategoricalDtype)]


def to_csv_text(frame: pd.DataFrame, *, escape_formulas: bool = True) -> str:
    """The CSV text of ``frame`` (no index) under the rules in the module doc."""
    out = frame.copy(deep=False)
    has_cr = False
    for col in _text_columns(out):
        values = out[col].astype(object)
        strings = values.map(lambda v: isinstance(v, str))
        if not strings.any():
            continue
        if escape_formulas:
            values = values.where(~strings, values.map(lambda v: escape_formula(v) if isinstance(v, str) else v))
        has_cr = has_cr or bool(values[strings].map(lambda v: "\r" in v).any())
        out[col] = values
    has_cr = has_cr or any("\r" in str(c) for c in out.columns)
    return out.to_csv(index=False, lineterminator="\r\n" if has_cr else "\n")


def write_csv_file(path: str | Path, frame: pd.DataFrame, *, escape_formulas: bool = True) -> None:
    """Write ``frame`` to ``path`` (UTF-8) under the rules in the module doc; the caller makes it atomic."""
    Path(path).write_bytes(to_csv_text(frame, escape_formulas=escape_formulas).encode("utf-8"))


def read_csv(path: str | Path, *, columns: Mapping[str, pa.DataType] | None = None, **kwargs: Any) -> pd.DataFrame:
    """Read a CSV this project wrote, undoing the formula escapes of its text cells.

    With ``columns`` (a table of :mod:`vlclean.schema`), string columns are read as text with empty cells
    as "" and the other columns by their declared type; without, types are inferred and empty cells are
    missing values (NaN).
    """
    if columns is not None:
        kwargs.setdefault("dtype", {c: str for c, t in columns.items() if pa.types.is_string(t)
                                    or pa.types.is_large_string(t)})
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""], **kwargs)
    text = _text_columns(frame)
    for col in text:
        frame[col] = frame[col].map(lambda v: unescape_formula(v) if isinstance(v, str) else v)
    if columns is not None:
        for col, dtype in columns.items():
            if col in frame.columns and (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)):
                values = frame[col].astype(object)
                frame[col] = values.where(values.notna(), "")
    return frame
