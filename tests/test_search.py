"""Search engines: exact Hamming pairs against brute force, embedding neighbours against numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlclean.errors import VLCleanError
from vlclean.search import (
    EmbeddingIndex,
    SearchInputError,
    build_embedding_index,
    embedding_pairs,
    embedding_self_pairs,
    hamming_pairs,
    nearest_neighbors,
    recall_check,
    self_pairs,
)

# ------------------------------------------------------------------ reference implementations


def brute_hamming(query: np.ndarray, base: np.ndarray, max_distance: int, mirror: np.ndarray | None = None) -> set:
    """{(q, b, distance, mirrored)} by a dense comparison (test sizes only)."""
    plain = np.bitwise_count(query[:, None] ^ base[None, :]).astype(np.int64)
    best, mirrored = plain, np.zeros(plain.shape, dtype=bool)
    if mirror is not None:
        flipped = np.bitwise_count(mirror[:, None] ^ base[None, :]).astype(np.int64)
        mirrored = flipped < plain
        best = np.minimum(plain, flipped)
    qi, bi = np.nonzero(best <= max_distance)
    return {(int(q), int(b), int(best[q, b]), bool(mirrored[q, b])) for q, b in zip(qi, bi)}


def as_set(frame: pd.DataFrame) -> set:
    return {
        (int(q), int(b), int(d), bool(m))
        for q, b, d, m in frame[["query_idx", "base_idx", "distance", "mirrored"]].itertuples(index=False)
    }


def flip_bits(h: np.uint64, n_bits: int, rng: np.random.Generator) -> np.uint64:
    """``h`` with exactly ``n_bits`` distinct random bits flipped."""
    mask = 0
    for bit in rng.choice(64, size=n_bits, replace=False):
        mask |= 1 << int(bit)
    return np.uint64(int(h) ^ mask)


def random_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2**64, size=n, dtype=np.uint64)


def planted(rng: np.random.Generator, n_base: int, n_query: int, distances: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Random hashes where query row i (i < len(distances)) is a base row with distances[i] bits flipped."""
    base = random_hashes(n_base, rng)
    query = random_hashes(n_query, rng)
    for i, d in enumerate(distances):
        query[i] = flip_bits(base[rng.integers(n_base)], d, rng)
    return query, base


