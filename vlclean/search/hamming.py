"""Exact Hamming search: every pair of 64-bit hashes within a threshold (multi-index hashing or a scan).

:func:`hamming_pairs` and :func:`self_pairs` return *every* pair of 64-bit hashes within
``max_distance`` bits, with no approximation. The default engine is multi-index hashing: the 64
bits are cut into ``m`` substrings of at most 24 bits and substring ``i`` is probed within radius
``r_i`` where ``sum(r_i + 1) > max_distance``. By the pigeonhole principle a pair within
``max_distance`` bits lies within ``r_i`` bits on at least one substring, so probing every
substring value within ``r_i`` of the query's (a direct-address table per substring) finds every
pair; each candidate is then verified with a full 64-bit popcount. ``m`` and the radii come from a
cost model; when the index would not beat a scan (large thresholds, tiny inputs) the engine falls
back to a brute-force scan, faiss ``IndexBinaryFlat`` range search (exact as well; faiss keeps
distances strictly below the radius, so it is asked for ``max_distance + 1``), which spreads each
query chunk over faiss's OpenMP threads.

The cost model counts about nanoseconds on one core: a probe of a substring table costs
``_COST_PROBE``, a candidate to verify ``_COST_CANDIDATE``, a base row added to a table
``_COST_BUILD``, and one (query, base) pair of the scan ``_COST_SCAN``. The multi-index search costs
``build x B x m + Q x sum_i ball(w_i, r_i) x (probe + candidate x B / 2^w_i)``, the scan
``scan x Q x B``; the cheaper one runs. ``_COST_SCAN`` is 0.45: faiss's popcount scan measured 6.4-7x
faster than the numpy XOR + popcount scan it replaced (3.0), one thread each
(``bench/bench_leak_search.py``, section a'), so the scan now wins up to higher thresholds and larger
inputs than before. Memory is bounded by processing queries in chunks and, in the multi-index
search, expanding at most ``max_candidates`` candidates at a time (the scan holds only the pairs it
finds).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vlclean.search._common import SearchInputError, _available_cpus, _check_choice, _check_positive_int, _map_threads

HASH_BITS = 64
HAMMING_METHODS: tuple[str, ...] = ("auto", "index", "brute")
HAMMING_COLUMNS: tuple[str, ...] = ("query_idx", "base_idx", "distance", "mirrored")

# Widest substring of a multi-index hash table: 2**24 + 1 int64 offsets = 128 MiB.
_MAX_SUBSTRING_BITS = 24
# Relative costs (about ns on one core) used to choose substrings, or a scan, for Hamming search.
_COST_PROBE = 8.0
_COST_CANDIDATE = 25.0
_COST_SCAN = 0.45  # faiss IndexBinaryFlat; the numpy scan it replaced cost 3.0 (see the module doc)
_COST_BUILD = 130.0


def hamming_pairs(
    query: np.ndarray,
    base: np.ndarray,
    *,
    max_distance: int,
    query_mirror: np.ndarray | None = None,
    method: str = "auto",
    query_chunk: int = 2048,
    max_candidates: int = 2_000_000,
    n_threads: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """All (query, base) pairs of 64-bit hashes within ``max_distance`` bits, exactly.

    Parameters
    ----------
    query : np.ndarray, shape (Q,), dtype uint64
        Query hashes (e.g. the test split).
    base : np.ndarray, shape (B,), dtype uint64
        Base hashes (e.g. the train split).
    max_distance : int
        Largest Hamming distance reported, 0..64 inclusive.
    query_mirror : np.ndarray, shape (Q,), dtype uint64, optional
        Hashes of the horizontally mirrored query images. When given, ``query_mirror[i]`` is also
        compared with ``base`` and each pair keeps the smaller of the two distances.
    method : {"auto", "index", "brute"}
        ``"index"``: multi-index hashing; ``"brute"``: faiss scan of every pair; ``"auto"``:
        whichever a cost model expects to be faster. All three are exact.
    query_chunk : int
        Queries handled per task (bounds memory together with ``max_candidates``).
    max_candidates : int
        Candidates expanded at once per task by the multi-index search (about 40 bytes each).
    n_threads : int, optional
        Worker threads; default: the CPUs this process may use.
    progress : bool
        Show a tqdm bar over query chunks.

    Returns
    -------
    pandas.DataFrame
        Columns ``query_idx`` (int64, row in ``query``), ``base_idx`` (int64, row in ``base``),
        ``distance`` (int64) and ``mirrored`` (bool: True when only the mirrored query reached
        ``distance``; on a tie the plain match wins), sorted by ``query_idx`` then ``base_idx``.
    """
    _check_hashes("query", query)
    _check_hashes("base", base)
    _check_max_distance(max_distance)
    if query_mirror is not None:
        _check_hashes("query_mirror", query_mirror)
        if len(query_mirror) != len(query):
            raise SearchInputError(
                f"query_mirror has {len(query_mirror)} hashes but query has {len(query)}; "
                "they must be aligned row for row"
            )
    _check_choice("method", method, HAMMING_METHODS)
    _check_positive_int("query_chunk", query_chunk)
    _check_positive_int("max_candidates", max_candidates)
    if n_threads is not None:
        _check_positive_int("n_threads", n_threads)
    return _hamming_pairs(
        np.ascontiguousarray(query),
        np.ascontiguousarray(base),
        max_distance=int(max_distance),
        query_mirror=None if query_mirror is None else np.ascontiguousarray(query_mirror),
        method=method,
        query_chunk=query_chunk,
        max_candidates=max_candidates,
        n_threads=n_threads or _available_cpus(),
        progress=progress,
    )


def self_pairs(
    hashes: np.ndarray,
    *,
    max_distance: int,
    mirror: np.ndarray | None = None,
    method: str = "auto",
    n_threads: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """All pairs ``i < j`` of one set of 64-bit hashes within ``max_distance`` bits (duplicates).

    Parameters
    ----------
    hashes : np.ndarray, shape (N,), dtype uint64
    max_distance : int
        Largest Hamming distance reported, 0..64 inclusive.
    mirror : np.ndarray, shape (N,), dtype uint64, optional
        Hashes of the mirrored images; a pair's distance is then the smallest of
        ``d(h_i, h_j)``, ``d(mirror_i, h_j)`` and ``d(h_i, mirror_j)``.
    method, n_threads, progress
        As in :func:`hamming_pairs`.

    Returns
    -------
    pandas.DataFrame
        Columns ``query_idx`` < ``base_idx`` (both rows of ``hashes``), ``distance``, ``mirrored``;
        each unordered pair once, no row paired with itself; sorted by ``query_idx``, ``base_idx``.
    """
    _check_hashes("hashes", hashes)
    _check_max_distance(max_distance)
    if mirror is not None:
        _check_hashes("mirror", mirror)
        if len(mirror) != len(hashes):
            raise SearchInputError(
                f"mirror has {len(mirror)} hashes but hashes has {len(hashes)}; they must be aligned row for row"
            )
    _check_choice("method", method, HAMMING_METHODS)
    if n_threads is not None:
        _check_positive_int("n_threads", n_threads)
    hashes = np.ascontiguousarray(hashes)
    pairs = _hamming_pairs(
        hashes,
        hashes,
        max_distance=int(max_distance),
        query_mirror=None if mirror is None else np.ascontiguousarray(mirror),
        method=method,
        query_chunk=2048,
        max_candidates=2_000_000,
        n_threads=n_threads or _available_cpus(),
        progress=progress,
    )
    qi = pairs["query_idx"].to_numpy()
    bi = pairs["base_idx"].to_numpy()
    keep = qi != bi
    lo = np.minimum(qi, bi)[keep]
    hi = np.maximum(qi, bi)[keep]
    return _frame_min_distance(lo, hi, pairs["distance"].to_numpy()[keep], pairs["mirrored"].to_numpy()[keep])


@dataclass(frozen=True)
class _Substring:
    """Bits ``[shift, shift + width)`` of a hash, probed within ``radius`` bits."""

    shift: int
    width: int
    radius: int


@dataclass(frozen=True)
class _SubstringTable:
    """Direct-address table of the base over one substring (a CSR layout sorted by substring)."""

    part: _Substring
    counts: np.ndarray  # (2**width,) narrowest uint: base rows whose substring value is v
    starts: np.ndarray  # (2**width,) int32/int64: first sorted entry of value v
    sorted_hashes: np.ndarray  # (B,) uint64, base hashes in substring order
    order: np.ndarray  # (B,) int64, base row of each sorted entry
    flips: np.ndarray  # (V,) uint32, every value of popcount <= radius within width bits


def _hamming_pairs(
    query: np.ndarray,
    base: np.ndarray,
    *,
    max_distance: int,
    query_mirror: np.ndarray | None,
    method: str,
    query_chunk: int,
    max_candidates: int,
    n_threads: int,
    progress: bool,
) -> pd.DataFrame:
    n_probe_rows = len(query) * (1 if query_mirror is None else 2)
    if len(query) == 0 or len(base) == 0:
        return _empty_hamming_frame()
    plan = _plan_substrings(max_distance, n_base=len(base), n_queries=n_probe_rows)
    use_index = method == "index" or (method == "auto" and plan is not None)
    if use_index:
        if plan is None:
            plan = _plan_substrings(max_distance, n_base=len(base), n_queries=None)
        tables = [_build_table(base, part) for part in plan]

        def worker(qvals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return _index_search(tables, qvals, max_distance, max_candidates)

    else:
        scan = _binary_flat_index(base)

        def worker(qvals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return _scan_search(scan, qvals, max_distance)

    def run_chunk(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        stop = min(start + query_chunk, len(query))
        qvals = query[start:stop]
        if query_mirror is not None:
            qvals = np.concatenate([qvals, query_mirror[start:stop]])
        local, bidx, dist = worker(qvals)
        n = stop - start
        mirrored = local >= n
        qidx = start + np.where(mirrored, local - n, local)
        return qidx, bidx, dist, mirrored

    starts = range(0, len(query), query_chunk)
    if use_index:
        results = _map_threads(run_chunk, starts, n_threads, progress, "hamming search")
    else:  # faiss spreads each chunk's queries over its own OpenMP threads
        with _faiss_threads(n_threads):
            results = _map_threads(run_chunk, starts, 1, progress, "hamming search")
    return _frame_min_distance(*(np.concatenate([r[i] for r in results]) for i in range(4)))


def _plan_substrings(max_distance: int, *, n_base: int, n_queries: int | None) -> list[_Substring] | None:
    """Cheapest exact substring split for uniform hashes; None if a scan is expected to be faster.

    With ``n_queries=None`` the best split is returned whatever a scan would cost.
    """

    def cost_of(width: int, radius: int) -> float:
        return _ball_size(width, radius) * (_COST_PROBE + _COST_CANDIDATE * n_base / 2.0**width)

    best: tuple[float, list[_Substring]] | None = None
    for m in range(1, HASH_BITS + 1):
        widths = [HASH_BITS // m + (1 if i < HASH_BITS % m else 0) for i in range(m)]
        if widths[0] > _MAX_SUBSTRING_BITS:
            continue
        # Pigeonhole: sum(r_i + 1) > max_distance, i.e. sum(r_i) >= max_distance - m + 1.
        radii = [0] * m
        for _ in range(max(0, max_distance - m + 1)):
            steps = [cost_of(w, r + 1) - cost_of(w, r) for w, r in zip(widths, radii)]
            radii[int(np.argmin(steps))] += 1
        per_query = sum(cost_of(w, r) for w, r in zip(widths, radii))
        shifts = np.concatenate([[0], np.cumsum(widths)[:-1]])
        plan = [_Substring(int(s), w, r) for s, w, r in zip(shifts, widths, radii)]
        if best is None or per_query < best[0]:
            best = (per_query, plan)
    assert best is not None  # m = 3 always fits 24-bit substrings
    per_query, plan = best
    if n_queries is None:
        return plan
    index_cost = _COST_BUILD * n_base * len(plan) + n_queries * per_query
    scan_cost = _COST_SCAN * n_base * n_queries
    return plan if index_cost < scan_cost else None


def _ball_size(width: int, radius: int) -> int:
    """Number of ``width``-bit values within ``radius`` bits of a given one."""
    return sum(math.comb(width, i) for i in range(min(radius, width) + 1))


def _build_table(base: np.ndarray, part: _Substring) -> _SubstringTable:
    keys = _substring(base, part)
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=1 << part.width)
    starts = np.zeros(1 << part.width, dtype=np.int32 if len(base) < 2**31 else np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    values = np.arange(1 << part.width, dtype=np.uint32)
    flips = values[np.bitwise_count(values) <= part.radius]
    return _SubstringTable(
        part, counts.astype(_narrowest_uint(int(counts.max()))), starts, base[order], order.astype(np.int64), flips
    )


def _narrowest_uint(largest: int) -> type:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def _substring(hashes: np.ndarray, part: _Substring) -> np.ndarray:
    mask = np.uint64((1 << part.width) - 1)
    return ((hashes >> np.uint64(part.shift)) & mask).astype(np.uint32)


def _index_search(
    tables: list[_SubstringTable], qvals: np.ndarray, max_distance: int, max_candidates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs within ``max_distance`` of ``qvals`` (Qc,) found through the tables; local query rows."""
    found_q, found_b, found_d = [], [], []
    for table in tables:
        n_flips = len(table.flips)
        probes = (_substring(qvals, table.part)[:, None] ^ table.flips[None, :]).ravel()
        # Bucket sizes first: a narrow array that stays in cache; starts only for non-empty buckets.
        counts = table.counts[probes]
        hit = np.flatnonzero(counts)
        if len(hit) == 0:
            continue
        counts = counts[hit].astype(np.int64)
        starts = table.starts[probes[hit]].astype(np.int64)
        del probes
        # Expand the hit buckets in pieces of about max_candidates entries (a bigger bucket alone).
        ends = np.cumsum(counts)
        cuts = np.searchsorted(ends, np.arange(max_candidates, int(ends[-1]), max_candidates), side="right")
        bounds = np.unique(np.concatenate([[0], cuts, [len(hit)]]))
        for lo, hi in itertools.pairwise(bounds):
            c = counts[lo:hi]
            first = np.cumsum(c) - c
            total = int(first[-1] + c[-1])
            pos = _repeat_runs(starts[lo:hi] - first, first, total)
            pos += np.arange(total, dtype=np.int64)
            rows = _repeat_runs(hit[lo:hi] // n_flips, first, total)
            xor = qvals[rows]
            xor ^= table.sorted_hashes[pos]
            dist = np.bitwise_count(xor)
            ok = np.flatnonzero(dist <= max_distance)
            found_q.append(rows[ok])
            found_b.append(table.order[pos[ok]])
            found_d.append(dist[ok])
    return _concat_found(found_q, found_b, found_d)


def _repeat_runs(values: np.ndarray, first: np.ndarray, total: int) -> np.ndarray:
    """``np.repeat(values, counts)`` given run starts ``first`` (strictly increasing, from 0).

    Built from a scatter and a cumulative sum because ``np.repeat`` holds the GIL, which would
    serialise the worker threads.
    """
    out = np.zeros(total, dtype=np.int64)
    out[first] = np.diff(values, prepend=0)
    return np.cumsum(out, out=out)


def _binary_flat_index(base: np.ndarray) -> Any:
    """A faiss ``IndexBinaryFlat`` over the 64-bit hashes (8 bytes each, as stored: Hamming distance
    does not depend on the byte order as long as queries use the same)."""
    import faiss

    index = faiss.IndexBinaryFlat(HASH_BITS)
    index.add(base.view(np.uint8).reshape(-1, 8))
    return index


def _scan_search(index: Any, qvals: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs within ``max_distance`` of ``qvals`` (Qc,) by faiss's exhaustive Hamming range search; local
    query rows. faiss keeps distances strictly below the radius, hence ``max_distance + 1``. Memory is
    the pairs found (no distance matrix)."""
    lims, dist, ids = index.range_search(np.ascontiguousarray(qvals).view(np.uint8).reshape(-1, 8), max_distance + 1)
    rows = np.repeat(np.arange(len(qvals), dtype=np.int64), np.diff(lims).astype(np.int64))
    return rows, ids.astype(np.int64), dist.astype(np.int64)


@contextlib.contextmanager
def _faiss_threads(n_threads: int) -> Iterator[None]:
    """faiss's OpenMP thread count set to ``n_threads`` for the block, then restored."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _concat_found(qs: list, bs: list, ds: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not qs:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    return (
        np.concatenate(qs).astype(np.int64),
        np.concatenate(bs).astype(np.int64),
        np.concatenate(ds).astype(np.int64),
    )


def _frame_min_distance(qidx: np.ndarray, bidx: np.ndarray, dist: np.ndarray, mirrored: np.ndarray) -> pd.DataFrame:
    """One row per (query_idx, base_idx): the smallest distance, plain match first on a tie."""
    order = np.lexsort((mirrored, dist, bidx, qidx))
    qidx, bidx, dist, mirrored = qidx[order], bidx[order], dist[order], mirrored[order]
    first = np.ones(len(qidx), dtype=bool)
    first[1:] = (qidx[1:] != qidx[:-1]) | (bidx[1:] != bidx[:-1])
    return pd.DataFrame(
        {
            "query_idx": qidx[first].astype(np.int64),
            "base_idx": bidx[first].astype(np.int64),
            "distance": dist[first].astype(np.int64),
            "mirrored": mirrored[first].astype(bool),
        }
    )


def _empty_hamming_frame() -> pd.DataFrame:
    empty = np.empty(0, np.int64)
    return _frame_min_distance(empty, empty, empty, np.empty(0, bool))


def _check_hashes(name: str, hashes: object) -> None:
    if not isinstance(hashes, np.ndarray):
        raise SearchInputError(f"{name} must be a numpy array of uint64 hashes, got {type(hashes).__name__}")
    if hashes.ndim != 1:
        raise SearchInputError(f"{name} must be 1-D (one 64-bit hash per image), got shape {hashes.shape}")
    if hashes.dtype != np.uint64:
        if hashes.dtype == np.int64:
            hint = " (reinterpret signed hashes with .view(np.uint64))"
        elif hashes.dtype.kind in "fO":
            hint = " (a hash column with missing values is not uint64: drop rows without a hash first)"
        else:
            hint = ""
        raise SearchInputError(f"{name} must have dtype uint64, got {hashes.dtype}{hint}")


def _check_max_distance(max_distance: object) -> None:
    if isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)):
        raise SearchInputError(f"max_distance must be an integer number of bits, got {max_distance!r}")
    if not 0 <= max_distance <= HASH_BITS:
        raise SearchInputError(f"max_distance must be within 0..{HASH_BITS}, got {max_distance}")


