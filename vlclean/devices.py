"""Where torch runs: one rule for turning a ``device`` param into a :class:`torch.device`.

``auto`` means this process's GPU when CUDA is available, else the CPU. Any torch device string is
accepted otherwise (``cpu``, ``cuda``, ``cuda:1``, ``mps``); a bare ``cuda`` means this process's GPU,
``cuda:<local_rank mod GPUs>``, so every torchrun process gets its own. Asking for a device that is not
there is an error naming the params key, never a silent fall-back to the CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlclean.errors import ParamsError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str, *, key: str | None = None, local_rank: int = 0) -> torch.device:
    """The :class:`torch.device` for ``device`` (see the module doc); ``key`` names the param in errors."""
    import torch

    where = f"params key '{key}': " if key else ""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ParamsError(f"{where}device {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:0')") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError(f"{where}device {device!r} requested but CUDA is not available; use 'cpu'")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank % torch.cuda.device_count())
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ParamsError(f"{where}device {device!r} requested but MPS is not available; use 'cpu'")
    return resolved
