"""Copy detection that survives re-crops, small rotations, borders and overlays: content thumbnails.

A train copy of a test image is often not the image itself: it is re-cropped off centre (down to
80 % of the area), rotated a few degrees, padded or letterboxed, or carries a caption or a logo, and
then resized and re-encoded. pHash (a DCT of the whole frame) and CNN embeddings (trained for
semantics, not alignment) both break under these edits; matching aligned pixels does not.

Per image, analyze stores two 32 px grey thumbnails (:func:`copy_thumbnails`, Lanczos-resampled, 2 KiB):
the **content** thumbnail, the image with its pad or letterbox bars trimmed (edge lines of one flat
colour, at most :data:`MAX_TRIM` of each side, :func:`content_box`), and the **frame** thumbnail, the
whole image.
Contents are matched with contents; where a trim removed something, frames are matched with contents
too: a photograph with a flat margin of its own (a black edge) loses it to the trim, while its copy
padded in another colour keeps it. Where both images were trimmed, frames are also matched with frames:
a copy re-cropped through such a margin, or with a logo or caption over it, trims otherwise than its
test image (a micrograph's black edges, the moon's black sky), and only the whole frames still agree.
On photo seeds 0-9 (the copy method alone, at 0.94) this found 7 more of 1,260 copies of detailed test
images (1,254) and made one false pair fewer (8); copy_pairs on seed 3 took 5.4 s against 5.0 s.

Matching (:func:`copy_pairs`) compares small (``grid`` x ``grid``) pixel descriptors: sampled (a cubic spline),
partly high-passed (:data:`HIGH_PASS`: smooth gradients, which any two crops of a sky share, weigh
less), centred and normalised, so a score is a normalised cross-correlation of aligned pixels:

- each **query** (test) thumbnail is expanded into :func:`query_windows`: windows of 100, 92.5 and
  85 % of its width and of its height, at every position on a 3.75 % grid, each at -4, 0 and +4
  degrees (243 windows; turned in the pixels of the image, whose width / height analyze stores as
  ``content_aspect`` and ``aspect_ratio``; points outside read black, like the corners of a rotated copy, but
  prove nothing alone: :data:`INSIDE_SLACK`): one of them is the region a re-cropped or rotated copy shows;
- each **base** (train) thumbnail is compared through three :data:`VIEWS`: its whole content, and
  its content without the top or bottom quarter (where captions, logos and watermarks sit), each
  against the same part of every query window; and through four :data:`SEARCH_BANDS`, its whole content
  without one band of a third of its height (text across the middle), against the unturned windows;
- faiss finds each window's ``k`` nearest base views (exact below its budget, IVF beyond:
  :func:`vlclean.search.embedding.embedding_pairs`); candidates within :data:`REFINE_MARGIN` of the
  threshold are refined (:func:`refine`: the window moved, scaled and turned in two finer rounds,
  never below 85 % of a side), and a pair's score is its best correlation, moved up or down by how
  well the two agree along their four edges (:func:`edge_agreement`: a copy agrees along every side, a
  shifted or zoomed-out crop shows along one side what the query does not have).

:func:`pair_scores` scores given pairs the same way without a search: it confirms the embedding
method's candidates (``vlclean.leaks``), where pHash fails on exactly these edits.

Why it keeps non-copies out: a window must lie inside the query and keep at least 85 % of each side,
so a crop of the same photograph shifted beyond it, a zoomed-out crop that contains it, or another
part of the same scene brings pixels the query does not have, and the correlation drops; where those
pixels are a strip along one side, the edge term drops it further. Flat
images do not match: descriptors are normalised with a floor of :data:`FLAT_FLOOR` grey levels per
pixel. Images smaller than :data:`MIN_SIDE` px (train images: :data:`BASE_MIN_SIDE`) and nearly blank images
(:func:`detail` below :data:`LOW_DETAIL`, train images below :data:`BASE_LOW_DETAIL`: a smooth micrograph, a flat wall,
whose 32 px thumbnails keep too little to align) are left to the other methods (``vlclean.leaks``).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from PIL import Image

CONTENT_SIDE = 32
THUMBS = ("content", "frame")  # the two thumbnails analyze stores per image (copy_thumbnails)
# How thumbnails are made; features.json records it, and thumbnails of another version are refused (matching
# a Lanczos thumbnail against a box one would cost correlation silently). 3: the trim goes through the JPEG
# ringing of a pad colour that the picture lacks (_ALIEN_SHARE); 2: Lanczos (was 1: box).
THUMBNAIL_VERSION = 3
# Thumbnails are resampled with a Lanczos filter (after a box reduction to at most _REDUCING_GAP x the side):
# a box average aliases fine texture, and aliasing differs between an image and its rotated copy. On photo
# seeds 0-5 (every candidate pair rescored) misses at score 0.90 fell from 25 to 17 of 657 copies of
# detailed test images (rotated copies: 12 to 5) with one false pair fewer; a pure Lanczos resize scores
# the same at 2.3x the time at 256 px (0.34 against 0.15 ms) and 9x at 512 px (1.15 against 0.12 ms).
_RESAMPLE = Image.Resampling.LANCZOS
_REDUCING_GAP = 3.0
# Images with a shorter side below this take no part (thumbnail icons, the built-in 32 px digits):
# their 32 px content thumbnail holds no more than their hashes, and different small glyphs correlate.
MIN_SIDE = 64
# ... and as the train side of a test-train search, below this: a copy shrunk for a web page can lose more than
# its test image ever had. Fresh seeds 94-118 missed 2 such copies (a china and a Hubble crop, 82 x 59 and
# 87 x 60 px) that score 1.07 and 1.06. Tuning seeds 0-9 have no copy under 64 px and 2 other train images of
# 48-63 px: the same copies found and the same 9 false pairs as at 64 (the built-in digits stay out).
BASE_MIN_SIDE = 48
GRID = 12  # descriptor side: 144 values per window
HIGH_PASS = 1.5  # descriptor cells: the sigma of the blur partly subtracted ...
HIGH_PASS_MIX = 0.7  # ... and how much of it (tuned on photo seeds 0-2, with copy_min_score)
MAX_TRIM = 0.35  # at most this fraction of a side is trimmed as a uniform border
# Grey levels: descriptors of flatter images shrink (and match nothing). Two identical thumbnails whose descriptor
# cells vary by s grey levels score s^2 / (s^2 + FLAT_FLOOR^2): at 1.0 a low-contrast moon crop (detail 3.1, just
# above LOW_DETAIL) scored 0.82 against its own letterboxed copy, so its copies were missed whatever the edit.
# Blank test images are kept out by LOW_DETAIL, so the floor now only damps; at 0.5 (with copy_min_score 0.94
# and REFINE_MARGIN 0.16, photo seeds 0-9, the copy method alone) 4 more of 1,260 copies of detailed test
# images were found and 6 fewer false pairs made (9 against 15); 0.3-0.4 gave no better trade on any threshold.
FLAT_FLOOR = 0.5
# detail() below this (grey levels) marks a nearly blank image: the copy method leaves it to the exact and
# perceptual methods (vlclean.leaks), and reports count the copies of such test images apart. On photo
# seeds 0-2 the 42 of 408 copies of such test images were found at recall 0.41 (the rest at 0.99), and 7
# of the 12 false pairs were a copy of another photograph paired with one of them: a window turned by 4
# degrees reads black corners, and on a blank image those corners are all the structure there is.
LOW_DETAIL = 3.0
# The base (train) side's floor is lower: detail is measured at the thumbnail's scale, and a copy that
# re-crops and enlarges its image is smoother there than the image (a retina crop: 5.9, its copy 2.1).
# Blank test images were what made false pairs; on photo seeds 0-9 the lower floor found 6 more of 1,260
# copies of detailed test images and no more false pairs.
BASE_LOW_DETAIL = 1.5
# Borders are measured on a box thumbnail of at most _TRIM_PROBE px a side. A line belongs to the border
# when at least _TRIM_SHARE of its pixels lie within _TRIM_TOL grey levels of the outermost line's median
# (pads and bars are one flat colour; JPEG ringing and a caption's edge leave a few pixels off); flat
# parts of a photograph vary more than that and are kept, so a test image and its padded copy trim alike.
# Past a border, _TRIM_MARGIN more probe lines go: the line that mixes bar and content (and JPEG's blur of
# the edge) would otherwise stay, and a sliver of white beside a dark photo outweighs the photo. Cutting
# 1-2 % too much is harmless (a copy may show 85 % of a side); leaving a sliver is not. On photo seeds 0-2
# pad / letterbox copies scoring < 0.90 fell from 41 to 13 of 136 with this trim and the frame thumbnail
# (from a 64 px probe whose lines had to span <= 6 grey levels). Looser lines (within 14-16 levels, or 90 %
# of pixels) also trim the ringing of JPEG q40 but trim flat photo edges too: more false pairs there.
_TRIM_PROBE = 128
_TRIM_TOL = 10.0
_TRIM_SHARE = 0.97
_TRIM_MARGIN = 2
# A border of a colour that the picture lacks (at most _ALIEN_MAX of the probe's middle, _ALIEN_MARGIN in from
# each side, lies within _TRIM_TOL of it) is trimmed through lines with _ALIEN_SHARE of their pixels on it: a pad
# shrunk and re-encoded at JPEG q40 rings along the picture's edge, and the strict share stopped short of it,
# leaving a sliver of pad (a gravel copy of tuning seed 6 at 100 px: 0.757, trimmed through: 1.045). A border
# of a colour that the picture has keeps the strict share (an earlier trim through ringing of any colour, README,
# also trimmed the black sky off moon crops shifted into it: 2 more false pairs). On photo seeds 0-9 it found 2
# more of 1,260 copies of detailed test images, and the same false pairs. _ALIEN_MAX was 0.01: 4 of the 9 pad + resize +
# JPEG copies missed on fresh seeds 119-151 kept a sliver of a grey pad whose grey also covers 1.3-6.9 % of the
# picture's middle (ringing left 83-96 % of a line on it). At 0.08 all 4 are found (at 0.03 and 0.05,
# 2 of them); on photo seeds 0-9 every 0.01-0.08 found the same copies and false pairs, and on fresh seeds 169-178
# (n = 1,209, the copy method alone, run once) 0.08 found 1 more (a padded copy) and the same 11 false pairs.
_ALIEN_MARGIN = 0.2
_ALIEN_MAX = 0.08
_ALIEN_SHARE = 0.8

WIDTHS = (1.0, 0.925, 0.85)  # window sizes, fractions of the query's content width ...
HEIGHTS = (1.0, 0.925, 0.85)  # ... and height (a copy keeps at least 80 % of the area)
ANGLES = (0.0, -4.0, 4.0)
STEP = 0.0375  # window positions: every 3.75 % of the content side
# Windows are sampled with a cubic spline, not bilinearly: bilinear sampling between pixels smooths by an amount that
# depends on where a point falls, so a turned window (off the pixel grid) of fine texture lost more than its copy
# turned before resampling. On photo seeds 0-9 (the copy method alone, at 0.94) it found 2 more of 1,260 copies of
# detailed test images (1,256; rotations missed: 4 to 1) with the same false pairs (8), and at every threshold
# from 0.88 to 0.97 as many or fewer false pairs (0.92: 12 against 19). Pre-blurring the thumbnail or sampling
# 3-4 points a cell each way (smoother descriptors) made 1.75-2.9x the false pairs; a cubic 2x upsampling sampled
# bilinearly found 1,254 with 9. A cubic spline reads 16 pixels a point where bilinear reads 4: through
# map_coordinates for every thumbnail, copy_pairs on seed 3 took 1.8x; through one sparse matrix per set of
# windows (_sampler), shared by every thumbnail, 0.88x the bilinear code's time (4.86 s against 5.51 s).
SAMPLE_ORDER = 3
# Windows turn in the image's pixels, not in its square thumbnail's (_sample_points): a photo turned by 4 degrees
# shows, in the thumbnail of a 4:3 original, its width turned by 5.3 and its height by 3.0, which no turned
# square window matched. Tuned on rotation sets drawn for it (seeds 1000-1019 of vlclean.photo_leaks with every
# copy turned, half of them resized and re-encoded; n = 2,385 copies of detailed test images), the copy method alone
# at 0.94, with INSIDE_SLACK: misses fell from 37 to 22 (turned, resized and re-encoded: 21 to 9) and false pairs
# from 30 to 27; on photo seeds 0-9 (n = 1,259) 1,255 copies found against 1,256, false pairs 9 against 8. The
# search samples queries in classes of ASPECT_STEP in log (a turn of 4 degrees off by at most 0.2 degree), and
# refinement scores at the exact aspect only: a class's search score kept as a floor made 6 more false pairs on the
# rotation sets at a step of 0.05 (every extra look raises a non-copy's best). Without it, steps of 0.05 and 0.1
# scored alike (rotation sets: 22 misses, 27 false pairs each; seeds 0-9: 10 and 9 false pairs); a sampler is built
# per class and view (65 ms each), so fewer classes cost less: copy_pairs on seed 3 (8 classes) took 10.7 s
# against 6.9 s for the square windows, most of it those builds (0.01 with the floor: 12.0 s).
ASPECT_STEP = 0.1
# Views of the base: (top, bottom) fractions of its content height kept. The whole content, and the
# content without its top or bottom quarter, where captions, logos and watermarks sit.
VIEWS = ((0.0, 1.0), (0.25, 1.0), (0.0, 0.75))
# ... and, for the search, the whole content without one band of descriptor rows [lo, hi), against the unturned
# windows: text across the middle of a picture (over a small photo it can be much of its structure, and no
# window or top / bottom view leaves it out: 10 of 13 caption misses on photo seeds 0-9 were never candidates).
# On seeds 0-9 they found 9 more of 1,260 copies of detailed test images, and 2 more false pairs (17).
SEARCH_BANDS = ((1, 5), (3, 7), (5, 9), (7, 11))
# Candidates within this of min_score are refined: the best window moved by half a step, scaled by
# +-3 % and turned by +-2 degrees (and again, at half those), before the final score. 0.24 with copy_min_score
# 0.94 searches at 0.70: 2 brick re-crops of fresh seeds 94-118, shrunk and re-encoded, were never proposed at
# 0.78 (0.16); their best search windows score 0.731 and 0.701, refined 1.052 and 1.045 (fine texture
# decorrelates between the grid's windows). On photo seeds 0-9 0.24 finds the same copies with the same 9 false
# pairs as 0.16, refining 172 candidates against 155 on seed 3 (0.28: 193, 0.32: 232; 0.12 at 0.94 lost 2 of
# 1,260 copies there). Fresh seeds 119-143 (with BASE_MIN_SIDE; n = 2,991): 4 copies more, 1 fewer, the same false
# pairs. The one lost was a caption whose only candidate at 0.78 came through a search band (0.967): at 0.70 a
# whole-view window reached the floor too (0.738) and was refined instead (VIEW_FIRST_MARGIN).
REFINE_MARGIN = 0.24
# A pair's best whole-view window is refined instead of its best search-band window where it scores at least
# min_score - this (0.78 at 0.94, the search floor the bands were tuned at); under it, both are refined and the
# better counts. Refining both always (as pair_scores does) found 3 more of 2,991 copies on fresh seeds 119-143
# (captions) and made 8 more false pairs (zoomed-out and shifted rocket, retina and clock crops, whose banded
# windows score 0.94-1.00), and on tuning seeds 0-9 1 more false pair; this rule found 2 of the 3 and no
# false pair on either (both: every candidate of the copy search refined each way; run once).
VIEW_FIRST_MARGIN = 0.16
# After refinement, every pair is also scored through the whole view at its window with one band of this
# many descriptor rows (a quarter of the height) left out, at every height that touches neither of the two
# outer rows: text over the middle of a picture, which the top / bottom views cannot leave out (a band
# at the edge would also excuse the new rows of a crop shifted up or down). On photo seeds 0-9 scoring
# the band for pairs matched through the top / bottom views too found 3 more of 1,260 copies (all captions)
# and no more false pairs.
BAND_ROWS = 3
# ... and the score moves by EDGE_WEIGHT x (edge agreement - EDGE_PIVOT), at most EDGE_CLIP either way
# (:func:`edge_agreement`: the worst correlation over the four edge strips of EDGE_ROWS descriptor rows or
# columns). A copy agrees along every edge, a caption's or logo's side aside (views and band leave those
# out, or they stay partly in agreement); a crop shifted by 20 % or more, or zoomed out, shows along one
# side what the query does not have. Tuned on photo seeds 0-9 (every candidate rescored): at 0.90, misses of
# copies of detailed test images fell from 45 to 28 of 1,260 and false pairs from 17 to 15.
EDGE_ROWS = 3
EDGE_WEIGHT = 0.15
EDGE_PIVOT = 0.4
EDGE_CLIP = 0.5
# A turned window reads black outside the query, as a copy turned with black corners shows; but with the right
# aspect (ASPECT_STEP) those corners also match the corners of any turned copy of a nearly flat photo (a bare
# wall), which are all its structure: such a copy of one test image paired with another at up to 0.995. So a
# window with cells outside the query scores at most the correlation of its cells inside, plus this. On the
# rotation tuning sets (ASPECT_STEP; classes of 0.01) at 0.94: false pairs 32 to 27, copies missed 23 to 25; photo
# seeds 0-9: the same copies, false pairs 11 to 10. 0.3-0.4 scored alike; the minimum alone (0) missed 122 on the
# rotation sets, and leaving out two more rows of cells around the outside (the high pass spreads the corners) did
# no better.
INSIDE_SLACK = 0.35


def content_box(gray: Image.Image) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` as fractions of the image: the part inside uniform borders."""
    w, h = gray.size
    probe = np.asarray(gray.resize((min(_TRIM_PROBE, w), min(_TRIM_PROBE, h)), Image.Resampling.BOX),
                       dtype=np.float32)

    ph, pw = probe.shape
    my, mx = int(ph * _ALIEN_MARGIN), int(pw * _ALIEN_MARGIN)
    inner = probe[my : ph - my, mx : pw - mx]  # the picture, whatever its borders

    def depth(lines: np.ndarray) -> int:
        limit = int(len(lines) * MAX_TRIM)
        ref = float(np.median(lines[0]))
        alien = (np.abs(inner - ref) <= _TRIM_TOL).mean() <= _ALIEN_MAX  # a colour the picture lacks
        border = (np.abs(lines[:limit] - ref) <= _TRIM_TOL).mean(axis=1) >= (_ALIEN_SHARE if alien else _TRIM_SHARE)
        n = limit if border.all() else int(np.argmin(border))
        return min(limit, n + _TRIM_MARGIN) if n else 0

    left, right = depth(probe.T), depth(probe.T[::-1])
    top, bottom = depth(probe), depth(probe[::-1])
    return left / pw, top / ph, 1 - right / pw, 1 - bottom / ph


