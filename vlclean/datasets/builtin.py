"""The built-in offline dataset: real handwritten digits with planted, recorded issues.

Base images are scikit-learn's bundled digits (1,797 real 8x8 scans, 10 classes), upscaled to
``image_size`` and tinted with a random dark paper colour (with a smooth random texture) and a
bright ink colour per image, so that colour transforms (grayscale, brightness) are real changes
and every scan is unique, as real scans are. On top, known issues are PLANTED and
recorded in the truth table (``issue, image_id, related_image_id, detail``) so every detector can
report its precision and recall:

- ``leakage``: train copies of test images under transforms (``LEAK_TRANSFORMS``);
  ``related_image_id`` = the test image, ``detail`` = the transform.
- ``duplicate``: extra copies of train images inside train (exact or lightly transformed).
- ``mislabel``: a share of train labels changed to another class (``detail`` = ``true_label=N``).
- ``dark``, ``bright``, ``blur``: train images degraded in place.
- ``outlier``: crops of real photos (scikit-learn's and matplotlib's sample images) with a digit label.
- ``invalid``: unreadable files (truncated PNG, zero bytes, a text file named ``.png``).

Image ids are assigned after a final shuffle, so ids carry no hint of the truth. Everything is
deterministic for a seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from vlclean import schema
from vlclean.datasets.raw import RawRecord, Unit
from vlclean.params import BuiltinSpec

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LEAK_TRANSFORMS: tuple[str, ...] = (
    "exact",
    "png_reencode",
    "jpeg_q30",
    "resize_0.5",
    "resize_1.7",
    "brightness_+20",
    "brightness_-20",
    "contrast_+20",
    "contrast_-20",
    "grayscale",
    "center_crop_0.9",
    "hflip",
)
DUPLICATE_TRANSFORMS: tuple[str, ...] = ("exact", "png_reencode", "jpeg_q90")
INVALID_KINDS: tuple[str, ...] = ("truncated_png", "zero_bytes", "not_an_image")


@dataclass
class _Item:
    key: str
    split: str
    label: int
    data: bytes
    ext: str


def builtin_classes() -> pd.DataFrame:
    return pd.DataFrame(
        {"label": range(10), "class_id": [f"digit_{i}" for i in range(10)], "class_name": list(CLASS_NAMES)}
    )


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _tinted_digit(pixels8: np.ndarray, size: int, texture: float, rng: np.random.Generator) -> Image.Image:
    """A digit scan: bright ink over a dark paper colour with a smooth random texture (+-``texture``).

    The texture makes every scan unique at low frequencies, as real scans are: without it two
    different 8x8 digits of one writer can be indistinguishable once upscaled.
    """
    ink = (pixels8 / 16.0 * 255.0).astype(np.uint8)
    gray = np.asarray(Image.fromarray(ink, "L").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    background = rng.integers(15, 95, size=3).astype(np.float32)
    colour = rng.integers(165, 256, size=3).astype(np.float32)
    grid = rng.uniform(-texture, texture, size=(4, 4, 3)).astype(np.float32)
    paper = background + np.stack(
        [np.asarray(Image.fromarray(grid[..., c], "F").resize((size, size), Image.BICUBIC)) for c in range(3)], axis=-1
    )
    rgb = paper + (colour - paper) * gray[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")


def _transform(name: str) -> Callable[[Image.Image], tuple[bytes, str]]:
    """Transform ``name`` as a function image -> (encoded bytes, extension)."""

    def png(img: Image.Image) -> tuple[bytes, str]:
        return encode(img, "PNG"), "png"

    def resize(f: float) -> Callable[[Image.Image], tuple[bytes, str]]:
        return lambda im: png(im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BICUBIC))

    def enhance(cls: type, f: float) -> Callable[[Image.Image], tuple[bytes, str]]:
        return lambda im: png(cls(im).enhance(f))

    def crop(im: Image.Image) -> tuple[bytes, str]:
        w, h = im.size
        cw, ch = round(w * 0.9), round(h * 0.9)
        left, top = (w - cw) // 2, (h - ch) // 2
        return png(im.crop((left, top, left + cw, top + ch)))

    table: dict[str, Callable[[Image.Image], tuple[bytes, str]]] = {
        "exact": png,
        "png_reencode": lambda im: (encode(im, "PNG", compress_level=1), "png"),
        "jpeg_q30": lambda im: (encode(im, "JPEG", quality=30), "jpg"),
        "jpeg_q90": lambda im: (encode(im, "JPEG", quality=90), "jpg"),
        "resize_0.5": resize(0.5),
        "resize_1.7": resize(1.7),
        "brightness_+20": enhance(ImageEnhance.Brightness, 1.2),
        "brightness_-20": enhance(ImageEnhance.Brightness, 0.8),
        "contrast_+20": enhance(ImageEnhance.Contrast, 1.2),
        "contrast_-20": enhance(ImageEnhance.Contrast, 0.8),
        "grayscale": lambda im: png(ImageOps.grayscale(im).convert("RGB")),
        "center_crop_0.9": crop,
        "hflip": lambda im: png(ImageOps.mirror(im)),
    }
    return table[name]


def _sample_photos() -> list[Image.Image]:
    from matplotlib import cbook
    from sklearn.datasets import load_sample_image

    photos = [Image.fromarray(load_sample_image(n)) for n in ("china.jpg", "flower.jpg")]
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        with cbook.get_sample_data(name) as fh:
            photos.append(Image.open(fh).convert("RGB"))
    return photos


def _photo_crops(count: int, size: int, rng: np.random.Generator) -> list[Image.Image]:
    photos = _sample_photos()
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        while True:  # normally exposed crops only: a dark crop would be a planted 'dark' image too
            side = int(min(photo.size) * rng.uniform(0.3, 0.6))
            left = int(rng.integers(0, photo.width - side))
            top = int(rng.integers(0, photo.height - side))
            crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
            if 60 <= np.asarray(crop.convert("L")).mean() <= 190:
                break
        crops.append(crop)
    return crops


def _invalid_bytes(kind: str, valid_png: bytes) -> bytes:
    if kind == "truncated_png":
        return valid_png[: len(valid_png) // 2]
    if kind == "zero_bytes":
        return b""
    return b"this is a text file, not an image\n"


def _ambiguous(data: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Scans that a cross-validated SVM or 5-NN misreads on the original 8x8 pixels (about 2 %).

    They are ambiguous or mislabelled at the source; leaving them out makes the planted label
    errors the only ones, so a detector's precision measures the detector, not the source's noise.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    svm = cross_val_predict(SVC(), data, target, cv=cv)
    knn = cross_val_predict(KNeighborsClassifier(5), data, target, cv=cv)
    return (svm != target) | (knn != target)


def generate_builtin(spec: BuiltinSpec, seed: int) -> tuple[list[RawRecord], pd.DataFrame]:
    """Generate the built-in dataset: ``(records, truth)``; see the module doc."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    digits = load_digits()
    keep = ~_ambiguous(digits.data, digits.target) if spec.drop_ambiguous else np.ones(len(digits.target), bool)
    images8, labels = digits.images[keep], digits.target[keep].astype(int)
    n = len(labels)
    base = [_tinted_digit(images8[i], spec.image_size, spec.texture, rng) for i in range(n)]
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=spec.test_fraction, stratify=labels, random_state=seed
    )
    items: list[_Item] = []
    truth: list[tuple[str, str, str, str]] = []
    split_of = {int(i): "train" for i in train_idx} | {int(i): "test" for i in test_idx}
    images = {f"b{i}": base[i] for i in range(n)}
    label_of = {f"b{i}": int(labels[i]) for i in range(n)}

    # Pick disjoint base train images for each in-place issue so truths never overlap.
    free_train = [f"b{i}" for i in rng.permutation(np.sort(train_idx))]

    def take(k: int) -> list[str]:
        out = free_train[:k]
        del free_train[:k]
        return out

    for issue, k, op in (
        ("dark", spec.dark, lambda im: ImageEnhance.Brightness(im).enhance(0.12)),
        ("bright", spec.bright, lambda im: ImageOps.invert(ImageEnhance.Brightness(ImageOps.invert(im)).enhance(0.12))),
        ("blur", spec.blur, lambda im: im.filter(ImageFilter.GaussianBlur(radius=spec.image_size * 3 / 32))),
    ):
        for key in take(k):
            images[key] = op(images[key])
            truth.append((issue, key, "", ""))
    n_mislabel = int(round(spec.mislabel_fraction * len(train_idx)))
    for key in take(n_mislabel):
        true = label_of[key]
        label_of[key] = int((true + rng.integers(1, 10)) % 10)
        truth.append(("mislabel", key, "", f"true_label={true}"))

    for key in images:
        split = split_of[int(key[1:])]
        items.append(_Item(key, split, label_of[key], encode(images[key]), "png"))

    test_keys = [f"b{i}" for i in rng.permutation(np.sort(test_idx))]
    for t, transform in enumerate(LEAK_TRANSFORMS):
        fn = _transform(transform)
        for j in range(spec.leaks_per_transform):
            src = test_keys[t * spec.leaks_per_transform + j]
            data, ext = fn(images[src])
            key = f"leak{t}_{j}"
            items.append(_Item(key, "train", label_of[src], data, ext))
            truth.append(("leakage", key, src, transform))

    for j, src in enumerate(take(spec.train_duplicates)):
        transform = DUPLICATE_TRANSFORMS[j % len(DUPLICATE_TRANSFORMS)]
        data, ext = _transform(transform)(images[src])
        key = f"dup{j}"
        items.append(_Item(key, "train", label_of[src], data, ext))
        truth.append(("duplicate", key, src, transform))

    for j, crop in enumerate(_photo_crops(spec.outliers, spec.image_size, rng)):
        key = f"out{j}"
        items.append(_Item(key, "train", int(rng.integers(0, 10)), encode(crop), "png"))
        truth.append(("outlier", key, "", "photo crop"))

    for j in range(spec.invalid):
        kind = INVALID_KINDS[j % len(INVALID_KINDS)]
        key = f"bad{j}"
        split = "train" if j % 2 == 0 else "test"
        items.append(_Item(key, split, int(rng.integers(0, 10)), _invalid_bytes(kind, items[j].data), "png"))
        truth.append(("invalid", key, "", kind))

    order = rng.permutation(len(items))
    id_of = {items[i].key: f"digits_{rank:05d}" for rank, i in enumerate(order)}
    records = [
        RawRecord(
            image_id=id_of[it.key],
            split=it.split,
            label=it.label,
            file_name=f"{id_of[it.key]}.{it.ext}",
            data=it.data,
            source="builtin",
        )
        for it in (items[i] for i in order)
    ]
    truth_frame = pd.DataFrame(
        [(issue, id_of[k], id_of.get(rel, ""), detail) for issue, k, rel, detail in truth],
        columns=list(schema.TRUTH),
    )
    return records, truth_frame.sort_values(["issue", "image_id"], ignore_index=True)


def builtin_units(records: list[RawRecord]) -> list[Unit]:
    """The built-in dataset as one conversion unit per split."""
    return [
        Unit(name=split, records=lambda s=split: [r for r in records if r.split == s])
        for split in schema.SPLITS
    ]
