"""Outputs are atomic: a crash while writing leaves the previous output (or nothing), never a partial one."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from vlclean import storage
from vlclean.storage import atomic_dir, atomic_path, scratch_dir, write_csv


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


@pytest.fixture
def disk_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The order of fsync / sync / rename calls, as (call, path); the real calls still run."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_sync = os.fsync, os.replace, os.sync

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    def sync() -> None:
        events.append(("sync", ""))
        real_sync()

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "sync", sync)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads fd targets from /proc (Linux)")
def test_writes_reach_the_disk_before_the_rename_and_the_rename_after(tmp_path: Path, disk_events: list) -> None:
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
        tmp_name = str(tmp)
    assert disk_events == [("fsync", tmp_name), ("replace", str(target)), ("fsync", str(tmp_path))]

    disk_events.clear()
    folder = tmp_path / "shards"
    with atomic_dir(folder) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.parquet").write_bytes(b"a")
        (tmp / "b.parquet").write_bytes(b"b")
        tmp_dir = str(tmp)
    *flushed, rename, after = disk_events
    assert rename == ("replace", str(folder)) and after == ("fsync", str(tmp_path))
    assert {p for _, p in flushed} == {tmp_dir, f"{tmp_dir}/sub", f"{tmp_dir}/sub/a.parquet", f"{tmp_dir}/b.parquet"}
    assert all(call == "fsync" for call, _ in flushed)


def test_a_large_new_directory_is_flushed_with_one_sync(tmp_path: Path, disk_events: list) -> None:
    with atomic_dir(tmp_path / "images") as tmp:
        for i in range(storage._FSYNC_MAX_FILES + 1):
            (tmp / f"{i}.jpg").write_bytes(b"x")
    assert [call for call, _ in disk_events] == ["sync", "replace", "fsync"]


def test_scratch_folders_of_killed_runs_are_swept_by_the_next_run(tmp_path: Path) -> None:
    """A run SIGKILLed inside a scratch folder leaves it behind; the next run's scratch_dir removes it,
    never the folder of a process that is still alive."""
    import signal
    import subprocess
    import sys

    killed = ("import os, signal, sys; from vlclean.storage import scratch_dir\n"
              "with scratch_dir('vl_zip_', sys.argv[1]) as tmp:\n"
              "    (tmp / 'metadata.parquet').write_bytes(b'x' * 1000)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", killed, str(tmp_path)], cwd=Path(__file__).parents[1])
    assert proc.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"vl_zip_{storage._owner().rsplit('-', 1)[0]}-{alive.pid}.abc"
        live.mkdir()
        with scratch_dir("vl_zip_", tmp_path) as mine:
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, mine.name])
        assert [p.name for p in tmp_path.iterdir()] == [live.name]
    finally:
        alive.kill()
        alive.wait()