def content_thumbnail(gray: Image.Image, side: int = CONTENT_SIDE,
                      box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """``(side, side)`` uint8: the grey image inside its uniform borders (``box``, default :func:`content_box`),
    Lanczos-resampled (aspect not kept)."""
    left, top, right, bottom = content_box(gray) if box is None else box
    w, h = gray.size
    box = (left * w, top * h, right * w, bottom * h)
    return np.asarray(gray.resize((side, side), _RESAMPLE, box=box, reducing_gap=_REDUCING_GAP), dtype=np.uint8)


def copy_thumbnails(gray: Image.Image, side: int = CONTENT_SIDE) -> np.ndarray:
    """``(2, side, side)`` uint8: the content thumbnail and the whole frame's (:data:`THUMBS`).

    The frame's serves images whose trim removed a flat margin of the photograph itself (a black
    edge, a white sky): the copy padded with another colour keeps that margin, so the test image's
    frame, not its content, is what the copy's content shows."""
    return copy_views(gray, side)[0]


def copy_views(gray: Image.Image, side: int = CONTENT_SIDE) -> tuple[np.ndarray, float]:
    """:func:`copy_thumbnails` and the content's aspect: width / height, in pixels, of the part inside uniform
    borders, which its windows turn in (:func:`descriptors`); the frame's is the image's."""
    box = content_box(gray)
    w, h = gray.size
    frame = np.asarray(gray.resize((side, side), _RESAMPLE, reducing_gap=_REDUCING_GAP), dtype=np.uint8)
    aspect = (box[2] - box[0]) * w / max(1e-9, (box[3] - box[1]) * h)
    return np.stack([content_thumbnail(gray, side, box), frame]), float(aspect)


def detail(thumbs: np.ndarray) -> np.ndarray:
    """Grey levels of fine detail of each content thumbnail ``(N, side, side)``: the standard deviation
    of what a 1.5 px Gaussian blur removes. Below :data:`LOW_DETAIL` an image is nearly blank at this
    scale (a flat wall, a smooth micrograph) and a re-encoded copy of it keeps too little to align."""
    from scipy.ndimage import gaussian_filter

    out = np.empty(len(thumbs), dtype=np.float32)
    for start in range(0, len(thumbs), 65536):  # a float copy of at most 256 MB at a time
        t = np.asarray(thumbs[start : start + 65536], dtype=np.float32)
        out[start : start + len(t)] = (t - gaussian_filter(t, sigma=(0, 1.5, 1.5), mode="nearest")).std(axis=(1, 2))
    return out


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


def view_of(windows: np.ndarray, view: tuple[float, float], aspect: float = 1.0) -> np.ndarray:
    """The part ``view`` (top, bottom fractions) of each window, rotated with it: what a base view shows
    when the whole window is the base's content. ``aspect``: the query's width / height (:func:`descriptors`)."""
    top, bottom = view
    dy = ((top + bottom) / 2 - 0.5) * windows[:, 3]
    a = np.deg2rad(windows[:, 4])
    out = windows.copy()
    out[:, 0] -= dy * np.sin(a) / aspect
    out[:, 1] += dy * np.cos(a)
    out[:, 3] *= bottom - top
    return out


def descriptors(thumbs: np.ndarray, windows: np.ndarray, grid: int = GRID,
                band: tuple[int, int] | None = None, aspect: float = 1.0) -> np.ndarray:
    """``(N, W, grid * grid)`` float32 descriptors of each window of each thumbnail ``(N, S, S)`` uint8.

    A window is sampled (a cubic spline, :data:`SAMPLE_ORDER`) at ``2 grid`` x ``2 grid`` points (rotated about
    its centre in the pixels of the image the thumbnails squeezed, ``aspect`` times as wide as high; points outside
    the thumbnail read black, as the corners of a rotated copy do), averaged 2 x 2, centred and divided by
    ``sqrt(|x|^2 + P * FLAT_FLOOR^2)``. ``band``: descriptor rows ``[lo, hi)`` left out
    (zero; the rest centred and normalised alone, :data:`SEARCH_BANDS`). Many thumbnails at once go through one
    sparse matrix per set of windows (:func:`_sampler`); a single one (a refinement's own windows) through
    ``scipy.ndimage.map_coordinates``, which gives the same cells to 1e-4 grey levels."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    n, side = len(thumbs), thumbs.shape[1] if len(thumbs) else CONTENT_SIDE
    p = grid * grid
    keep = np.ones((grid, grid), dtype=np.float32)
    if band is not None:
        keep[band[0] : band[1]] = 0.0
    keep = keep.reshape(1, 1, p)
    out = np.empty((n, len(windows), p), dtype=np.float32)
    sampler = _sampler(windows, side, grid, aspect) if n >= _SPARSE_MIN else None
    if sampler is None:
        ys, xs = _sample_points(windows, side, grid, aspect)
    step = max(1, _SPARSE_CELLS // max(1, len(windows) * p))
    for start in range(0, n, step):
        part = thumbs[start : start + step]
        if sampler is not None:
            v = (sampler @ _spline_coefficients(part).T).T.reshape(len(part), len(windows), grid, grid)
        else:
            v = np.stack([map_coordinates(np.asarray(t, dtype=np.float32), [ys.ravel(), xs.ravel()],
                                          order=SAMPLE_ORDER, mode="constant", cval=0.0) for t in part])
            v = v.reshape(len(part), len(windows), grid, 2, grid, 2).mean(axis=(3, 5))
        if HIGH_PASS:
            v = v - HIGH_PASS_MIX * gaussian_filter(v, sigma=(0, 0, HIGH_PASS, HIGH_PASS), mode="nearest")
        v = v.reshape(len(part), len(windows), p)
        if band is not None:
            v = v * keep
        v -= keep * (v.sum(axis=2, keepdims=True) / keep.sum())
        out[start : start + len(part)] = v / np.sqrt((v * v).sum(axis=2, keepdims=True) + keep.sum() * FLAT_FLOOR**2)
    return out


def _sample_points(windows: np.ndarray, side: int, grid: int, aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(ys, xs)``, each ``(W, 2 grid, 2 grid)``: where each window is sampled, in pixels of a ``side`` px
    thumbnail of an image ``aspect`` times as wide as high (windows turn in the image's pixels: in the square
    thumbnail of a 4:3 photo, a turn of 4 degrees turns its width by 5.3 and its height by 3.0). A point less
    than half a pixel outside reads the edge; further out, black."""
    m = 2 * grid
    u = (np.arange(m) + 0.5) / m - 0.5
    cx, cy, sx, sy, a = (windows[:, i][:, None, None] for i in range(5))
    ca, sa = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))
    px, py = u[None, None, :], u[None, :, None]
    xs = np.broadcast_to((cx + px * sx * ca - py * sy * sa / aspect) * side - 0.5, (len(windows), m, m))
    ys = np.broadcast_to((cy + px * sx * sa * aspect + py * sy * ca) * side - 0.5, (len(windows), m, m))
    xs = np.where(np.abs(xs - (side - 1) / 2) <= side / 2, np.clip(xs, 0, side - 1), xs)
    ys = np.where(np.abs(ys - (side - 1) / 2) <= side / 2, np.clip(ys, 0, side - 1), ys)
    return ys, xs


