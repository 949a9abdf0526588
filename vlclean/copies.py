"""Copy detection that survives re-crops, small rotations, borders and overlays: content thumbnails.

A train copy of a test image is often not the image itself: it is re-cropped off centre (down to
80 % of the area), rotated a few degrees, padded or letterboxed, or carries a caption or a logo, and
then resized and re-encoded. pHash (a DCT of the whole frame) and CNN embeddings (trained for
semantics, not alignment) both break under these edits; matching aligned pixels does not.

Per image, analyze stores one **content thumbnail** (:func:`content_thumbnail`): the grey image with
its pad or letterbox bars trimmed (edge lines of one flat colour, at most :data:`MAX_TRIM` of each
side), box-resampled to ``side`` x ``side`` (default 32, 1 KiB).

Matching (:func:`copy_pairs`) compares small (``grid`` x ``grid``) pixel descriptors: sampled,
partly high-passed (:data:`HIGH_PASS`: smooth gradients, which any two crops of a sky share, weigh
less), centred and normalised, so a score is a normalised cross-correlation of aligned pixels:

- each **query** (test) thumbnail is expanded into :func:`query_windows`: windows of 100, 92.5 and
  85 % of its width and of its height, at every position on a 3.75 % grid, each at -4, 0 and +4
  degrees (192 windows; points outside read black, like the corners of a rotated copy): one of them
  is the region a re-cropped or rotated copy shows;
- each **base** (train) thumbnail is compared through three :data:`VIEWS`: its whole content, and
  its content without the top or bottom quarter (where captions, logos and watermarks sit), each
  against the same part of every query window;
- faiss finds each window's ``k`` nearest base views (exact below its budget, IVF beyond:
  :func:`vlclean.search.embedding.embedding_pairs`); candidates within :data:`REFINE_MARGIN` of the
  threshold are refined (:func:`refine`: the window moved, scaled and turned in two finer rounds,
  never below 85 % of a side), and a pair's score is its best correlation.

Why it keeps non-copies out: a window must lie inside the query and keep at least 85 % of each side,
so a crop of the same photograph shifted beyond it, a zoomed-out crop that contains it, or another
part of the same scene brings pixels the query does not have, and the correlation drops. Flat
images do not match: descriptors are normalised with a floor of :data:`FLAT_FLOOR` grey levels per
pixel. Images smaller than :data:`MIN_SIDE` px are left to the other methods (``vlclean.leaks``).
Weak spots (README): fine textures (grass, gravel) and noise-like images after a strong resize and
JPEG re-encode, whose 32 px thumbnails lose what would align them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

CONTENT_SIDE = 32
# Images with a shorter side below this take no part (thumbnail icons, the built-in 32 px digits):
# their 32 px content thumbnail holds no more than their hashes, and different small glyphs correlate.
MIN_SIDE = 64
GRID = 12  # descriptor side: 144 values per window
HIGH_PASS = 1.5  # descriptor cells: the sigma of the blur partly subtracted ...
HIGH_PASS_MIX = 0.7  # ... and how much of it (tuned on photo seeds 0-2, with copy_min_score)
MAX_TRIM = 0.35  # at most this fraction of a side is trimmed as a uniform border
FLAT_FLOOR = 1.0  # grey levels: descriptors of flatter images shrink (and match nothing)
_TRIM_PROBE = 64  # side of the box thumbnail the borders are measured on
# A border line spans at most this many grey levels (2nd to 98th percentile) and its median is within
# this of the outermost line's: pads and bars are one flat colour; flat parts of a photograph (sky,
# background) vary more than that and are kept, so a test image and its padded copy trim alike.
_TRIM_RANGE = 6.0

WIDTHS = (1.0, 0.925, 0.85)  # window sizes, fractions of the query's content width ...
HEIGHTS = (1.0, 0.925, 0.85)  # ... and height (a copy keeps at least 80 % of the area)
ANGLES = (0.0, -4.0, 4.0)
STEP = 0.0375  # window positions: every 3.75 % of the content side
# Views of the base: (top, bottom) fractions of its content height kept. The whole content, and the
# content without its top or bottom quarter, where captions, logos and watermarks sit.
VIEWS = ((0.0, 1.0), (0.25, 1.0), (0.0, 0.75))
# Candidates within this of min_score are refined: the best window moved by half a step, scaled by
# +-3 % and turned by +-2 degrees (and again, at half those), before the final score
REFINE_MARGIN = 0.12


def content_box(gray: Image.Image) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` as fractions of the image: the part inside uniform borders."""
    probe = np.asarray(gray.resize((_TRIM_PROBE, _TRIM_PROBE), Image.Resampling.BOX), dtype=np.float32)
    limit = int(_TRIM_PROBE * MAX_TRIM)

    def depth(lines: np.ndarray) -> int:
        ref = float(np.median(lines[0]))
        for n, line in enumerate(lines[:limit]):
            lo, hi = np.percentile(line, (2, 98))
            if float(hi - lo) > _TRIM_RANGE or abs(float(np.median(line)) - ref) > _TRIM_RANGE:
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


