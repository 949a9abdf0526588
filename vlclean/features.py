"""Per-image features: file and pixel digests, perceptual hashes (plain and mirrored), quality stats.

:func:`compute_features` turns ``(image_id, encoded bytes)`` pairs into rows of the ``features``
table (:data:`vlclean.schema.FEATURES`). Each image is decoded **once**, in full (the exact pixel
digest needs every pixel), and every column is derived from that one decode:

``sha256``        hex SHA-256 of the encoded bytes (also for unreadable images).
``pixel_md5``     hex MD5 of the decoded pixels: 8-bit RGB, EXIF orientation applied, row-major
                  ``(height, width, 3)`` bytes, i.e. ``load_rgb(data).tobytes()``. Equal for the same
                  picture saved losslessly in another format or with other metadata.
``phash``         64-bit pHash, the algorithm of ``imagehash.phash`` with its defaults.
``dhash``         64-bit dHash, the algorithm of ``imagehash.dhash`` with its defaults.
``*_mirror``      the same hashes of the horizontally mirrored image (flip-robust matching).
``brightness``    mean of the grayscale (``L``) image, 0..255, over all pixels.
``contrast``      standard deviation of the grayscale image over all pixels.
``blur``          variance of the 4-neighbour Laplacian of the grayscale image, computed on a copy
                  shrunk so that its shorter side is at most :data:`BLUR_MAX_SIDE` (256) pixels, so
                  that scores are comparable across image sizes; low means blurry.
                  NaN for an image with a side shorter than 3 pixels.
``width, height`` oriented full size; ``aspect_ratio = width / height``; ``file_size = len(bytes)``.
``content_aspect`` width / height of the part inside uniform borders (pads, letterbox bars), measured where
                  the copy thumbnails are made (:func:`vlclean.copies.copy_views`); NaN elsewhere.

Unreadable images are never dropped: they get ``valid=False``, the decoder's reason in ``error``,
hashes 0, no ``pixel_md5``, stats NaN and size 0.

Hash bits: imagehash's 8x8 boolean array flattened row-major, first element the most significant
bit, stored as uint64, so ``hex_to_hash(str(imagehash.phash(img)))`` equals our value for the same
input ``img = load_rgb(data)``.

``draft`` (default ``True``) trades exactness of the hash inputs for speed. In
:func:`compute_features` the full-size image is box-reduced before the LANCZOS resize; in
:func:`compute_hashes`, the hash-only fast path, JPEGs are decoded at 1/2, 1/4 or 1/8 scale (Pillow's
draft mode) and never in full. Either way pHashes stay within a few bits of imagehash's (measured
by ``bench/bench_hashing.py``) and the dHash input is resampled from the 32x32 pHash input.
``draft=False`` reproduces imagehash exactly, up to floating-point ties at the median of
degenerate (e.g. flat) images.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from vlclean.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb
from vlclean.schema import FEATURES, empty_frame

HASH_SIZE = 8  # imagehash default: 8x8 = 64 bits
PHASH_SIDE = 32  # HASH_SIZE * highfreq_factor (imagehash default 4)
DHASH_SHAPE = (HASH_SIZE, HASH_SIZE + 1)  # (rows, columns) of the dHash input
BLUR_MAX_SIDE = 256
# compute_hashes(draft=True): a JPEG is decoded at the strongest reduction (1/2, 1/4 or 1/8) that
# keeps each side >= this size (Pillow's draft mode).
HASH_DRAFT_SIZE = (PHASH_SIDE, PHASH_SIDE)
HASH_COLUMNS: tuple[str, ...] = ("image_id", "valid", "error", "phash", "dhash", "phash_mirror", "dhash_mirror")

# Box-reduce by the largest factor that leaves at least this factor to the final resampling (hash
# inputs of compute_features(draft=True), and the blur copy; Pillow's reducing_gap).
_REDUCING_GAP = 2.0
_LANCZOS = Image.Resampling.LANCZOS
_LANCZOS_SUPPORT = 3.0
_BILINEAR = Image.Resampling.BILINEAR
_EXIF_ORIENTATION_TAG = 0x0112
_Box = tuple[float, float, float, float]
_Result = TypeVar("_Result")
_Item = TypeVar("_Item", bound=tuple)


@dataclass(frozen=True)
class HashInputs:
    """The small grayscale images the perceptual hashes are computed from.

    ``gray32``: ``(32, 32)`` uint8, LANCZOS-resized luma, input of pHash.
    ``gray9x8``: ``(8, 9)`` uint8 (rows, columns), LANCZOS-resized luma, input of dHash; ``None`` on
    the draft paths, where it is resampled from ``gray32`` for a whole batch at once.
    """

    gray32: np.ndarray
    gray9x8: np.ndarray | None


# --------------------------------------------------------------------------------------------------
# Hash kernels: pure, batched
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _dct_low_matrix() -> np.ndarray:
    """``(8, 32)``: the first rows of the unnormalised DCT-II matrix (scipy ``dct(type=2)``)."""
    n = np.arange(PHASH_SIDE)
    k = np.arange(HASH_SIZE)[:, None]
    matrix = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * PHASH_SIDE))
    matrix.setflags(write=False)
    return matrix


@lru_cache(maxsize=1)
def _mirror_signs() -> np.ndarray:
    """``(8,)`` signs ``(-1)**k``: mirroring a row multiplies its k-th DCT-II coefficient by them."""
    signs = np.where(np.arange(HASH_SIZE) % 2 == 0, 1.0, -1.0)
    signs.setflags(write=False)
    return signs


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack ``(N, 64)`` booleans into ``(N,)`` uint64, the first bit the most significant."""
    bits = np.asarray(bits, dtype=bool)
    if bits.ndim != 2 or bits.shape[1] != 64:
        raise ValueError(f"pack_bits needs an (N, 64) boolean array, got shape {bits.shape}")
    packed = np.ascontiguousarray(np.packbits(bits, axis=1, bitorder="big"))
    return packed.view(">u8").reshape(len(bits)).astype(np.uint64)


