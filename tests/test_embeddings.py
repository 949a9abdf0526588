"""Tests for vlclean.embeddings: offline weights, sensible ImageNet predictions, shard I/O.

Every test runs with sockets disabled, so a code path that tried to download weights would fail.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image
from sklearn.datasets import load_sample_image
from torchvision.models import ResNet18_Weights, resnet18

from vlclean.embeddings import (
    MODEL_CHOICES,
    Embedder,
    ModelWeightsError,
    build_embedder,
    embed_stream,
    map_state_dict_by_position,
    read_embedding_shard,
    write_embedding_shard,
)
from vlclean.errors import ParamsError, SchemaError

# ImageNet-1k class indices.
MILITARY_UNIFORM, SUIT, BOW_TIE = 652, 834, 457
PALACE, BELL_COTE, MONASTERY, STUPA = 698, 442, 663, 832
DAISY = 985


class NetworkAttempted(ConnectionError):
    """What an offline machine raises, so code under test sees a realistic failure."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkAttempted(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def lite0() -> Embedder:
    return build_embedder("efficientnet_lite0", input_size=224, batch_size=8)


@pytest.fixture()
def hopper() -> Image.Image:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return img.convert("RGB")


@pytest.fixture()
def china() -> Image.Image:
    return Image.fromarray(load_sample_image("china.jpg"))


@pytest.fixture()
def flower() -> Image.Image:
    return Image.fromarray(load_sample_image("flower.jpg"))


@pytest.fixture()
def thread_count() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def top5(logits: np.ndarray) -> list[list[int]]:
    return [list(map(int, np.argsort(-row)[:5])) for row in logits]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def save_resnet18_state(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


# --- efficientnet_lite0 -------------------------------------------------------------------------


def test_lite0_loads_packaged_weights(lite0: Embedder) -> None:
    assert lite0.name == "efficientnet_lite0"
    assert lite0.dim == 1280
    assert lite0.spec.weights.endswith("efficientnet-lite0-57934424.pth")
    assert lite0.has_classifier


def test_lite0_classifies_sample_photos(
    lite0: Embedder, hopper: Image.Image, china: Image.Image, flower: Image.Image
) -> None:
    logits = lite0.logits([hopper, china, flower])
    assert logits.shape == (3, 1000)
    hopper_top, china_top, flower_top = top5(logits)
    assert hopper_top[0] == MILITARY_UNIFORM, hopper_top
    assert SUIT in hopper_top
    assert china_top[0] == PALACE, china_top
    assert {BELL_COTE, MONASTERY} <= set(china_top)
    assert flower_top[0] == DAISY, flower_top


def test_lite0_small_input_still_recognises_photos(hopper: Image.Image, china: Image.Image) -> None:
    small = build_embedder(input_size=96)
    hopper_top, china_top = top5(small.logits([hopper, china]))
    assert {MILITARY_UNIFORM, SUIT, BOW_TIE} & set(hopper_top[:2])
    assert {PALACE, BELL_COTE, MONASTERY, STUPA} & set(china_top[:2])


def test_embeddings_are_unit_norm_float32(lite0: Embedder, hopper: Image.Image, china: Image.Image) -> None:
    vectors = lite0.embed([hopper, china, hopper.convert("L"), hopper.convert("RGBA"), china.convert("P")])
    assert vectors.shape == (5, 1280)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_grayscale_input_matches_its_rgb_conversion(lite0: Embedder, hopper: Image.Image) -> None:
    gray = hopper.convert("L")
    direct, converted = lite0.embed([gray, gray.convert("RGB")])
    np.testing.assert_array_equal(direct, converted)


def test_transparent_pixels_become_white(lite0: Embedder) -> None:
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    a, b = lite0.embed([transparent, white])
    np.testing.assert_array_equal(a, b)


def test_same_image_gives_identical_vectors(lite0: Embedder, hopper: Image.Image, china: Image.Image) -> None:
    first = lite0.embed([hopper, china, hopper])
    again = lite0.embed([hopper, china, hopper])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first[0], first[2], atol=1e-6)


def test_empty_input_gives_empty_arrays(lite0: Embedder) -> None:
    assert lite0.embed([]).shape == (0, 1280)
    assert lite0.logits([]).shape == (0, 1000)


def test_edited_copy_is_closer_than_unrelated_photos(
    lite0: Embedder, hopper: Image.Image, china: Image.Image, flower: Image.Image
) -> None:
    recompressed = jpeg_roundtrip(hopper, quality=40)
    flipped = hopper.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    original, recompressed_v, flipped_v, china_v, flower_v = lite0.embed([hopper, recompressed, flipped, china, flower])
    unrelated = max(cosine(original, china_v), cosine(original, flower_v))
    assert cosine(original, recompressed_v) > 0.95
    assert cosine(original, flipped_v) > unrelated + 0.3


