"""Search engines over encodings: Hamming pairs of 64-bit hashes, and cosine neighbours of embeddings.

Leak detection (test vs train) and duplicate finding (within one set) both reduce to "all pairs
closer than a threshold". Search here takes encodings (arrays), never folders; the caller keeps
the mapping from row position to ``image_id``.

Hamming search (exact)
----------------------
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

Embedding search
----------------
:func:`embedding_pairs`, :func:`embedding_self_pairs` and :func:`nearest_neighbors` take
L2-normalised rows (float32 or float16), so inner product is cosine similarity. Below
``exact_below`` base rows (default 1M) the search is exact (faiss brute-force inner product, no
copy of the base) unless the queries times the base rows exceed :data:`EXACT_PAIR_BUDGET` (a self
search of N rows costs N**2: about 50K rows on 2 cores in a minute); above it an approximate faiss index is built (IVF by default, HNSW on request)
and :func:`recall_check` measures its recall@1 against exact search on a sample of queries.
Reported similarities are always exact: lossy storages are re-scored against the input rows.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vlclean.errors import VLCleanError

HASH_BITS = 64
HAMMING_METHODS: tuple[str, ...] = ("auto", "index", "brute")
EMBEDDING_INDEX_KINDS: tuple[str, ...] = ("auto", "flat", "ivf", "hnsw")
EMBEDDING_STORAGES: tuple[str, ...] = ("auto", "float32", "float16", "sq8")

HAMMING_COLUMNS: tuple[str, ...] = ("query_idx", "base_idx", "distance", "mirrored")
EMBEDDING_COLUMNS: tuple[str, ...] = ("query_idx", "base_idx", "similarity")

# Widest substring of a multi-index hash table: 2**24 + 1 int64 offsets = 128 MiB.
_MAX_SUBSTRING_BITS = 24
# Relative costs (about ns on one core) used to choose substrings, or a scan, for Hamming search.
_COST_PROBE = 8.0
_COST_CANDIDATE = 25.0
_COST_SCAN = 0.45  # faiss IndexBinaryFlat; the numpy scan it replaced cost 3.0 (see the module doc)
_COST_BUILD = 130.0
# A row whose L2 norm is further than this from 1 is rejected as not normalised.
_NORM_TOLERANCE = 1e-2
# Two similarities closer than this count as a tie in recall_check.
_TIE_TOLERANCE = 1e-5
_ROW_BLOCK = 65_536
# "auto" searches exactly while queries x base rows stay within this many dot products (~1 min of
# 2 cores at 300 dims); beyond it an IVF index, whose cost grows as N**1.5, not N**2.
EXACT_PAIR_BUDGET = 2.5e9


class SearchInputError(VLCleanError, ValueError):
    """Encodings or search options are malformed: wrong dtype or shape, or an option out of range."""


# --------------------------------------------------------------------------------------------
# Hamming search
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Embedding search
# --------------------------------------------------------------------------------------------


@dataclass
class EmbeddingIndex:
    """A searchable index over ``size`` L2-normalised rows of ``dim`` dimensions.

    Build with :func:`build_embedding_index`. ``kind`` is ``"flat"`` (exact, keeps a reference to
    the base array instead of a copy), ``"ivf"`` or ``"hnsw"`` (approximate faiss indexes).
    """

    kind: str
    storage: str
    size: int
    dim: int
    faiss_index: Any = None  # faiss.Index for "ivf" / "hnsw"
    base: np.ndarray | None = None  # the rows themselves for "flat"
    nprobe: int | None = None
    ef_search: int | None = None

    @property
    def exact(self) -> bool:
        """True when searches return the exact top-k."""
        return self.kind == "flat"

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by inner product for ``query`` (Q, dim).

        Returns ``(similarities (Q, k) float32, ids (Q, k) int64)``, best first; missing
        neighbours (approximate index, or ``k > size``) have id -1 and similarity -inf.
        """
        query = np.ascontiguousarray(query, dtype=np.float32)
        k_eff = min(k, self.size)
        if k_eff == 0:
            return np.full((len(query), k), -np.inf, dtype=np.float32), np.full((len(query), k), -1, dtype=np.int64)
        if self.kind == "flat":
            sims, ids = _flat_search(self.base, query, k_eff)
        else:
            sims, ids = self.faiss_index.search(query, k_eff)
        if k_eff < k:
            pad = ((0, 0), (0, k - k_eff))
            sims = np.pad(sims, pad, constant_values=-np.inf)
            ids = np.pad(ids, pad, constant_values=-1)
        sims = np.where(ids < 0, -np.inf, sims).astype(np.float32)
        return sims, ids.astype(np.int64)