def clustered(rng: np.random.Generator, n: int, dim: int, n_centres: int, spread: float) -> np.ndarray:
    """Unit rows drawn around random unit centres (noise of norm about ``spread``)."""
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(n_centres, size=n)] + spread / np.sqrt(dim) * rng.standard_normal((n, dim)).astype(
        np.float32
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_topk(
    query: np.ndarray, base: np.ndarray, k: int, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    sims = query.astype(np.float32) @ base.astype(np.float32).T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, axis=1), ids


# ------------------------------------------------------------------ Hamming search


@pytest.mark.parametrize("method", ["auto", "index", "brute"])
@pytest.mark.parametrize("max_distance", [0, 1, 4, 10, 13])
def test_hamming_pairs_equals_brute_force(method: str, max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    distances = [0, max_distance, max_distance + 1, max(0, max_distance - 1), 2, 7, 12, 20] * 10
    query, base = planted(rng, n_base=3000, n_query=400, distances=distances)
    found = hamming_pairs(query, base, max_distance=max_distance, method=method)
    assert as_set(found) == brute_hamming(query, base, max_distance)
    assert list(found.columns) == ["query_idx", "base_idx", "distance", "mirrored"]
    assert [str(t) for t in found.dtypes] == ["int64", "int64", "int64", "bool"]
    assert found.equals(found.sort_values(["query_idx", "base_idx"]).reset_index(drop=True))


def test_hamming_pairs_threshold_boundary_is_inclusive() -> None:
    rng = np.random.default_rng(1)
    base = random_hashes(5000, rng)
    query = np.array([flip_bits(base[10], 10, rng), flip_bits(base[20], 11, rng), base[30]], dtype=np.uint64)
    found = hamming_pairs(query, base, max_distance=10, method="index")
    rows = {(q, b): d for q, b, d in found[["query_idx", "base_idx", "distance"]].itertuples(index=False)}
    assert rows.get((0, 10)) == 10
    assert (1, 20) not in rows
    assert rows.get((2, 30)) == 0


def test_hamming_pairs_skewed_buckets_and_small_pieces() -> None:
    # 600 identical hashes overflow a uint8 bucket count; a tiny max_candidates forces many pieces.
    rng = np.random.default_rng(2)
    base = random_hashes(4000, rng)
    base[:600] = np.uint64(0)
    base[600:700] = np.uint64(2**64 - 1)
    query = np.concatenate([np.array([0, 1, 3, 2**64 - 1], dtype=np.uint64), random_hashes(200, rng)])
    found = hamming_pairs(query, base, max_distance=3, method="index", max_candidates=50, query_chunk=7)
    assert as_set(found) == brute_hamming(query, base, 3)
    assert (found["query_idx"] == 0).sum() >= 600


def test_hamming_pairs_threads_and_chunks_agree() -> None:
    rng = np.random.default_rng(3)
    query, base = planted(rng, n_base=5000, n_query=900, distances=list(range(12)) * 20)
    one = hamming_pairs(query, base, max_distance=8, n_threads=1)
    many = hamming_pairs(query, base, max_distance=8, n_threads=3, query_chunk=100)
    pd.testing.assert_frame_equal(one, many)


def test_hamming_pairs_large_threshold_returns_every_pair() -> None:
    rng = np.random.default_rng(4)
    query, base = random_hashes(30, rng), random_hashes(50, rng)
    assert len(hamming_pairs(query, base, max_distance=64)) == 30 * 50
    assert as_set(hamming_pairs(query, base, max_distance=30, method="index")) == brute_hamming(query, base, 30)


def test_hamming_pairs_mirror_keeps_smaller_distance() -> None:
    rng = np.random.default_rng(5)
    base = random_hashes(2000, rng)
    query = random_hashes(3, rng)
    mirror = random_hashes(3, rng)
    mirror[0] = flip_bits(base[5], 2, rng)  # only the mirror matches
    query[1] = flip_bits(base[6], 3, rng)  # plain match closer than the mirror
    mirror[1] = flip_bits(base[6], 6, rng)
    query[2] = flip_bits(base[7], 4, rng)  # tie: the plain match wins
    mirror[2] = flip_bits(base[7], 4, rng)
    found = hamming_pairs(query, base, max_distance=8, query_mirror=mirror, method="index")
    rows = {(q, b): (d, m) for q, b, d, m in found.itertuples(index=False)}
    assert rows[(0, 5)] == (2, True)
    assert rows[(1, 6)] == (3, False)
    assert rows[(2, 7)] == (4, False)
    assert as_set(found) == brute_hamming(query, base, 8, mirror)


def test_self_pairs_one_row_per_unordered_pair() -> None:
    rng = np.random.default_rng(6)
    hashes = random_hashes(3000, rng)
    for i in range(100):
        hashes[1000 + i] = flip_bits(hashes[i], i % 9, rng)
    hashes[2000:2003] = hashes[50]  # a group of exact copies
    found = self_pairs(hashes, max_distance=8)
    assert (found["query_idx"] < found["base_idx"]).all()
    assert not found.duplicated(["query_idx", "base_idx"]).any()
    expected = {t for t in brute_hamming(hashes, hashes, 8) if t[0] < t[1]}
    assert as_set(found) == expected
    assert {(50, 2000), (2000, 2001), (2001, 2002)} <= {(q, b) for q, b, _, _ in expected}


def test_self_pairs_with_mirror_is_symmetric() -> None:
    rng = np.random.default_rng(7)
    hashes = random_hashes(1500, rng)
    mirror = random_hashes(1500, rng)
    mirror[40] = flip_bits(hashes[900], 1, rng)  # 40 mirrored looks like 900
    mirror[950] = flip_bits(hashes[30], 2, rng)  # 950 mirrored looks like 30 (larger index first)
    found = self_pairs(hashes, max_distance=5, mirror=mirror)
    rows = {(q, b): (d, m) for q, b, d, m in found.itertuples(index=False)}
    assert rows[(40, 900)] == (1, True)
    assert rows[(30, 950)] == (2, True)
    assert (found["query_idx"] < found["base_idx"]).all()


def test_hamming_empty_inputs_give_empty_typed_frame() -> None:
    empty = np.empty(0, dtype=np.uint64)
    some = random_hashes(10, np.random.default_rng(8))
    for frame in (
        hamming_pairs(empty, some, max_distance=3),
        hamming_pairs(some, empty, max_distance=3),
        self_pairs(empty, max_distance=3),
    ):
        assert len(frame) == 0
        assert [str(t) for t in frame.dtypes] == ["int64", "int64", "int64", "bool"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"query": np.arange(5, dtype=np.int64)}, ["query", "uint64", "int64", "view"]),
        ({"base": np.zeros((4, 2), dtype=np.uint64)}, ["base", "1-D", "(4, 2)"]),
        ({"base": np.array([1.0, np.nan])}, ["base", "float64", "missing values"]),
        ({"base": [1, 2, 3]}, ["base", "list"]),
        ({"max_distance": 65}, ["max_distance", "0..64", "65"]),
        ({"max_distance": -1}, ["max_distance", "-1"]),
        ({"max_distance": 2.5}, ["max_distance", "2.5"]),
        ({"max_distance": True}, ["max_distance", "True"]),
        ({"query_mirror": np.zeros(3, dtype=np.uint64)}, ["query_mirror", "3", "5"]),
        ({"method": "faiss"}, ["method", "faiss", "brute"]),
    ],
)
def test_hamming_errors_name_bad_values(kwargs: dict, words: list[str]) -> None:
    args = {"query": np.zeros(5, dtype=np.uint64), "base": np.zeros(8, dtype=np.uint64), "max_distance": 4}
    args.update(kwargs)
    query, base = args.pop("query"), args.pop("base")
    with pytest.raises(SearchInputError) as info:
        hamming_pairs(query, base, **args)
    assert isinstance(info.value, VLCleanError) and isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_self_pairs_mirror_length_mismatch_names_lengths() -> None:
    with pytest.raises(SearchInputError, match=r"mirror has 2 hashes but hashes has 4"):
        self_pairs(np.zeros(4, dtype=np.uint64), max_distance=2, mirror=np.zeros(2, dtype=np.uint64))


