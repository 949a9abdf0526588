"""Real-photograph ImageFolder test sets with planted issues, for measuring the analyzer (issue 13).

Made from the photographs installed packages ship (:mod:`vlclean.photos`), so no weight or setting
of this project was tuned on them. A class is one region of one photograph (the left or right half
of a landscape photo, the top or bottom of a portrait one; one class for a uniform texture: brick,
grass, gravel), the largest square centred in it, and its images are random crops of that square
(70-90 % of its side, random position) resized to ``size`` px and saved as JPEG (quality 92): ~31 classes.

Left out as clean sources: the Hubble deep field (mean brightness 19: it *is* dark, so its crops
would make the dark truth ambiguous) and matplotlib's 128-px sample (too small for crops).

Planted, each on distinct images (``truth.csv``: ``file, issue, detail``):

``mislabel``  the file is written into a randomly chosen other class's folder.
``dark``      under-exposed (linear light scaled, sRGB re-encoded) until its mean grey is 12-35 of 255:
              what a badly under-exposed photo looks like, whatever the scene's own brightness.
``bright``    over-exposed (highlights clipped) until its mean grey is 222-245.
``blur``      Gaussian blur, sigma 2.5-4 % of the image side (3.2-5.1 px at 128 px): visible defocus.

``kind="soft_dark"``: every image is mildly softened (sigma 0.6-1.2 % of the side) and under-exposed
by 0.5-1.8 EV, nothing is planted: a dataset of naturally soft, dark photos that a detector must
not mass-flag.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from vlclean.photos import package_photographs
from vlclean.truth import score

TEXTURES = ("skimage/brick", "skimage/grass", "skimage/gravel")
EXCLUDED = ("skimage/hubble_deep_field", "matplotlib/Minduka_Present_Blue_Pack.png")
KINDS = ("planted", "soft_dark")
ISSUES = ("mislabel", "dark", "bright", "blur")
VL_NAMES = {"mislabels": "mislabel", "dark": "dark", "bright": "bright", "blur": "blur", "outliers": "outlier"}


@dataclass(frozen=True)
class PhotoSetSpec:
    seed: int = 0
    per_class: int = 25
    size: int = 128
    mislabel_fraction: float = 0.05
    dark: int = 12
    bright: int = 12
    blur: int = 12
    kind: str = "planted"


def regions() -> list[tuple[str, Image.Image, tuple[int, int, int, int]]]:
    """``(class name, photograph, box)``: the regions that make the classes, in a fixed order."""
    out = []
    for name, img in package_photographs().items():
        if name in EXCLUDED:
            continue
        w, h = img.size
        stem = name.replace("/", "_").rsplit(".", 1)[0]
        if name in TEXTURES:
            out.append((stem, img, _square((0, 0, w, h))))
        elif w >= h:
            out += [(f"{stem}_left", img, _square((0, 0, w // 2, h))), (f"{stem}_right", img, _square((w // 2, 0, w, h)))]
        else:
            out += [(f"{stem}_top", img, _square((0, 0, w, h // 2))), (f"{stem}_bottom", img, _square((0, h // 2, w, h)))]
    return out


def _square(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The largest square centred in ``box``: one region of the photograph, not a strip across it."""
    x0, y0, x1, y1 = box
    side = min(x1 - x0, y1 - y0)
    left, top = x0 + (x1 - x0 - side) // 2, y0 + (y1 - y0 - side) // 2
    return left, top, left + side, top + side


def _crop(img: Image.Image, box: tuple[int, int, int, int], size: int, rng: np.random.Generator) -> Image.Image:
    x0, y0, x1, y1 = box
    side = rng.uniform(0.7, 0.9) * min(x1 - x0, y1 - y0)
    left = rng.uniform(x0, x1 - side)
    top = rng.uniform(y0, y1 - side)
    return img.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    v = v / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    s = np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(s * 255.0), 0, 255).astype(np.uint8)


def expose(img: Image.Image, ev: float) -> Image.Image:
    """``img`` with its exposure changed by ``ev`` stops (linear light x 2**ev, clipped)."""
    lin = _srgb_to_linear(np.asarray(img, dtype=np.float64))
    return Image.fromarray(_linear_to_srgb(lin * 2.0**ev))


