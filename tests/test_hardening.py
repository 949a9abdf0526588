"""Hardening: bad inputs, interruptions and untrusted strings.

The bad-image zoo (built per module in a temporary folder, nothing committed) goes through folder
download -> analyze -> detect_leaks -> ingest_vl -> apply_tags -> build_manifest -> train; ``build_zoo``
returns the expected outcome of every file and the tests assert it at every stage:

=================================  ===========================================================================
input                              outcome (download index / quarantine.csv; analyze; leaks; manifest; train)
=================================  ===========================================================================
33 normal PNG/JPEG, 4 classes      valid everywhere; trained on
CMYK JPEG                          valid, decoded to RGB (red stays red); trained on
16-bit grayscale PNG (I;16)        valid, scaled by 1/257 (200*257 -> 200; a dark one stays dark)
palette PNG with transparency      valid, composited over white
RGBA / grayscale (L) PNG           valid, RGB (alpha over white)
EXIF orientation 6 JPEG            valid, width/height swapped, pixels = the picture rotated 90 deg clockwise
1x1 PNG                            valid (blur NaN: no interior pixel)
animated GIF                       valid, first frame
lossless WebP                      valid, exact colour
file without extension (PNG)       valid, format PNG
symlink to a file in the tree      valid (same bytes as its target)
truncated JPEG / PNG / JPEG header invalid "truncated image: ..." (index valid=false, quarantine, analyze
                                   'invalid' issue, dropped by build_manifest, refused by train naming it)
zero-byte .JPEG (train and val)    invalid "empty file (0 bytes)"; identical bytes in train and val: no leak
text file named .JPEG (both)       invalid "not an image (unrecognised format)"; no leak
PNG header claiming 30000x30000    invalid "decompression bomb: ..." (Pillow refuses at open)
real 9000x9000 PNG (81 MP, 80 kB)  invalid "decompression bomb: 9000x9000 = ... exceeds the limit of 64000000"
symlink out of the tree (file/dir) invalid "symlink points outside the dataset root (refused)"; never read
dangling symlink, FIFO             invalid "not a regular file" (a FIFO is never opened, nothing blocks)
symlink loop                       invalid "symlink loop (refused)" (was a RuntimeError traceback)
hidden file, file outside a class  quarantine only: "hidden file ignored", "not inside <split>/<class>/ folders"
class folder "<img src=x ...>",    valid; shown escaped in the review page, never as markup
file name with quotes and <b>
Hub ClassLabel "../../etc", image  export_images makes each one path component ('.._.._etc', 'passwd.JPEG');
paths "../../x", "/etc/x", ...     a name that is just '..' makes it refuse (exit 2), writing nothing
=================================  ===========================================================================

Known gaps are documented by ``xfail(strict=True)`` tests naming the file and function to fix.
Hostile params and the fuzzed tag-rule engine: ``tests/test_hardening_params.py``.
Every test is one hostile case: its time and peak memory are printed in pytest's terminal summary
(``tests/hostile.py``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import markupsafe
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.conftest import REPO, jpeg_bytes, png_bytes, write_hub_shards, write_params
from tests.hostile import hostile_case, measure  # noqa: F401 - hostile_case: the fixture behind pytestmark
from vlclean.datasets import RawDataset
from vlclean.images import DEFAULT_MAX_PIXELS, load_rgb

XSS_CLASS = "<img src=x onerror=alert(1)>"
XSS_FILE = "it's \"quoted\" <b>&amp.png"
CLASSES = ("bird", "cat", "dog")

pytestmark = pytest.mark.usefixtures("hostile_case")  # time and peak memory per case (tests/hostile.py)


# -- the zoo -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a zoo file must become. ``reason``: substring of the quarantine reason (invalid files);
    ``size``: decoded (width, height) with EXIF orientation applied; ``pixels``: decoded RGB at points
    (within ``tolerance``, for lossy formats); ``indexed``: False for files refused before conversion
    (they are only in quarantine.csv, never in the index)."""

    valid: bool
    reason: str = ""
    size: tuple[int, int] | None = None
    pixels: tuple[tuple[tuple[int, int], tuple[int, int, int]], ...] = ()
    tolerance: int = 0
    indexed: bool = True


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims ``width x height`` (CRC fixed): a decompression bomb header."""
    data = bytearray(_encode(Image.new("L", (8, 8)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts after signature(8)+length(4)+type(4)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def two_colour(width: int, height: int) -> np.ndarray:
    """Left half red, right half blue: shows which way an image was rotated."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return arr


