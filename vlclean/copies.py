"""Copy detection that survives re-crops, small rotations, borders and overlays: content thumbnails.

A train copy of a test image is often not the image itself: it is re-cropped off centre (down to
80 % of the area), rotated a few degrees, padded or letterboxed, or carries a caption or a logo, and
then resized and re-encoded. pHash (a DCT of the whole frame) and CNN embeddings (trained for
semantics, not alignment) both break under these edits; matching aligned pixels does not.

Per image, analyze stores one **content thumbnail** (:func:`content_thumbnail`): the grey image with
its uniform borders trimmed (padding, letterbox bars: rows and columns of one flat colour, at most
:data:`MAX_TRIM` of each side), box-resampled to ``side`` x ``side`` (default 32, 1 KiB).

Matching (:func:`copy_pairs`) compares small (``grid`` x ``grid``) zero-mean, unit-norm pixel
descriptors, so the score is a normalised cross-correlation of aligned pixels:

- each **query** (test) thumbnail is expanded into :func:`query_crops`: sub-windows of 100, 92.5,
  85, 77.5 and 70 % of its height and 100, 92.5 and 85 % of its width, at every position on a
  3.75 %-step grid, each at rotations of -4, 0 and +4 degrees (675 windows): one of them is the
  region a re-cropped or rotated copy shows;
- each **base** (train) thumbnail gives three descriptors (:data:`BASE_VIEWS`): the whole content,
  and the content without its top or bottom quarter, where captions, logos and watermarks sit;
- a pair's score is the best inner product over windows x views, found by faiss (exact below its
  budget, IVF beyond: :func:`vlclean.search.embedding.embedding_pairs`).

Why it keeps non-copies out: a window must lie inside the query, so a crop of the same photograph
shifted beyond it, a zoomed-out crop that contains it, or another part of the same scene brings
pixels the query does not have, and the correlation drops. Flat images (no structure) do not match:
descriptors are normalised with a floor of :data:`FLAT_FLOOR` grey levels per pixel. Images smaller
than :data:`MIN_SIDE` px are left to the other methods (``vlclean.leaks``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

CONTENT_SIDE = 32
# Images with a shorter side below this take no part (thumbnail icons, the built-in 32 px digits):
# their 32 px content thumbnail holds no more than their hashes, and different small glyphs correlate.
MIN_SIDE = 64
GRID = 12
MAX_TRIM = 0.35  # at most this fraction of a side is trimmed as a uniform border
FLAT_FLOOR = 1.0  # grey levels: descriptors of flatter images shrink (and match nothing)
_TRIM_PROBE = 64  # side of the box thumbnail the borders are measured on
_TRIM_RANGE = 12.0  # a border line spans at most this many grey levels ...
_TRIM_DRIFT = 8.0  # ... and its mean is within this of the outermost line's

WIDTHS = (1.0, 0.925, 0.85)
HEIGHTS = (1.0, 0.925, 0.85, 0.775, 0.7)
ANGLES = (0.0, -4.0, 4.0)
STEP = 0.0375
# (left, top, width, height, angle) of each base view, in content-normalised coordinates
BASE_VIEWS = np.array([[0, 0, 1, 1, 0.0], [0, 0.25, 1, 0.75, 0.0], [0, 0, 1, 0.75, 0.0]])


def content_box(gray: Image.Image) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` as fractions of the image: the part inside uniform borders."""
    probe = np.asarray(gray.resize((_TRIM_PROBE, _TRIM_PROBE), Image.Resampling.BOX), dtype=np.float32)
    limit = int(_TRIM_PROBE * MAX_TRIM)

    def depth(lines: np.ndarray) -> int:
        ref = float(lines[0].mean())
        for n, line in enumerate(lines[:limit]):
            if float(line.max() - line.min()) > _TRIM_RANGE or abs(float(line.mean()) - ref) > _TRIM_DRIFT:
                return n
        return limit

    left, right = depth(probe.T), depth(probe.T[::-1])
    top, bottom = depth(probe), depth(probe[::-1])
    return left / _TRIM_PROBE, top / _TRIM_PROBE, 1 - right / _TRIM_PROBE, 1 - bottom / _TRIM_PROBE


def content_thumbnail(gray: Image.Image, side: int = CONTENT_SIDE) -> np.ndarray:
    """``(side, side)`` uint8: the grey image inside its uniform borders, box-resampled (aspect not kept)."""
    left, top, right, bottom = content_box(gray)
    w, h = gray.size
    box = (left * w, top * h, right * w, bottom * h)
    return np.asarray(gray.resize((side, side), Image.Resampling.BOX, box=box), dtype=np.uint8)


def query_crops() -> np.ndarray:
    """``(C, 5)`` windows ``(left, top, width, height, angle)`` a query is expanded into (module doc)."""
    out = []
    for sx in WIDTHS:
        for sy in HEIGHTS:
            for x0 in np.linspace(0, 1 - sx, int(round((1 - sx) / STEP)) + 1):
                for y0 in np.linspace(0, 1 - sy, int(round((1 - sy) / STEP)) + 1):
                    out.extend((x0, y0, sx, sy, a) for a in ANGLES)
    return np.array(out, dtype=np.float64)