def build_embedding_index(
    base: np.ndarray,
    *,
    index: str = "auto",
    exact_below: int = 1_000_000,
    storage: str = "auto",
    nlist: int | None = None,
    nprobe: int | None = None,
    train_size: int | None = None,
    train_iterations: int = 10,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> EmbeddingIndex:
    """Index ``base`` (B, D) L2-normalised float32/float16 rows for inner-product search.

    Parameters
    ----------
    index : {"auto", "flat", "ivf", "hnsw"}
        ``"flat"``: exact brute force (no copy of ``base``); ``"ivf"``: faiss inverted lists
        (``nlist`` k-means cells, ``nprobe`` visited per query); ``"hnsw"``: faiss HNSW graph;
        ``"auto"``: ``"flat"`` below ``exact_below`` rows, else ``"ivf"``.
    exact_below : int
        Size threshold of ``"auto"``.
    storage : {"auto", "float32", "float16", "sq8"}
        Vector storage inside an approximate index: float32 (4 bytes/dim), float16 (2 bytes/dim,
        near-lossless), sq8 (1 byte/dim). ``"auto"``: float16 for ivf/hnsw. A flat index stores
        nothing and accepts only ``"auto"`` or ``"float32"``.
    nlist : int, optional
        IVF cells; default the power of two nearest ``sqrt(B)``, at most ``B // 40``.
    nprobe : int, optional
        IVF cells visited per query; default ``max(16, nlist // 64)``.
    train_size : int, optional
        Rows sampled to train IVF k-means; default ``min(B, 50 * nlist)``.
    train_iterations : int
        k-means iterations.
    hnsw_m, ef_construction, ef_search : int
        HNSW graph degree, build beam and search beam.
    seed : int
        Seeds the training sample and k-means.
    progress : bool
        Show a tqdm bar while adding rows.
    """
    _check_embeddings("base", base)
    _check_normalised("base", base)
    _check_choice("index", index, EMBEDDING_INDEX_KINDS)
    _check_choice("storage", storage, EMBEDDING_STORAGES)
    for name, value in (
        ("exact_below", exact_below),
        ("train_iterations", train_iterations),
        ("hnsw_m", hnsw_m),
        ("ef_construction", ef_construction),
        ("ef_search", ef_search),
    ):
        _check_positive_int(name, value)
    for name, value in (("nlist", nlist), ("nprobe", nprobe), ("train_size", train_size)):
        if value is not None:
            _check_positive_int(name, value)
    return _build_embedding_index(
        base,
        kind=_resolve_kind(index, len(base), exact_below),
        storage=storage,
        nlist=nlist,
        nprobe=nprobe,
        train_size=train_size,
        train_iterations=train_iterations,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        ef_search=ef_search,
        seed=seed,
        progress=progress,
    )


def embedding_pairs(
    query: np.ndarray,
    base: np.ndarray,
    *,
    min_similarity: float,
    k: int = 10,
    index: str | EmbeddingIndex = "auto",
    nprobe: int | None = None,
    exact_below: int = 1_000_000,
    storage: str = "auto",
    seed: int = 0,
    query_chunk: int = 8192,
    progress: bool = False,
) -> pd.DataFrame:
    """(query, base) pairs with cosine similarity >= ``min_similarity`` among each query's top ``k``.

    Parameters
    ----------
    query : np.ndarray, shape (Q, D), float32 or float16, rows L2-normalised
    base : np.ndarray, shape (B, D), float32 or float16, rows L2-normalised
    min_similarity : float
        Smallest cosine similarity reported, in [-1, 1].
    k : int
        Neighbours examined per query; a query has at most ``k`` pairs.
    index : {"auto", "flat", "ivf", "hnsw"} or EmbeddingIndex
        Kind of index to build (see :func:`build_embedding_index`), or one already built over
        ``base`` (for other IVF/HNSW settings, or to reuse it for :func:`recall_check`).
    nprobe, exact_below, storage, seed
        Passed to :func:`build_embedding_index` when ``index`` is a kind.
    query_chunk : int
        Queries searched at once.
    progress : bool
        Show tqdm bars.

    Returns
    -------
    pandas.DataFrame
        Columns ``query_idx`` (int64), ``base_idx`` (int64), ``similarity`` (float32, exact cosine
        recomputed from the inputs), sorted by ``query_idx`` then descending ``similarity``.
    """
    _check_embeddings("query", query)
    _check_embeddings("base", base)
    _check_same_dim(query, base)
    _check_normalised("query", query)
    _check_normalised("base", base)
    _check_similarity(min_similarity)
    _check_positive_int("k", k)
    _check_positive_int("query_chunk", query_chunk)
    if len(query) == 0 or len(base) == 0:
        return _embedding_frame([], [], [])
    built = _resolve_index(
        index, base, nprobe=nprobe, exact_below=exact_below, storage=storage, seed=seed, progress=progress,
        n_queries=len(query),
    )
    qs, bs, ss = [], [], []
    for start in _progress(range(0, len(query), query_chunk), progress, "embedding search"):
        chunk = np.asarray(query[start : start + query_chunk], dtype=np.float32)
        sims, ids = _search_rescored(built, chunk, base, k)
        qi, col = np.nonzero(sims >= min_similarity)
        qs.append(qi + start)
        bs.append(ids[qi, col])
        ss.append(sims[qi, col])
    return _embedding_frame(qs, bs, ss)


def embedding_self_pairs(
    x: np.ndarray,
    *,
    min_similarity: float,
    k: int = 10,
    index: str | EmbeddingIndex = "auto",
    nprobe: int | None = None,
    exact_below: int = 1_000_000,
    storage: str = "auto",
    seed: int = 0,
    query_chunk: int = 8192,
    progress: bool = False,
) -> pd.DataFrame:
    """Pairs ``i < j`` of rows of ``x`` (N, D) with cosine >= ``min_similarity`` (near-duplicates).

    A pair is reported when either row has the other among its ``k`` nearest neighbours (self
    excluded). Options as in :func:`embedding_pairs`.

    Returns
    -------
    pandas.DataFrame
        Columns ``query_idx`` < ``base_idx`` (rows of ``x``), ``similarity`` (float32, exact);
        each unordered pair once, sorted by ``query_idx`` then descending ``similarity``.
    """
    _check_embeddings("x", x)
    _check_normalised("x", x)
    _check_similarity(min_similarity)
    _check_positive_int("k", k)
    _check_positive_int("query_chunk", query_chunk)
    built = _resolve_index(
        index, x, nprobe=nprobe, exact_below=exact_below, storage=storage, seed=seed, progress=progress,
        n_queries=len(x),
    )
    qs, bs, ss = [], [], []
    for start, sims, ids in _self_neighbours(built, x, min(k, max(len(x) - 1, 0)), query_chunk, progress):
        rows = np.arange(start, start + len(ids))[:, None]
        qi, col = np.nonzero((sims >= min_similarity) & (ids >= 0))
        a, b = rows[qi, 0], ids[qi, col]
        qs.append(np.minimum(a, b))
        bs.append(np.maximum(a, b))
        ss.append(sims[qi, col])
    frame = _embedding_frame(qs, bs, ss)
    return frame.drop_duplicates(["query_idx", "base_idx"], keep="first").reset_index(drop=True)


def nearest_neighbors(
    x: np.ndarray,
    *,
    k: int = 10,
    index: str | EmbeddingIndex = "auto",
    nprobe: int | None = None,
    exact_below: int = 1_000_000,
    storage: str = "auto",
    seed: int = 0,
    query_chunk: int = 8192,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of each row of ``x`` (N, D): ``(similarities, ids)``, both ``(N, k)``.

    The row itself is excluded by id (an exact duplicate still counts as a neighbour with
    similarity 1). Options as in :func:`embedding_pairs`; ``k`` must be below N. Similarities are
    float32, best first; an approximate index may find fewer than ``k`` neighbours: those have
    similarity NaN and id -1. One search serves every neighbour-based detector (duplicates,
    outliers, the kNN classifier)."""
    _check_embeddings("x", x)
    _check_normalised("x", x)
    _check_positive_int("k", k)
    _check_positive_int("query_chunk", query_chunk)
    if len(x) == 0:
        return np.empty((0, k), dtype=np.float32), np.empty((0, k), dtype=np.int64)
    if k >= len(x):
        raise SearchInputError(f"k={k} neighbours asked but x has only {len(x)} rows (k must be < rows)")
    built = _resolve_index(
        index, x, nprobe=nprobe, exact_below=exact_below, storage=storage, seed=seed, progress=progress,
        n_queries=len(x),
    )
    sims_out = np.empty((len(x), k), dtype=np.float32)
    ids_out = np.empty((len(x), k), dtype=np.int64)
    for start, sims, ids in _self_neighbours(built, x, k, query_chunk, progress):
        sims_out[start : start + len(ids)] = np.where(ids >= 0, sims, np.nan)
        ids_out[start : start + len(ids)] = ids
    return sims_out, ids_out


def recall_check(
    query: np.ndarray,
    base: np.ndarray,
    *,
    index: str | EmbeddingIndex = "ivf",
    sample: int = 500,
    nprobe: int | None = None,
    storage: str = "auto",
    seed: int = 0,
) -> float:
    """Recall@1 of an approximate index against exact search, on ``sample`` random queries.

    A query counts as recalled when the index's first neighbour is the exact first neighbour,
    or ties it (exact similarities within 1e-5, e.g. duplicate base rows).

    Parameters
    ----------
    query : np.ndarray, shape (Q, D); base : np.ndarray, shape (B, D)
        L2-normalised float32/float16 rows.
    index : {"flat", "ivf", "hnsw"} or EmbeddingIndex
        Index to test: a kind to build over ``base`` (``"auto"`` is not accepted here, say which),
        or one already built over ``base``.
    sample : int
        Queries drawn without replacement (all when Q is smaller).
    nprobe, storage, seed
        Build options when ``index`` is a kind; ``seed`` also draws the sample.

    Returns
    -------
    float
        Fraction of sampled queries recalled, in [0, 1] (1.0 when ``query`` or ``base`` is empty).
    """
    _check_embeddings("query", query)
    _check_embeddings("base", base)
    _check_same_dim(query, base)
    _check_normalised("query", query)
    _check_normalised("base", base)
    _check_positive_int("sample", sample)
    if isinstance(index, str):
        _check_choice("index", index, EMBEDDING_INDEX_KINDS[1:])
    built = _resolve_index(index, base, nprobe=nprobe, exact_below=1, storage=storage, seed=seed, progress=False)
    if len(query) == 0 or len(base) == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(query), size=min(sample, len(query)), replace=False))
    sample_q = np.asarray(query[rows], dtype=np.float32)
    exact_sims, exact_ids = _flat_search(base, sample_q, 1)
    _, approx_ids = built.search(sample_q, 1)
    approx = approx_ids[:, 0]
    approx_sims = np.full(len(rows), -np.inf, dtype=np.float32)
    found = approx >= 0
    approx_sims[found] = _rowwise_dot(sample_q[found], base, approx[found])
    hit = (approx == exact_ids[:, 0]) | (approx_sims >= exact_sims[:, 0] - _TIE_TOLERANCE)
    return float(hit.mean())


def _build_embedding_index(
    base: np.ndarray,
    *,
    kind: str,
    storage: str,
    nlist: int | None,
    nprobe: int | None,
    train_size: int | None,
    train_iterations: int,
    hnsw_m: int,
    ef_construction: int,
    ef_search: int,
    seed: int,
    progress: bool,
) -> EmbeddingIndex:
    import faiss

    n, dim = base.shape
    if kind == "flat":
        if storage not in ("auto", "float32"):
            raise SearchInputError(
                f"storage='{storage}' applies to approximate indexes; a flat index stores no copy "
                "(use storage='auto' or 'float32', or index='ivf'/'hnsw')"
            )
        return EmbeddingIndex(kind="flat", storage="float32", size=n, dim=dim, base=base)
    storage = "float16" if storage == "auto" else storage
    metric = faiss.METRIC_INNER_PRODUCT
    qtype = {"float16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}.get(storage)
    rng = np.random.default_rng(seed)
    if kind == "ivf":
        if nlist is None:
            nlist = int(np.clip(2 ** round(math.log2(max(1.0, math.sqrt(n)))), 1, max(1, n // 40)))
        if nlist > n:
            raise SearchInputError(f"nlist={nlist} IVF cells but base has only {n} rows")
        nprobe = min(nlist, nprobe if nprobe is not None else max(16, nlist // 64))
        quantizer = faiss.IndexFlatIP(dim)
        if qtype is None:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtype, metric)
        index.cp.niter = train_iterations
        index.cp.seed = seed
        n_train = min(n, train_size if train_size is not None else 50 * nlist)
        train_rows = np.sort(rng.choice(n, size=n_train, replace=False))
        index.train(np.ascontiguousarray(base[train_rows], dtype=np.float32))
        index.nprobe = nprobe
        built = EmbeddingIndex("ivf", storage, n, dim, faiss_index=index, nprobe=nprobe)
    else:
        if qtype is None:
            index = faiss.IndexHNSWFlat(dim, hnsw_m, metric)
        else:
            index = faiss.IndexHNSWSQ(dim, qtype, hnsw_m, metric)
            sample = np.sort(rng.choice(n, size=min(n, 100_000), replace=False))
            index.train(np.ascontiguousarray(base[sample], dtype=np.float32))
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        built = EmbeddingIndex("hnsw", storage, n, dim, faiss_index=index, ef_search=ef_search)
    for start in _progress(range(0, n, _ROW_BLOCK), progress, f"adding rows to {kind}"):
        index.add(np.ascontiguousarray(base[start : start + _ROW_BLOCK], dtype=np.float32))
    return built


def _resolve_kind(index: str, n_base: int, exact_below: int, n_queries: int = 0) -> str:
    if index == "auto":
        return "flat" if n_base < exact_below and n_queries * n_base <= EXACT_PAIR_BUDGET else "ivf"
    return index


def _resolve_index(
    index: str | EmbeddingIndex,
    base: np.ndarray,
    *,
    nprobe: int | None,
    exact_below: int,
    storage: str,
    seed: int,
    progress: bool,
    n_queries: int = 0,
) -> EmbeddingIndex:
    """The index given (checked against ``base``), or a new one of the kind named (``auto`` weighs
    ``n_queries`` against :data:`EXACT_PAIR_BUDGET`)."""
    if isinstance(index, EmbeddingIndex):
        if (index.size, index.dim) != tuple(base.shape):
            raise SearchInputError(
                f"the index holds {index.size} rows of {index.dim} dims but base is {base.shape[0]} x "
                f"{base.shape[1]}; build it over this base"
            )
        return index
    if not isinstance(index, str):
        raise SearchInputError(
            f"index must be one of {EMBEDDING_INDEX_KINDS} or an EmbeddingIndex, got {type(index).__name__}"
        )
    _check_choice("index", index, EMBEDDING_INDEX_KINDS)
    _check_choice("storage", storage, EMBEDDING_STORAGES)
    _check_positive_int("exact_below", exact_below)
    if nprobe is not None:
        _check_positive_int("nprobe", nprobe)
    if len(base) == 0:
        return EmbeddingIndex(kind="flat", storage="float32", size=0, dim=base.shape[1], base=base)
    return _build_embedding_index(
        base,
        kind=_resolve_kind(index, len(base), exact_below, n_queries),
        storage=storage,
        nlist=None,
        nprobe=nprobe,
        train_size=None,
        train_iterations=10,
        hnsw_m=32,
        ef_construction=80,
        ef_search=128,
        seed=seed,
        progress=progress,
    )


def _flat_search(base: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``query`` (Q, D) float32 over ``base`` (B, D), by blocks."""
    import faiss

    k = min(k, len(base))
    if base.dtype == np.float32 and base.flags.c_contiguous:
        return faiss.knn(query, base, k, metric=faiss.METRIC_INNER_PRODUCT)
    heap = faiss.ResultHeap(len(query), k, keep_max=True)
    block = _ROW_BLOCK
    for start in range(0, len(base), block):
        rows = np.ascontiguousarray(base[start : start + block], dtype=np.float32)
        sims, ids = faiss.knn(query, rows, min(k, len(rows)), metric=faiss.METRIC_INNER_PRODUCT)
        if sims.shape[1] < k:  # a short last block
            pad = ((0, 0), (0, k - sims.shape[1]))
            sims = np.pad(sims, pad, constant_values=-np.inf)
            ids = np.pad(ids, pad, constant_values=-1 - start)
        heap.add_result(np.ascontiguousarray(sims), np.ascontiguousarray(ids + start))
    heap.finalize()
    return heap.D, heap.I


def _rowwise_dot(query: np.ndarray, base: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``query[i] . base[ids[i]]`` for aligned rows; float32 (n,)."""
    return np.einsum("ij,ij->i", query, np.asarray(base[ids], dtype=np.float32))


def _search_rescored(
    built: EmbeddingIndex, query: np.ndarray, base: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (Q, k) of a float32 query chunk, with exact similarities, best first."""
    sims, ids = built.search(query, k)
    if built.kind == "flat":
        return sims, ids
    found = ids >= 0
    qrow = np.nonzero(found)[0]
    sims = np.full(ids.shape, -np.inf, dtype=np.float32)
    sims[found] = _rowwise_dot(query[qrow], base, ids[found])
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _self_neighbours(
    built: EmbeddingIndex, x: np.ndarray, k: int, query_chunk: int, progress: bool
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per chunk of rows: ``(start, sims (c, k), ids (c, k))`` of the nearest other rows."""
    if k == 0 or len(x) == 0:
        return
    for start in _progress(range(0, len(x), query_chunk), progress, "neighbour search"):
        chunk = np.asarray(x[start : start + query_chunk], dtype=np.float32)
        sims, ids = _search_rescored(built, chunk, x, k + 1)
        is_self = ids == np.arange(start, start + len(ids))[:, None]
        # Rows whose own id is not among the k+1 results (ties of exact duplicates, or an
        # approximate miss) drop their last result instead, leaving exactly k per row.
        drop = is_self.copy()
        drop[~is_self.any(axis=1), -1] = True
        keep = ~drop
        yield start, sims[keep].reshape(len(ids), k), ids[keep].reshape(len(ids), k)


def _embedding_frame(qs: list, bs: list, ss: list) -> pd.DataFrame:
    qidx = np.concatenate(qs).astype(np.int64) if qs else np.empty(0, np.int64)
    bidx = np.concatenate(bs).astype(np.int64) if bs else np.empty(0, np.int64)
    sims = np.concatenate(ss).astype(np.float32) if ss else np.empty(0, np.float32)
    order = np.lexsort((bidx, -sims, qidx))
    return pd.DataFrame({"query_idx": qidx[order], "base_idx": bidx[order], "similarity": sims[order]})


# --------------------------------------------------------------------------------------------
# Input checks and small helpers
# --------------------------------------------------------------------------------------------


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


def _check_embeddings(name: str, x: object) -> None:
    """Array (N, D) of float32/float16 (values are checked by :func:`_check_normalised`)."""
    if not isinstance(x, np.ndarray):
        raise SearchInputError(f"{name} must be a numpy array (N, D), got {type(x).__name__}")
    if x.ndim != 2:
        raise SearchInputError(f"{name} must be 2-D (rows, dims), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float16):
        raise SearchInputError(f"{name} must have dtype float32 or float16, got {x.dtype}")
    if x.shape[1] == 0:
        raise SearchInputError(f"{name} has 0 dimensions (shape {x.shape})")


def _check_normalised(name: str, x: np.ndarray) -> None:
    """Every row finite with L2 norm 1 (within 1e-2), checked by blocks."""
    for start in range(0, len(x), _ROW_BLOCK):
        block = np.asarray(x[start : start + _ROW_BLOCK], dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        bad = np.flatnonzero(~(np.abs(norms - 1.0) <= _NORM_TOLERANCE))
        if len(bad):
            row = start + int(bad[0])
            if not np.isfinite(block[bad[0]]).all():
                raise SearchInputError(f"{name} row {row} holds NaN or inf")
            raise SearchInputError(
                f"{name} row {row} has L2 norm {norms[bad[0]]:.4g} ({len(bad)} such rows in "
                f"{start}..{start + len(block) - 1}); rows must be L2-normalised"
            )


def _check_same_dim(query: np.ndarray, base: np.ndarray) -> None:
    if query.shape[1] != base.shape[1]:
        raise SearchInputError(
            f"query has {query.shape[1]} dims but base has {base.shape[1]} (shapes {query.shape} and {base.shape})"
        )


def _check_similarity(min_similarity: object) -> None:
    if isinstance(min_similarity, bool) or not isinstance(min_similarity, (int, float, np.floating, np.integer)):
        raise SearchInputError(f"min_similarity must be a number, got {min_similarity!r}")
    if not -1.0 <= float(min_similarity) <= 1.0:
        raise SearchInputError(f"min_similarity must be within [-1, 1] (cosine), got {min_similarity}")


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