# ------------------------------------------------------------------ embedding search


def test_embedding_pairs_equals_brute_force_cosine() -> None:
    rng = np.random.default_rng(10)
    base = clustered(rng, 800, 32, n_centres=20, spread=0.6)
    query = normalise(
        np.concatenate([base[:50] + 0.02 * rng.standard_normal((50, 32)), rng.standard_normal((100, 32))])
    )
    found = embedding_pairs(query, base, min_similarity=0.7, k=5)
    sims, ids = brute_topk(query, base, 5)
    qi, col = np.nonzero(sims >= 0.7)
    expected = {(int(q), int(ids[q, c])) for q, c in zip(qi, col)}
    assert {(q, b) for q, b in found[["query_idx", "base_idx"]].itertuples(index=False)} == expected
    exact = np.einsum("ij,ij->i", query[found["query_idx"]], base[found["base_idx"]])
    np.testing.assert_allclose(found["similarity"], exact, atol=1e-5)
    assert list(found.columns) == ["query_idx", "base_idx", "similarity"]
    assert str(found["similarity"].dtype) == "float32"
    assert set(range(50)) <= set(found["query_idx"])  # every near-duplicate found


def test_embedding_pairs_float16_base_blocks() -> None:
    rng = np.random.default_rng(11)
    base = clustered(rng, 600, 16, n_centres=10, spread=0.5)
    query = base[::7]
    full = embedding_pairs(query, base, min_similarity=0.9, k=3)
    half = embedding_pairs(query.astype(np.float16), base.astype(np.float16), min_similarity=0.9, k=3)
    assert (half.groupby("query_idx")["base_idx"].first() == full.groupby("query_idx")["base_idx"].first()).all()


