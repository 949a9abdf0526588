"""CSV safety: every CSV the project writes reads back exactly, and spreadsheet formulas are neutralised."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from vlclean import csvio
from vlclean.storage import read_csv, write_csv

COLUMNS = {"name": pa.string(), "note": pa.string(), "score": pa.float64()}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(), st.text(), st.floats(allow_nan=False, allow_infinity=False)), min_size=1,
                max_size=8))
def test_every_text_cell_round_trips_exactly(tmp_path_factory, rows):
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"name": object, "note": object})
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    write_csv(path, frame)
    back = read_csv(path, columns=COLUMNS)
    assert back["name"].tolist() == frame["name"].tolist()
    assert back["note"].tolist() == frame["note"].tolist()
    assert back["score"].tolist() == frame["score"].tolist()


@given(st.text())
def test_escape_is_undone_exactly(text):
    assert csvio.unescape_formula(csvio.escape_formula(text)) == text


def test_a_lone_carriage_return_is_quoted_and_rows_never_split(tmp_path: Path):
    frame = pd.DataFrame({"file_name": ["a\rb.png", "c.png"], "label": [1, 2]})
    write_csv(tmp_path / "t.csv", frame)
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["file_name", "label"], ["a\rb.png", "1"], ["c.png", "2"]]
    assert read_csv(tmp_path / "t.csv")["file_name"].tolist() == ["a\rb.png", "c.png"]
    plain = pd.DataFrame({"a": ["x", "y"]})
    write_csv(tmp_path / "p.csv", plain)
    assert (tmp_path / "p.csv").read_bytes() == b"a\nx\ny\n"  # files without a CR keep LF line ends


def test_cells_a_spreadsheet_would_run_are_neutralised_numbers_are_not(tmp_path: Path):
    cells = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "'=x", "-0.5", "+3", "1e5", "plain", "a=b"]
    write_csv(tmp_path / "t.csv", pd.DataFrame({"c": cells, "n": range(len(cells))}))
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as fh:
        raw = [r[0] for r in list(csv.reader(fh))[1:]]
    assert raw == ["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\rx", "''=x", "-0.5", "+3", "1e5", "plain", "a=b"]
    assert all(not re.match(r"[=+\-@\t\r]", c) or re.fullmatch(r"[+-]?[\d.]+", c) for c in raw)
    assert read_csv(tmp_path / "t.csv", columns={"c": pa.string(), "n": pa.int64()})["c"].tolist() == cells


def test_every_csv_is_written_through_the_safe_writer():
    """No module writes CSV past :mod:`vlclean.csvio` (pandas' to_csv or csv.writer elsewhere)."""
    root = Path(__file__).resolve().parents[1]
    offenders = [str(p.relative_to(root)) for p in [*root.glob("vlclean/**/*.py"), *root.glob("stages/*.py")]
                 if p.name != "csvio.py" and re.search(r"\.to_csv\(|csv\.writer\(|csv\.DictWriter\(", p.read_text())]
    assert offenders == []


def test_csv_tables_declared_in_schema_match_their_writers():
    from vlclean import schema
    from vlclean.leaks import PAIR_COLUMNS
    from vlclean.manifest import CLEANED_COLUMNS, EVAL_COLUMNS
    from vlclean.review import REVIEW_COLUMNS
    from vlclean.tagging import MANIFEST_COLUMNS

    assert tuple(schema.TAGGED_MANIFEST) == MANIFEST_COLUMNS
    assert tuple(schema.REVIEWS) == REVIEW_COLUMNS
    assert tuple(schema.LEAKS_REPORT) == PAIR_COLUMNS
    assert tuple(schema.CLEANED_MANIFEST) == CLEANED_COLUMNS
    assert tuple(schema.EVAL_LABELS) == EVAL_COLUMNS
