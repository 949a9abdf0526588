"""Leak test sets from real photographs: transformed copies of test images planted in train, with hard negatives.

Built from the photographs that installed packages ship (:func:`vlclean.photos.package_photographs`),
so no tuning of this project has seen them. For a seed:

- test: crops of the photographs (a third to a half of the shorter side, aspect 1, 4:3 or 3:4, the
  longer side resized to 160..288 px, JPEG q90); crops of one photograph never overlap;
- train, copies (the truth): each test image gets ``copies`` copies, each under one transform of
  :data:`COPY_TRANSFORMS` (cycled, so every transform gets the same count): an off-centre re-crop
  down to 80 % of the area, a rotation of 2..6 degrees (black corners, or cropped to fill), padding,
  letterboxing, a caption, a logo, each alone and each followed by a resize (x0.5..0.8 or x1.3) and a
  JPEG re-encode (q40..75);
- train, hard negatives (never copies): for each test image a crop of the same size shifted by
  20..45 % of its side, a zoomed-out crop containing it (x1.4..1.8 the side), and a crop of another
  part of the same photograph that overlaps no test crop (another shot of the scene), each sometimes
  resized and re-encoded like a copy. No negative has more than :data:`MAX_INSIDE_TEST` of its area
  inside any test crop of its photograph, so none is a re-crop of another test image (the photograph's
  test crops are drawn first, and every negative is checked against all of them);
- train, unrelated: crops of the photographs away from every test crop.

Everything is drawn from ``numpy.random.default_rng(seed)``. :func:`write_photo_leak_set` writes the
two ImageFolder trees and returns the truth; :func:`score_photo_leaks` scores a leaks report: recall
per transform, precision over every pair of the set, false pairs per kind of negative.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from vlclean.copies import LOW_DETAIL, content_thumbnail, detail

BASE_TRANSFORMS: tuple[str, ...] = ("crop_offcentre", "rotate", "pad", "letterbox", "text", "logo")
COPY_TRANSFORMS: tuple[str, ...] = BASE_TRANSFORMS + tuple(f"{t}+resize_jpeg" for t in BASE_TRANSFORMS)
NEGATIVE_KINDS: tuple[str, ...] = ("shifted_crop", "zoomed_out", "same_scene", "unrelated")
MIN_PHOTO_SIDE = 256  # smaller photographs (a 128 px icon) cannot hold several disjoint crops
# A hard negative has at most this share of its area inside any test crop of its photograph: a crop shifted
# by 20 % of the side keeps 80 %, a zoomed-out crop at most 1 / 1.4^2; beyond it, a crop is a re-crop (a copy)
MAX_INSIDE_TEST = 0.8


@dataclass(frozen=True)
class PhotoLeakSet:
    train_dir: Path
    test_dir: Path
    truth: pd.DataFrame  # test_path, train_path, transform, test_detail, test_box: one row per planted copy
    negatives: pd.DataFrame  # train_path, kind, test_path ("" for unrelated), box: one row per negative


Box = tuple[float, float, float, float]  # left, top, right, bottom in photo pixels


def _overlap(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _crop_offcentre(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    area = rng.uniform(0.8, 0.92)
    ratio = rng.uniform(0.9, 1.1)  # width fraction / height fraction
    fw, fh = min(1.0, np.sqrt(area * ratio)), min(1.0, np.sqrt(area / ratio))
    w, h = img.size
    cw, ch = fw * w, fh * h
    # off centre: pushed towards a random corner, at least 60 % of the free margin
    left = (w - cw) * rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)])
    top = (h - ch) * rng.uniform(0.0, 1.0)
    return img.crop((round(left), round(top), round(left + cw), round(top + ch)))


def _rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(2.0, 6.0) * rng.choice([-1, 1]))
    if rng.random() < 0.5:  # black corners
        return img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))
    w, h = img.size  # rotate, then cut the largest centred box free of corners and scale back
    rot = img.rotate(angle, resample=Image.Resampling.BICUBIC)
    a = np.deg2rad(abs(angle))
    shrink = 1.0 / (np.cos(a) + np.sin(a) * max(w, h) / min(w, h))
    cw, ch = w * shrink, h * shrink
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return rot.crop(tuple(round(v) for v in box)).resize((w, h), Image.Resampling.LANCZOS)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    pick = rng.integers(4)
    if pick == 0:
        return (0, 0, 0)
    if pick == 1:
        return (255, 255, 255)
    if pick == 2:
        g = int(rng.integers(60, 200))
        return (g, g, g)
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _pad(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    l, t, r, b = (int(rng.uniform(0.03, 0.15) * s) for s in (w, h, w, h))
    canvas = Image.new("RGB", (w + l + r, h + t + b), _colour(rng))
    canvas.paste(img, (l, t))
    return canvas


def _letterbox(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    target = float(rng.choice([16 / 9, 1.0, 9 / 16, 3 / 2, 2 / 3]))
    if abs(target - w / h) < 0.15:
        target = 16 / 9 if w / h < 1.3 else 9 / 16
    cw, ch = (round(h * target), h) if target > w / h else (w, round(w / target))
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    canvas.paste(img, ((cw - w) // 2, (ch - h) // 2))
    return canvas


_WORDS = ("summer", "holiday", "sale", "photo", "copyright", "free", "download", "stock", "wallpaper", "news",
          "best", "2019", "view", "original", "HD", "amazing")


def _text(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.convert("RGB").copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    size = max(10, int(h * rng.uniform(0.06, 0.11)))
    font = ImageFont.load_default(size=size)
    caption = " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 4))))
    tw = draw.textlength(caption, font=font)
    x = rng.uniform(0.02 * w, max(0.03 * w, w - tw - 0.02 * w))
    if rng.random() < 0.5:  # a caption band at the bottom or top
        y = 0.0 if rng.random() < 0.3 else h - size * 1.5
        draw.rectangle((0, y, w, y + size * 1.5), fill=(0, 0, 0))
        draw.text((x, y + size * 0.2), caption, fill=(255, 255, 255), font=font)
    else:  # text over the picture, with an outline
        y = rng.uniform(0.05 * h, 0.85 * h)
        draw.text((x, y), caption, fill=_colour(rng), font=font, stroke_width=max(1, size // 12),
                  stroke_fill=(0, 0, 0))
    return out


def _logo(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.convert("RGBA")
    w, h = out.size
    side = int(min(w, h) * rng.uniform(0.12, 0.22))
    mark = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(mark)
    colour = (*_colour(rng), int(rng.integers(150, 256)))
    if rng.random() < 0.5:
        d.ellipse((0, 0, side - 1, side - 1), fill=colour)
    else:
        d.rounded_rectangle((0, 0, side - 1, side - 1), radius=side // 5, fill=colour)
    font = ImageFont.load_default(size=max(8, side // 3))
    d.text((side / 2, side / 2), str(rng.choice(["TV", "AB", "XY", "24", "HD"])), fill=(255, 255, 255, 255),
           font=font, anchor="mm")
    margin = int(0.03 * min(w, h))
    x = margin if rng.random() < 0.5 else w - side - margin
    y = margin if rng.random() < 0.5 else h - side - margin
    out.alpha_composite(mark, (x, y))
    return out.convert("RGB")


_BASE: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "crop_offcentre": _crop_offcentre, "rotate": _rotate, "pad": _pad, "letterbox": _letterbox, "text": _text,
    "logo": _logo,
}


def _resize_jpeg(img: Image.Image, rng: np.random.Generator) -> bytes:
    factor = rng.uniform(0.5, 0.8) if rng.random() < 0.75 else 1.3
    w, h = img.size
    small = img.resize((max(16, round(w * factor)), max(16, round(h * factor))), Image.Resampling.LANCZOS)
    return _jpeg(small, int(rng.integers(40, 76)))


def transform_copy(img: Image.Image, name: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """``(file bytes, extension)`` of a copy of ``img`` under transform ``name`` (:data:`COPY_TRANSFORMS`)."""
    base, _, extra = name.partition("+")
    if base not in _BASE or extra not in ("", "resize_jpeg"):
        raise KeyError(f"unknown copy transform {name!r}; known: {list(COPY_TRANSFORMS)}")
    out = _BASE[base](img, rng)
    if extra:
        return _resize_jpeg(out, rng), "jpg"
    return (_png(out), "png") if rng.random() < 0.5 else (_jpeg(out, 95), "jpg")


def _negative_bytes(img: Image.Image, rng: np.random.Generator) -> tuple[bytes, str]:
    return (_resize_jpeg(img, rng), "jpg") if rng.random() < 0.5 else (_jpeg(img, 90), "jpg")


class _Sampler:
    """Crops of one photograph, remembering the test crops taken from it."""

    def __init__(self, photo: Image.Image, rng: np.random.Generator) -> None:
        self.photo, self.rng, self.tests = photo, rng, []

    def box(self, w: float, h: float, cx: float, cy: float) -> Box | None:
        pw, ph = self.photo.size
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        if box[0] < 0 or box[1] < 0 or box[2] > pw or box[3] > ph:
            return None
        return box

    def not_a_copy(self, box: Box) -> bool:
        """No test crop of the photograph holds more than :data:`MAX_INSIDE_TEST` of ``box``: a negative drawn
        for one test image must not be a re-crop of another (a zoomed-out crop around a test image can hold a
        neighbouring test crop almost whole)."""
        area = (box[2] - box[0]) * (box[3] - box[1])
        return all(_overlap(box, t) <= MAX_INSIDE_TEST * area for t in self.tests)

    def random_box(self, w: float, h: float, *, avoid: list[Box], tries: int = 50) -> Box | None:
        pw, ph = self.photo.size
        for _ in range(tries):
            if w > pw or h > ph:
                return None
            box = self.box(w, h, self.rng.uniform(w / 2, pw - w / 2), self.rng.uniform(h / 2, ph - h / 2))
            if box is not None and all(_overlap(box, a) == 0 for a in avoid):
                return box
        return None

    def image(self, box: Box, longer: int) -> Image.Image:
        w, h = box[2] - box[0], box[3] - box[1]
        scale = longer / max(w, h)
        size = (max(16, round(w * scale)), max(16, round(h * scale)))
        return self.photo.resize(size, Image.Resampling.LANCZOS, box=box)


def write_photo_leak_set(
    root: str | Path, *, seed: int, tests_per_photo: int = 3, copies: int = 2, unrelated: int = 40,
    photos: dict[str, Image.Image] | None = None, transforms: tuple[str, ...] = COPY_TRANSFORMS,
) -> PhotoLeakSet:
    """Write ``root/train`` and ``root/val`` ImageFolder trees (one class per photograph) and return
    the truth (module docstring). ``photos`` defaults to every package photograph of at least
    :data:`MIN_PHOTO_SIDE` px."""
    from vlclean.photos import package_photographs

    rng = np.random.default_rng(seed)
    root = Path(root)
    train_dir, test_dir = root / "train", root / "val"
    photos = photos if photos is not None else {
        n: p for n, p in package_photographs().items() if min(p.size) >= MIN_PHOTO_SIDE}
    truth, negatives = [], []
    k = 0

    def put(folder: Path, cls: str, stem: str, data: bytes, ext: str) -> str:
        path = folder / cls / f"{stem}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    samplers = {}
    for p, (name, photo) in enumerate(photos.items()):
        cls = f"c{p:02d}_{name.split('/')[-1].split('.')[0]}"
        s = samplers[cls] = _Sampler(photo, rng)
        for _ in range(tests_per_photo):  # every test crop first: negatives are checked against all of them
            side = min(photo.size) * rng.uniform(0.33, 0.5)
            aspect = float(rng.choice([1.0, 4 / 3, 3 / 4]))
            box = s.random_box(side * np.sqrt(aspect), side / np.sqrt(aspect), avoid=s.tests)
            if box is not None:
                s.tests.append(box)
        for t, box in enumerate(s.tests):
            w, h = box[2] - box[0], box[3] - box[1]
            longer = int(rng.integers(160, 289))
            img = s.image(box, longer)
            test_bytes = _jpeg(img, 90)
            test_path = put(test_dir, cls, f"test_{t}", test_bytes, "jpg")
            gray = Image.open(io.BytesIO(test_bytes)).convert("L")
            test_detail = round(float(detail(content_thumbnail(gray)[None])[0]), 3)
            for _ in range(copies):
                transform = transforms[k % len(transforms)]
                data, ext = transform_copy(img, transform, rng)
                truth.append((test_path, put(train_dir, cls, f"copy_{k:04d}", data, ext), transform, test_detail, box))
                k += 1
            # hard negatives
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            for _ in range(20):
                d, a = rng.uniform(0.2, 0.45), rng.uniform(0, 2 * np.pi)
                shifted = s.box(w, h, cx + d * w * np.cos(a), cy + d * h * np.sin(a))
                if shifted is not None and s.not_a_copy(shifted):
                    data, ext = _negative_bytes(s.image(shifted, longer), rng)
                    negatives.append((put(train_dir, cls, f"neg_shift_{k:04d}", data, ext), "shifted_crop", test_path,
                                      shifted))
                    break
            for _ in range(20):
                z = rng.uniform(1.4, 1.8)
                zw, zh = min(w * z, photo.width), min(h * z, photo.height)
                zoom = s.box(zw, zh, rng.uniform(max(zw / 2, box[2] - zw / 2), min(photo.width - zw / 2, box[0] + zw / 2)),
                             rng.uniform(max(zh / 2, box[3] - zh / 2), min(photo.height - zh / 2, box[1] + zh / 2)))
                if (zoom is not None and zoom[0] <= box[0] and zoom[1] <= box[1] and zoom[2] >= box[2]
                        and zoom[3] >= box[3] and s.not_a_copy(zoom)):
                    data, ext = _negative_bytes(s.image(zoom, longer), rng)
                    negatives.append((put(train_dir, cls, f"neg_zoom_{k:04d}", data, ext), "zoomed_out", test_path,
                                      zoom))
                    break
            other = s.random_box(w, h, avoid=s.tests)  # another part of the scene: no test crop in it
            if other is not None:
                data, ext = _negative_bytes(s.image(other, longer), rng)
                negatives.append((put(train_dir, cls, f"neg_scene_{k:04d}", data, ext), "same_scene", test_path, other))
    names = list(samplers)
    for j in range(unrelated):
        cls = names[j % len(names)]
        s = samplers[cls]
        side = min(s.photo.size) * rng.uniform(0.3, 0.5)
        box = s.random_box(side, side, avoid=s.tests)
        if box is None:
            continue
        data, ext = _negative_bytes(s.image(box, int(rng.integers(160, 289))), rng)
        negatives.append((put(train_dir, cls, f"unrelated_{j:04d}", data, ext), "unrelated", "", box))
    return PhotoLeakSet(
        train_dir, test_dir,
        pd.DataFrame(truth, columns=["test_path", "train_path", "transform", "test_detail", "test_box"]),
        pd.DataFrame(negatives, columns=["train_path", "kind", "test_path", "box"]),
    )


def score_photo_leaks(pairs: pd.DataFrame, truth: pd.DataFrame, negatives: pd.DataFrame) -> pd.DataFrame:
    """Per transform: ``n`` copies, ``found``, ``recall``, and the same over copies of test images with
    detail (``n_detailed``, ``found_detailed``, ``recall_detailed``: ``test_detail`` >=
    :data:`vlclean.copies.LOW_DETAIL`); an ``all`` row with ``false_pairs`` (every wrong test-train pair
    of the set) and ``precision``; a row for the copies of low-detail test images; one row per negative
    kind with its ``false_pairs`` (plus copies paired with the wrong test image). ``pairs`` is a leaks
    report (``test_path``, ``train_path``, optional ``scope``)."""
    cross = pairs[pairs["scope"] == "test-train"] if "scope" in pairs else pairs
    found = set(zip(cross["test_path"], cross["train_path"]))
    keys = list(zip(truth["test_path"], truth["train_path"]))
    false = found - set(keys)
    hit = np.array([k in found for k in keys], dtype=bool)
    detailed = truth["test_detail"].to_numpy() >= LOW_DETAIL
    kind_of = dict(zip(negatives["train_path"], negatives["kind"]))

    def row(name: str, sel: np.ndarray, **extra: float) -> dict:
        n, tp = int(sel.sum()), int(hit[sel].sum())
        nd, td = int((sel & detailed).sum()), int(hit[sel & detailed].sum())
        return {"row": name, "n": n, "found": tp, "recall": round(tp / n, 4) if n else float("nan"),
                "n_detailed": nd, "found_detailed": td, "recall_detailed": round(td / nd, 4) if nd else float("nan"),
                "false_pairs": 0, "precision": float("nan"), **extra}

    transforms = truth["transform"].to_numpy()
    rows = [row(name, transforms == name) for name in COPY_TRANSFORMS]
    rows.append(row(f"copies of low-detail test images (detail < {LOW_DETAIL:g})", ~detailed))
    tp = int(hit.sum())
    rows.append(row("all", np.ones(len(keys), dtype=bool), false_pairs=len(false),
                    precision=round(tp / (tp + len(false)), 4) if tp + len(false) else 1.0))
    for kind in NEGATIVE_KINDS:
        fp = sum(kind_of.get(b) == kind for _, b in false)
        rows.append({"row": f"negative: {kind}", "n": int((negatives["kind"] == kind).sum()), "false_pairs": fp})
    wrong = sum(b not in kind_of for _, b in false)
    rows.append({"row": "negative: copy of another test image", "n": len(keys), "false_pairs": wrong})
    return pd.DataFrame(rows)