def test_batching_does_not_change_results(
    lite0: Embedder, hopper: Image.Image, china: Image.Image, flower: Image.Image
) -> None:
    images = [hopper, china, flower]
    batched = lite0.embed(images)
    one_by_one = np.concatenate([lite0.embed([img]) for img in images])
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)


def test_squash_and_center_crop_differ_on_wide_images(china: Image.Image) -> None:
    crop = build_embedder(input_size=64, resize="center_crop").embed([china])[0]
    squash = build_embedder(input_size=64, resize="squash").embed([china])[0]
    assert 0.5 < cosine(crop, squash) < 0.999


def test_lite0_weights_that_do_not_line_up_are_refused(tmp_path: Path) -> None:
    path = save_resnet18_state(tmp_path / "resnet18.pth")
    with pytest.raises(ModelWeightsError, match=r"holds 122 tensors but the architecture expects 296"):
        build_embedder("efficientnet_lite0", weights_path=path)


def test_position_mapping_names_the_first_mismatch() -> None:
    source = {"_conv.weight": torch.zeros(4, 3), "_conv.bias": torch.zeros(5)}
    target = {"conv.weight": torch.ones(4, 3), "conv.bias": torch.ones(4)}
    with pytest.raises(ModelWeightsError) as info:
        map_state_dict_by_position(source, target, source_name="w.pth")
    message = str(info.value)
    assert "#1" in message and "'_conv.bias'" in message and "(5,)" in message
    assert "'conv.bias'" in message and "(4,)" in message
    target["conv.bias"] = torch.ones(5)
    mapped = map_state_dict_by_position(source, target, source_name="w.pth")
    assert list(mapped) == ["conv.weight", "conv.bias"]
    assert mapped["conv.bias"] is source["_conv.bias"]


# --- resnet -------------------------------------------------------------------------------------


def test_resnet18_loads_local_weights(tmp_path: Path, hopper: Image.Image, china: Image.Image) -> None:
    path = save_resnet18_state(tmp_path / "resnet18.pth")
    embedder = build_embedder("resnet18", weights_path=path, input_size=64, batch_size=2)
    vectors = embedder.embed([hopper, china, hopper])
    assert embedder.dim == 512 and embedder.spec.weights == str(path)
    assert vectors.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.logits([hopper]).shape == (1, 1000)


def test_resnet18_without_weights_refuses_without_network() -> None:
    with pytest.raises(ModelWeightsError) as info:
        build_embedder("resnet18")
    message = str(info.value)
    assert "weights_path" in message and "allow_download=True" in message


def test_resnet18_download_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_download(self: ResNet18_Weights, **kwargs: object) -> dict[str, torch.Tensor]:
        calls.append(self.url)
        return resnet18(weights=None).state_dict()

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", fake_download)
    embedder = build_embedder("resnet18", allow_download=True, input_size=32)
    assert calls == [ResNet18_Weights.IMAGENET1K_V1.url]
    assert embedder.spec.weights == "torchvision:ResNet18_Weights.IMAGENET1K_V1"


def test_resnet18_failed_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: torchvision must try to download
    with pytest.raises(ModelWeightsError, match="download it elsewhere and pass weights_path") as info:
        build_embedder("resnet18", allow_download=True, input_size=32)
    assert isinstance(info.value.__cause__, OSError)


def test_resnet_weights_of_the_wrong_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ModelWeightsError, match="does not fit torchvision resnet18"):
        build_embedder("resnet18", weights_path=path)


@pytest.mark.parametrize("content", [b"", b"not a pickle", None])
def test_unreadable_weights_file_is_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelWeightsError, match=str(path)):
        build_embedder("resnet18", weights_path=path)


def test_weights_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ModelWeightsError, match="expected a state dict"):
        build_embedder("resnet18", weights_path=path)


# --- pixels -------------------------------------------------------------------------------------


def test_pixels_embedding_works_offline(hopper: Image.Image, china: Image.Image) -> None:
    embedder = build_embedder("pixels")
    vectors = embedder.embed([hopper, china, hopper, jpeg_roundtrip(hopper, quality=40)])
    assert embedder.dim == 305 and vectors.shape == (4, 305) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert cosine(vectors[0], vectors[3]) > 0.99 > cosine(vectors[0], vectors[1])
    assert not embedder.has_classifier
    with pytest.raises(ParamsError, match="no classifier"):
        embedder.logits([hopper])


def test_pixels_distinguishes_flat_colours() -> None:
    colours = [(0, 0, 0), (255, 255, 255), (200, 30, 30), (127, 127, 127), (128, 128, 128)]
    vectors = build_embedder("pixels").embed([Image.new("RGB", (8, 8), c) for c in colours])
    black, white, red, grey_low, grey_high = vectors
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(black, white) < 0 and cosine(red, white) < 0.9
    assert cosine(grey_low, grey_high) > 0.99, "near mid-grey flat images keep a stable direction"