def expose_to(img: Image.Image, target_mean: float) -> tuple[Image.Image, float]:
    """``(image, ev)``: ``img`` re-exposed (:func:`expose`) so its mean grey is ``target_mean`` (bisection)."""
    lo, hi = -12.0, 12.0
    for _ in range(30):
        ev = (lo + hi) / 2
        if np.asarray(expose(img, ev).convert("L"), dtype=np.float64).mean() < target_mean:
            lo = ev
        else:
            hi = ev
    return expose(img, (lo + hi) / 2), (lo + hi) / 2


def blur(img: Image.Image, sigma_fraction: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=sigma_fraction * min(img.size)))


def build_photo_set(out_dir: str | Path, spec: PhotoSetSpec = PhotoSetSpec()) -> pd.DataFrame:
    """Write the ImageFolder tree ``out_dir/<class>/<file>.jpg``; return the planted truth ``file, issue,
    detail`` (``file`` relative to ``out_dir``; the tree itself holds nothing but images)."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown photo set kind {spec.kind!r}; expected one of {KINDS}")
    out = Path(out_dir)
    rng = np.random.default_rng(spec.seed)
    regs = regions()
    n_classes = len(regs)
    n = n_classes * spec.per_class
    labels = np.repeat(np.arange(n_classes), spec.per_class)
    order = rng.permutation(n)
    issue = np.full(n, "", dtype=object)
    if spec.kind == "planted":
        counts = {"mislabel": int(round(spec.mislabel_fraction * n)), "dark": spec.dark, "bright": spec.bright,
                  "blur": spec.blur}
        start = 0
        for name, c in counts.items():
            issue[order[start : start + c]] = name
            start += c
    given = labels.copy()
    mis = np.flatnonzero(issue == "mislabel")
    given[mis] = (labels[mis] + rng.integers(1, n_classes, len(mis))) % n_classes
    rows = []
    for i in range(n):
        name, img, box = regs[labels[i]]
        crop = _crop(img, box, spec.size, rng)
        detail = ""
        if spec.kind == "soft_dark":
            crop = expose(blur(crop, rng.uniform(0.006, 0.012)), -rng.uniform(0.5, 1.8))
        elif issue[i] in ("dark", "bright"):
            target = rng.uniform(12, 35) if issue[i] == "dark" else rng.uniform(222, 245)
            for _ in range(20):  # a crop with black areas cannot be over-exposed to the target: another crop
                degraded, ev = expose_to(crop, target)
                if abs(np.asarray(degraded.convert("L"), dtype=np.float64).mean() - target) < 5:
                    break
                crop = _crop(img, box, spec.size, rng)
            crop, detail = degraded, f"ev={ev:+.2f}"
        elif issue[i] == "blur":
            s = rng.uniform(0.025, 0.04)
            crop, detail = blur(crop, s), f"sigma={s * spec.size:.1f}px"
        elif issue[i] == "mislabel":
            detail = f"true_class={name}"
        folder = regs[given[i]][0]
        rel = f"{folder}/{i:05d}.jpg"
        (out / folder).mkdir(parents=True, exist_ok=True)
        crop.save(out / rel, quality=92)
        if issue[i]:
            rows.append({"file": rel, "issue": issue[i], "detail": detail})
    truth = pd.DataFrame(rows, columns=["file", "issue", "detail"])
    return truth


def score_export(out: Path, truth: pd.DataFrame) -> dict:
    """P/R/F1 per planted issue of the analyzer's flat export ``out/export.csv`` (files matched by name,
    unique in a photo set) and the share of images each detector flags."""
    flat = pd.read_csv(Path(out) / "export.csv", keep_default_na=False)
    files = flat["file_path"].str.rsplit("/", n=1).str[-1]
    n = files.nunique()
    flagged = {v: set(files[flat["issue_type"] == k]) for k, v in VL_NAMES.items()}
    truth_files = truth["file"].str.rsplit("/", n=1).str[-1]
    result: dict = {"images": int(n), "flagged_share": {k: round(len(v) / n, 4) for k, v in flagged.items()}}
    for issue in ISSUES:
        actual = set(truth_files[truth["issue"] == issue])
        if actual:
            s = score(flagged[issue], actual)
            result[issue] = {k: s[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "actual")}
    return result
