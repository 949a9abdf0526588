"""Hostile Visual Layer exports: every limit of ``ingest_vl.limits`` holds while parsing, fast and small.

Each case runs the real reader on a real file and reports its time and peak memory (RSS growth sampled
every 2 ms, so the C parser's allocations count too: ``tests/hostile.py``); the table is printed in
pytest's terminal summary.
Before these limits a 60 kB file nested 30,000 deep took 2.3 GB, and parse time grew with the square of
a string's length.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import png_bytes
from tests.hostile import hostile_case, measure  # noqa: F401 - hostile_case: the fixture
from tests.vl_fixtures import platform_item, write_platform_json, write_platform_zip, write_vl_datasets_csv
from vlclean.errors import ExportFormatError, UnsafePathError
from vlclean.vl_ingest import extract_images, read_export
from vlclean.vl_ingest.limits import IngestLimits, LimitExceededError

pytestmark = pytest.mark.usefixtures("hostile_case")


def _document(item_json: bytes) -> bytes:
    return b'{"info": {"schema_version": "1.1"}, "media_items": [' + item_json + b"]}"


def _ok_item() -> bytes:
    return json.dumps(platform_item("a.png", label="cat")).encode()


def test_deep_nesting_is_refused_at_the_limit_in_linear_time(tmp_path: Path):
    for depth in (30_000, 200_000):  # a 60 kB and a 400 kB file (before: 2.3 GB, and 24 GB exhausted)
        path = tmp_path / f"deep{depth}.json"
        path.write_bytes(_document(_ok_item() + b', {"file_name": "b.png", "x": ' + b"[" * depth + b"]" * depth
                                   + b"}"))
        case = f"{path.stat().st_size // 1000} kB JSON nested {depth} deep"
        err, seconds, mb = measure(case, lambda: read_export(path))
        assert isinstance(err, LimitExceededError), err
        assert str(path) in str(err) and "media_items[1]" in str(err) and "max_depth" in str(err)
        assert seconds < 5 and mb < 200


def test_a_huge_string_is_refused_and_parsing_stays_linear(tmp_path: Path):
    path = tmp_path / "caption.json"
    caption = {"type": "caption", "properties": {"text": "x" * (64 * 2**20)}}
    item = platform_item("b.png")
    item["metadata_items"].append(caption)
    path.write_bytes(_document(_ok_item() + b", " + json.dumps(item).encode()))
    err, seconds, mb = measure("64 MB caption, default limits", lambda: read_export(path))
    assert isinstance(err, LimitExceededError) and "media_items[1]" in str(err) and "max_string_bytes" in str(err)
    assert seconds < 5 and mb < 100  # refused after 1 MiB of the string, not after reading 64 MB
    roomy = IngestLimits(max_string_bytes=2**27, max_item_bytes=2**27)
    export, seconds, mb = measure("64 MB caption, limits raised: parsed", lambda: read_export(path, limits=roomy))
    assert len(export.media) == 2  # was minutes: the parser re-lexed the string from its start per 64 kB
    assert seconds < 20, f"{seconds:.1f} s: parsing a long string is quadratic again"


def test_a_caption_bomb_in_a_small_zip_is_refused(tmp_path: Path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("metadata.json", "w") as fh:
            fh.write(b'{"info": {}, "media_items": [{"file_name": "a.png", "metadata_items": [{"type": "caption", '
                     b'"properties": {"text": "')
            for _ in range(300):
                fh.write(b"x" * 2**20)
            fh.write(b'"}}]}]}')
    assert path.stat().st_size < 400_000
    err, seconds, mb = measure("300 MB caption in a 300 kB ZIP", lambda: read_export(path))
    assert isinstance(err, LimitExceededError) and "bomb.zip" in str(err) and "max_compression_ratio" in str(err)
    assert seconds < 5 and mb < 100
    roomy = IngestLimits(max_compression_ratio=10**6)
    err, seconds, mb = measure("same, ratio limit lifted: string limit", lambda: read_export(path, limits=roomy))
    assert isinstance(err, LimitExceededError) and "media_items[0]" in str(err) and "max_string_bytes" in str(err)
    assert seconds < 5 and mb < 100


def test_zip_bombs_among_images_are_refused_before_anything_is_written(tmp_path: Path):
    names = ["a.png", "b.png"]
    items = [platform_item(n) for n in names]
    bomb = tmp_path / "images_bomb.zip"
    write_platform_zip(bomb, items, images={"a.png": png_bytes(0)})
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("images/b.png", "w") as fh:
        for _ in range(512):
            fh.write(bytes(2**20))  # 512 MB of zeros, about 500 kB compressed
    export = read_export(bomb)
    dest = tmp_path / "out"
    err, seconds, mb = measure("512 MB image member (ZIP bomb)", lambda: extract_images(export, dest))
    assert isinstance(err, LimitExceededError) and "images/b.png" in str(err) and "max_compression_ratio" in str(err)
    assert not dest.exists() or not any(dest.rglob("*"))
    assert seconds < 5 and mb < 100
    many = tmp_path / "many.zip"
    write_platform_zip(many, items, images={n: png_bytes(i, size=256) for i, n in enumerate(names)})
    small = IngestLimits(max_extract_bytes=300_000)
    err, seconds, mb = measure("images over max_extract_bytes",
                               lambda: extract_images(read_export(many), tmp_path / "o2", limits=small))
    assert isinstance(err, LimitExceededError) and "max_extract_bytes" in str(err)
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").rglob("*"))


def test_item_count_and_item_size_limits_name_the_item(tmp_path: Path):
    path = write_platform_json(tmp_path / "m.json", [platform_item(f"{i}.png") for i in range(12)])
    err, _, _ = measure("12 items, max_items 10", lambda: read_export(path, limits=IngestLimits(max_items=10)))
    assert isinstance(err, LimitExceededError) and "media_items[10]" in str(err) and "max_items" in str(err)
    big = platform_item("big.png", fields={"scores": [0.5] * 400_000})  # a 2 MB item of small values
    path = write_platform_json(tmp_path / "big.json", [platform_item("a.png"), big])
    err, seconds, mb = measure("2 MB item, max_item_bytes 1 MiB",
                               lambda: read_export(path, limits=IngestLimits(max_item_bytes=2**20)))
    assert isinstance(err, LimitExceededError) and "media_items[1]" in str(err) and "max_item_bytes" in str(err)
    assert read_export(path).media["file_name"].tolist() == ["a.png", "big.png"]  # the default allows it


def test_parquet_and_csv_strings_are_bounded_naming_row_and_field(tmp_path: Path):
    path = tmp_path / "metadata.parquet"
    pq.write_table(pa.table({"image_filename": ["a.png", "b.png"], "caption": ["ok", "y" * (3 * 2**20)]}), path)
    err, _, _ = measure("parquet with a 3 MB string", lambda: read_export(path))
    assert isinstance(err, LimitExceededError) and "row 1.caption" in str(err) and "max_string_bytes" in str(err)
    csv_path = write_vl_datasets_csv(tmp_path / "x_issue_file_list.csv", [("a.png", "blur", 0.5, None)])
    with csv_path.open("a") as fh:
        fh.write("b.png,blur,0.5," + "z" * (2 * 2**20) + "\n")
    err, _, _ = measure("vl-datasets CSV with a 2 MB cell", lambda: read_export(csv_path))
    assert isinstance(err, LimitExceededError) and "line 3" in str(err) and "max_string_bytes" in str(err)


def test_nested_parquet_strings_are_bounded_naming_row_and_column(tmp_path: Path):
    """Strings inside lists, structs and maps count too (checked in arrow, before rows become Python)."""
    issue = pa.struct([("issue_type", pa.string()), ("description", pa.string())])
    long = "d" * (2 * 2**20)
    items = [[{"issue_type": "blur", "description": "ok"}], [],
             [{"issue_type": "dark", "description": "fine"}, {"issue_type": "blur", "description": long}]]
    path = tmp_path / "metadata.parquet"
    pq.write_table(pa.table({"image_filename": ["a.png", "b.png", "c.png"],
                             "metadata_items": pa.array(items, pa.list_(issue))}), path)
    err, seconds, mb = measure("parquet: 2 MB string in a list of structs", lambda: read_export(path))
    assert isinstance(err, LimitExceededError), err
    assert str(path) in str(err) and "row 2.metadata_items[].description" in str(err)
    assert "max_string_bytes" in str(err) and seconds < 5 and mb < 100
    tags = pa.array([[("source", "vl")], [("note", long)]], pa.map_(pa.string(), pa.string()))
    pq.write_table(pa.table({"image_filename": ["a.png", "b.png"], "tags": tags}), path)
    err, _, _ = measure("parquet: 2 MB string as a map value", lambda: read_export(path))
    assert isinstance(err, LimitExceededError) and "row 1.tags{}.value" in str(err), err
    assert len(read_export(path, limits=IngestLimits(max_string_bytes=4 * 2**20)).media) == 2


def _csv_of(path: Path, header: str, row: str, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(header + "\n")
        for _ in range(rows // 1000):
            fh.write((row + "\n") * 1000)
    return path


def test_csv_readers_stream_and_stop_at_the_row_limit(tmp_path: Path):
    """A 40 MB issue list over ``max_items`` fails at the first row past the limit, in bounded memory."""
    path = _csv_of(tmp_path / "big_issue_file_list.csv", "filename,reason,value,prototype",
                   "train/n01440764/x.JPEG,duplicates,0.97,train/n01440764/y.JPEG", 800_000)
    assert path.stat().st_size > 40e6
    err, seconds, mb = measure("40 MB vl-datasets CSV, max_items 1,000",
                               lambda: read_export(path, limits=IngestLimits(max_items=1000)))
    assert isinstance(err, LimitExceededError) and f"{path}: line 1002" in str(err) and "max_items" in str(err)
    assert seconds < 2 and mb < 16, (seconds, mb)  # pandas read the whole 40 MB first (about 250 MB)
    folder = tmp_path / "fastdup"
    folder.mkdir()
    _csv_of(folder / "atrain_features.dat.csv", "index,filename", "0,/data/img/a.jpg", 800_000)
    err, seconds, mb = measure("40 MB fastdup name list, max_items 1,000",
                               lambda: read_export(folder, limits=IngestLimits(max_items=1000)))
    assert isinstance(err, LimitExceededError) and "atrain_features.dat.csv: line 1002" in str(err), err
    assert seconds < 2 and mb < 16, (seconds, mb)


def test_csv_cells_and_records_are_bounded_while_reading(tmp_path: Path):
    limits = IngestLimits(max_string_bytes=4096)
    path = tmp_path / "x_issue_file_list.csv"
    path.write_text("filename,reason,value,prototype\na.png,blur,0.5,\nb.png,dup,0.9," + "p" * 5000 + "\n")
    err, _, _ = measure("CSV cell over max_string_bytes (4 kB)", lambda: read_export(path, limits=limits))
    assert isinstance(err, LimitExceededError), err
    assert f"{path}: line 3, field 'prototype': a cell of 5000 bytes" in str(err) and "max_string_bytes" in str(err)
    with path.open("w") as fh:  # one 50 MB line of short cells, no newline: refused after 40 kB of it
        fh.write("filename,reason,value,prototype\na.png,blur,0.5,\nc.png," + "x," * 25_000_000)
    err, seconds, mb = measure("50 MB CSV record without a newline", lambda: read_export(path, limits=limits))
    assert isinstance(err, LimitExceededError) and f"{path}: line 3: a record longer than" in str(err), err
    assert seconds < 2 and mb < 16, (seconds, mb)
    path.write_text('filename,reason,value,prototype\na.png,blur,0.5,"' + "q\n" * 3000 + '"\n')
    err, _, _ = measure("CSV quoted cell spanning 3,000 lines", lambda: read_export(path, limits=limits))
    assert isinstance(err, LimitExceededError) and "line 2, field 'prototype': a cell of 6000 bytes" in str(err)
    folder = tmp_path / "fastdup"
    folder.mkdir()
    (folder / "similarity.csv").write_text("from,to,distance\n/d/a.jpg,/d/b.jpg,0.99\n/d/a.jpg," + "z" * 5000 + ",1\n")
    err, _, _ = measure("fastdup cell over max_string_bytes", lambda: read_export(folder, limits=limits))
    assert isinstance(err, LimitExceededError) and "similarity.csv: line 3, field 'to'" in str(err), err


def test_csv_rows_are_read_as_before(tmp_path: Path):
    """CRLF and lone-CR line ends, quoted newlines and commas, a BOM, blank lines, padded and short rows; a
    record with too many fields or bytes that are not UTF-8 fail naming the line (and field)."""
    from vlclean.vl_ingest.csv_rows import CsvRows

    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffname , reason,,name\r\n a.png,\"multi\r\nline, quoted\",x,y\r\n\r\nb.png\rc.png,r\n"
                     .encode())
    table = CsvRows(path, IngestLimits())
    assert table.columns == ["name", "reason", "Unnamed: 2", "name.1"]
    assert list(table) == [(2, {"name": "a.png", "reason": "multi\r\nline, quoted", "Unnamed: 2": "x", "name.1": "y"}),
                           (5, {"name": "b.png", "reason": "", "Unnamed: 2": "", "name.1": ""}),
                           (6, {"name": "c.png", "reason": "r", "Unnamed: 2": "", "name.1": ""})]
    assert len(list(table)) == 3  # every iteration is a fresh pass
    path.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(ExportFormatError, match=r"t\.csv: line 3: 3 fields, the header has 2"):
        list(CsvRows(path, IngestLimits()))
    path.write_bytes(b"a,b\n1,2\n3,caf\xe9\n")
    with pytest.raises(ExportFormatError, match=r"t\.csv: line 3, field 'b': not UTF-8 text \(byte 0xe9"):
        list(CsvRows(path, IngestLimits()))
    path.write_bytes(b"")
    with pytest.raises(ExportFormatError, match=r"empty CSV file"):
        CsvRows(path, IngestLimits())


def test_zip_members_clashing_as_file_and_folder_fail_clearly(tmp_path: Path):
    path = write_platform_zip(tmp_path / "clash.zip", [platform_item("a.png")],
                              extra_members={"images/x": b"file", "images/x/y.png": png_bytes(1)})
    with pytest.raises(ExportFormatError, match=r"clash\.zip: ZIP member 'images/x' is a file and also the folder"):
        read_export(path)


def test_a_symlink_out_of_an_unzipped_export_is_refused(tmp_path: Path):
    outside = write_platform_json(tmp_path / "elsewhere" / "metadata.json", [platform_item("a.png")])
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "metadata.json").symlink_to(outside)
    with pytest.raises(UnsafePathError, match=r"symlink out of the export folder"):
        read_export(folder)
    fastdup = tmp_path / "fastdup"
    fastdup.mkdir()
    (tmp_path / "secret.csv").write_text("filename\n/etc/passwd\n")
    (fastdup / "atrain_features.dat.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(UnsafePathError, match=r"symlink out of the export folder"):
        read_export(fastdup)


def test_limits_reject_nonsense_values():
    for bad in ({"max_depth": 0}, {"max_items": -1}, {"max_string_bytes": 1.5}, {"max_compression_ratio": 0.5},
                {"max_compression_ratio": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            IngestLimits(**bad)


def test_json_guard_tracks_strings_and_escapes_across_chunks():
    """Brackets and quotes inside strings (escaped quotes, backslash runs, chunk borders) are not structure."""
    from vlclean.vl_ingest.limits import JsonGuard

    tricky = {"file_name": 'a"[[[{{{\\\\"]]]\\', "x": [[["\\\"" * 5]]], "y": "}" * 100}
    doc = json.dumps({"info": {}, "media_items": [tricky, tricky]}).encode()
    for size in (1, 2, 3, 7, 64):  # the deepest point is 6: {media_items [item {x [[[
        guard = JsonGuard(io.BytesIO(doc), "t", IngestLimits(max_depth=6))
        out = b"".join(iter(lambda: guard.read(size), b""))
        assert out == doc and guard._depth == 0 and guard._item == 1 and not guard._in_string
        guard = JsonGuard(io.BytesIO(doc), "t", IngestLimits(max_depth=5))
        with pytest.raises(LimitExceededError, match=r"t: media_items\[0\] .*deeper than 5"):
            b"".join(iter(lambda: guard.read(size), b""))


def test_params_limits_reach_the_readers(tmp_path: Path, capsys: pytest.CaptureFixture):
    """``ingest_vl.limits`` in params.yaml bounds the stages' reads (here the standalone apply_tags)."""
    from stages import apply_tags
    from tests.conftest import write_params

    export = write_platform_json(tmp_path / "metadata.json", [platform_item(f"{i}.png") for i in range(3)])
    params = write_params(tmp_path / "params.yaml", {"ingest_vl": {"limits": {"max_items": 2}}})
    assert apply_tags.main(["--params", str(params), "--vl_export", str(export), "--dataset", "d", "--output",
                            str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert "media_items[2]" in err and "more than 2 media items" in err and "ingest_vl.limits.max_items" in err
    assert not (tmp_path / "t.csv").exists()
    bad = write_params(tmp_path / "bad.yaml", {"ingest_vl": {"limits": {"max_depth": 0}}})
    assert apply_tags.main(["--params", str(bad), "--vl_export", str(export), "--dataset", "d", "--output",
                            str(tmp_path / "t.csv")]) == 2
    assert "ingest_vl.limits.max_depth" in capsys.readouterr().err