def query_windows() -> np.ndarray:
    """``(C, 5)`` windows ``(centre x, centre y, width, height, angle)`` of a query's content, in
    content-normalised coordinates (module doc): the regions a copy may show."""
    out = []
    for sx in WIDTHS:
        for sy in HEIGHTS:
            for x0 in np.linspace(0, 1 - sx, int(round((1 - sx) / STEP)) + 1):
                for y0 in np.linspace(0, 1 - sy, int(round((1 - sy) / STEP)) + 1):
                    out.extend((x0 + sx / 2, y0 + sy / 2, sx, sy, a) for a in ANGLES)
    return np.array(out, dtype=np.float64)


def view_of(windows: np.ndarray, view: tuple[float, float]) -> np.ndarray:
    """The part ``view`` (top, bottom fractions) of each window, rotated with it: what a base view shows
    when the whole window is the base's content."""
    top, bottom = view
    dy = ((top + bottom) / 2 - 0.5) * windows[:, 3]
    a = np.deg2rad(windows[:, 4])
    out = windows.copy()
    out[:, 0] -= dy * np.sin(a)
    out[:, 1] += dy * np.cos(a)
    out[:, 3] *= bottom - top
    return out


def descriptors(thumbs: np.ndarray, windows: np.ndarray, grid: int = GRID) -> np.ndarray:
    """``(N, W, grid * grid)`` float32 descriptors of each window of each thumbnail ``(N, S, S)`` uint8.

    A window is sampled bilinearly at ``2 grid`` x ``2 grid`` points (rotated about its centre;
    points outside the thumbnail read black, as the corners of a rotated copy do), averaged 2 x 2,
    centred and divided by ``sqrt(|x|^2 + P * FLAT_FLOOR^2)``."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    n, side = len(thumbs), thumbs.shape[1] if len(thumbs) else CONTENT_SIDE
    m = 2 * grid
    u = (np.arange(m) + 0.5) / m - 0.5
    cx, cy, sx, sy, a = (windows[:, i][:, None, None] for i in range(5))
    ca, sa = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))
    px, py = u[None, None, :], u[None, :, None]
    xs = np.broadcast_to((cx + px * sx * ca - py * sy * sa) * side - 0.5, (len(windows), m, m))
    ys = np.broadcast_to((cy + px * sx * sa + py * sy * ca) * side - 0.5, (len(windows), m, m))
    # a point less than half a pixel outside reads the edge; further out, black
    xs = np.where(np.abs(xs - (side - 1) / 2) <= side / 2, np.clip(xs, 0, side - 1), xs)
    ys = np.where(np.abs(ys - (side - 1) / 2) <= side / 2, np.clip(ys, 0, side - 1), ys)
    p = grid * grid
    out = np.empty((n, len(windows), p), dtype=np.float32)
    for i in range(n):
        v = map_coordinates(np.asarray(thumbs[i], dtype=np.float32), [ys.ravel(), xs.ravel()], order=1,
                            mode="constant", cval=0.0).reshape(len(windows), grid, 2, grid, 2).mean(axis=(2, 4))
        if HIGH_PASS:
            v = v - HIGH_PASS_MIX * gaussian_filter(v, sigma=(0, HIGH_PASS, HIGH_PASS), mode="nearest")
        v = v.reshape(len(windows), p)
        v -= v.mean(axis=1, keepdims=True)
        out[i] = v / np.sqrt((v * v).sum(axis=1, keepdims=True) + p * FLAT_FLOOR**2)
    return out


def _unit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` that are not flat (norm above 0.5: structure beyond the floor), normalised; and their rows."""
    norms = np.linalg.norm(x, axis=1)
    live = np.flatnonzero(norms > 0.5)
    return np.ascontiguousarray(x[live] / norms[live, None]), live


