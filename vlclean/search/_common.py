"""Shared pieces of the search engines: the input error, option checks, thread and progress helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from vlclean.errors import VLCleanError


class SearchInputError(VLCleanError, ValueError):
    """Encodings or search options are malformed: wrong dtype or shape, or an option out of range."""


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SearchInputError(f"{name} must be a positive integer, got {value!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SearchInputError(f"{name} must be one of {choices}, got {value!r}")


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _progress(items: range, enabled: bool, desc: str) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="chunk")


def _map_threads(fn: Callable[[int], Any], items: range, n_threads: int, progress: bool, desc: str) -> list:
    """``[fn(i) for i in items]`` on ``n_threads`` threads (numpy releases the GIL), in order."""
    if n_threads == 1 or len(items) <= 1:
        return [fn(i) for i in _progress(items, progress, desc)]
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        results = pool.map(fn, items)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(items), desc=desc, unit="chunk")
        return list(results)
