"""Embedding search: cosine neighbours of L2-normalised rows, exact (faiss flat) or approximate (IVF, HNSW).

:func:`embedding_pairs`, :func:`embedding_self_pairs` and :func:`nearest_neighbors` take
L2-normalised rows (float32 or float16), so inner product is cosine similarity. Below
``exact_below`` base rows (default 1M) the search is exact (faiss brute-force inner product, no
copy of the base) unless the queries times the base rows exceed :data:`EXACT_PAIR_BUDGET` (a self
search of N rows costs N**2: about 50K rows on 2 cores in a minute); above it an approximate faiss index is built (IVF by default, HNSW on request)
and :func:`recall_check` measures its recall@1 against exact search on a sample of queries.
Reported similarities are always exact: lossy storages are re-scored against the input rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vlclean.search._common import SearchInputError, _check_choice, _check_positive_int, _progress

EMBEDDING_INDEX_KINDS: tuple[str, ...] = ("auto", "flat", "ivf", "hnsw")
EMBEDDING_STORAGES: tuple[str, ...] = ("auto", "float32", "float16", "sq8")
EMBEDDING_COLUMNS: tuple[str, ...] = ("query_idx", "base_idx", "similarity")

# A row whose L2 norm is further than this from 1 is rejected as not normalised.
_NORM_TOLERANCE = 1e-2
# Two similarities closer than this count as a tie in recall_check.
_TIE_TOLERANCE = 1e-5
_ROW_BLOCK = 65_536
# "auto" searches exactly while queries x base rows stay within this many dot products (~1 min of
# 2 cores at 300 dims); beyond it an IVF index, whose cost grows as N**1.5, not N**2.
EXACT_PAIR_BUDGET = 2.5e9
# faiss indexes get their rows zero-padded to a multiple of this many dimensions (inner products
# unchanged): faiss's SIMD scalar-quantizer kernels need it. Unpadded, an IVF-float16 search of the
# 305-d `pixels` embedding took the scalar path: 7.9 CPU-s for 5,000 queries (100K rows, k = 50),
# 0.73 s padded to 320, the same neighbours (bench/bench_ivf_padding.py).
SIMD_DIM_MULTIPLE = 16


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
    padded_dim: int | None = None  # faiss indexes: rows zero-padded to this (SIMD_DIM_MULTIPLE)

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
            sims, ids = self.faiss_index.search(_pad_columns(query, self.padded_dim), k_eff)
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
    padded = -(-dim // SIMD_DIM_MULTIPLE) * SIMD_DIM_MULTIPLE
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
        quantizer = faiss.IndexFlatIP(padded)
        if qtype is None:
            index = faiss.IndexIVFFlat(quantizer, padded, nlist, metric)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, padded, nlist, qtype, metric)
        index.cp.niter = train_iterations
        index.cp.seed = seed
        n_train = min(n, train_size if train_size is not None else 50 * nlist)
        train_rows = np.sort(rng.choice(n, size=n_train, replace=False))
        index.train(_pad_columns(base[train_rows], padded))
        index.nprobe = nprobe
        built = EmbeddingIndex("ivf", storage, n, dim, faiss_index=index, nprobe=nprobe, padded_dim=padded)
    else:
        if qtype is None:
            index = faiss.IndexHNSWFlat(padded, hnsw_m, metric)
        else:
            index = faiss.IndexHNSWSQ(padded, qtype, hnsw_m, metric)
            sample = np.sort(rng.choice(n, size=min(n, 100_000), replace=False))
            index.train(_pad_columns(base[sample], padded))
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        built = EmbeddingIndex("hnsw", storage, n, dim, faiss_index=index, ef_search=ef_search, padded_dim=padded)
    for start in _progress(range(0, n, _ROW_BLOCK), progress, f"adding rows to {kind}"):
        index.add(_pad_columns(base[start : start + _ROW_BLOCK], padded))
    return built


def _pad_columns(rows: np.ndarray, width: int | None) -> np.ndarray:
    """``rows`` as contiguous float32, zero-padded on the right to ``width`` columns (None: as they are)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if width is None or rows.shape[1] == width:
        return rows
    out = np.zeros((len(rows), width), dtype=np.float32)
    out[:, : rows.shape[1]] = rows
    return out


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


