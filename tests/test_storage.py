"""Outputs are atomic: a crash while writing leaves the previous output (or nothing), never a partial one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vlclean.storage import atomic_dir, atomic_path, write_csv


def test_atomic_file_keeps_old_content_on_crash(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    write_csv(target, pd.DataFrame({"a": [1]}))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_dir_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "part").write_text("x")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "v1").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "v2").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["v2"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o700)