def _bits_above_median(coeffs: np.ndarray) -> np.ndarray:
    flat = coeffs.reshape(len(coeffs), HASH_SIZE * HASH_SIZE)
    return pack_bits(flat > np.median(flat, axis=1, keepdims=True))


def _as_batch(arrays: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    arrays = np.asarray(arrays)
    if arrays.ndim != 3 or arrays.shape[1:] != shape:
        raise ValueError(f"{name} must have shape (N, {shape[0]}, {shape[1]}), got {arrays.shape}")
    return arrays


def phash_batch(gray32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHash of a batch of ``(N, 32, 32)`` grayscale images (any real dtype, values 0..255).

    Returns ``(hash, mirror_hash)``, both ``(N,)`` uint64. The low-frequency 8x8 block of the 2-D
    DCT-II is one pair of matrix products for the whole batch; the mirrored image's block is the same
    block with odd horizontal frequencies negated, so the mirror hash costs one more median.
    """
    pixels = _as_batch(gray32, (PHASH_SIDE, PHASH_SIDE), "gray32").astype(np.float64, copy=False)
    dct = _dct_low_matrix()
    coeffs = dct @ pixels @ dct.T  # (N, 8, 8): [vertical frequency, horizontal frequency]
    return _bits_above_median(coeffs), _bits_above_median(coeffs * _mirror_signs())


def dhash_batch(gray9x8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dHash of a batch of ``(N, 8, 9)`` grayscale images (rows, columns).

    Returns ``(hash, mirror_hash)``, both ``(N,)`` uint64. Bit ``(r, c)`` is ``pixel[r, c + 1] >
    pixel[r, c]``; the mirror hash compares the columns of the horizontally flipped image.
    """
    pixels = _as_batch(gray9x8, DHASH_SHAPE, "gray9x8")
    mirrored = pixels[:, :, ::-1]
    plain = (pixels[:, :, 1:] > pixels[:, :, :-1]).reshape(len(pixels), 64)
    flipped = (mirrored[:, :, 1:] > mirrored[:, :, :-1]).reshape(len(pixels), 64)
    return pack_bits(plain), pack_bits(flipped)


def hash_to_hex(value: int | np.integer) -> str:
    """16 hex digits, as ``str(imagehash.ImageHash)`` prints a 64-bit hash."""
    return f"{int(value):016x}"


def hex_to_hash(text: str) -> int:
    """Inverse of :func:`hash_to_hex`; also reads ``str(imagehash.phash(img))``."""
    return int(text, 16)


def hamming_distance(a: np.ndarray | int | np.integer, b: np.ndarray | int | np.integer) -> np.ndarray:
    """Element-wise number of differing bits between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def hash_agreement(ours: np.ndarray, reference: np.ndarray, *, max_distance: int = 4) -> float:
    """Share of positions where ``ours`` is within ``max_distance`` bits of ``reference``.

    Both are ``(N,)`` uint64; convert imagehash objects with ``hex_to_hash(str(h))``.
    """
    ours = np.asarray(ours, dtype=np.uint64)
    reference = np.asarray(reference, dtype=np.uint64)
    if ours.ndim != 1 or ours.shape != reference.shape:
        raise ValueError(f"hash arrays must be 1-D and equally long, got shapes {ours.shape} and {reference.shape}")
    if len(ours) == 0:
        raise ValueError("hash_agreement needs at least one pair of hashes, got none")
    return float(np.mean(hamming_distance(ours, reference) <= max_distance))


# --------------------------------------------------------------------------------------------------
# Hash inputs: exact (imagehash's resize) and draft (reduced decode or box-reduced resize)
# --------------------------------------------------------------------------------------------------


def prepare_small(image: Image.Image, *, draft: bool = False) -> HashInputs:
    """The hash inputs of ``image`` (any mode; converted to ``L`` like imagehash does).

    ``draft=False`` resizes exactly as imagehash does. ``draft=True`` first box-reduces the image
    (Pillow's ``reduce``, keeping the exact geometry), which is several times faster on large
    images, and leaves ``gray9x8`` to be resampled from ``gray32``.
    """
    gray = image if image.mode == "L" else image.convert("L")
    if not draft:
        return HashInputs(
            gray32=np.asarray(gray.resize((PHASH_SIDE, PHASH_SIDE), _LANCZOS)),
            gray9x8=np.asarray(gray.resize((DHASH_SHAPE[1], DHASH_SHAPE[0]), _LANCZOS)),
        )
    width, height = gray.size
    factors = (_reduce_factor(width), _reduce_factor(height))
    box: _Box = (0.0, 0.0, float(width), float(height))
    if factors != (1, 1):
        # reduce() rounds the size up (the last box is partial); this box keeps the exact geometry.
        gray = gray.reduce(factors)
        box = (0.0, 0.0, width / factors[0], height / factors[1])
    return HashInputs(gray32=np.asarray(gray.resize((PHASH_SIDE, PHASH_SIDE), _LANCZOS, box=box)), gray9x8=None)


def _reduce_factor(size: int) -> int:
    """Largest box-reduction factor that leaves a LANCZOS factor of at least the reducing gap."""
    return max(1, int(size / PHASH_SIDE / _REDUCING_GAP))


@lru_cache(maxsize=8)
def _lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` float32 weights of Pillow's LANCZOS resampling (same kernel, support
    and pixel centres as its ``precompute_coeffs``, kept in floating point)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    offsets = (np.arange(in_size) + 0.5 - centres[:, None]) / filter_scale
    weights = np.sinc(offsets) * np.sinc(offsets / _LANCZOS_SUPPORT)
    weights[np.abs(offsets) >= _LANCZOS_SUPPORT] = 0.0
    matrix: np.ndarray = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def dhash_inputs_from(gray32: np.ndarray) -> np.ndarray:
    """``(N, 8, 9)`` uint8 dHash inputs LANCZOS-resampled from ``(N, 32, 32)`` pHash inputs."""
    pixels = _as_batch(gray32, (PHASH_SIDE, PHASH_SIDE), "gray32").astype(np.float32)
    rows = _lanczos_weights(PHASH_SIDE, DHASH_SHAPE[0])
    cols = _lanczos_weights(PHASH_SIDE, DHASH_SHAPE[1])
    inputs: np.ndarray = np.clip(np.rint(rows @ pixels @ cols.T), 0, 255).astype(np.uint8)
    return inputs


def _orient_point(x: float, y: float, size: tuple[int, int], orientation: int) -> tuple[float, float]:
    """Where point ``(x, y)`` of a stored ``size`` image lands after ``ImageOps.exif_transpose``."""
    w, h = size
    return {
        1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y),
        5: (y, x), 6: (h - y, x), 7: (h - y, w - x), 8: (y, w - x),
    }[orientation]  # fmt: skip


def draft_box(source_size: tuple[int, int], orientation: int, decoded_size: tuple[int, int]) -> _Box:
    """The region of a draft-decoded, EXIF-oriented image that holds the picture, in its pixels.

    A JPEG of width ``W`` decoded at scale ``1/s`` is ``ceil(W / s)`` pixels wide: its last column is
    partly padding and the picture spans ``W / s`` pixels (Pillow's ``draft`` returns the same box
    for unrotated images). Resampling that box instead of the whole image avoids a stretch of up to
    one pixel, which flips several pHash bits. ``source_size`` is the stored (unoriented) size,
    ``orientation`` the EXIF tag 1..8, ``decoded_size`` the size of the oriented decoded image.
    Returns ``(left, top, right, bottom)``: the whole image when no scale explains the sizes.
    """
    width, height = source_size
    stored = decoded_size if orientation <= 4 else (decoded_size[1], decoded_size[0])
    for scale in (1, 2, 4, 8):
        if (-(-width // scale), -(-height // scale)) == stored:
            break
    else:
        return (0.0, 0.0, float(decoded_size[0]), float(decoded_size[1]))
    extent = (width / scale, height / scale)
    (x0, y0), (x1, y1) = (_orient_point(x, y, stored, orientation) for x, y in ((0.0, 0.0), extent))
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _source_geometry(data: bytes) -> tuple[tuple[int, int], int]:
    """``(stored size, EXIF orientation)`` read from the header only (no pixel is decoded)."""
    with Image.open(io.BytesIO(data)) as img:
        orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        return img.size, orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _plain_jpeg_draft(data: bytes) -> tuple[Image.Image, _Box] | None:
    """``(luma image, picture box)`` of a plain JPEG decoded at reduced size, else ``None``.

    Plain: an RGB or grayscale JPEG without EXIF rotation and within the pixel limit of
    :mod:`vlclean.images`, the bulk of any photo dataset. For those ``load_rgb`` would only copy the
    pixels twice, so libjpeg is asked for the luma channel directly (no chroma IDCT, no colour
    conversion) and Pillow's ``draft`` reports the picture box. Anything else, including any failure,
    returns ``None``: the caller then takes ``load_rgb``, which reports unreadable bytes with the
    canonical reason.
    """
    try:
        img = Image.open(io.BytesIO(data), formats=("JPEG",))
        if img.format != "JPEG" or img.mode not in ("RGB", "L") or img.width * img.height > DEFAULT_MAX_PIXELS:
            return None
        if img.getexif().get(_EXIF_ORIENTATION_TAG, 1) != 1:
            return None
        drafted = img.draft("L", HASH_DRAFT_SIZE)
        if drafted is None:
            return None
        img.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None
    return img, drafted[1]


def _draft_hash_inputs(data: bytes) -> HashInputs:
    """Hash inputs from a reduced-size JPEG decode (other formats decode in full); may raise."""
    plain = _plain_jpeg_draft(data)
    if plain is not None:
        gray, box = plain
    else:
        rgb = load_rgb(data, draft_size=HASH_DRAFT_SIZE)
        source_size, orientation = _source_geometry(data)
        gray, box = rgb.convert("L"), draft_box(source_size, orientation, rgb.size)
    return HashInputs(gray32=np.asarray(gray.resize((PHASH_SIDE, PHASH_SIDE), _LANCZOS, box=box)), gray9x8=None)


def _hashes_batch(inputs: Sequence[HashInputs]) -> dict[str, np.ndarray]:
    """The four hash columns, ``(N,)`` uint64 each, of a batch of hash inputs."""
    gray32 = np.stack([item.gray32 for item in inputs])
    derived = dhash_inputs_from(gray32)
    gray9x8 = np.stack([item.gray9x8 if item.gray9x8 is not None else derived[i] for i, item in enumerate(inputs)])
    phash, phash_mirror = phash_batch(gray32)
    dhash, dhash_mirror = dhash_batch(gray9x8)
    return {"phash": phash, "dhash": dhash, "phash_mirror": phash_mirror, "dhash_mirror": dhash_mirror}


# --------------------------------------------------------------------------------------------------
# Quality statistics
# --------------------------------------------------------------------------------------------------


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of an ``(H, W)`` grayscale array over interior pixels.

    NaN when the image has no interior pixel (a side shorter than 3).
    """
    pixels = np.asarray(gray)
    if pixels.ndim != 2:
        raise ValueError(f"laplacian_variance needs a 2-D grayscale array, got shape {pixels.shape}")
    if min(pixels.shape) < 3:
        return float("nan")
    p = pixels.astype(np.int16)
    laplacian = p[1:-1, :-2] + p[1:-1, 2:] + p[:-2, 1:-1] + p[2:, 1:-1] - 4 * p[1:-1, 1:-1]
    # Exact integer sums (|laplacian| <= 1020): no float rounding, no BLAS threads.
    count = laplacian.size
    total = int(laplacian.sum(dtype=np.int64))
    squares = int(np.square(laplacian, dtype=np.int32).sum(dtype=np.int64))
    return (squares - total * total / count) / count


def blur_score(gray: Image.Image, *, side: int | None = None) -> float:
    """:func:`laplacian_variance` of an ``L`` image at a comparable scale.

    With ``side`` the image is resampled (up or down) so its shorter side is ``side`` pixels: blur is
    then judged at one resolution for the whole dataset, so an image is not called blurry or sharp
    for its size alone (an upscaled copy is as sharp as its original). Without it, images are shrunk
    so the shorter side is at most :data:`BLUR_MAX_SIDE` and smaller ones are used as they are.
    """
    width, height = gray.size
    shorter = min(width, height)
    target = side if side is not None else min(shorter, BLUR_MAX_SIDE)
    if target != shorter:
        scale = target / shorter
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = gray.resize(size, _BILINEAR, reducing_gap=_REDUCING_GAP if scale < 1 else None)
    return laplacian_variance(np.asarray(gray))


def brightness_contrast(gray: Image.Image) -> tuple[float, float]:
    """Exact mean and standard deviation of all pixels of an ``L`` image, from its histogram."""
    counts = np.asarray(gray.histogram(), dtype=np.float64)
    levels = np.arange(256, dtype=np.float64)
    total = counts.sum()
    mean = float(counts @ levels / total)
    variance = float(counts @ (levels - mean) ** 2 / total)
    return mean, variance**0.5


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------

_ZERO_HASHES = {"phash": 0, "dhash": 0, "phash_mirror": 0, "dhash_mirror": 0}
# Pillow refuses images over 2 x MAX_IMAGE_PIXELS inside Image.open, before vlclean.images checks the
# size, and load_rgb lets that error through; it is reported here as images.decode words its own.
_DECODE_ERRORS = (ImageDecodeError, Image.DecompressionBombError)


def _reason(err: Exception) -> str:
    return err.reason if isinstance(err, ImageDecodeError) else f"decompression bomb: {err}"


def _invalid_row(image_id: str, data: bytes, reason: str) -> dict[str, Any]:
    nan = float("nan")
    return {
        "image_id": image_id, "valid": False, "error": reason,
        "sha256": hashlib.sha256(data).hexdigest(), "pixel_md5": None, **_ZERO_HASHES,
        "brightness": nan, "blur": nan, "contrast": nan,
        "width": 0, "height": 0, "aspect_ratio": nan, "content_aspect": nan, "file_size": len(data),
    }  # fmt: skip


def _check_item(image_id: object, data: object) -> bytes:
    if not isinstance(image_id, str):
        raise TypeError(f"image_id must be a str, got {type(image_id).__name__} ({image_id!r})")
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"image '{image_id}': data must be bytes, got {type(data).__name__}")
    return bytes(data)


@dataclass(frozen=True)
class Measured:
    """One image after its single decode: its ``FEATURES`` row (hashes not yet filled in, see
    :func:`fill_hashes`), its hash inputs, and the decoded RGB and grey images (``None`` when
    the bytes are unreadable)."""

    row: dict[str, Any]
    inputs: HashInputs | None
    rgb: Image.Image | None
    gray: Image.Image | None


def measure(image_id: str, data: bytes, *, draft: bool = True, blur_side: int | None = None) -> Measured:
    """Decode ``data`` once and measure it (see :class:`Measured`); never raises on bad bytes."""
    data = _check_item(image_id, data)
    try:
        rgb = load_rgb(data)
    except _DECODE_ERRORS as err:
        return Measured(_invalid_row(image_id, data, _reason(err)), None, None, None)
    gray = rgb.convert("L")
    row, inputs = _measure_decoded(image_id, data, rgb, gray, draft=draft, blur_side=blur_side)
    return Measured(row, inputs, rgb, gray)


def _measure(
    image_id: str, data: bytes, *, draft: bool, blur_side: int | None = None
) -> tuple[dict[str, Any], HashInputs | None, Image.Image | None]:
    """``(row without hashes, hash inputs, RGB image)`` from one full decode; never raises on bad bytes."""
    m = measure(image_id, data, draft=draft, blur_side=blur_side)
    return m.row, m.inputs, m.rgb


def _measure_decoded(
    image_id: str, data: bytes, rgb: Image.Image, gray: Image.Image, *, draft: bool, blur_side: int | None
) -> tuple[dict[str, Any], HashInputs]:
    width, height = rgb.size
    brightness, contrast = brightness_contrast(gray)
    row = {
        "image_id": image_id, "valid": True, "error": None,
        "sha256": hashlib.sha256(data).hexdigest(), "pixel_md5": hashlib.md5(rgb.tobytes()).hexdigest(),
        **_ZERO_HASHES,
        "brightness": brightness, "blur": blur_score(gray, side=blur_side), "contrast": contrast,
        "width": width, "height": height, "aspect_ratio": width / height, "content_aspect": float("nan"),
        "file_size": len(data),
    }  # fmt: skip
    return row, prepare_small(gray, draft=draft)


def fill_hashes(rows: Sequence[dict[str, Any]], inputs: Sequence[HashInputs | None]) -> None:
    """Hash every row that has inputs (one batch), writing the four hashes into the rows."""
    _fill_hashes(rows, inputs)


def _fill_hashes(rows: Sequence[dict[str, Any]], inputs: Sequence[HashInputs | None]) -> None:
    """Hash all rows that have inputs, in one batch, writing the hashes into the rows."""
    present = [(i, item) for i, item in enumerate(inputs) if item is not None]
    if not present:
        return
    hashes = _hashes_batch([item for _, item in present])
    for j, (i, _) in enumerate(present):
        rows[i].update({name: int(values[j]) for name, values in hashes.items()})


def decode_for_features(data: bytes, *, image_id: str, draft: bool = True) -> tuple[dict[str, Any], Image.Image | None]:
    """One image's ``FEATURES`` row and its decoded pixels, from a single decode.

    Returns ``(row, rgb)``: ``row`` maps every ``FEATURES`` column to a Python value; ``rgb`` is the
    full-size 8-bit RGB image with EXIF orientation applied (what ``load_rgb(data)`` returns), or
    ``None`` when the image is unreadable. For callers that also need the pixels (e.g. embeddings).
    """
    data = _check_item(image_id, data)
    row, inputs, rgb = _measure(image_id, data, draft=draft)
    _fill_hashes([row], [inputs])
    return row, rgb


def features_of_image(image_id: str, data: bytes, *, draft: bool = True) -> dict[str, Any]:
    """One ``FEATURES`` row (column -> Python value) of one encoded image; never raises on bad bytes."""
    return decode_for_features(data, image_id=image_id, draft=draft)[0]


# --------------------------------------------------------------------------------------------------
# Chunks, worker processes and frames
# --------------------------------------------------------------------------------------------------


@cache
def _numpy_dtype(column: str) -> np.dtype[Any]:
    dtype: np.dtype[Any] = np.dtype(FEATURES[column].to_pandas_dtype())
    return dtype


def _columns_of(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: np.array([row[name] for row in rows], dtype=_numpy_dtype(name)) for name in columns}


def _features_of_chunk(
    chunk: Sequence[tuple[str, bytes]], *, draft: bool, blur_side: int | None = None
) -> dict[str, np.ndarray]:
    rows: list[dict[str, Any]] = []
    inputs: list[HashInputs | None] = []
    for image_id, data in chunk:
        row, small, _ = _measure(image_id, _check_item(image_id, data), draft=draft, blur_side=blur_side)
        rows.append(row)
        inputs.append(small)
    _fill_hashes(rows, inputs)
    return _columns_of(rows, list(FEATURES))


def _hashes_of_chunk(chunk: Sequence[tuple[str, bytes]], *, draft: bool) -> dict[str, np.ndarray]:
    rows: list[dict[str, Any]] = []
    inputs: list[HashInputs | None] = []
    for image_id, data in chunk:
        data = _check_item(image_id, data)
        row: dict[str, Any] = {"image_id": image_id, "valid": True, "error": None, **_ZERO_HASHES}
        try:
            inputs.append(_draft_hash_inputs(data) if draft else prepare_small(load_rgb(data)))
        except _DECODE_ERRORS as err:
            row.update(valid=False, error=_reason(err))
            inputs.append(None)
        rows.append(row)
    _fill_hashes(rows, inputs)
    return _columns_of(rows, HASH_COLUMNS)


# A chunk of images handed to a worker holds at most this many encoded bytes (and ``chunk_size``
# images): with ``2 * workers`` chunks in flight, a stream of large files stays within a few of them.
CHUNK_MAX_BYTES = 16 * 2**20


def chunks(items: Iterable[_Item], chunk_size: int, max_bytes: int = CHUNK_MAX_BYTES) -> Iterator[list[_Item]]:
    """Consecutive lists of ``items`` (tuples whose second element is the encoded bytes), each of at
    most ``chunk_size`` items and, beyond its first item, ``max_bytes`` bytes."""
    chunk: list[_Item] = []
    size = 0
    for item in items:
        if chunk and (len(chunk) >= chunk_size or size + len(item[1]) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item[1])
    if chunk:
        yield chunk


def _chunks(images: Iterable[tuple[str, bytes]], chunk_size: int) -> Iterator[list[tuple[str, bytes]]]:
    return chunks(images, chunk_size)


def make_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes for :func:`compute_features` / :func:`compute_hashes`.

    Each call without a ``pool`` starts (and stops) its own, which costs about a second; a caller
    that computes many shards passes one pool to every call and closes it at the end (``with``).
    Workers are spawned, not forked, so that threads of the caller (torch, tqdm) cannot deadlock them.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _map_chunks(
    work: Callable[[list[tuple[str, bytes]]], _Result],
    chunks: Iterator[list[tuple[str, bytes]]],
    *,
    workers: int,
    pool: Executor | None,
) -> Iterator[_Result]:
    """``work`` applied to each chunk, results in input order.

    Runs in this process when ``workers == 1`` and no ``pool`` is given, else on ``pool`` (or a pool
    of ``workers`` processes made for the call). At most ``2 * workers`` chunks are in flight, so a
    streamed input is never read far ahead.
    """
    if pool is None and workers == 1:
        yield from map(work, chunks)
        return
    if pool is None:
        with make_pool(workers) as owned:
            yield from _map_chunks(work, chunks, workers=workers, pool=owned)
        return
    pending: deque[Future[_Result]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(work, chunk))
        if len(pending) >= 2 * workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _run(
    work: Callable[..., dict[str, np.ndarray]],
    images: Iterable[tuple[str, bytes]],
    columns: Sequence[str],
    *,
    workers: int,
    chunk_size: int,
    draft: bool,
    progress: bool,
    pool: Executor | None,
    options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    for name, value in (("workers", workers), ("chunk_size", chunk_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    total = len(images) if isinstance(images, Sized) else None
    parts: list[dict[str, np.ndarray]] = []
    chunks = _chunks(images, chunk_size)
    with tqdm(total=total, unit="img", desc=work.__name__.strip("_"), disable=not progress) as bar:
        for part in _map_chunks(partial(work, draft=draft, **(options or {})), chunks, workers=workers, pool=pool):
            parts.append(part)
            bar.update(len(part["image_id"]))
    empty = empty_frame({name: FEATURES[name] for name in columns})
    if not parts:
        return empty
    frame = pd.DataFrame({name: np.concatenate([part[name] for part in parts]) for name in columns})
    return frame.astype(empty.dtypes.to_dict())


def compute_features(
    images: Iterable[tuple[str, bytes]],
    *,
    workers: int = 1,
    chunk_size: int = 256,
    draft: bool = True,
    progress: bool = False,
    pool: Executor | None = None,
    blur_side: int | None = None,
) -> pd.DataFrame:
    """The ``features`` table of ``images``, an iterable of ``(image_id, encoded bytes)`` (streamed).

    Returns one row per input, in input order, with the ``FEATURES`` columns and dtypes (hashes
    uint64); unreadable images give ``valid=False`` rows with the reason. ``workers`` processes take
    ``chunk_size`` images at a time (``workers=1`` runs in this process); ``pool`` (see
    :func:`make_pool`) reuses running workers across calls. ``draft`` allows the fast, approximate
    resize of the hash inputs (module docstring); ``progress`` shows a progress bar; ``blur_side``
    judges blur at that shorter side (see :func:`blur_score`).
    """
    return _run(
        _features_of_chunk, images, list(FEATURES),
        workers=workers, chunk_size=chunk_size, draft=draft, progress=progress, pool=pool,
        options={"blur_side": blur_side},
    )  # fmt: skip


def compute_hashes(
    images: Iterable[tuple[str, bytes]],
    *,
    workers: int = 1,
    chunk_size: int = 256,
    draft: bool = True,
    progress: bool = False,
    pool: Executor | None = None,
) -> pd.DataFrame:
    """Hash-only fast path: the :data:`HASH_COLUMNS` of ``images`` (``image_id, valid, error`` and the
    four hashes), one row per input in input order; dtypes as in ``FEATURES``.

    With ``draft`` JPEGs are decoded at reduced size (each side kept >= 32 px) and never in full; no
    pixel digest or quality statistic is computed. Unreadable images give ``valid=False``, the reason
    and hashes 0. Options as in :func:`compute_features`.
    """
    return _run(
        _hashes_of_chunk, images, HASH_COLUMNS,
        workers=workers, chunk_size=chunk_size, draft=draft, progress=progress, pool=pool,
    )  # fmt: skip


def crop_hash_inputs(gray: Image.Image, scales: Sequence[float], *, draft: bool = True) -> list[HashInputs]:
    """Hash inputs of the centred crop at each of ``scales`` (fraction of each side) of a grey image.

    Query expansion for copy detection: the pHash of a test image's central 90 % equals the pHash of
    a train copy that *is* that crop, which the full-image hash (not crop-robust) misses. With
    ``draft`` the image is first box-reduced (keeping a LANCZOS factor of at least 2 for the
    smallest crop, like :func:`prepare_small`) and the dHash input is left to the batch.
    """
    w, h = gray.size
    fx = fy = 1
    if draft and scales:
        smallest = min(scales)
        fx, fy = _reduce_factor(int(w * smallest)), _reduce_factor(int(h * smallest))
        if (fx, fy) != (1, 1):
            gray = gray.reduce((fx, fy))
    out = []
    for s in scales:
        cw, ch = w * s, h * s
        box = ((w - cw) / 2 / fx, (h - ch) / 2 / fy, (w + cw) / 2 / fx, (h + ch) / 2 / fy)
        small = np.asarray(gray.resize((PHASH_SIDE, PHASH_SIDE), _LANCZOS, box=box))
        nine = None if draft else np.asarray(gray.resize((DHASH_SHAPE[1], DHASH_SHAPE[0]), _LANCZOS, box=box))
        out.append(HashInputs(gray32=small, gray9x8=nine))
    return out


def hashes_of(inputs: Sequence[HashInputs]) -> dict[str, np.ndarray]:
    """The four hash columns (``phash, dhash, phash_mirror, dhash_mirror``: ``(N,)`` uint64) of a batch."""
    if not inputs:
        return {k: np.zeros(0, np.uint64) for k in _ZERO_HASHES}
    return _hashes_batch(inputs)


def thumbnail(gray: Image.Image, side: int) -> np.ndarray:
    """``(side, side)`` uint8 box-averaged grey thumbnail of the whole image (aspect ratio not kept)."""
    return np.asarray(gray.resize((side, side), Image.Resampling.BOX), dtype=np.uint8)
