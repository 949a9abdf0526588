"""The real photographs that installed packages ship, for test sets built from real images offline.

scikit-image (``skimage.data``: only the images bundled in its wheel, never its downloadable ones),
scikit-learn (``load_sample_image``) and matplotlib (``cbook.get_sample_data``) ship a few dozen
photographs between them. Crops of them make datasets of real photographic texture, exposure and
noise that no weight or tuning of this project has seen, which the analyzer and leak tests use
(issue 13). Synthetic, drawn, binary and scanned-text images (checkerboard, binary blobs, the
phantom, page, text, the colour wheel, logos) are left out: they are not photographs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

# skimage.data loaders whose images are bundled in the wheel (no pooch download) and are photographs
# or micrographs of real scenes; `cat` is the same picture as `chelsea`.
SKIMAGE = ("astronaut", "brick", "camera", "chelsea", "cell", "clock", "coffee", "coins", "grass",
           "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket")
SKLEARN = ("china.jpg", "flower.jpg")
MATPLOTLIB = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def _rgb(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise ValueError(f"expected 8-bit pixels, got {array.dtype}")
    img = Image.fromarray(array)
    return img.convert("RGB")


def _skimage(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        import skimage.data

        return _rgb(getattr(skimage.data, name)())

    return load


def _sklearn(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from sklearn.datasets import load_sample_image

        return _rgb(load_sample_image(name))

    return load


def _matplotlib(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from matplotlib import cbook

        with cbook.get_sample_data(name) as fh, Image.open(fh) as img:
            return img.convert("RGB")

    return load


LOADERS: dict[str, Callable[[], Image.Image]] = {
    **{f"skimage/{n}": _skimage(n) for n in SKIMAGE},
    **{f"sklearn/{n}": _sklearn(n) for n in SKLEARN},
    **{f"matplotlib/{n}": _matplotlib(n) for n in MATPLOTLIB},
}


def package_photographs(names: list[str] | None = None) -> dict[str, Image.Image]:
    """``{name: RGB image}`` for every shipped photograph (or the ``names`` given), in a fixed order.

    Names are ``<package>/<image>`` (``skimage/astronaut``, ``sklearn/china.jpg``, ...). Greyscale
    photographs come back as RGB with three equal channels. Nothing is downloaded.
    """
    chosen = list(LOADERS) if names is None else names
    unknown = [n for n in chosen if n not in LOADERS]
    if unknown:
        raise KeyError(f"unknown package photograph(s) {unknown}; known: {list(LOADERS)}")
    return {n: LOADERS[n]() for n in chosen}
