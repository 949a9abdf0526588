"""Search engines over encodings: Hamming pairs of 64-bit hashes, and cosine neighbours of embeddings.

Leak detection (test vs train) and duplicate finding (within one set) both reduce to "all pairs
closer than a threshold". Search here takes encodings (arrays), never folders; the caller keeps
the mapping from row position to ``image_id``.

- :mod:`vlclean.search.hamming`: :func:`hamming_pairs` and :func:`self_pairs`, every pair of 64-bit
  hashes within ``max_distance`` bits, exactly (multi-index hashing, or a faiss scan when a cost
  model says it is faster).
- :mod:`vlclean.search.embedding`: :func:`embedding_pairs`, :func:`embedding_self_pairs`,
  :func:`nearest_neighbors` and :func:`recall_check` over L2-normalised rows (exact faiss flat
  search, or an IVF/HNSW index beyond a size budget, re-scored exactly).

The public names are re-exported here, so ``from vlclean.search import hamming_pairs`` keeps working.
"""

from vlclean.search._common import SearchInputError
from vlclean.search.embedding import (
    EMBEDDING_COLUMNS,
    EMBEDDING_INDEX_KINDS,
    EMBEDDING_STORAGES,
    EXACT_PAIR_BUDGET,
    EmbeddingIndex,
    build_embedding_index,
    embedding_pairs,
    embedding_self_pairs,
    nearest_neighbors,
    recall_check,
)
from vlclean.search.hamming import HAMMING_COLUMNS, HAMMING_METHODS, HASH_BITS, hamming_pairs, self_pairs

__all__ = [
    "EMBEDDING_COLUMNS",
    "EMBEDDING_INDEX_KINDS",
    "EMBEDDING_STORAGES",
    "EXACT_PAIR_BUDGET",
    "HAMMING_COLUMNS",
    "HAMMING_METHODS",
    "HASH_BITS",
    "EmbeddingIndex",
    "SearchInputError",
    "build_embedding_index",
    "embedding_pairs",
    "embedding_self_pairs",
    "hamming_pairs",
    "nearest_neighbors",
    "recall_check",
    "self_pairs",
]
