"""The classifier: ResNet-18 built, saved and loaded; batches normalised and augmented on the device;
predictions over a dataset."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlclean.errors import DatasetError
from vlclean.images import IMAGENET_MEAN, IMAGENET_STD
from vlclean.storage import atomic_path
from vlclean.training.data import Batches, CachedImages, ShardImages, make_loader

if TYPE_CHECKING:
    import torch

SMALL_STEM_MAX_SIZE = 64  # at or below: CIFAR-style stem (3x3 conv, stride 1, no max-pool)
MODEL_FORMAT = 1


# -- model ---------------------------------------------------------------------------------------
def small_stem(stem: str, image_size: int) -> bool:
    """Whether ``stem`` (auto | small | imagenet) means the CIFAR-style stem at ``image_size``."""
    return stem == "small" or (stem == "auto" and image_size <= SMALL_STEM_MAX_SIZE)


def build_model(num_classes: int, *, small: bool) -> torch.nn.Module:
    """torchvision ResNet-18 without pretrained weights; with ``small`` the CIFAR-style stem
    (3x3 conv, stride 1, no max-pool: 16x more activations than the ImageNet stem at the same size)."""
    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if small:
        model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        torch.nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = torch.nn.Identity()
    return model


def save_model(path: str | Path, model: torch.nn.Module, *, num_classes: int, image_size: int, small: bool,
               classes: Sequence[str], wandb_run: dict | None = None) -> None:
    """Write the model file atomically: weights plus what :func:`load_model` needs to rebuild it, and the
    W&B run it was trained in, when there was one (so ``evaluate`` can add its results there)."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "arch": "resnet18", "small_stem": bool(small),
               "num_classes": num_classes, "image_size": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
               "classes": list(classes), "state_dict": state}
    if wandb_run is not None:  # only then: without W&B the file is byte-for-byte what it always was
        payload["wandb_run"] = dict(wandb_run)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # torch.nn.Module
    num_classes: int
    image_size: int
    classes: list[str]
    wandb_run: dict | None = None  # the W&B run the model was trained in (see vlclean.tracking)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model written by :func:`save_model` (evaluation mode, on ``device``)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"model file {path} does not exist (run the train stage)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a corrupt or foreign file
        raise DatasetError(f"model file {path} cannot be read: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT or payload.get("arch") != "resnet18":
        raise DatasetError(f"model file {path} is not a vlclean ResNet-18 model (format {MODEL_FORMAT})")
    model = build_model(payload["num_classes"], small=bool(payload["small_stem"]))
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return LoadedModel(model, payload["num_classes"], payload["image_size"], list(payload["classes"]),
                       payload.get("wandb_run"))


# -- batches on the device -----------------------------------------------------------------------
def normalise(x_u8: torch.Tensor) -> torch.Tensor:
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=x_u8.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x_u8.device).view(1, 3, 1, 1)
    return (x_u8.float() / 255.0 - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, *, padding: int, hflip: bool) -> torch.Tensor:
    """Random crop with ``padding`` (reflect) and optional horizontal flip of a normalised batch ``[B,3,S,S]``."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding), mode="reflect")
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
        x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def autocast(device: torch.device, amp: bool, dtype_name: str):
    import torch

    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype_name))


@dataclass
class Predictions:
    """Per-image results in dataset order: predicted label, true label, cross-entropy loss."""

    positions: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    loss: np.ndarray


def predict(
    model: torch.nn.Module, dataset: ShardImages | CachedImages, *, device: torch.device, batch_size: int,
    workers: int = 0, amp: bool = False, amp_dtype: str = "bfloat16", positions: Sequence[int] | None = None,
) -> Predictions:
    """Run ``model`` over ``positions`` of ``dataset`` (default all) in order; no gradients."""
    import torch
    import torch.nn.functional as F

    order = list(range(len(dataset))) if positions is None else list(positions)
    out_pos, out_pred, out_lab, out_loss = [], [], [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for x, y, pos in make_loader(dataset, Batches(order, batch_size), workers=workers,
                                     pin_memory=device.type == "cuda"):
            x, y = normalise(x.to(device, non_blocking=True)), y.to(device)
            with autocast(device, amp, amp_dtype):
                logits = model(x)
            logits = logits.float()
            out_loss.append(F.cross_entropy(logits, y, reduction="none").cpu().numpy())
            out_pred.append(logits.argmax(1).cpu().numpy())
            out_lab.append(y.cpu().numpy())
            out_pos.append(pos.numpy())
    model.train(was_training)

    def cat(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return Predictions(cat(out_pos, np.int64), cat(out_pred, np.int64), cat(out_lab, np.int64),
                       cat(out_loss, np.float64))
