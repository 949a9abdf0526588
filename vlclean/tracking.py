"""Experiment tracking: DVCLive always, Weights & Biases when asked (an optional extra).

One W&B run per training run holds everything the team compares runs by:

* ``train`` (rank 0) opens the run with the params as its config and logs every epoch's training and
  validation metrics (``train/*``, ``val/*``, ``lr``, throughput) at ``step = epoch``. A resumed run
  reopens the same W&B run (its id is in the checkpoint) and goes on from the next epoch.
* The model file records the run (id, project, entity, mode), so ``evaluate`` reopens it and adds the
  test metrics (``test/*``, per class too) and the cleaning summary (``cleaning/*``: what
  ``build_manifest`` removed, relabelled and found leaked) to the run's summary.

W&B is not a dependency: ``pip install -e .[wandb]`` (or ``-r requirements-wandb.txt``) adds it, and
``train.wandb.enabled: true`` with the package missing fails before any work, naming the key. Offline
runs (``train.wandb.mode: offline`` or ``WANDB_MODE=offline``) are written under ``WANDB_DIR`` (default
``./wandb``, git-ignored) and uploaded later with ``wandb sync``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlclean.errors import ParamsError

EPOCH_METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/accuracy_leak_free", "lr",
                 "images_per_s", "epoch_seconds")
INSTALL_HINT = "pip install -e .[wandb] (or -r requirements-wandb.txt)"


def check_wandb(enabled: bool, key: str = "train.wandb.enabled") -> None:
    """Fail early when W&B logging is enabled but the package is missing."""
    if not enabled:
        return
    try:
        import wandb  # noqa: F401
    except ImportError as err:
        raise ParamsError(f"params key '{key}' is true but the 'wandb' package is not installed "
                          f"({INSTALL_HINT}, or set it to false)") from err


def flatten(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"<prefix>/a/b": 1}``; ``None`` values are left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            out |= flatten(name, value)
        elif value is not None:
            out[name] = value
    return out


class RunLoggers:
    """DVCLive (when ``live_dir`` is given) and W&B (when ``wandb_params.enabled``) for one training run.

    On resume the DVCLive folder is rebuilt from the checkpoint's history (``replay``), so it never holds
    epochs twice or epochs the checkpoint lacks; W&B already has those epochs and is not sent them again.
    """

    def __init__(self, live_dir: Path | None, wandb_params: Any, run_config: dict, wandb_id: str | None) -> None:
        self.live = None
        self.wandb_run = None
        self.wandb_params = wandb_params
        if live_dir is not None:
            from dvclive import Live

            self.live = Live(str(live_dir), resume=False, dvcyaml=False, save_dvc_exp=False, report=None)
        if wandb_params.enabled:
            import wandb

            self.wandb_run = wandb.init(
                project=wandb_params.project, entity=wandb_params.entity, mode=wandb_params.mode,
                name=wandb_params.name, config=run_config, id=wandb_id, resume="allow", job_type="train",
            )

    @property
    def wandb_id(self) -> str | None:
        return None if self.wandb_run is None else self.wandb_run.id

    def run_info(self) -> dict | None:
        """What :func:`log_results` needs to reopen this W&B run (stored in the model file); None without W&B."""
        if self.wandb_run is None:
            return None
        p = self.wandb_params
        return {"id": self.wandb_run.id, "project": p.project, "entity": p.entity, "mode": p.mode}

    def log_epoch(self, record: dict, *, replay: bool = False) -> None:
        epoch = int(record["epoch"])
        if self.live is not None:
            self.live.step = epoch
            for name in EPOCH_METRICS:
                value = record.get(name)
                if value is not None:
                    self.live.log_metric(name, value)
            self.live.next_step()
        if self.wandb_run is not None and not replay:
            self.wandb_run.log({k: v for k, v in record.items() if v is not None and k != "epoch"}, step=epoch)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def log_results(run_info: Mapping[str, Any], *, test_metrics: Mapping[str, Any],
                cleaning: Mapping[str, Any] | None = None) -> None:
    """Add the test metrics (``test/*``) and the cleaning summary (``cleaning/*``) to the summary of the
    W&B run a model was trained in (``run_info`` from the model file)."""
    check_wandb(True, key="the model's W&B run (train.wandb.enabled when it was trained)")
    import wandb

    run = wandb.init(id=run_info["id"], project=run_info["project"], entity=run_info.get("entity"),
                     mode=run_info.get("mode", "online"), resume="allow")
    try:
        run.summary.update(flatten("test", test_metrics) | flatten("cleaning", cleaning or {}))
    finally:
        run.finish()
