"""The scale benchmark's settings stay valid params: bench/bench_scale.py is not run by the suite (minutes),
so a renamed or moved key (``download.workers`` went to ``runtime`` in issue 14) must fail here, not at
the first stage of an hour-long run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vlclean.params import parse, Params, ParamsError

REPO = Path(__file__).resolve().parents[1]


def _bench_scale():
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "bench" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_scale", module)
    spec.loader.exec_module(module)
    return module


def test_bench_scale_params_validate(tmp_path: Path) -> None:
    params = parse(Params, _bench_scale().bench_params(tmp_path / "images"), "")
    assert params.download.source == "folder"
    assert params.analyze.embedding.model == "pixels"
    assert params.runtime.download.workers == 2 and params.runtime.analyze.workers == 2


def test_a_moved_key_is_refused(tmp_path: Path) -> None:
    raw = _bench_scale().bench_params(tmp_path / "images")
    raw["download"]["workers"] = 2  # where it lived before issue 14
    with pytest.raises(ParamsError, match="download.workers"):
        parse(Params, raw, "")


@pytest.mark.parametrize("bench", sorted(p.name for p in (REPO / "bench").glob("bench_*.py")))
def test_every_benchmark_takes_quick(bench: str) -> None:
    """`make bench` runs each bench/bench_*.py with --quick; one without it stops the loop
    (bench_photo_leaks did)."""
    source = (REPO / "bench" / bench).read_text()
    assert '"--quick"' in source and "add_argument" in source, f"bench/{bench} has no --quick option"