def build_zoo(root: Path) -> dict[str, Outcome]:
    """Write the zoo below ``root`` (an ImageFolder tree ``train|val/<class>/...``) and return
    ``{relative path: expected outcome}`` for every file in it (normal images included)."""
    files: dict[str, tuple[bytes, Outcome]] = {}
    ok = Outcome(True)
    seed = 100
    for split, n in (("train", 7), ("val", 3)):
        for cls in (*CLASSES, XSS_CLASS):
            for i in range(n if cls != XSS_CLASS else 2):
                seed += 1
                kind = "png" if seed % 2 else "jpg"
                data = png_bytes(seed, 24) if kind == "png" else jpeg_bytes(seed, 24)
                files[f"{split}/{cls}/{cls[:3]}_{split}_{i}.{kind}"] = (data, ok)
    files[f"train/cat/{XSS_FILE}"] = (png_bytes(1, 24), ok)
    # its exact copy: a duplicate pair is always flagged, so the quoted name is always on the review page
    # (whatever the mislabel classifier makes of a noise image)
    files["train/cat/copy_of_the_quoted_one.png"] = (png_bytes(1, 24), ok)

    photo = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full_jpeg, full_png = _encode(Image.fromarray(photo), "JPEG"), _encode(Image.fromarray(photo), "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the stored picture is shown rotated 90 degrees clockwise
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0: red, 1: blue (made transparent)
    palette.putpixel((0, 0), 1)
    gif_frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = io.BytesIO()
    gif_frames[0].save(gif, format="GIF", save_all=True, append_images=gif_frames[1:], duration=50, loop=0)
    odd = {
        # readable odd formats: converted to 8-bit RGB
        "train/cat/cmyk.jpg": (_encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
                               Outcome(True, size=(16, 16), pixels=(((0, 0), (255, 0, 0)),), tolerance=8)),
        "train/cat/gray16.png": (_encode(Image.fromarray(np.full((12, 12), 200 * 257, np.uint16)), "PNG"),
                                 Outcome(True, size=(12, 12), pixels=(((5, 5), (200, 200, 200)),))),
        "train/dog/gray16_dark.png": (_encode(Image.fromarray(np.full((12, 12), 3 * 257, np.uint16)), "PNG"),
                                      Outcome(True, size=(12, 12), pixels=(((5, 5), (3, 3, 3)),))),
        "train/dog/palette_alpha.png": (_encode(palette, "PNG", transparency=1),  # transparent over white
                                        Outcome(True, size=(8, 8), pixels=(((0, 0), (255, 255, 255)),
                                                                           ((3, 3), (255, 0, 0))))),
        "train/dog/rgba_half.png": (_encode(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"),
                                    Outcome(True, size=(8, 8), pixels=(((4, 4), (255, 255, 255)),))),
        "train/dog/gray.png": (_encode(Image.new("L", (10, 10), 77), "PNG"),
                               Outcome(True, size=(10, 10), pixels=(((1, 1), (77, 77, 77)),))),
        "train/bird/exif_rot6.jpg": (_encode(Image.fromarray(two_colour(40, 20)), "JPEG", quality=95,
                                             exif=exif.tobytes()),
                                     Outcome(True, size=(20, 40),  # red on top after the rotation, blue below
                                             pixels=(((10, 2), (255, 0, 0)), ((10, 37), (0, 0, 255))),
                                             tolerance=8)),
        "train/bird/one_pixel.png": (_encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
                                     Outcome(True, size=(1, 1), pixels=(((0, 0), (10, 20, 30)),))),
        "train/cat/animated.gif": (gif.getvalue(), Outcome(True, size=(10, 10), pixels=(((5, 5), (255, 0, 0)),))),
        "train/dog/lossless.webp": (_encode(Image.new("RGB", (20, 10), (200, 30, 60)), "WEBP", lossless=True),
                                    Outcome(True, size=(20, 10), pixels=(((3, 3), (200, 30, 60)),))),
        "train/bird/no_extension": (_encode(Image.new("RGB", (6, 6), (0, 128, 0)), "PNG"),
                                    Outcome(True, size=(6, 6), pixels=(((2, 2), (0, 128, 0)),))),
        # unreadable: in the index with valid=False and the reason, and in quarantine.csv
        "train/cat/truncated.jpg": (full_jpeg[: len(full_jpeg) // 2], Outcome(False, "truncated")),
        "train/dog/truncated_header.jpg": (full_jpeg[:120], Outcome(False, "truncated")),
        "train/dog/truncated.png": (full_png[: len(full_png) // 2], Outcome(False, "truncated")),
        "train/bird/zero.JPEG": (b"", Outcome(False, "empty file")),
        "val/cat/zero.JPEG": (b"", Outcome(False, "empty file")),  # the same bytes in test: never a "leak"
        "train/dog/text.JPEG": (b"<html>not an image</html>", Outcome(False, "not an image")),
        "val/dog/text.JPEG": (b"<html>not an image</html>", Outcome(False, "not an image")),
        "train/cat/bomb_30000.png": (png_claiming_size(30_000, 30_000), Outcome(False, "decompression bomb")),
        "train/dog/bomb_9000.png": (zero_png(9_000, 9_000), Outcome(False, "exceeds the limit of 64000000")),
        # refused before conversion: only in quarantine.csv
        "train/.DS_Store": (b"junk", Outcome(False, "hidden file", indexed=False)),
        "README.txt": (b"a readme at the root", Outcome(False, "not inside", indexed=False)),
    }
    files.update(odd)
    for rel, (data, _) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    # links and special files: nothing outside the tree is ever read, nothing blocks or crashes
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes(2, 24))
    links = {
        "train/cat/escape.png": (outside / "secret.png", Outcome(False, "symlink points outside")),
        "train/cat/escape_dir": (outside, Outcome(False, "symlink points outside")),
        "train/dog/dangling.png": (Path("no_such_file.png"), Outcome(False, "not a regular file")),
        "train/dog/loop.png": (Path("loop.png"), Outcome(False, "symlink loop")),  # points at itself
        "train/bird/inside_link.png": (Path("bir_train_0.png"), Outcome(True, size=(24, 24))),  # inside: allowed
    }
    for rel, (target, _) in links.items():
        (root / rel).symlink_to(target)
    os.mkfifo(root / "train/cat/pipe.png")  # reading it would block forever
    expected = {rel: outcome for rel, (_, outcome) in files.items()}
    expected |= {rel: outcome for rel, (_, outcome) in links.items()}
    expected["train/cat/pipe.png"] = Outcome(False, "not a regular file")
    return expected


# -- the zoo through the pipeline ----------------------------------------------------------------
ZOO_PARAMS = {
    "base": {"dataset": "zoo"},
    "runtime": {"download": {"workers": 1}, "analyze": {"workers": 1}, "train": {"device": "cpu", "workers": 0}},
    "download": {"source": "folder"},
    "analyze": {"embedding": {"model": "pixels"},
                "detect": {"mislabels": {"folds": 2}, "outliers": {"k": 3}, "duplicates": {"k": 5}}},
    "train": {"epochs": 1, "batch_size": 8, "image_size": 8, "augmentation": "none",
              "deterministic": False,
              "warmup_epochs": 0.0, "loader": "memory",
              "val_fraction": 0.0},  # every valid train image is trained on; the given val file validates
}


def run_zoo_stages(root: Path, tree: Path) -> None:
    """download -> analyze -> detect_leaks -> ingest_vl -> apply_tags -> build_manifest into ``root/out``,
    run from ``root`` with relative paths like ``dvc repro`` (so two roots give comparable outputs)."""
    from stages import analyze, apply_tags, build_manifest, detect_leaks, download, ingest_vl

    folder_source = {**ZOO_PARAMS["download"], "folder": {"root": str(tree)}}
    write_params(root / "params.yaml", {**ZOO_PARAMS, "download": folder_source})
    params, out, m = "params.yaml", Path("out"), "out/manifests"
    o = {k: str(out / k) for k in ("raw", "features", "ingested", "reviews", "work_dl", "work_an")}
    (root / out / "reviews").mkdir(parents=True, exist_ok=True)
    steps = [
        (download, ["--out", o["raw"], "--metrics", f"{out}/m/download.json", "--plots", f"{out}/p/download",
                    "--work_dir", o["work_dl"]]),
        (analyze, ["--raw", o["raw"], "--features", o["features"], "--export", f"{out}/vl/zoo_vl_export.json",
                   "--metrics", f"{out}/m/analyze.json", "--plots", f"{out}/p/analyze", "--work_dir", o["work_an"]]),
        (detect_leaks, ["--raw", o["raw"], "--features", o["features"], "--output", f"{m}/zoo_leaks_report.csv",
                        "--by_test", f"{m}/zoo_leaks_by_test.csv", "--metrics", f"{out}/m/detect_leaks.json",
                        "--plots", f"{out}/p/detect_leaks"]),
        (ingest_vl, ["--raw", o["raw"], "--out", o["ingested"], "--metrics", f"{out}/m/ingest_vl.json",
                     "--export", f"{out}/vl/zoo_vl_export.json"]),
        (apply_tags, ["--raw", o["raw"], "--ingested", o["ingested"], "--reviews", o["reviews"],
                      "--output", f"{m}/zoo_tagged_manifest.csv", "--html", f"{m}/zoo_review",
                      "--conflicts", f"{m}/zoo_review_conflicts.csv", "--metrics", f"{out}/m/apply_tags.json",
                      "--plots", f"{out}/p/apply_tags"]),
        (build_manifest, ["--raw", o["raw"], "--tagged", f"{m}/zoo_tagged_manifest.csv",
                          "--leaks", f"{m}/zoo_leaks_report.csv", "--output", f"{m}/zoo_cleaned_manifest.csv",
                          "--summary", f"{m}/zoo_cleaning_summary.txt", "--eval_labels", f"{m}/zoo_eval_labels.csv",
                          "--train_labels", f"{m}/zoo_train_labels.csv", "--metrics", f"{out}/m/build_manifest.json",
                          "--plots", f"{out}/p/build_manifest"]),
    ]
    with contextlib.chdir(root):
        for stage, argv in steps:
            assert stage.main(["--params", params, *argv]) == 0, stage.__name__


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The zoo after every stage up to build_manifest (shared by the tests below: read-only)."""
    root = tmp_path_factory.mktemp("zoo")
    expected = build_zoo(root / "tree")
    run_zoo_stages(root, root / "tree")
    out = root / "out"
    raw = RawDataset.open(out / "raw")
    index = raw.index()
    return SimpleNamespace(
        root=root, tree=root / "tree", out=out, expected=expected, raw=raw, index=index,
        by_source=index.set_index("source"), quarantine=raw.quarantine(),
        features=pd.read_parquet(out / "features" / "features.parquet"),
        leaks=pd.read_csv(out / "manifests" / "zoo_leaks_report.csv", keep_default_na=False),
        export=pd.read_csv(out / "vl" / "zoo_vl_export.csv", keep_default_na=False),
        tagged=pd.read_csv(out / "manifests" / "zoo_tagged_manifest.csv", keep_default_na=False),
        cleaned=pd.read_csv(out / "manifests" / "zoo_cleaned_manifest.csv", keep_default_na=False),
    )


def test_zoo_download_accounts_for_every_file(zoo: SimpleNamespace) -> None:
    """Files in the tree = index rows + files refused before conversion; every invalid one is in the
    quarantine with its reason, every valid one is not."""
    exp, index, q = zoo.expected, zoo.index, zoo.quarantine
    on_disk = {p.relative_to(zoo.tree).as_posix() for p in zoo.tree.rglob("*")
               if p.is_symlink() or not p.is_dir()}
    assert on_disk == set(exp), "the table must list every file of the tree"
    indexed = {rel for rel, o in exp.items() if o.indexed}
    assert set(index["source"]) == indexed
    assert len(index) + (~q["source"].isin(index["source"])).sum() == len(exp)  # input = valid + quarantined
    assert q["source"].is_unique and (q["error"].fillna("").str.len() > 0).all()
    reasons = dict(zip(q["source"], q["error"]))
    for rel, o in exp.items():
        if o.valid:
            assert rel not in reasons, rel
            assert bool(zoo.by_source.at[rel, "valid"]), rel
        else:
            got = reasons.get(rel, "")
            assert o.reason in got, f"{rel}: quarantine says {got!r}, expected {o.reason!r}"
            if o.indexed:
                row = zoo.by_source.loc[rel]
                assert not row["valid"] and row["error"] == reasons[rel]
    secret = (zoo.root / "outside" / "secret.png").read_bytes()
    assert secret not in set(zoo.raw.read_images(index["image_id"]).values())  # never read through the links
    metrics = json.loads((zoo.out / "m" / "download.json").read_text())
    assert metrics["images"] == len(index) and metrics["invalid"] == int((~index["valid"]).sum())
    assert metrics["quarantined"] == len(q) == sum(not o.valid for o in exp.values())


def test_zoo_odd_formats_decode_to_rgb(zoo: SimpleNamespace) -> None:
    """EXIF orientation applied, CMYK / 16-bit / palette+alpha / gray / animated / WebP converted to 8-bit RGB,
    from the bytes as stored (never re-encoded) and in the index's width and height."""
    data = zoo.raw.read_images(zoo.index["image_id"])
    for rel, o in zoo.expected.items():
        if not o.valid or o.size is None:
            continue
        row = zoo.by_source.loc[rel]
        assert data[row["image_id"]] == (zoo.tree / rel).read_bytes(), f"{rel}: bytes must be stored as they are"
        img = load_rgb(data[row["image_id"]])
        assert img.mode == "RGB" and img.size == o.size == (row["width"], row["height"]), rel
        for xy, rgb in o.pixels:
            got = np.asarray(img.getpixel(xy), dtype=int)
            assert np.abs(got - rgb).max() <= o.tolerance, f"{rel} at {xy}: {tuple(got)} != {rgb}"
    assert zoo.by_source.loc["train/bird/exif_rot6.jpg", "format"] == "JPEG"
    assert zoo.by_source.loc["train/bird/no_extension", "format"] == "PNG"
    assert zoo.by_source.loc["train/dog/lossless.webp", "format"] == "WEBP"
    assert zoo.by_source.loc["train/cat/animated.gif", "format"] == "GIF"


def test_exif_rotation_matches_the_rotated_picture() -> None:
    """Orientation 6 decodes to exactly the stored picture rotated 90 degrees clockwise (the same JPEG
    bytes without the EXIF block give the unrotated pixels)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    arr = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    plain = _encode(Image.fromarray(arr), "JPEG", quality=95)
    rotated = _encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())
    expected = np.asarray(Image.open(io.BytesIO(plain)).convert("RGB").transpose(Image.Transpose.ROTATE_270))
    got = np.asarray(load_rgb(rotated))
    assert got.shape == (40, 24, 3) and np.array_equal(got, expected)


def test_sixteen_bit_scaling_does_not_depend_on_content() -> None:
    """A dark 16-bit image stays dark (it used to be read as 8-bit when its maximum was <= 255)."""
    for value in (0, 200, 255, 256 * 100, 65535):
        img = load_rgb(_encode(Image.fromarray(np.full((4, 4), value, np.uint16)), "PNG"))
        assert img.getpixel((1, 1)) == (round(value / 257),) * 3, value


def test_decompression_bombs_are_refused_before_decoding() -> None:
    from vlclean.images import ImageDecodeError, probe_image

    for w, h in ((30_000, 30_000), (9_000, 9_000), (DEFAULT_MAX_PIXELS + 1, 1)):
        header = png_claiming_size(w, h)
        err, seconds, mb = measure(f"PNG header claiming {w}x{h}", lambda: probe_image(header))
        assert isinstance(err, ImageDecodeError) and "decompression bomb" in str(err), err
        assert seconds < 1.0 and mb < 20  # refused from the header, nothing allocated
    real = zero_png(9_000, 9_000)  # a complete, decodable 81 MP PNG of 80 kB: over our 64 MP limit, under Pillow's
    assert len(real) < 200_000
    err, seconds, mb = measure("real 9000x9000 PNG (81 MP, 80 kB)", lambda: probe_image(real))
    assert isinstance(err, ImageDecodeError) and "exceeds the limit of 64000000" in str(err), err
    assert mb < 20
    assert probe_image(zero_png(9_000, 9_000), max_pixels=10**8).width == 9_000  # the limit is a parameter


def zero_png(width: int, height: int) -> bytes:
    """A real all-black grayscale PNG, compressed row by row (never held in memory decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_zoo_features_align_with_the_index(zoo: SimpleNamespace) -> None:
    f, index = zoo.features, zoo.index
    assert list(f["image_id"]) == list(index["image_id"])  # input count = valid + invalid, in order
    assert (f["valid"].to_numpy() == index["valid"].to_numpy()).all()
    invalid = ~f["valid"]
    assert (f.loc[invalid, "error"].str.len() > 0).all() and (f.loc[~invalid, "error"].fillna("") == "").all()
    decoded = index["error"].str.startswith(("truncated", "empty", "not an image", "decompression", "cannot"))
    same = f["error"].fillna("").to_numpy() == index["error"].fillna("").to_numpy()
    assert same[decoded.to_numpy() & ~index["valid"].to_numpy()].all()
    by_id = f.set_index("image_id")
    for rel, o in zoo.expected.items():
        if o.valid and o.size is not None:
            row = by_id.loc[zoo.by_source.at[rel, "image_id"]]
            assert (row["width"], row["height"]) == o.size, rel
    gray16 = by_id.loc[zoo.by_source.at["train/cat/gray16.png", "image_id"]]
    assert gray16["brightness"] == pytest.approx(200.0)
    assert by_id.loc[zoo.by_source.at["train/dog/gray16_dark.png", "image_id"], "brightness"] == pytest.approx(3.0)
    assert by_id.loc[zoo.by_source.at["train/cat/cmyk.jpg", "image_id"], "brightness"] == pytest.approx(76, abs=4)
    analyzed = json.loads((zoo.out / "m" / "analyze.json").read_text())
    assert analyzed["images"] == len(index)


def test_zoo_features_keep_the_source_reason(zoo: SimpleNamespace) -> None:
    f = zoo.features.set_index("image_id")
    for rel in ("train/cat/escape.png", "train/cat/pipe.png", "train/dog/loop.png"):
        iid = zoo.by_source.at[rel, "image_id"]
        assert f.at[iid, "error"] == zoo.by_source.at[rel, "error"], rel


def test_zoo_export_lists_every_invalid_image(zoo: SimpleNamespace) -> None:
    e, index = zoo.export, zoo.index
    assert set(e["image_id"]) == set(index["image_id"])
    invalid = e[e["issue_type"] == "invalid"]
    assert set(invalid["image_id"]) == set(index.loc[~index["valid"], "image_id"])
    assert (invalid["description"].str.len() > 0).all()


def test_zoo_leak_report_never_holds_invalid_images(zoo: SimpleNamespace) -> None:
    """The zero-byte and text files exist in train and val with identical bytes: still no 'exact' leak."""
    invalid = set(zoo.index.loc[~zoo.index["valid"], "image_id"])
    assert len(zoo.leaks) and not (set(zoo.leaks["test_id"]) | set(zoo.leaks["train_id"])) & invalid
    by_test = pd.read_csv(zoo.out / "manifests" / "zoo_leaks_by_test.csv", keep_default_na=False)
    assert sorted(by_test["test_id"]) == sorted(zoo.index.loc[zoo.index["split"] == "test", "image_id"])  # one row each
    bad = by_test[by_test["test_id"].isin(invalid)]
    assert len(bad) == 2 and not bad["leaked"].astype(bool).any() and (bad["matches"] == 0).all()


def test_zoo_standalone_leak_detection_on_the_folders(zoo: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    """detect_leaks on the raw trees: links out, loops and FIFOs are skipped with a reason, bad files reported."""
    from stages import detect_leaks

    out = zoo.root / "standalone_leaks.csv"
    rc = detect_leaks.main(["--params", str(zoo.root / "params.yaml"), "--train_dir", str(zoo.tree / "train"),
                            "--test_dir", str(zoo.tree / "val"), "--output", str(out), "--methods", "exact,perceptual",
                            "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    for name, why in (("escape.png", "symlink points outside"), ("loop.png", "symlink loop"),
                      ("pipe.png", "not a regular file"), ("bomb_30000.png", "decompression bomb"),
                      ("zero.JPEG", "empty file")):
        assert any(name in line and why in line for line in err.splitlines()), (name, why)
    pairs = pd.read_csv(out, keep_default_na=False)
    bad = {str(zoo.tree / "train" / r[len("train/"):]) for r, o in zoo.expected.items() if not o.valid}
    assert not (set(pairs["train_path"]) | set(pairs["test_path"])) & bad


def test_zoo_every_invalid_image_is_tagged_unreadable(zoo: SimpleNamespace) -> None:
    t = zoo.tagged.set_index("image_id")
    for iid in zoo.index.loc[~zoo.index["valid"], "image_id"]:
        assert "unreadable" in t.at[iid, "tags"].split(";") and t.at[iid, "action"] == "drop", iid


def test_zoo_cleaned_manifest_drops_every_invalid_image(zoo: SimpleNamespace) -> None:
    """Whatever the tags say, build_manifest drops unreadable images with their reason: nothing
    unreadable reaches the train or eval label files."""
    c, index = zoo.cleaned.set_index("image_id"), zoo.index
    assert len(zoo.cleaned) == len(index) == len(zoo.tagged)
    for row in index.loc[~index["valid"]].itertuples():
        assert c.at[row.image_id, "action"] == "drop" and row.error in c.at[row.image_id, "reasons"], row.image_id
    invalid = set(index.loc[~index["valid"], "image_id"])
    for name in ("zoo_train_labels.csv", "zoo_eval_labels.csv"):
        labels = pd.read_csv(zoo.out / "manifests" / name, dtype={"image_id": str})
        assert not set(labels["image_id"]) & invalid


def test_zoo_review_page_escapes_untrusted_names(zoo: SimpleNamespace) -> None:
    """A class folder named like an HTML tag and a file name with quotes stay text in the review page."""
    page = "".join(p.read_text() for p in sorted((zoo.out / "manifests" / "zoo_review").glob("*.html")))
    assert XSS_CLASS in set(zoo.index["class_name"]) and XSS_FILE in set(zoo.index["file_name"])
    flagged = zoo.tagged[(zoo.tagged["action"] != "keep") | (zoo.tagged["issues"] != "")]
    assert XSS_CLASS in set(flagged["class_name"])
    assert XSS_CLASS not in page and "onerror=alert(1)>" not in page
    assert XSS_FILE not in page and '"quoted" <b>' not in page
    assert str(markupsafe.escape(XSS_FILE)) in page
    assert str(markupsafe.escape(XSS_CLASS)) in page  # the class still shows, as text
    assert "<img src=x" not in page.replace('<img src="data:', "")


def test_zoo_review_page_never_embeds_a_decompression_bomb(zoo: SimpleNamespace) -> None:
    page = "".join(p.read_text() for p in sorted((zoo.out / "manifests" / "zoo_review").glob("*.html")))
    for rel in ("train/cat/bomb_30000.png", "train/dog/bomb_9000.png"):
        assert base64.b64encode((zoo.tree / rel).read_bytes()).decode() not in page, rel


def test_zoo_stage_outputs_are_identical_on_rerun(zoo: SimpleNamespace, tmp_path: Path) -> None:
    """Idempotence below DVC: the same inputs give byte-identical outputs (fresh work dirs), so a forced
    rerun changes nothing DVC would hash. ``tests/test_pipeline.py`` runs ``dvc repro`` twice."""
    run_zoo_stages(tmp_path, zoo.tree)

    def digests(root: Path) -> dict[str, str]:
        skip = ("work_", "p/")  # resumable state; plot PNGs embed nothing but may differ in fonts
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()
                and not p.relative_to(root).as_posix().startswith(skip)}

    first, second = digests(zoo.out), digests(tmp_path / "out")
    assert first.keys() == second.keys()
    differ = sorted(k for k in first if first[k] != second[k])
    assert differ == [], differ


# -- training on the zoo -------------------------------------------------------------------------
def _train_argv(zoo: SimpleNamespace, work: Path, labels: pd.DataFrame, val: pd.DataFrame) -> list[str]:
    labels.to_csv(work / "train.csv", index=False)
    val.to_csv(work / "val.csv", index=False)
    return ["--params", str(zoo.root / "params.yaml"), "--raw", str(zoo.out / "raw"),
            "--labels", str(work / "train.csv"), "--val_labels", str(work / "val.csv"),
            "--model", str(work / "model.pt"), "--live", str(work / "live"), "--checkpoint_dir", str(work / "ckpt"),
            "--metrics", str(work / "train.json")]


def test_zoo_trains_one_epoch_on_every_valid_image(zoo: SimpleNamespace, tmp_path: Path) -> None:
    """All readable odd formats go through the training loader (decode_square) and evaluation. Killing
    training and resuming from its checkpoint: tests/test_train_evaluate.py
    (test_a_run_killed_after_a_checkpoint_resumes_..., test_a_run_sigkilled_mid_epoch_resumes_...)."""
    from stages import evaluate, train

    index = zoo.index
    tr = index[index["valid"] & (index["split"] == "train")]
    te = index[index["valid"] & (index["split"] == "test")]
    argv = _train_argv(zoo, tmp_path, tr[["image_id", "label"]], te[["image_id", "label"]].assign(leaked=False))
    assert train.main(argv) == 0
    m = json.loads((tmp_path / "train.json").read_text())
    assert m["n_train"] == len(tr) and m["n_val"] == len(te) and m["epochs"] == 1
    assert np.isfinite(m["train_loss"]) and (tmp_path / "model.pt").stat().st_size > 0
    assert evaluate.main(["--params", str(zoo.root / "params.yaml"), "--raw", str(zoo.out / "raw"), "--model",
                          str(tmp_path / "model.pt"), "--labels", str(tmp_path / "val.csv"), "--metrics",
                          str(tmp_path / "eval.json"), "--plots", str(tmp_path / "plots"),
                          "--predictions", str(tmp_path / "predictions.csv")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["n_test"] == len(te)


def test_zoo_training_refuses_an_unreadable_image_naming_it(zoo: SimpleNamespace, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from stages import train

    index = zoo.index
    bad = index.loc[index["source"] == "train/cat/truncated.jpg", ["image_id", "label"]]
    good = index.loc[index["valid"] & (index["split"] == "train"), ["image_id", "label"]].head(4)
    argv = _train_argv(zoo, tmp_path, pd.concat([good, bad]), good.assign(leaked=False))
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert bad["image_id"].iloc[0] in err and "invalid" in err
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "train.json").exists()


# -- interruptions: SIGKILL mid-run, then rerun ----------------------------------------------------
# The child runs a stage with one function wrapped so that, once it has been called ``after`` times,
# the next call drops a marker and sleeps: the test then kills the child with SIGKILL at that exact
# point (deterministic, unlike racing a timer).
PAUSING_RUNNER = r"""
import functools, importlib, sys, time
target, after, marker, stage, *argv = sys.argv[1:]
module_name, _, attr_path = target.partition(":")
owner = importlib.import_module(module_name)
*parents, name = attr_path.split(".")
for part in parents:
    owner = getattr(owner, part)
original = getattr(owner, name)
calls = [0]

@functools.wraps(original)
def paused(*args, **kwargs):
    calls[0] += 1
    if calls[0] > int(after):
        open(marker, "w").close()
        time.sleep(600)
    return original(*args, **kwargs)

setattr(owner, name, paused)
sys.exit(importlib.import_module(stage).main(argv))
"""


def kill_stage_at(cwd: Path, target: str, after: int, stage: str, argv: list[str], timeout: float = 120) -> None:
    """Run ``python -m <stage> <argv>`` in ``cwd`` and SIGKILL it when ``target`` is called the
    ``after + 1``-th time (see PAUSING_RUNNER)."""
    marker = cwd / ".paused.marker"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    log = cwd / ".killed_run.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", PAUSING_RUNNER, target, str(after), str(marker), stage, *argv],
                                cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            assert proc.poll() is None, f"{stage} ended ({proc.returncode}) before the kill point:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{stage} never reached {target}"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    marker.unlink()


def tree_digest(path: Path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden_temps(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*"))


@pytest.fixture(scope="module")
def many_units(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """An ImageFolder tree converted in 4 units of 30 files (so several raw shards), and its params."""
    root = tmp_path_factory.mktemp("units")
    for i in range(120):
        split = "train" if i < 90 else "val"
        path = root / "tree" / split / f"c{i % 3}" / f"img_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(1000 + i, 32))
    params = {"download": {"source": "folder", "unit_size": 30, "folder": {"root": str(root / "tree")}},
              "analyze": {"embedding": {"model": "pixels"}, "detect": {"mislabels": {"folds": 2}}},
              "runtime": {"download": {"workers": 1}, "analyze": {"workers": 1}}}
    return SimpleNamespace(root=root, params=params)


def download_argv(out: str = "raw", work: str = "work_dl") -> list[str]:
    return ["--params", "params.yaml", "--out", out, "--metrics", "m/download.json", "--plots", "p/download",
            "--work_dir", work]


def analyze_argv(features: str = "features", work: str = "work_an") -> list[str]:
    return ["--params", "params.yaml", "--raw", "raw", "--features", features, "--export", "vl/export.json",
            "--metrics", "m/analyze.json", "--plots", "p/analyze", "--work_dir", work]


def test_killed_download_leaves_no_output_and_resumes(many_units: SimpleNamespace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from stages import download

    write_params(tmp_path / "params.yaml", many_units.params)
    monkeypatch.chdir(tmp_path)
    # 1. killed between units: two units done in the work dir, no output at all
    kill_stage_at(tmp_path, "vlclean.datasets.raw:RawDatasetWriter.convert_unit", 2, "stages.download", download_argv())
    assert not (tmp_path / "raw").exists() and not hidden_temps(tmp_path, "raw")
    done = sorted(tmp_path.glob("work_dl/*/units/*/index.parquet"))
    assert len(done) == 2 and not list(tmp_path.glob("work_dl/*/units/[!.]*/.*"))
    stamps = {p: p.stat().st_mtime_ns for p in done}
    # 2. killed while assembling the output folder: still no output, only a hidden temp folder beside it
    kill_stage_at(tmp_path, "vlclean.datasets.raw:write_csv", 0, "stages.download", download_argv())
    assert not (tmp_path / "raw").exists()
    assert [p.name.endswith(".tmp") for p in hidden_temps(tmp_path, "raw")] == [True]
    assert len(list(tmp_path.glob("work_dl/*/units/*/index.parquet"))) == 4
    # 3. the rerun reuses every finished unit, cleans the dead run's temp folder, and matches a fresh run
    assert download.main(download_argv()) == 0
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
    assert hidden_temps(tmp_path, "raw") == []
    assert download.main(download_argv("fresh_raw", "fresh_work")) == 0
    assert tree_digest(tmp_path / "raw") == tree_digest(tmp_path / "fresh_raw")
    assert len(RawDataset.open("raw").index()) == 120 and len(RawDataset.open("raw").shards()) >= 4
    # 4. a killed run with other params leaves the previous complete version in place
    before = tree_digest(tmp_path / "raw")
    write_params(tmp_path / "params.yaml", {**many_units.params, "download": {**many_units.params["download"],
                                                                             "max_per_class": 20}})
    kill_stage_at(tmp_path, "vlclean.datasets.raw:write_csv", 0, "stages.download", download_argv())
    assert tree_digest(tmp_path / "raw") == before


def encoded_shards(root: Path) -> list[Path]:
    """The raw shards analyze has finished encoding: the features parquet is written last and marks one done."""
    return sorted(p for p in root.glob("work_an/*/*.parquet") if not p.name.endswith(".crops.parquet"))


def test_killed_analyze_leaves_no_output_and_resumes(many_units: SimpleNamespace, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from stages import analyze, download

    write_params(tmp_path / "params.yaml", many_units.params)
    monkeypatch.chdir(tmp_path)
    assert download.main(download_argv()) == 0
    n_shards = len(RawDataset.open("raw").shards())
    assert n_shards >= 4
    # 1. killed after the first raw shard is encoded: no output, the shard kept in the work dir
    kill_stage_at(tmp_path, "vlclean.encode:_ShardEncoder.encode", 1, "stages.analyze", analyze_argv())
    assert visible(tmp_path) == ["m", "p", "params.yaml", "raw", "work_an", "work_dl"]  # no features, export, metrics
    assert not (tmp_path / "m" / "analyze.json").exists()
    first = encoded_shards(tmp_path)
    assert len(first) == 1 and len(list(tmp_path.glob("work_an/*/*"))) == 5  # features, crops, embeddings, thumbs,
    # content thumbnails (vlclean.copies)
    stamp = first[0].stat().st_mtime_ns
    # 2. killed while the features folder is being assembled: still no output, one hidden temp beside it
    kill_stage_at(tmp_path, "vlclean.encode:write_json", 0, "stages.analyze", analyze_argv())
    assert not (tmp_path / "features").exists() and not (tmp_path / "vl").exists()
    assert len(hidden_temps(tmp_path, "features")) == 1
    assert first[0].stat().st_mtime_ns == stamp and len(encoded_shards(tmp_path)) == n_shards
    # 3. the rerun reuses every encoded shard, cleans the temp, and equals an uninterrupted run
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("work_an/*/*")}
    assert analyze.main(analyze_argv()) == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("work_an/*/*")} == stamps
    assert hidden_temps(tmp_path, "features") == []
    features = pd.read_parquet("features/features.parquet")
    assert list(features["image_id"]) == list(RawDataset.open("raw").index()["image_id"])
    assert analyze.main(analyze_argv("fresh_features", "fresh_work")) == 0
    assert tree_digest(tmp_path / "features") == tree_digest(tmp_path / "fresh_features")
    # 4. a killed run with other params leaves the previous complete version in place
    before = tree_digest(tmp_path / "features")
    write_params(tmp_path / "params.yaml", {**many_units.params, "analyze": {**many_units.params["analyze"],
                                                                            "draft": False}})
    kill_stage_at(tmp_path, "vlclean.encode:write_json", 0, "stages.analyze", analyze_argv())
    assert tree_digest(tmp_path / "features") == before


def test_only_temporaries_of_dead_processes_on_this_host_are_removed(tmp_path: Path) -> None:
    from vlclean.storage import _owner, write_csv

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host, me = _owner().rsplit("-", 1)
    keep = [f".out.csv.{host}-{me}.live.tmp", f".out.csv.otherhost-{dead.stdout.strip()}.remote.tmp",
            f".other.csv.{host}-{dead.stdout.strip()}.x.tmp", "out.csv.notes"]
    gone = [f".out.csv.{host}-{dead.stdout.strip()}.abc.tmp", f".out.csv.{host}-{dead.stdout.strip()}.old"]
    for name in keep + gone:
        (tmp_path / name).mkdir() if name.endswith(".old") else (tmp_path / name).write_text("x")
    write_csv(tmp_path / "out.csv", pd.DataFrame({"a": [1]}))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "out.csv"])


def test_killed_before_a_file_output_is_renamed_leaves_only_a_hidden_temp(zoo: SimpleNamespace, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Single-file outputs (CSV, JSON, HTML) go through storage.atomic_path: killed with the content
    fully written but not yet renamed, the output path is absent; the rerun writes it and removes the
    dead run's temp file."""
    import shutil

    from stages import detect_leaks

    for name in ("raw", "features"):
        shutil.copytree(zoo.out / name, tmp_path / name)
    shutil.copy(zoo.root / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    argv = ["--params", "params.yaml", "--raw", "raw", "--features", "features", "--output", "leaks.csv"]
    kill_stage_at(tmp_path, "os:replace", 0, "stages.detect_leaks", argv)
    assert not (tmp_path / "leaks.csv").exists()
    temps = hidden_temps(tmp_path, "leaks.csv")
    assert len(temps) == 1 and temps[0].stat().st_size > 0
    assert detect_leaks.main(argv) == 0
    assert hidden_temps(tmp_path, "leaks.csv") == []
    assert (tmp_path / "leaks.csv").read_bytes() == (zoo.out / "manifests" / "zoo_leaks_report.csv").read_bytes()


# -- untrusted names from a Hub dataset never escape the export folder -----------------------------
def _hub_with_paths(root: Path, names: list[str], paths: list[str]) -> Path:
    """Hub-layout shards (conftest's generator) whose first train rows carry the given image paths."""
    write_hub_shards(root, {"train": 12, "val": 4}, names=names, shards_per_split=1)
    shard = next((root / "data").glob("train-*.parquet"))
    table = pq.read_table(shard)
    images = table.column("image").to_pylist()
    for i, path in enumerate(paths):
        images[i]["path"] = path
    table = table.set_column(0, "image", pa.array(images, type=table.schema.field("image").type))
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), shard)
    return root


def _files_outside(root: Path, inside: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_relative_to(inside)}


def test_hub_class_and_file_names_never_escape_the_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """ClassLabel names and image paths with '..', '/', '\\' and absolute paths are reduced to one safe path
    component; a name that cannot be made safe ('..') makes export_images refuse, writing nothing."""
    from stages import download, export_images

    hub = _hub_with_paths(tmp_path / "hub", ["../../etc", "/abs/class", "ok"],
                          ["../../escape.JPEG", "/etc/passwd.JPEG", "a\\..\\..\\win.JPEG", "x/../../../up.JPEG"])
    params = write_params(tmp_path / "params.yaml", {"download": {"source": "hf", "hf": {"local_dir": str(hub)}},
                                                      "runtime": {"download": {"workers": 1}}})
    box = tmp_path / "box"
    box.mkdir()
    common = ["--params", str(params), "--metrics", str(box / "m.json"), "--plots", str(box / "plots")]
    assert download.main([*common, "--out", str(box / "raw"), "--work_dir", str(box / "work")]) == 0
    index = RawDataset.open(box / "raw").index()
    assert {"escape.JPEG", "passwd.JPEG", "up.JPEG"} <= set(index["file_name"])
    before = _files_outside(tmp_path, tmp_path / "out")
    assert export_images.main(["--raw", str(box / "raw"), "--out", str(tmp_path / "out")]) == 0
    assert _files_outside(tmp_path, tmp_path / "out") == before  # nothing written beside or above --out
    written = [p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(written) == len(index)
    assert all(len(p.parts) == 3 and ".." not in p.parts for p in written)  # <split>/<class>/<file>
    assert {p.parts[1] for p in written} <= {".._.._etc", "_abs_class", "ok"}
    # a name that is nothing but '..' cannot be sanitised: the export is refused as a whole
    hub2 = _hub_with_paths(tmp_path / "hub2", ["..", "ok"], [".."])
    params2 = write_params(tmp_path / "params2.yaml", {"download": {"source": "hf", "hf": {"local_dir": str(hub2)}},
                                                        "runtime": {"download": {"workers": 1}}})
    assert download.main(["--params", str(params2), "--metrics", str(box / "m2.json"), "--plots", str(box / "p2"),
                          "--out", str(box / "raw2"), "--work_dir", str(box / "work2")]) == 0
    capsys.readouterr()
    before = _files_outside(tmp_path, tmp_path / "out2")
    assert export_images.main(["--raw", str(box / "raw2"), "--out", str(tmp_path / "out2")]) == 2
    assert "'..'" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists() and _files_outside(tmp_path, tmp_path / "out2") == before
