"""Time and peak memory of each hostile-input case (tests/test_hardening*.py, tests/test_ingest_limits.py).

Every test of those modules is one case (the ``hostile_case`` fixture, used through ``pytestmark``), and
:func:`measure` records sub-cases inside a test (one hostile file each). Memory is the growth of this
process's resident set above its size when the case started, sampled every 2 ms from ``/proc/self/statm``
(so allocations of C code, arrow and the JSON parser count, unlike ``tracemalloc``); cases that run
stages in child processes also report the children's peak RSS (``ru_maxrss`` of children that ended
during the case, when it rose past every earlier child's). Module-scoped fixtures (the bad-image zoo)
are built before the first case that uses them and are not counted. The table is printed in pytest's
terminal summary (``tests/conftest.py``), and written as tab-separated text where the environment
variable ``VLCLEAN_HOSTILE_TABLE`` names a file.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # a test: passed/failed/skipped; a sub-case: what it returned or raised
    seconds: float
    peak_mb: float  # RSS growth of this process
    child_mb: float | None  # peak RSS of a child process that ended during the case, when it set a new high


ROWS: list[Case] = []
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mb() -> float:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE / 2**20


def _children_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux


class Sampler:
    """Wall time, peak RSS growth and children's peak RSS between ``start`` and ``stop``."""

    def start(self) -> Sampler:
        self._base, self._peak, self._stop = _rss_mb(), 0.0, threading.Event()
        self._children = _children_maxrss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, _rss_mb() - self._base)

    def stop(self, name: str, outcome: str) -> Case:
        seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        peak = max(self._peak, _rss_mb() - self._base)
        children = _children_maxrss_mb()
        return Case(name, outcome, seconds, peak, children if children > self._children else None)


def measure(case: str, fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``fn``; return what it raised (or returned), its seconds and peak RSS growth in MB, and record them."""
    sampler = Sampler().start()
    try:
        outcome = fn()
    except Exception as err:  # noqa: BLE001 - the outcome is checked by the caller
        outcome = err
    row = sampler.stop(f"  {case}", type(outcome).__name__)
    ROWS.append(row)
    return outcome, row.seconds, row.peak_mb


@pytest.fixture
def hostile_case(request: pytest.FixtureRequest):
    """Record the test as one case: its time and peak memory (function fixtures of the test included)."""
    at = len(ROWS)
    sampler = Sampler().start()
    yield
    report = getattr(request.node, "hostile_report", None)
    outcome = "error" if report is None else report.outcome
    ROWS.insert(at, sampler.stop(f"{request.node.module.__name__.rsplit('.', 1)[-1]}::{request.node.name}", outcome))


def summary(terminalreporter: Any) -> None:
    """The table of every case measured in this session (called from ``pytest_terminal_summary``)."""
    if not ROWS:
        return
    width = min(100, max(len(r.name) for r in ROWS))
    header = f"{'case':<{width}}  {'outcome':<22} {'seconds':>8} {'peak RSS MB':>12} {'children MB':>12}"
    terminalreporter.write_sep("-", "hostile inputs: time and peak memory per case")
    terminalreporter.write_line(header)
    for r in ROWS:
        child = "" if r.child_mb is None else f"{r.child_mb:.0f}"
        terminalreporter.write_line(f"{r.name[:width]:<{width}}  {r.outcome:<22} {r.seconds:8.2f} {r.peak_mb:12.1f} "
                                    f"{child:>12}")
    target = os.environ.get("VLCLEAN_HOSTILE_TABLE")
    if target:
        lines = ["case\toutcome\tseconds\tpeak_rss_mb\tchildren_mb"]
        lines += [f"{r.name.strip()}\t{r.outcome}\t{r.seconds:.3f}\t{r.peak_mb:.1f}\t"
                  f"{'' if r.child_mb is None else round(r.child_mb)}" for r in ROWS]
        Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