def copy_pairs(
    query: np.ndarray, base: np.ndarray, *, min_score: float, k: int = 10, index: str = "auto", same: bool = False,
    chunk: int = 64,
) -> pd.DataFrame:
    """``(query_idx, base_idx, score)`` of every query/base thumbnail pair scoring at least ``min_score``:
    the best correlation of a base view with the same part of a query window (module doc), among each
    window's ``k`` nearest base views. ``same``: query and base are one set; each pair ``i < j`` once."""
    from vlclean.search.embedding import embedding_pairs

    cols = {"query_idx": np.empty(0, np.int64), "base_idx": np.empty(0, np.int64), "score": np.empty(0, np.float32)}
    if len(query) == 0 or len(base) == 0:
        return pd.DataFrame(cols)
    whole = np.array([[0.5, 0.5, 1.0, 1.0, 0.0]])
    windows = query_windows()
    frames = []
    for view in VIEWS:
        views = descriptors(base, view_of(whole, view))[:, 0]
        unit, live = _unit(views)
        if len(live) == 0:
            continue
        parts = view_of(windows, view)
        for start in range(0, len(query), chunk):
            q = descriptors(query[start : start + chunk], parts).reshape(-1, views.shape[1])
            qu, ok = _unit(q)
            if len(ok) == 0:
                continue
            found = embedding_pairs(qu, unit, min_similarity=min_score - REFINE_MARGIN, k=min(k, len(unit)),
                                    index=index)
            qrow, brow = ok[found["query_idx"].to_numpy()], live[found["base_idx"].to_numpy()]
            score = np.einsum("ij,ij->i", q[qrow], views[brow])
            frames.append(pd.DataFrame({"query_idx": start + qrow // len(windows), "base_idx": brow,
                                        "score": score.astype(np.float32), "window": qrow % len(windows),
                                        "view": VIEWS.index(view)}))
    if not frames:
        return pd.DataFrame(cols)
    pairs = pd.concat(frames, ignore_index=True)
    pairs = pairs.sort_values("score", ascending=False).drop_duplicates(["query_idx", "base_idx"])
    pairs["score"] = refine(query, base, pairs, windows)
    pairs = pairs[pairs["score"] >= min_score].drop(columns=["window", "view"])
    if same:
        a, b = pairs["query_idx"].to_numpy(), pairs["base_idx"].to_numpy()
        pairs = pairs.assign(query_idx=np.minimum(a, b), base_idx=np.maximum(a, b))[a != b]
    best = pairs.sort_values("score", ascending=False).drop_duplicates(["query_idx", "base_idx"])
    return best.sort_values(["query_idx", "base_idx"], ignore_index=True).astype(
        {"query_idx": np.int64, "base_idx": np.int64, "score": np.float32})


def refine(query: np.ndarray, base: np.ndarray, pairs: pd.DataFrame, windows: np.ndarray) -> np.ndarray:
    """Score of each pair (``query_idx, base_idx, window, view``) after two rounds of local search
    around its window (:data:`REFINE_MARGIN`); windows stay inside the query's content."""
    out = np.asarray(pairs["score"].to_numpy(), dtype=np.float32).copy()
    whole = np.array([[0.5, 0.5, 1.0, 1.0, 0.0]])
    steps = [(STEP / 2, 0.03, 2.0), (STEP / 4, 0.015, 1.0)]
    grid = np.array(np.meshgrid(*[[-1.0, 0.0, 1.0]] * 5, indexing="ij")).reshape(5, -1).T
    for n, (qi, bi, w, v) in enumerate(pairs[["query_idx", "base_idx", "window", "view"]].itertuples(index=False)):
        view = VIEWS[v]
        target = descriptors(base[bi : bi + 1], view_of(whole, view))[0, 0]
        best_w = windows[w]
        for shift, scale, turn in steps:
            cand = best_w[None, :] + grid * np.array([shift, shift, 0, 0, turn])
            cand[:, 2] = best_w[2] * (1 + grid[:, 2] * scale)
            cand[:, 3] = best_w[3] * (1 + grid[:, 3] * scale)
            cand[:, 2] = np.clip(cand[:, 2], min(WIDTHS), 1.0)  # never a smaller part than a copy keeps
            cand[:, 3] = np.clip(cand[:, 3], min(HEIGHTS), 1.0)
            cand[:, 0] = np.clip(cand[:, 0], cand[:, 2] / 2, 1 - cand[:, 2] / 2)
            cand[:, 1] = np.clip(cand[:, 1], cand[:, 3] / 2, 1 - cand[:, 3] / 2)
            scores = descriptors(query[qi : qi + 1], view_of(cand, view))[0] @ target
            best_w = cand[int(np.argmax(scores))]
            out[n] = max(out[n], float(scores.max()))
    return out
