"""Tests of vlclean.features: agreement with imagehash, mirror hashes, draft accuracy, invalid images,
schema dtypes, worker determinism and quality statistics. Images are synthesised in memory."""

from __future__ import annotations

import io
import struct

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from vlclean.features import (
    HASH_COLUMNS,
    compute_features,
    compute_hashes,
    decode_for_features,
    dhash_batch,
    draft_box,
    features_of_image,
    hamming_distance,
    hash_agreement,
    hash_to_hex,
    hex_to_hash,
    make_pool,
    pack_bits,
    phash_batch,
)
from vlclean.images import ImageDecodeError, load_rgb
from vlclean.schema import FEATURES, empty_frame, to_arrow, validate_features

# --------------------------------------------------------------------------------------------------
# In-memory fixtures
# --------------------------------------------------------------------------------------------------


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth colour field with edges and mild noise: hashes behave as on photos (no ties)."""
    coarse = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8))
    pixels = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 40.0 * (np.sin(xx / rng.uniform(3, 12) + yy / rng.uniform(5, 20)) > 0)
    pixels = pixels + stripes[..., None] + rng.normal(0.0, 4.0, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def imagehash_value(function: object, image: Image.Image) -> int:
    return hex_to_hash(str(function(image)))  # type: ignore[operator]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def photos(rng: np.random.Generator) -> list[Image.Image]:
    sizes = [(160, 120), (97, 143), (201, 77), (64, 64), (333, 250), (50, 300), (129, 131), (256, 190)]
    return [photo_like(rng, w, h) for w, h in sizes * 3]


@pytest.fixture
def png_items(photos: list[Image.Image]) -> list[tuple[str, bytes]]:
    return [(f"png{i}", encode(img, "PNG")) for i, img in enumerate(photos)]


@pytest.fixture
def jpeg_items(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """100 JPEGs, 140..320 px a side, quality 70..95; every 10th carries an EXIF orientation."""
    items = []
    for i in range(100):
        image = photo_like(rng, int(rng.integers(140, 320)), int(rng.integers(140, 320)))
        exif = Image.Exif()
        if i % 10 == 0:
            exif[0x0112] = 1 + (i // 10) % 8
        items.append((f"jpg{i}", encode(image, "JPEG", quality=int(rng.integers(70, 96)), exif=exif)))
    return items


# --------------------------------------------------------------------------------------------------
# Exactness against imagehash
# --------------------------------------------------------------------------------------------------


def test_hashes_equal_imagehash_exactly_on_png_without_draft(png_items: list[tuple[str, bytes]]) -> None:
    frame = compute_features(png_items, draft=False)
    for (_, data), row in zip(png_items, frame.itertuples(), strict=True):
        image = load_rgb(data)
        assert row.phash == imagehash_value(imagehash.phash, image)
        assert row.dhash == imagehash_value(imagehash.dhash, image)
        assert hash_to_hex(row.phash) == str(imagehash.phash(image))


def test_mirror_hashes_equal_hashes_of_the_mirrored_image(png_items: list[tuple[str, bytes]]) -> None:
    frame = compute_features(png_items, draft=False)
    mirrored_items = [(f"m-{image_id}", encode(ImageOps.mirror(load_rgb(data)), "PNG")) for image_id, data in png_items]
    mirrored = compute_features(mirrored_items, draft=False)
    for (_, data), row in zip(png_items, frame.itertuples(), strict=True):
        flipped = ImageOps.mirror(load_rgb(data))
        assert row.phash_mirror == imagehash_value(imagehash.phash, flipped)
        assert row.dhash_mirror == imagehash_value(imagehash.dhash, flipped)
    assert (frame["phash_mirror"].to_numpy() == mirrored["phash"].to_numpy()).all()
    assert (mirrored["phash_mirror"].to_numpy() == frame["phash"].to_numpy()).all()


def test_phash_batch_mirror_is_the_hash_of_flipped_arrays(rng: np.random.Generator) -> None:
    arrays = rng.uniform(0, 255, size=(50, 32, 32))
    plain, mirror = phash_batch(arrays)
    flipped, flipped_mirror = phash_batch(arrays[:, :, ::-1])
    assert plain.dtype == np.uint64 and plain.shape == (50,)
    assert (mirror == flipped).all() and (flipped_mirror == plain).all()
    small = rng.uniform(0, 255, size=(50, 8, 9))
    d_plain, d_mirror = dhash_batch(small)
    assert (d_mirror == dhash_batch(small[:, :, ::-1])[0]).all() and (d_plain != d_mirror).any()


def test_hash_bits_run_from_most_significant() -> None:
    bits = np.zeros((2, 64), dtype=bool)
    bits[0, 0] = True
    bits[1, 63] = True
    assert pack_bits(bits).tolist() == [1 << 63, 1]
    assert hash_to_hex(1 << 63) == "8000000000000000" and hex_to_hash("8000000000000000") == 1 << 63
    assert hamming_distance(np.uint64(0b1011), np.uint64(0b0001)) == 2


def test_batch_functions_name_the_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 32, 32\), got \(4, 32, 31\)"):
        phash_batch(np.zeros((4, 32, 31)))
    with pytest.raises(ValueError, match=r"\(N, 8, 9\), got \(8, 9\)"):
        dhash_batch(np.zeros((8, 9)))
    with pytest.raises(ValueError, match="equally long"):
        hash_agreement(np.zeros(3, np.uint64), np.zeros(4, np.uint64))


# --------------------------------------------------------------------------------------------------
# Draft paths
# --------------------------------------------------------------------------------------------------


def test_draft_phash_agrees_with_imagehash_on_jpegs(jpeg_items: list[tuple[str, bytes]]) -> None:
    reference = np.array([imagehash_value(imagehash.phash, load_rgb(data)) for _, data in jpeg_items], dtype=np.uint64)
    fast = compute_hashes(jpeg_items, draft=True)
    full = compute_features(jpeg_items, draft=True)
    assert list(fast.columns) == list(HASH_COLUMNS)
    assert hash_agreement(fast["phash"].to_numpy(), reference, max_distance=4) >= 0.99
    assert hash_agreement(full["phash"].to_numpy(), reference, max_distance=4) >= 0.99
    exact = compute_hashes(jpeg_items, draft=False)
    assert (exact["phash"].to_numpy() == reference).all()


def test_draft_path_handles_every_exif_orientation(rng: np.random.Generator) -> None:
    base = photo_like(rng, 301, 203)  # not a multiple of the draft scales: the last pixel is partial
    items = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        items.append((f"o{orientation}", encode(base, "JPEG", quality=92, exif=exif)))
    frame = compute_hashes(items, draft=True)
    for (_, data), value in zip(items, frame["phash"], strict=True):
        oriented = load_rgb(data)
        assert hamming_distance(value, imagehash_value(imagehash.phash, oriented)) <= 4
    assert (frame["valid"]).all()


def test_draft_box_follows_the_orientation() -> None:
    # 101 x 61 stored, decoded at 1/4: 26 x 16 pixels, of which the picture spans 25.25 x 15.25.
    assert draft_box((101, 61), 1, (26, 16)) == (0.0, 0.0, 25.25, 15.25)
    assert draft_box((101, 61), 2, (26, 16)) == (0.75, 0.0, 26.0, 15.25)
    assert draft_box((101, 61), 3, (26, 16)) == (0.75, 0.75, 26.0, 16.0)
    assert draft_box((101, 61), 6, (16, 26)) == (0.75, 0.0, 16.0, 25.25)
    assert draft_box((101, 61), 8, (16, 26)) == (0.0, 0.75, 15.25, 26.0)
    assert draft_box((100, 60), 1, (100, 60)) == (0.0, 0.0, 100.0, 60.0)  # not drafted
    assert draft_box((100, 60), 1, (7, 7)) == (0.0, 0.0, 7.0, 7.0)  # unexplained sizes: whole image


# --------------------------------------------------------------------------------------------------
# Invalid images, schema, workers
# --------------------------------------------------------------------------------------------------


def test_invalid_bytes_give_invalid_rows_with_the_reason(png_items: list[tuple[str, bytes]]) -> None:
    truncated = png_items[1][1][:200]
    bad = [("empty", b""), ("text", b"not an image at all"), ("truncated", truncated)]
    items = [png_items[0], *bad, png_items[2]]
    frame = compute_features(items)
    hashes = compute_hashes(items)
    assert frame["image_id"].tolist() == [image_id for image_id, _ in items]
    assert frame["valid"].tolist() == [True, False, False, False, True]
    for image_id, data in bad:
        with pytest.raises(ImageDecodeError) as caught:
            load_rgb(data)
        row = frame.set_index("image_id").loc[image_id]
        assert row["error"] == caught.value.reason
        assert hashes.set_index("image_id").loc[image_id, "error"] == caught.value.reason
        assert row[["phash", "dhash", "phash_mirror", "dhash_mirror"]].tolist() == [0, 0, 0, 0]
        assert np.isnan(row[["brightness", "blur", "contrast", "aspect_ratio"]].astype(float)).all()
        assert row["file_size"] == len(data) and len(row["sha256"]) == 64
    assert frame["error"].isna().tolist() == [True, False, False, False, True]


def test_pillow_size_limit_gives_an_invalid_row() -> None:
    # A JPEG header claiming 10000 x 20000 px: Pillow refuses it inside Image.open.
    data = bytearray(encode(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20000, 10000)
    for frame in (compute_features([("bomb", bytes(data))]), compute_hashes([("bomb", bytes(data))])):
        assert not frame.at[0, "valid"] and frame.at[0, "error"].startswith("decompression bomb")


def test_frame_matches_the_schema(png_items: list[tuple[str, bytes]]) -> None:
    frame = compute_features([*png_items[:3], ("bad", b"xx")])
    validate_features(frame)
    assert list(frame.columns) == list(FEATURES)
    assert frame.dtypes.to_dict() == empty_frame(FEATURES).dtypes.to_dict()
    table = to_arrow(frame, FEATURES, "features")
    assert str(table.schema.field("phash").type) == "uint64"
    empty = compute_features([])
    assert len(empty) == 0 and empty.dtypes.to_dict() == empty_frame(FEATURES).dtypes.to_dict()


def test_two_workers_give_the_same_frame_as_one(photos: list[Image.Image], png_items: list[tuple[str, bytes]]) -> None:
    jpegs = [(f"jpg{i}", encode(image, "JPEG", quality=85)) for i, image in enumerate(photos)]
    items = [*png_items[:8], ("bad", b"nope"), *jpegs[:13]]
    one = compute_features(items, workers=1, chunk_size=4)
    two = compute_features(iter(items), workers=2, chunk_size=4)  # a stream, not a list
    pd.testing.assert_frame_equal(one, two)
    with make_pool(2) as pool:  # one pool reused by several calls
        pd.testing.assert_frame_equal(compute_features(items, workers=2, chunk_size=3, pool=pool), one)
        pd.testing.assert_frame_equal(compute_hashes(items, workers=2, pool=pool), compute_hashes(items))


def test_options_and_items_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        compute_features([], workers=0)
    with pytest.raises(ValueError, match="chunk_size"):
        compute_hashes([], chunk_size=0)
    with pytest.raises(TypeError, match="image 'a': data must be bytes, got str"):
        compute_features([("a", "not bytes")])  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------------
# Digests, sizes and quality statistics
# --------------------------------------------------------------------------------------------------


def test_digests_sizes_and_decoded_image(photos: list[Image.Image]) -> None:
    image = photos[1]
    png = encode(image, "PNG")
    png_other = encode(image, "PNG", compress_level=1)
    row_png, rgb = decode_for_features(png, image_id="a")
    row_other = features_of_image("b", png_other)
    assert png != png_other and row_png["sha256"] != row_other["sha256"]
    assert row_png["pixel_md5"] == row_other["pixel_md5"]  # same pixels, different bytes
    assert rgb is not None and rgb.tobytes() == load_rgb(png).tobytes()
    assert (row_png["width"], row_png["height"]) == image.size
    assert row_png["aspect_ratio"] == pytest.approx(image.width / image.height)
    assert row_png["file_size"] == len(png)
    assert decode_for_features(b"junk", image_id="c")[1] is None


def test_quality_statistics_are_sane(photos: list[Image.Image]) -> None:
    image = photos[4]  # 333 x 250
    variants = {
        "orig": image,
        "dark": ImageEnhance.Brightness(image).enhance(0.4),
        "blurred": image.filter(ImageFilter.GaussianBlur(3)),
        "flat": Image.new("RGB", (120, 80), (90, 90, 90)),
        "x2": image.resize((666, 500), Image.Resampling.BICUBIC),
        "x3": image.resize((999, 750), Image.Resampling.BICUBIC),
    }
    frame = compute_features([(name, encode(img, "PNG")) for name, img in variants.items()]).set_index("image_id")
    assert frame.at["dark", "brightness"] < 0.6 * frame.at["orig", "brightness"]
    assert frame.at["blurred", "blur"] < 0.2 * frame.at["orig", "blur"]
    assert frame.at["flat", "brightness"] == pytest.approx(90.0)
    assert frame.at["flat", "contrast"] == 0.0 and frame.at["flat", "blur"] == 0.0
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    assert frame.at["orig", "brightness"] == pytest.approx(gray.mean(), rel=1e-5)
    assert frame.at["orig", "contrast"] == pytest.approx(gray.std(), rel=1e-5)
    # The blur score is measured at a shorter side of 256 px, so the same (upscaled, hence blurrier)
    # picture scores alike at 2x and 3x, where a full-size Laplacian would differ about 2x.
    assert frame.at["x2", "blur"] < frame.at["orig", "blur"]
    assert frame.at["x3", "blur"] == pytest.approx(frame.at["x2", "blur"], rel=0.15)
    assert (frame["width"].to_numpy() > 0).all()