@pytest.mark.parametrize(
    ("index", "storage"), [("ivf", "float16"), ("ivf", "float32"), ("ivf", "sq8"), ("hnsw", "float16")]
)
def test_approximate_index_recall_on_clustered_points(index: str, storage: str) -> None:
    rng = np.random.default_rng(12)
    base = clustered(rng, 4000, 32, n_centres=40, spread=0.5)
    query = normalise(
        np.concatenate(
            [
                base[rng.integers(4000, size=300)] + 0.01 * rng.standard_normal((300, 32)),
                clustered(rng, 300, 32, 40, 0.5),
            ]
        )
    )
    built = build_embedding_index(base, index=index, storage=storage, seed=0)
    assert built.kind == index and not built.exact
    assert recall_check(query, base, index=built, sample=400) >= 0.99
    found = embedding_pairs(query, base, min_similarity=0.95, k=3, index=built)
    exact = np.einsum("ij,ij->i", query[found["query_idx"]], base[found["base_idx"]])
    np.testing.assert_allclose(found["similarity"], exact, atol=1e-5)  # re-scored, not quantised


def test_auto_index_switches_at_exact_below() -> None:
    rng = np.random.default_rng(13)
    base = clustered(rng, 3000, 16, n_centres=30, spread=0.5)
    assert build_embedding_index(base).kind == "flat"
    assert build_embedding_index(base, exact_below=1000).kind == "ivf"
    assert recall_check(base[:200], base, index="ivf", nprobe=64) == 1.0


def test_embedding_self_pairs_unique_and_no_self() -> None:
    rng = np.random.default_rng(14)
    x = clustered(rng, 500, 24, n_centres=10, spread=0.6)
    x[100] = x[5]
    x[200] = normalise(x[7:8] + 0.01 * rng.standard_normal((1, 24)))[0]
    found = embedding_self_pairs(x, min_similarity=0.9, k=4)
    assert (found["query_idx"] < found["base_idx"]).all()
    assert not found.duplicated(["query_idx", "base_idx"]).any()
    sims, ids = brute_topk(x, x, 4, exclude_self=True)
    qi, col = np.nonzero(sims >= 0.9)
    expected = {(min(int(q), int(ids[q, c])), max(int(q), int(ids[q, c]))) for q, c in zip(qi, col)}
    assert {(q, b) for q, b in found[["query_idx", "base_idx"]].itertuples(index=False)} == expected
    assert {(5, 100), (7, 200)} <= expected


def test_nearest_neighbors_exclude_self_only() -> None:
    rng = np.random.default_rng(15)
    x = clustered(rng, 300, 16, n_centres=5, spread=0.7)
    x[10] = x[11]  # exact duplicates stay each other's neighbour
    got = nearest_neighbors(x, k=3)[0]
    sims, _ = brute_topk(x, x, 3, exclude_self=True)
    assert got.shape == (300, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, sims, atol=1e-5)
    assert got[10, 0] == pytest.approx(1.0, abs=1e-5)
    approx = nearest_neighbors(x, k=3, index="ivf", nprobe=64)[0]
    np.testing.assert_allclose(approx, sims, atol=1e-5)