def descriptors(thumbs: np.ndarray, windows: np.ndarray, grid: int = GRID) -> np.ndarray:
    """``(N, W, grid * grid)`` float32 descriptors of each window of each thumbnail ``(N, S, S)`` uint8.

    A window is sampled bilinearly at ``2 grid`` x ``2 grid`` points (rotated about its centre),
    averaged 2 x 2, centred and divided by ``sqrt(|x|^2 + P * FLAT_FLOOR^2)``."""
    from scipy.ndimage import map_coordinates

    n, side = len(thumbs), thumbs.shape[1] if len(thumbs) else CONTENT_SIDE
    m = 2 * grid
    u = (np.arange(m) + 0.5) / m - 0.5
    x0, y0, sx, sy, a = (windows[:, i][:, None, None] for i in range(5))
    ca, sa = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))
    px, py = u[None, None, :], u[None, :, None]
    xs = np.broadcast_to((x0 + sx / 2 + px * sx * ca - py * sy * sa) * side - 0.5, (len(windows), m, m))
    ys = np.broadcast_to((y0 + sy / 2 + px * sx * sa + py * sy * ca) * side - 0.5, (len(windows), m, m))
    p = grid * grid
    out = np.empty((n, len(windows), p), dtype=np.float32)
    for i in range(n):
        v = map_coordinates(np.asarray(thumbs[i], dtype=np.float32), [ys.ravel(), xs.ravel()], order=1,
                            mode="nearest").reshape(len(windows), grid, 2, grid, 2).mean(axis=(2, 4))
        v = v.reshape(len(windows), p)
        v -= v.mean(axis=1, keepdims=True)
        out[i] = v / np.sqrt((v * v).sum(axis=1, keepdims=True) + p * FLAT_FLOOR**2)
    return out


def copy_pairs(
    query: np.ndarray, base: np.ndarray, *, min_score: float, k: int = 10, index: str = "auto", same: bool = False,
    chunk: int = 64,
) -> pd.DataFrame:
    """``(query_idx, base_idx, score)`` of every query/base thumbnail pair scoring at least ``min_score``
    (the best window x view correlation, module doc) among each window's ``k`` nearest base views.
    ``same``: query and base are one set; each pair ``i < j`` once, no image with itself."""
    from vlclean.search.embedding import embedding_pairs

    cols = {"query_idx": np.empty(0, np.int64), "base_idx": np.empty(0, np.int64), "score": np.empty(0, np.float32)}
    if len(query) == 0 or len(base) == 0:
        return pd.DataFrame(cols)
    views = descriptors(base, BASE_VIEWS).reshape(len(base) * len(BASE_VIEWS), -1)
    windows = query_crops()
    # rows are unit-norm only up to the flat floor: search on normalised rows, score with the floored ones
    norms = np.linalg.norm(views, axis=1)
    live = np.flatnonzero(norms > 0.5)  # flat views (mostly floor) never match
    unit = np.ascontiguousarray(views[live] / norms[live, None])
    frames = []
    for start in range(0, len(query), chunk):
        q = descriptors(query[start : start + chunk], windows).reshape(-1, views.shape[1])
        qn = np.linalg.norm(q, axis=1)
        ok = np.flatnonzero(qn > 0.5)
        if len(ok) == 0 or len(live) == 0:
            continue
        found = embedding_pairs(np.ascontiguousarray(q[ok] / qn[ok, None]), unit, min_similarity=min_score,
                                k=min(k, len(unit)), index=index)
        qrow, brow = ok[found["query_idx"].to_numpy()], live[found["base_idx"].to_numpy()]
        score = np.einsum("ij,ij->i", q[qrow], views[brow])
        frames.append(pd.DataFrame({"query_idx": start + qrow // len(windows), "base_idx": brow // len(BASE_VIEWS),
                                    "score": score.astype(np.float32)}))
    if not frames:
        return pd.DataFrame(cols)
    pairs = pd.concat(frames, ignore_index=True)
    pairs = pairs[pairs["score"] >= min_score]
    if same:
        pairs = pairs[pairs["query_idx"] != pairs["base_idx"]]
    best = pairs.sort_values("score", ascending=False).drop_duplicates(["query_idx", "base_idx"])
    best = best.sort_values(["query_idx", "base_idx"], ignore_index=True)
    if same:  # each unordered pair once, with its better direction
        a, b = best["query_idx"].to_numpy(), best["base_idx"].to_numpy()
        best = best.assign(query_idx=np.minimum(a, b), base_idx=np.maximum(a, b))
        best = best.sort_values("score", ascending=False).drop_duplicates(["query_idx", "base_idx"])
    return best.sort_values(["query_idx", "base_idx"], ignore_index=True).astype(
        {"query_idx": np.int64, "base_idx": np.int64, "score": np.float32})