def _spline_coefficients(thumbs: np.ndarray) -> np.ndarray:
    """``(N, S * S)`` float32 cubic B-spline coefficients of thumbnails ``(N, S, S)`` (mirror boundary, as
    ``map_coordinates`` uses for ``mode="constant"``)."""
    from scipy.ndimage import spline_filter1d

    c = spline_filter1d(np.asarray(thumbs, dtype=np.float64), SAMPLE_ORDER, axis=1, mode="mirror")
    c = spline_filter1d(c, SAMPLE_ORDER, axis=2, mode="mirror")
    return c.reshape(len(thumbs), -1).astype(np.float32)


def _inside(ys: np.ndarray, xs: np.ndarray, side: int) -> np.ndarray:
    """Which sample points (:func:`_sample_points`, edge points already clipped) read the thumbnail, not black."""
    return (ys >= 0) & (ys <= side - 1) & (xs >= 0) & (xs <= side - 1)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline at ``t``."""
    t = np.abs(t)
    return np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _sampler(windows: np.ndarray, side: int, grid: int, aspect: float = 1.0):  # -> scipy.sparse.csr_matrix
    """``(W * grid * grid, side * side)``: each descriptor cell of each window (before the high pass) as a weighted
    sum of spline coefficients (:func:`_spline_coefficients`): the 16 cubic weights of each of its 2 x 2 sample
    points, a quarter each. Points outside the thumbnail weigh nothing (black). Cached per set of windows and
    aspect: the search samples the same windows of every query of one aspect class (:func:`aspect_classes`)."""
    windows = np.ascontiguousarray(windows, dtype=np.float64)
    return _sampler_of(windows.tobytes(), len(windows), side, grid, float(aspect))


@functools.lru_cache(maxsize=16)
def _sampler_of(key: bytes, count: int, side: int, grid: int, aspect: float):  # -> scipy.sparse.csr_matrix
    """:func:`_sampler` of the windows ``np.frombuffer(key).reshape(count, 5)``."""
    from scipy import sparse

    windows = np.frombuffer(key, dtype=np.float64).reshape(count, 5)
    ys, xs = _sample_points(windows, side, grid, aspect)
    # (W, grid, grid, 4) sample points per cell: cells in row-major order, each with its 2 x 2 points
    ys, xs = (a.reshape(len(windows), grid, 2, grid, 2).transpose(0, 1, 3, 2, 4).reshape(-1, 4) for a in (ys, xs))
    inside = _inside(ys, xs, side)
    fy, fx = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    taps = np.arange(-1, 3)

    def mirror(i: np.ndarray) -> np.ndarray:
        i = np.abs(i)
        return np.where(i > side - 1, 2 * (side - 1) - i, i)

    iy, ix = fy[:, :, None] + taps, fx[:, :, None] + taps  # (cells, 4 points, 4 taps)
    wy = _cubic_weights(ys[:, :, None] - iy) * inside[:, :, None]
    wx = _cubic_weights(xs[:, :, None] - ix)
    cols = (mirror(iy)[:, :, :, None] * side + mirror(ix)[:, :, None, :]).reshape(len(ys), -1)
    data = (0.25 * wy[:, :, :, None] * wx[:, :, None, :]).reshape(len(ys), -1)
    return sparse.csr_matrix((data.ravel().astype(np.float32), np.clip(cols, 0, side * side - 1).ravel(),
                              np.arange(0, data.size + 1, data.shape[1])), shape=(len(ys), side * side))


_SPARSE_MIN = 2  # thumbnails at or above which descriptors go through a sampler (a single one: map_coordinates)
_SPARSE_CELLS = 1 << 22  # descriptor cells sampled at a time (16 MB of float32)


def _unit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` that are not flat (norm above 0.5: structure beyond the floor), normalised; and their rows."""
    norms = np.linalg.norm(x, axis=1)
    live = np.flatnonzero(norms > 0.5)
    return np.ascontiguousarray(x[live] / norms[live, None]), live


