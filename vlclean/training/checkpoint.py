"""Resumable state: the run fingerprint that keys a checkpoint, the RNG states, and the per-epoch
checkpoint itself (written atomically, restored only into the run it belongs to)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vlclean.params import TrainParams
from vlclean.storage import atomic_path

CHECKPOINT_FORMAT = 1


class TrainState(Protocol):
    """What a checkpoint holds besides the RNG states (``loop._Trainer`` is one)."""

    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any


# -- run keys, RNG states -----------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_fingerprint(params: TrainParams, *, seed: int, files: Sequence[str | Path], world_size: int,
                    device_type: str, data_seed: int | None = None) -> str:
    """A key for resumable state: results-relevant params, seeds, input file hashes, world size, device type."""
    desc = {"params": params.results_key(), "seed": seed, "files": [file_sha256(f) for f in files],
            **({} if data_seed is None or data_seed == seed else {"data_seed": data_seed}),
            "world_size": world_size, "device": device_type, "format": CHECKPOINT_FORMAT}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state() -> dict:
    import torch

    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])




@dataclass(frozen=True)
class Resumed:
    start_epoch: int = 1
    history: list[dict] = field(default_factory=list)
    wandb_id: str | None = None


def load_checkpoint(path: Path, fp: str, trainer: TrainState) -> Resumed:
    """Restore ``trainer`` and the RNG states from the checkpoint at ``path`` when it belongs to run ``fp``
    (same format and fingerprint); otherwise leave everything as built and start at epoch 1."""
    import torch

    if not path.exists():
        return Resumed()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fp:
        return Resumed()
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return Resumed(int(state["epoch"]) + 1, list(state["history"]), state.get("wandb_id"))


def save_checkpoint(path: Path, *, fp: str, epoch: int, trainer: TrainState, history: list[dict],
                    wandb_id: str | None) -> None:
    """Write everything :func:`load_checkpoint` restores, atomically (a kill leaves the previous one)."""
    import torch

    state = {"format": CHECKPOINT_FORMAT, "fingerprint": fp, "epoch": epoch, "live_step": epoch,
             "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
             "scheduler": trainer.scheduler.state_dict(), "scaler": trainer.scaler.state_dict(),
             "rng": _rng_state(), "history": history, "wandb_id": wandb_id}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
