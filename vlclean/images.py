"""Decoding encoded image bytes safely and uniformly.

Every stage decodes through these two functions so that odd inputs are handled the same way
everywhere: EXIF orientation is applied, CMYK / 16-bit / palette / alpha images become 8-bit RGB,
animated images use their first frame, and decompression bombs, truncated or non-image bytes raise
:class:`ImageDecodeError` with a readable reason (never a silent skip).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlclean.errors import VLCleanError

# 64 MP: far above ImageNet (max ~ 12 MP) and far below a 30000x30000 bomb (900 MP).
DEFAULT_MAX_PIXELS = 64_000_000
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Per-channel mean and standard deviation of ImageNet RGB in [0, 1]: how the torchvision ImageNet models
# (embeddings) and our own classifier (training, stored in the model file) normalise their input.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageDecodeError(VLCleanError):
    """The bytes are not a decodable image; ``reason`` is short and human-readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:  # Pillow refuses > 2x its own limit at open time
        raise ImageDecodeError(f"decompression bomb: {err}") from err
    except UnidentifiedImageError as err:
        raise ImageDecodeError("not an image (unrecognised format)") from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        # a file cut inside its header fails here ("Truncated File Read"), not in load()
        raise _decode_error(err, "cannot open image") from err
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageDecodeError(f"decompression bomb: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode in _SIXTEEN_BIT_MODES:
        # always the full 16-bit range: a dark 16-bit image must stay dark (never judged by its content)
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "I":
        # 32-bit integers: 8-bit data stays as is; anything larger is read as 16-bit
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0
        scale = 1.0 / 257.0 if hi > 255 else 1.0
        img = Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Fully decode ``data`` to prove it is readable; return its (oriented) size and format."""
    img, fmt = decode(data, max_pixels=max_pixels)
    return ImageInfo(width=img.width, height=img.height, format=fmt)


def load_rgb(
    data: bytes, *, draft_size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode bytes to an 8-bit RGB image with EXIF orientation applied (see :func:`decode`)."""
    return decode(data, draft_size=draft_size, max_pixels=max_pixels)[0]


def decode(
    data: bytes, *, draft_size: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, str]:
    """Decode bytes to ``(8-bit RGB image with EXIF orientation applied, format name)``.

    ``draft_size`` lets the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding (Pillow's draft
    mode): much faster when only a small version (e.g. 32x32 for hashing) is needed. The result is
    at least ``draft_size`` on each side when the original is.
    """
    img = _open(data, max_pixels)
    fmt = (img.format or "UNKNOWN").upper()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", draft_size)
            if getattr(img, "is_animated", False):
                img.seek(0)
            img.load()
            return _to_rgb(img), fmt
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"decompression bomb: {err}") from err
    except Image.DecompressionBombWarning as err:
        raise ImageDecodeError(f"decompression bomb: {err}") from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise _decode_error(err, "cannot decode image") from err


def _decode_error(err: BaseException, what: str) -> ImageDecodeError:
    """A truncated file says so whichever Pillow call noticed it; other errors keep Pillow's words."""
    msg = str(err) or type(err).__name__
    if "truncated" in msg.lower() or isinstance(err, EOFError):
        return ImageDecodeError(f"truncated image: {msg}")
    return ImageDecodeError(f"{what}: {msg}")