def _frame_rows(thumbs: np.ndarray) -> np.ndarray:
    """Rows whose trim removed something: their frame thumbnail differs from their content thumbnail."""
    return np.flatnonzero((thumbs[:, 0] != thumbs[:, 1]).any(axis=(1, 2)))


def copy_pairs(
    query: np.ndarray, base: np.ndarray, *, min_score: float, k: int = 10, index: str = "auto", same: bool = False,
    chunk: int = 64, query_aspect: np.ndarray | None = None,
) -> pd.DataFrame:
    """``(query_idx, base_idx, score)`` of every query/base pair scoring at least ``min_score``: the best
    correlation of a base view with the same part of a query window (module doc), among each window's
    ``k`` nearest base views. ``query`` and ``base`` are ``(N, 2, side, side)`` (:func:`copy_thumbnails`):
    contents are matched against contents, and where a trim removed something, a query's frame against
    base contents, query contents against a base's frame, and (both trimmed) frames against frames.
    ``same``: query and base are one set; each pair ``i < j`` once. ``query_aspect``: ``(N, 2)`` width / height of
    the image parts the query's two thumbnails show (its content, its frame; ``None``: square), which its windows
    turn in (:func:`descriptors`)."""
    cols = {"query_idx": np.empty(0, np.int64), "base_idx": np.empty(0, np.int64), "score": np.empty(0, np.float32)}
    if len(query) == 0 or len(base) == 0:
        return pd.DataFrame(cols)
    opts = {"min_score": min_score - REFINE_MARGIN, "k": k, "index": index, "chunk": chunk}
    aspects = _aspects(query_aspect, len(query))
    classes = aspect_classes(aspects)
    qf, bf = _frame_rows(query), _frame_rows(base)
    # (query thumbnail, its rows, base thumbnail, its rows; None: every row). Within one set, i's content against
    # j's frame is j's frame against i's content.
    passes = [(0, None, 0, None), (1, qf, 0, None), (0, None, 1, bf[:0] if same else bf), (1, qf, 1, bf)]
    frames = []
    for qt, qrows, bt, brows in passes:
        q = query[:, qt] if qrows is None else query[qrows, qt]
        qa = classes[:, qt] if qrows is None else classes[qrows, qt]
        b = base[:, bt] if brows is None else base[brows, bt]
        if len(q) == 0 or len(b) == 0:
            continue
        c = _candidates(q, b, qa, **opts)
        if qrows is not None:
            c["query_idx"] = qrows[c["query_idx"].to_numpy()]
        if brows is not None:
            c["base_idx"] = brows[c["base_idx"].to_numpy()]
        frames.append(c.assign(qt=qt, bt=bt))
    pairs = pd.concat(frames, ignore_index=True)
    if same:
        pairs = pairs[pairs["query_idx"] != pairs["base_idx"]]
    if len(pairs) == 0:
        return pd.DataFrame(cols)
    pairs = _to_refine(_best_candidates(pairs), min_score)
    pairs["score"] = refine(query, base, pairs, aspects)
    pairs = pairs[pairs["score"] >= min_score]
    if same:
        a, b = pairs["query_idx"].to_numpy(), pairs["base_idx"].to_numpy()
        pairs = pairs.assign(query_idx=np.minimum(a, b), base_idx=np.maximum(a, b))
    best = pairs.sort_values("score", ascending=False).drop_duplicates(["query_idx", "base_idx"])
    return best[list(cols)].sort_values(["query_idx", "base_idx"], ignore_index=True).astype(
        {"query_idx": np.int64, "base_idx": np.int64, "score": np.float32})