def test_embedding_empty_inputs() -> None:
    x = clustered(np.random.default_rng(16), 20, 8, 2, 0.5)
    none = np.empty((0, 8), dtype=np.float32)
    assert len(embedding_pairs(none, x, min_similarity=0.5)) == 0
    assert len(embedding_pairs(x, none, min_similarity=0.5)) == 0
    assert nearest_neighbors(none, k=2)[0].shape == (0, 2)
    assert len(embedding_self_pairs(x[:1], min_similarity=0.0)) == 0


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda q, b: embedding_pairs(q[0], b, min_similarity=0.5), ["query", "2-D", "(8,)"]),
        (lambda q, b: embedding_pairs(q.astype(np.float64), b, min_similarity=0.5), ["query", "float64"]),
        (lambda q, b: embedding_pairs(q[:, :4], b, min_similarity=0.5), ["query has 4 dims", "base has 8"]),
        (lambda q, b: embedding_pairs(q * 3, b, min_similarity=0.5), ["query row 0", "norm 3", "L2-normalised"]),
        (
            lambda q, b: embedding_pairs(
                q, np.where(np.arange(8) == 2, np.nan, b).astype(np.float32), min_similarity=0.5
            ),
            ["base row 0", "NaN"],
        ),
        (lambda q, b: embedding_pairs(q, b, min_similarity=1.5), ["min_similarity", "1.5"]),
        (lambda q, b: embedding_pairs(q, b, min_similarity=0.5, k=0), ["k", "0"]),
        (lambda q, b: embedding_pairs(q, b, min_similarity=0.5, index="annoy"), ["index", "annoy"]),
        (lambda q, b: embedding_pairs(q, b, min_similarity=0.5, index="flat", storage="sq8"), ["sq8", "flat"]),
        (
            lambda q, b: embedding_pairs(q, b, min_similarity=0.5, index=build_embedding_index(b[:5])),
            ["5 rows", "20 x 8"],
        ),
        (lambda q, b: nearest_neighbors(b, k=20), ["k=20", "20 rows"]),
        (lambda q, b: recall_check(q, b, index="auto"), ["index", "auto"]),
        (lambda q, b: build_embedding_index(b, index="ivf", nlist=50), ["nlist=50", "20 rows"]),
    ],
)
def test_embedding_errors_name_bad_values(call, words: list[str]) -> None:
    x = clustered(np.random.default_rng(17), 20, 8, 2, 0.5)
    with pytest.raises(SearchInputError) as info:
        call(x[:3], x)
    for word in words:
        assert word in str(info.value)


def test_embedding_index_search_pads_missing_neighbours() -> None:
    x = clustered(np.random.default_rng(18), 4, 8, 2, 0.5)
    built = build_embedding_index(x)
    assert isinstance(built, EmbeddingIndex) and built.exact
    sims, ids = built.search(x, 6)
    assert ids.shape == (4, 6) and (ids[:, 4:] == -1).all() and np.isneginf(sims[:, 4:]).all()


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_faiss_rows_are_padded_to_the_simd_width_with_the_same_neighbours(storage, monkeypatch) -> None:
    """The 305-d pixels embedding: faiss gets 320-d rows (zero columns), which change no neighbour and no
    similarity; unpadded, faiss's float16 kernels take a scalar path ~10x slower (bench_ivf_padding)."""
    from vlclean.search import embedding as emb

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 305))
    x = centres[rng.integers(0, 20, 3000)] + 0.4 * rng.normal(size=(3000, 305))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    padded = emb.build_embedding_index(x, index="ivf", storage=storage, nlist=16, nprobe=16, seed=0)
    assert padded.padded_dim == 320 and padded.dim == 305
    monkeypatch.setattr(emb, "SIMD_DIM_MULTIPLE", 1)
    raw = emb.build_embedding_index(x, index="ivf", storage=storage, nlist=16, nprobe=16, seed=0)
    assert raw.padded_dim == 305
    (s1, i1), (s2, i2) = padded.search(x[:200], 10), raw.search(x[:200], 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