def test_pixels_refuses_weights(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="takes no weights"):
        build_embedder("pixels", weights_path=tmp_path / "w.pth")


# --- options ------------------------------------------------------------------------------------


def test_unknown_model_lists_allowed_choices() -> None:
    with pytest.raises(ParamsError) as info:
        build_embedder("vit_huge")
    message = str(info.value)
    assert "'vit_huge'" in message
    assert all(choice in message for choice in MODEL_CHOICES)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"input_size": 8}, "input_size must be an integer >= 32, got 8"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"threads": 0}, "threads must be a positive integer or None, got 0"),
        ({"device": "toaster"}, "'toaster' is not a torch device"),
        ({"resize": "stretch"}, "unknown resize mode 'stretch'; allowed: center_crop, squash"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], pattern: str) -> None:
    with pytest.raises(ParamsError, match=pattern):
        build_embedder("efficientnet_lite0", **options)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_without_gpu_is_refused() -> None:
    with pytest.raises(ParamsError, match="CUDA is not available"):
        build_embedder("efficientnet_lite0", device="cuda")


def test_threads_option_sets_torch_threads(thread_count: None) -> None:
    build_embedder("efficientnet_lite0", input_size=32, threads=1)
    assert torch.get_num_threads() == 1


# --- streaming and shards -----------------------------------------------------------------------


def test_embed_stream_yields_fixed_size_shards_in_order(hopper: Image.Image, china: Image.Image) -> None:
    embedder = build_embedder("pixels", batch_size=3)
    images = [hopper.rotate(angle) if i % 2 else china.rotate(angle) for i, angle in enumerate(range(0, 100, 10))]
    shards = list(embed_stream(iter(images), embedder, shard_size=4, dtype=np.float16))
    assert [s.shape for s in shards] == [(4, 305), (4, 305), (2, 305)]
    assert all(s.dtype == np.float16 for s in shards)
    np.testing.assert_allclose(np.concatenate(shards), embedder.embed(images), atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(shards).astype(np.float32), axis=1), 1.0, atol=1e-3)


def test_embed_stream_of_nothing_yields_nothing() -> None:
    assert list(embed_stream(iter([]), build_embedder("pixels"))) == []


@pytest.mark.parametrize(("options", "pattern"), [({"shard_size": 0}, "shard_size"), ({"dtype": np.int8}, "int8")])
def test_embed_stream_rejects_bad_options(options: dict[str, object], pattern: str) -> None:
    with pytest.raises(ParamsError, match=pattern):
        next(embed_stream(iter([]), build_embedder("pixels"), **options))  # type: ignore[arg-type]


def test_write_embedding_shard_roundtrip_leaves_no_temp_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    first = rng.standard_normal((5, 8)).astype(np.float16)
    second = rng.standard_normal((3, 8)).astype(np.float32)
    path = tmp_path / "embeddings" / "shard-00000.npy"
    assert write_embedding_shard(path, first) == path
    assert path.stat().st_mode & 0o777 == 0o644
    np.testing.assert_array_equal(read_embedding_shard(path), first)
    write_embedding_shard(path, second)
    np.testing.assert_array_equal(read_embedding_shard(path, mmap=True), second)
    assert sorted(p.name for p in path.parent.iterdir()) == ["shard-00000.npy"]


@pytest.mark.parametrize("bad", [np.zeros(4, dtype=np.float32), np.zeros((2, 2), dtype=np.int64)])
def test_write_embedding_shard_rejects_bad_arrays(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(SchemaError, match="expected a 2-D float16/float32 array"):
        write_embedding_shard(tmp_path / "shard.npy", bad)
    assert list(tmp_path.iterdir()) == []


def test_read_embedding_shard_names_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "shard.npy"
    path.write_bytes(b"garbage")
    with pytest.raises(SchemaError, match=r"shard\.npy: cannot read embedding shard"):
        read_embedding_shard(path)


def test_embedding_threads_leave_the_decoders_their_cores() -> None:
    from vlclean.embeddings import embedding_threads

    assert embedding_threads("auto", 2, cores=2) == 1  # 2 decode workers on 2 cores: torch gets 1
    assert embedding_threads("auto", 4, cores=16) == 12
    assert embedding_threads("auto", 1, cores=2) == 2  # one worker decodes in-process, between batches
    assert embedding_threads("auto", 8, cores=4) == 1
    assert embedding_threads(3, 2, cores=2) == 3


def test_torch_threads_are_restored_after_the_embedding_pass() -> None:
    import torch

    from vlclean.embeddings import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before  # process-wide: a later in-process training keeps its threads