def _candidates(query: np.ndarray, base: np.ndarray, aspect: np.ndarray, *, min_score: float, k: int, index: str,
                chunk: int) -> pd.DataFrame:
    """``(query_idx, base_idx, score, window, view)``: each pair's best window and view among the faiss
    neighbours (``(N, side, side)`` thumbnails, correlation >= ``min_score``), before refinement. ``aspect``: each
    query's aspect class (:func:`aspect_classes`); queries are searched in order of it, so that a chunk's windows
    are mostly sampled by one cached sampler."""
    from vlclean.search.embedding import embedding_pairs

    whole = np.array([[0.5, 0.5, 1.0, 1.0, 0.0]])
    windows = query_windows()
    frames = [pd.DataFrame({"query_idx": np.empty(0, np.int64), "base_idx": np.empty(0, np.int64),
                            "score": np.empty(0, np.float32), "window": np.empty(0, np.int64),
                            "view": np.empty(0, np.int64)})]
    order = np.argsort(aspect, kind="stable")
    for v in range(len(VIEWS) + len(SEARCH_BANDS)):
        view, band = _view(v)
        views = descriptors(base, view_of(whole, view), band=band)[:, 0]
        unit, live = _unit(views)
        if len(live) == 0:
            continue
        sel = _view_windows(windows, band)
        for start in range(0, len(query), chunk):
            rows = order[start : start + chunk]
            q = _query_descriptors(query[rows], aspect[rows], windows[sel], view, band).reshape(-1, views.shape[1])
            qu, ok = _unit(q)
            if len(ok) == 0:
                continue
            found = embedding_pairs(qu, unit, min_similarity=min_score, k=min(k, len(unit)), index=index)
            qrow, brow = ok[found["query_idx"].to_numpy()], live[found["base_idx"].to_numpy()]
            score = np.einsum("ij,ij->i", q[qrow], views[brow])
            frames.append(pd.DataFrame({"query_idx": rows[qrow // len(sel)], "base_idx": brow,
                                        "score": score.astype(np.float32), "window": sel[qrow % len(sel)],
                                        "view": v}))
    return _best_candidates(pd.concat(frames, ignore_index=True))


def _best_candidates(pairs: pd.DataFrame) -> pd.DataFrame:
    """At most two candidates per pair: its best window through :data:`VIEWS` and its best through a search band
    (:data:`VIEW_FIRST_MARGIN` decides which :func:`copy_pairs` refines)."""
    banded = pairs.assign(banded=pairs["view"] >= len(VIEWS)).sort_values("score", ascending=False, kind="stable")
    return banded.drop_duplicates(["query_idx", "base_idx", "banded"]).drop(columns="banded")


def _to_refine(pairs: pd.DataFrame, min_score: float) -> pd.DataFrame:
    """The candidates of :func:`_best_candidates` that are refined: a pair's search-band candidate is dropped where
    its whole-view one scores at least ``min_score -`` :data:`VIEW_FIRST_MARGIN`."""
    banded = pairs["view"] >= len(VIEWS)
    viewed = (~banded & (pairs["score"] >= min_score - VIEW_FIRST_MARGIN)).groupby(
        [pairs["query_idx"], pairs["base_idx"]]).transform("any")
    return pairs[~(banded & viewed)].copy()


def _view(v: int) -> tuple[tuple[float, float], tuple[int, int] | None]:
    """View number ``v`` of a candidate: ``(view, band)``, a part of :data:`VIEWS` or the whole content without
    a band of :data:`SEARCH_BANDS`."""
    if v < len(VIEWS):
        return VIEWS[v], None
    return VIEWS[0], SEARCH_BANDS[v - len(VIEWS)]


def _view_windows(windows: np.ndarray, band: tuple[int, int] | None) -> np.ndarray:
    """Rows of ``windows`` searched through a view: all of them, or for a search band the unturned ones (a
    caption is added to an upright picture; a third of the cost)."""
    return np.arange(len(windows)) if band is None else np.flatnonzero(windows[:, 4] == 0)


def _query_descriptors(thumbs: np.ndarray, aspect: np.ndarray, windows: np.ndarray, view: tuple[float, float],
                       band: tuple[int, int] | None) -> np.ndarray:
    """``(N, W, P)`` descriptors of the part ``view`` of each window of each query thumbnail, turned at its aspect."""
    out = np.empty((len(thumbs), len(windows), GRID * GRID), dtype=np.float32)
    for a in np.unique(aspect):
        rows = np.flatnonzero(aspect == a)
        out[rows] = descriptors(thumbs[rows], view_of(windows, view, float(a)), band=band, aspect=float(a))
    return out


def _aspects(query_aspect: np.ndarray | None, n: int) -> np.ndarray:
    """``(n, 2)`` float64 aspects of a query's thumbnails; 1 (square) where unknown (``None``, NaN, not positive)."""
    if query_aspect is None:
        return np.ones((n, len(THUMBS)))
    a = np.asarray(query_aspect, dtype=np.float64)
    if a.shape != (n, len(THUMBS)):
        raise ValueError(f"query_aspect has shape {a.shape}, expected ({n}, {len(THUMBS)})")
    return np.where(np.isfinite(a) & (a > 0), a, 1.0)


def aspect_classes(aspect: np.ndarray) -> np.ndarray:
    """Aspects rounded to a step of :data:`ASPECT_STEP` in log: the search samples a cached set of windows per class
    (a turn of 4 degrees is off by at most 0.2 degree); refinement turns at the exact aspect."""
    return np.exp(np.round(np.log(aspect) / ASPECT_STEP) * ASPECT_STEP)


def pair_scores(query: np.ndarray, base: np.ndarray, qi: np.ndarray, bi: np.ndarray, chunk: int = 256,
                query_aspect: np.ndarray | None = None) -> np.ndarray:
    """The copy score of given pairs (``query[qi[n]]`` vs ``base[bi[n]]``, ``(N, 2, side, side)`` each): the
    best window and view of every thumbnail combination, and the best through a search band, each refined
    (:func:`refine`); the better counts. Verifies pairs that
    another search proposed (the embedding method's), with no threshold and no index. ``query_aspect``: as for
    :func:`copy_pairs`."""
    qi, bi = np.asarray(qi, dtype=np.int64), np.asarray(bi, dtype=np.int64)
    if len(qi) == 0:
        return np.empty(0, dtype=np.float32)
    aspects = _aspects(query_aspect, len(query))
    classes = aspect_classes(aspects)
    whole = np.array([[0.5, 0.5, 1.0, 1.0, 0.0]])
    windows = query_windows()
    rows = []
    for start in range(0, len(qi), chunk):  # (chunk, 2, W, P) query descriptors at a time
        cq, cb = qi[start : start + chunk], bi[start : start + chunk]
        uq, qpos = np.unique(cq, return_inverse=True)
        ub, bpos = np.unique(cb, return_inverse=True)
        n = np.arange(start, start + len(cq))
        for v in range(len(VIEWS) + len(SEARCH_BANDS)):
            view, band = _view(v)
            sel = _view_windows(windows, band)
            qd = np.stack([_query_descriptors(query[uq, t], classes[uq, t], windows[sel], view, band)
                           for t in range(2)], axis=1)  # (Q, 2, W, P)
            bd = np.stack([descriptors(base[ub, t], view_of(whole, view), band=band)[:, 0] for t in range(2)], axis=1)
            s = np.einsum("nswp,ntp->nstw", qd[qpos], bd[bpos]).reshape(len(cq), -1)  # (pairs, qt * bt * W)
            best = s.argmax(axis=1)
            qt, bt, w = np.unravel_index(best, (2, 2, len(sel)))
            w = sel[w]
            rows.append(pd.DataFrame({"n": n, "query_idx": cq, "base_idx": cb, "score": s[np.arange(len(cq)), best],
                                      "window": w, "view": v, "qt": qt, "bt": bt}))
    # each pair's best window through VIEWS and through the search bands, both refined: the better counts
    pairs = pd.concat(rows, ignore_index=True)
    pairs = pairs.assign(banded=pairs["view"] >= len(VIEWS)).sort_values("score", ascending=False)
    pairs = pairs.drop_duplicates(["n", "banded"]).sort_values(["n", "banded"])
    scores = pd.Series(refine(query, base, pairs, aspects), index=pairs["n"].to_numpy())
    return scores.groupby(level=0).max().reindex(np.arange(len(qi))).to_numpy(dtype=np.float32)


def refine(query: np.ndarray, base: np.ndarray, pairs: pd.DataFrame, aspects: np.ndarray | None = None) -> np.ndarray:
    """Score of each pair (``query_idx, base_idx, window, view, qt, bt``: thumbnails ``qt`` of the query and
    ``bt`` of the base) after two rounds of local search around its window (:data:`REFINE_MARGIN`;
    windows stay inside the query's content): the better of its view's correlation and the whole view's
    without one band (:data:`BAND_ROWS`), each moved by its edge agreement (:data:`EDGE_WEIGHT`). A pair
    proposed through a search band (:data:`SEARCH_BANDS`) is refined on that band's correlation and scored by
    the whole view without one band alone. ``aspects``: ``(N, 2)`` of the query thumbnails (:func:`copy_pairs`;
    ``None``: square); windows turn at the exact aspect."""
    aspects = _aspects(aspects, len(query))
    windows = query_windows()
    out = np.full(len(pairs), -np.inf, dtype=np.float32)  # the start window is the first round's centre
    whole = np.array([[0.5, 0.5, 1.0, 1.0, 0.0]])
    steps = [(STEP / 2, 0.03, 2.0), (STEP / 4, 0.015, 1.0)]
    grid = np.array(np.meshgrid(*[[-1.0, 0.0, 1.0]] * 5, indexing="ij")).reshape(5, -1).T
    cols = ["query_idx", "base_idx", "window", "view", "qt", "bt"]
    for n, (qi, bi, w, v, qt, bt) in enumerate(pairs[cols].itertuples(index=False)):
        view, band = _view(v)
        aspect = float(aspects[qi, qt])
        target = descriptors(base[bi : bi + 1, bt], view_of(whole, view), band=band)[0, 0]
        best_w = windows[w]
        for shift, scale, turn in steps:
            cand = best_w[None, :] + grid * np.array([shift, shift, 0, 0, turn])
            cand[:, 2] = best_w[2] * (1 + grid[:, 2] * scale)
            cand[:, 3] = best_w[3] * (1 + grid[:, 3] * scale)
            cand[:, 2] = np.clip(cand[:, 2], min(WIDTHS), 1.0)  # never a smaller part than a copy keeps
            cand[:, 3] = np.clip(cand[:, 3], min(HEIGHTS), 1.0)
            cand[:, 0] = np.clip(cand[:, 0], cand[:, 2] / 2, 1 - cand[:, 2] / 2)
            cand[:, 1] = np.clip(cand[:, 1], cand[:, 3] / 2, 1 - cand[:, 3] / 2)
            found = descriptors(query[qi : qi + 1, qt], view_of(cand, view, aspect), band=band, aspect=aspect)[0]
            i = int(np.argmax(scores := found @ target))
            best_w, best_d = cand[i], found[i]
            out[n] = max(out[n], float(scores[i]))
        edge = _edge_term(best_d, target)
        # a search band's window is scored by the whole view without one band (below) alone
        score = out[n] + edge if band is None else -np.inf
        # the whole view without one band of rows: a caption or logo across the middle of the picture
        if v != 0:  # the whole view at the same window
            best_d = descriptors(query[qi : qi + 1, qt], best_w[None], aspect=aspect)[0, 0]
            target = descriptors(base[bi : bi + 1, bt], whole)[0, 0]
            edge = _edge_term(best_d, target)
        out[n] = max(score, _without_band(best_d, target) + edge)
        inside = _inside_cells(best_w, query.shape[-1], aspect)
        if not inside.all():  # the corners a turned window reads outside the query (INSIDE_SLACK)
            out[n] = min(out[n], _correlation(best_d[inside], target[inside]) * float(
                np.linalg.norm(best_d) * np.linalg.norm(target)) + edge + INSIDE_SLACK)
    return out


def _inside_cells(window: np.ndarray, side: int, aspect: float, grid: int = GRID) -> np.ndarray:
    """``(grid * grid,)`` bool: the descriptor cells of ``window`` whose sample points all lie inside the thumbnail."""
    ys, xs = _sample_points(window[None], side, grid, aspect)
    return _inside(ys, xs, side).reshape(grid, 2, grid, 2).all(axis=(1, 3)).ravel()


def _edge_term(q: np.ndarray, t: np.ndarray) -> float:
    return EDGE_WEIGHT * float(np.clip(edge_agreement(q, t) - EDGE_PIVOT, -EDGE_CLIP, EDGE_CLIP))


def edge_agreement(q: np.ndarray, t: np.ndarray, grid: int = GRID) -> float:
    """The worst correlation of two aligned descriptors over their four edge strips (:data:`EDGE_ROWS` deep):
    low where one image shows, along a side, what the other does not (a shifted or zoomed-out crop)."""
    qg, tg = q.reshape(grid, grid), t.reshape(grid, grid)
    parts = (np.s_[:EDGE_ROWS, :], np.s_[-EDGE_ROWS:, :], np.s_[:, :EDGE_ROWS], np.s_[:, -EDGE_ROWS:])
    return min(_correlation(qg[part], tg[part]) for part in parts)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-shaped arrays (0 where either is constant)."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / max(1e-12, float(np.linalg.norm(a) * np.linalg.norm(b))))


def _without_band(q: np.ndarray, t: np.ndarray, grid: int = GRID) -> float:
    """The best correlation of two descriptors with one band of :data:`BAND_ROWS` descriptor rows left out,
    scaled by their norms (flat images stay damped by :data:`FLAT_FLOOR`)."""
    qg, tg = q.reshape(grid, grid), t.reshape(grid, grid)
    best = -1.0
    shrink = float(np.linalg.norm(q) * np.linalg.norm(t))
    for r in range(2, grid - BAND_ROWS - 1):  # inside: an edge band would excuse a shifted crop's new rows
        keep = np.ones(grid, dtype=bool)
        keep[r : r + BAND_ROWS] = False
        best = max(best, _correlation(qg[keep], tg[keep]) * shrink)
    return best
