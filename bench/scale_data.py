"""An ImageNet-shaped ImageFolder tree for bench_scale.py: 1,000 classes, small distinct JPEGs, planted issues.

Each class is a 4 x 4 layout of isoluminant colours (the class lives in the chroma, so that a class
says nothing about the grey structure); each image adds its own smooth random grey field (8 x 8,
upsampled) and a little grain, so perceptual hashes differ between any two images of a class while
a colour-aware embedding still tells the classes apart. Planted, as shares of the train images:
mislabels (generated from one class, filed under another), within-train duplicates (byte copies
and re-encodes), test images copied into train (leaks: byte copies, mirrored, re-encoded), dark,
bright, blurred and out-of-domain (noise) images, and a few truncated files. ``truth.json`` lists them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

N_CLASSES = 1000
SIDE = 32
PLANTED = {"mislabel": 0.02, "duplicate": 0.005, "leak_of_test": 0.01, "dark": 0.002, "bright": 0.002,
           "blur": 0.002, "outlier": 0.002, "truncated": 0.0005}
_LUMA = np.array([0.299, 0.587, 0.114])
# Grey levels of each image's own structure. At 9 the class colours dominated the `pixels` embedding:
# 14.7 % of images had a neighbour at cosine >= 0.94 (the loosest duplicate level) at 100 images a class,
# growing with the density (20 % of the 100K run flagged as duplicates, and pair counts that grow as
# N**2 / classes). At 14: none at ImageNet's 1,331 a class (max 0.91), 1-NN class accuracy 1.0 over
# 1,000 classes (measured with 8 a class).
GREY_FIELD_SIGMA = 14.0


def _chroma_basis() -> np.ndarray:
    """Two unit RGB directions orthogonal to the luma weights: moving along them keeps the grey level."""
    a = np.array([1.0, -1.0, 0.0])
    a -= _LUMA * (a @ _LUMA) / (_LUMA @ _LUMA)
    b = np.cross(_LUMA, a)
    return np.stack([a / np.linalg.norm(a), b / np.linalg.norm(b)])


def class_layouts(rng: np.random.Generator) -> np.ndarray:
    """(N_CLASSES, 4, 4, 3) RGB offsets of zero luma (the class colours)."""
    coeffs = rng.normal(0.0, 60.0, size=(N_CLASSES, 4, 4, 2))
    return coeffs @ _chroma_basis()


def render(layout: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(SIDE, SIDE, 3) uint8: the class colours plus this image's own grey structure and grain."""
    up = np.stack([np.asarray(Image.fromarray(layout[..., c].astype(np.float32), mode="F")
                              .resize((SIDE, SIDE), Image.Resampling.BILINEAR)) for c in range(3)], axis=-1)
    field = rng.normal(0.0, GREY_FIELD_SIGMA, size=(8, 8)).astype(np.float32)
    grey = np.asarray(Image.fromarray(field, mode="F").resize((SIDE, SIDE), Image.Resampling.BICUBIC))
    grain = rng.normal(0.0, 1.5, size=(SIDE, SIDE, 3))
    return np.clip(128.0 + up + grey[..., None] + grain, 0, 255).astype(np.uint8)


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_tree(root: Path, n_train: int, n_test: int, seed: int = 0) -> dict:
    """Write ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG``; return the planted counts."""
    rng = np.random.default_rng(seed)
    layouts = class_layouts(rng)
    wnids = [f"c{c:04d}" for c in range(N_CLASSES)]
    for split in ("train", "val"):
        for w in wnids:
            (root / split / w).mkdir(parents=True, exist_ok=True)
    truth: dict[str, list] = {k: [] for k in PLANTED}
    train_labels = np.arange(n_train) % N_CLASSES
    test_labels = np.arange(n_test) % N_CLASSES
    test_bytes: list[bytes] = []
    test_pixels: list[np.ndarray] = []
    for i, c in enumerate(test_labels):
        px = render(layouts[c], rng)
        test_pixels.append(px)
        test_bytes.append(jpeg(px))
        (root / "val" / wnids[c] / f"val_{i:07d}.JPEG").write_bytes(test_bytes[-1])
    kinds = rng.choice(list(PLANTED) + ["clean"], size=n_train,
                       p=list(PLANTED.values()) + [1.0 - sum(PLANTED.values())])
    written: list[tuple[int, bytes]] = []
    for i, c in enumerate(train_labels):
        kind = kinds[i]
        name = root / "train" / wnids[c] / f"train_{i:07d}.JPEG"
        if kind == "leak_of_test" and n_test:
            t = int(rng.integers(n_test))
            how = ("copy", "mirror", "reencode")[i % 3]
            px = test_pixels[t]
            data = {"copy": test_bytes[t], "mirror": jpeg(px[:, ::-1]), "reencode": jpeg(px, 75)}[how]
            name = root / "train" / wnids[test_labels[t]] / f"train_{i:07d}.JPEG"
            truth[kind].append([name.name, f"val_{t:07d}.JPEG", how])
        elif kind == "duplicate" and written:
            j, data = written[int(rng.integers(len(written)))]
            name = root / "train" / wnids[train_labels[j]] / f"train_{i:07d}.JPEG"
            truth[kind].append([name.name, f"train_{j:07d}.JPEG"])
        else:
            source = int(rng.integers(N_CLASSES - 1)) if kind == "mislabel" else c
            source += int(kind == "mislabel" and source >= c)
            px = render(layouts[source], rng)
            if kind == "dark":
                px = (px * 0.12).astype(np.uint8)
            elif kind == "bright":
                px = (255 - (255 - px) * 0.1).astype(np.uint8)
            elif kind == "blur":
                px = np.asarray(Image.fromarray(px).filter(ImageFilter.GaussianBlur(2.5)))
            elif kind == "outlier":
                px = rng.integers(0, 256, size=px.shape, dtype=np.uint8)
            data = jpeg(px)
            if kind == "truncated":
                data = data[: len(data) // 3]
            if kind != "clean":
                truth[kind].append([name.name] + ([wnids[source]] if kind == "mislabel" else []))
            if kind == "clean" and len(written) < 50_000:
                written.append((i, data))
        name.write_bytes(data)
    (root / "truth.json").write_text(json.dumps(truth))
    return {k: len(v) for k, v in truth.items()}
