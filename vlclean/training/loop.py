"""The training run: :func:`train` sets up devices and determinism, ``_train`` loops over
:func:`train_one_epoch`, :func:`validate` and the checkpoint helpers, and writes the model."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlclean.datasets import RawDataset
from vlclean.errors import DatasetError, ParamsError
from vlclean.params import TrainParams, TrainRuntime
from vlclean.tracking import RunLoggers, check_wandb
from vlclean.training.checkpoint import Resumed, load_checkpoint, run_fingerprint, save_checkpoint
from vlclean.training.data import (CachedImages, EpochBatches, LabelledImages, ShardImages, holdout, make_loader,
                                   open_images, read_label_file, seed_for, subset)
from vlclean.training.distributed import Dist, all_sum, barrier, init_distributed
from vlclean.training.model import Predictions, augment, autocast, build_model, normalise, predict, save_model, small_stem

if TYPE_CHECKING:
    import torch

log = logging.getLogger("vlclean.training")

CRASH_ENV = "VLCLEAN_TRAIN_CRASH_AFTER_EPOCH"  # tests: os._exit(137) right after this epoch's checkpoint


# -- schedule ------------------------------------------------------------------------------------
def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str, milestones: Sequence[float],
              gamma: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (linear warmup, then the schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return gamma ** sum(step >= m * total_steps for m in milestones)


# -- the training run ----------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a run produced; ``metrics`` is meaningful on rank 0 (``is_main``)."""

    metrics: dict
    history: list[dict]
    is_main: bool
    resumed_from_epoch: int


def _accuracy_sums(pred: Predictions, leaked: np.ndarray) -> list[float]:
    correct = pred.predicted == pred.labels
    clean = ~leaked[pred.positions]
    return [float(pred.loss.sum()), float(correct.sum()), float(len(correct)),
            float(correct[clean].sum()), float(clean.sum())]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def train(
    params: TrainParams,
    *,
    seed: int,
    raw_dir: str | Path,
    train_labels: str | Path,
    val_labels: str | Path,
    model_path: str | Path,
    checkpoint_dir: str | Path,
    live_dir: str | Path | None = None,
    progress: bool = True,
    data_seed: int | None = None,
    runtime: TrainRuntime | None = None,
) -> TrainResult:
    """Train (or resume training) and write the model; see the module doc. Runs under torchrun too.

    ``seed`` drives the training randomness (init, order, augmentation); ``data_seed`` (default
    ``seed``) picks the ``max_train_images`` subset and the ``val_fraction`` hold-out, so replicates
    that vary only ``seed`` train on the same images. ``runtime`` (device, DataLoader workers) changes
    speed, not the model.
    """
    import torch

    rt = runtime if runtime is not None else TrainRuntime()

    check_wandb(params.wandb.enabled)
    if params.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dist_ctx = init_distributed(rt.device)
    device = dist_ctx.device
    if params.amp and params.amp_dtype == "float16" and device.type != "cuda":
        raise ParamsError("params key 'train.amp_dtype': float16 autocast needs CUDA; use bfloat16 on CPU")
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(params.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not params.deterministic
    try:
        return _train(params, rt, seed, dist_ctx, Path(raw_dir), Path(train_labels), Path(val_labels), Path(model_path),
                      Path(checkpoint_dir), None if live_dir is None else Path(live_dir), progress,
                      seed if data_seed is None else data_seed)
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        if dist_ctx.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class _Inputs:
    """What a run reads: the label files located in the raw shards, opened with the chosen loader."""

    train_set: LabelledImages
    val_set: LabelledImages
    train_data: ShardImages | CachedImages
    val_data: ShardImages | CachedImages
    class_names: list[str]  # by label
    num_classes: int  # largest label + 1
    fingerprint_files: list[Path]  # the files whose contents the checkpoint key covers
    seconds: float  # reading the label files and opening (for ``memory``: decoding) the images


def _read_inputs(params: TrainParams, rt: TrainRuntime, seed: int, raw_dir: Path, train_labels: Path,
                 val_labels: Path) -> _Inputs:
    t0 = time.perf_counter()
    raw = RawDataset.open(raw_dir)
    index = raw.index()
    classes = raw.classes().sort_values("label")
    train_set = read_label_file(train_labels, raw, with_leaked=False, index=index)
    train_set = subset(train_set, params.max_train_images, seed)
    if params.val_fraction > 0:  # the per-epoch curves come from held-out train images; test waits for evaluate
        train_set, val_set = holdout(train_set, params.val_fraction, seed)
    else:
        val_set = read_label_file(val_labels, raw, with_leaked=True, index=index)
    if len(train_set) < 2:
        raise DatasetError(f"{train_labels}: {len(train_set)} image(s) to train on; need at least 2")
    overlap = set(train_set.frame["image_id"]) & set(val_set.frame["image_id"])
    if overlap:
        log.warning("%d image(s) are both in %s and %s (e.g. %s)", len(overlap), train_labels, val_labels,
                    sorted(overlap)[0])
    opened = [open_images(raw_dir, images, params.image_size, loader=params.loader, cache_max_mb=params.cache_max_mb,
                          workers=rt.workers, window_blocks=params.stream_window_blocks)
              for images in (train_set, val_set)]
    return _Inputs(train_set, val_set, opened[0], opened[1], classes["class_name"].astype(str).tolist(),
                   int(classes["label"].max()) + 1, [train_labels, val_labels, raw.root / "index.parquet"],
                   time.perf_counter() - t0)


@dataclass
class _Trainer:
    """Everything one optimisation step touches and a checkpoint holds (besides the RNG states)."""

    model: Any  # torch.nn.Module (unwrapped: what is saved)
    net: Any  # the module that runs forward passes: ``model``, or its DDP wrapper (see :func:`_distribute`)
    optimizer: Any
    scheduler: Any
    scaler: Any
    batches: EpochBatches
    loader: Any  # DataLoader over ``batches``


def _build_trainer(params: TrainParams, rt: TrainRuntime, seed: int, dist_ctx: Dist, inputs: _Inputs) -> _Trainer:
    """Model, optimizer, schedule and batches, built in a fixed order from ``seed`` (resume relies on it)."""
    import torch

    device = dist_ctx.device
    torch.manual_seed(seed)
    model = build_model(inputs.num_classes, small=small_stem(params.stem, params.image_size)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum,
                                weight_decay=params.weight_decay)
    data = inputs.train_data
    batches = EpochBatches(len(inputs.train_set), params.batch_size, seed=seed, rank=dist_ctx.rank,
                            world_size=dist_ctx.world_size, window_blocks=params.stream_window_blocks,
                            blocks=data.block if isinstance(data, ShardImages) else None)
    loader = make_loader(data, batches, workers=rt.workers, pin_memory=device.type == "cuda", persistent=True)
    total_steps = len(batches) * params.epochs
    warmup_steps = round(params.warmup_epochs * len(batches))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, total_steps=total_steps, warmup_steps=warmup_steps, schedule=params.schedule,
        milestones=params.step_milestones, gamma=params.step_gamma))
    scaler = torch.amp.GradScaler(device.type, enabled=params.amp and params.amp_dtype == "float16")
    return _Trainer(model, model, optimizer, scheduler, scaler, batches, loader)


def _distribute(trainer: _Trainer, dist_ctx: Dist) -> None:
    """Under torchrun, run forward passes through a DDP wrapper (built after any resume, so every rank
    starts from the checkpoint's weights)."""
    import torch

    if dist_ctx.distributed:
        device = dist_ctx.device
        trainer.net = torch.nn.parallel.DistributedDataParallel(
            trainer.model, device_ids=[device.index] if device.type == "cuda" else None)


def train_one_epoch(trainer: _Trainer, params: TrainParams, *, seed: int, epoch: int, dist_ctx: Dist) -> dict:
    """One pass over this rank's share of epoch ``epoch``; returns the loss, accuracy, last learning rate
    and throughput summed over every rank. Augmentation draws from a generator seeded by
    ``(seed, epoch, rank)``, so the epoch depends only on the state after the previous one."""
    import torch
    import torch.nn.functional as F

    device = dist_ctx.device
    t0 = time.perf_counter()
    trainer.batches.epoch = epoch
    gen = torch.Generator().manual_seed(seed_for(seed, epoch, dist_ctx.rank, 11))
    trainer.net.train()
    optimizer = trainer.optimizer
    loss_sum = correct = seen = 0.0
    lr_used = optimizer.param_groups[0]["lr"]
    for x, y, _ in trainer.loader:
        x, y = normalise(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        if params.augmentation == "standard":
            x = augment(x, gen, padding=params.crop_padding, hflip=params.hflip)
        with autocast(device, params.amp, params.amp_dtype):
            logits = trainer.net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=params.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        lr_used = optimizer.param_groups[0]["lr"]
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(optimizer)
        trainer.scaler.update()
        trainer.scheduler.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += float((logits.detach().argmax(1) == y).sum())
        seen += len(y)
    seconds = time.perf_counter() - t0
    loss_sum, correct, seen, seconds = all_sum([loss_sum, correct, seen, seconds], dist_ctx)
    seconds /= dist_ctx.world_size
    return {"train/loss": round(loss_sum / seen, 6), "train/accuracy": round(correct / seen, 6), "lr": lr_used,
            "images_per_s": round(seen / seconds, 1), "train_seconds": round(seconds, 3), "images": int(seen)}


def validate(model: torch.nn.Module, inputs: _Inputs, params: TrainParams, dist_ctx: Dist, *,
             workers: int = 0) -> dict:
    """Loss and accuracy on the validation images (each rank predicts its share), overall and leak-free."""
    val_share = np.array_split(np.arange(len(inputs.val_set)), dist_ctx.world_size)[dist_ctx.rank].tolist()
    pred = predict(model, inputs.val_data, device=dist_ctx.device, batch_size=max(params.batch_size, 256),
                   workers=workers, amp=params.amp, amp_dtype=params.amp_dtype, positions=val_share)
    leaked = inputs.val_set.frame["leaked"].to_numpy(dtype=bool)
    v_loss, v_correct, v_n, v_clean_correct, v_clean = all_sum(_accuracy_sums(pred, leaked), dist_ctx)
    return {"val/loss": _ratio(v_loss, v_n), "val/accuracy": _ratio(v_correct, v_n),
            "val/accuracy_leak_free": _ratio(v_clean_correct, v_clean)}


def _epoch_record(epoch: int, trained: dict, validated: dict, seconds: float) -> dict:
    return {"epoch": epoch, "train/loss": trained["train/loss"], "train/accuracy": trained["train/accuracy"],
            **validated, "lr": trained["lr"], "images_per_s": trained["images_per_s"],
            "epoch_seconds": round(seconds, 2), "train_seconds": trained["train_seconds"],
            "images": trained["images"]}


def _train(params: TrainParams, rt: TrainRuntime, seed: int, dist_ctx: Dist, raw_dir: Path, train_labels: Path,
           val_labels: Path, model_path: Path, checkpoint_dir: Path, live_dir: Path | None, progress: bool,
           data_seed: int) -> TrainResult:
    inputs = _read_inputs(params, rt, data_seed, raw_dir, train_labels, val_labels)
    trainer, fp, resumed = _start(params, rt, seed, dist_ctx, inputs, checkpoint_dir, data_seed)
    ckpt_path = _checkpoint_file(checkpoint_dir, fp)
    history = resumed.history
    loggers = _open_loggers(params, rt, seed, dist_ctx, inputs, live_dir, resumed) if dist_ctx.is_main else None
    crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
    try:
        for epoch in range(resumed.start_epoch, params.epochs + 1):
            t_epoch = time.perf_counter()
            trained = train_one_epoch(trainer, params, seed=seed, epoch=epoch, dist_ctx=dist_ctx)
            validated = validate(trainer.model, inputs, params, dist_ctx, workers=rt.workers)
            record = _epoch_record(epoch, trained, validated, time.perf_counter() - t_epoch)
            history.append(record)
            if dist_ctx.is_main:
                save_checkpoint(ckpt_path, fp=fp, epoch=epoch, trainer=trainer, history=history,
                                wandb_id=loggers.wandb_id)
                loggers.log_epoch(record)
                if progress:
                    _log_progress(record, params.epochs)
                if crash_after == epoch:
                    os._exit(137)  # tests: die like a killed job, right after the checkpoint
            barrier(dist_ctx)
        if dist_ctx.is_main:
            save_model(model_path, trainer.model, num_classes=inputs.num_classes, image_size=params.image_size,
                       small=small_stem(params.stem, params.image_size), classes=inputs.class_names,
                       wandb_run=loggers.run_info())
    finally:
        if loggers is not None:
            loggers.close()
    barrier(dist_ctx)
    metrics = final_metrics(history, n_train=len(inputs.train_set), val=inputs.val_set,
                            world_size=dist_ctx.world_size, epochs=params.epochs)
    if dist_ctx.is_main:
        shutil.rmtree(ckpt_path.parent, ignore_errors=True)  # finished: the model file is the result
    return TrainResult(metrics, history, dist_ctx.is_main, resumed.start_epoch - 1)


def _start(params: TrainParams, rt: TrainRuntime, seed: int, dist_ctx: Dist, inputs: _Inputs, checkpoint_dir: Path,
           data_seed: int) -> tuple[_Trainer, str, Resumed]:
    """Build the trainer, restore it from this run's checkpoint when there is one, then distribute it;
    returns it with the run fingerprint (which names the checkpoint) and where it resumed."""
    fp = run_fingerprint(params, seed=seed, files=inputs.fingerprint_files, world_size=dist_ctx.world_size,
                         device_type=dist_ctx.device.type, data_seed=data_seed)
    if dist_ctx.is_main:
        log.info("train: %d train / %d val images at %d px, %s loader, decoded in %.1f s; device %s x %d; run %s",
                 len(inputs.train_set), len(inputs.val_set), params.image_size,
                 "stream" if isinstance(inputs.train_data, ShardImages) else "memory", inputs.seconds,
                 dist_ctx.device, dist_ctx.world_size, fp)
    trainer = _build_trainer(params, rt, seed, dist_ctx, inputs)
    resumed = load_checkpoint(_checkpoint_file(checkpoint_dir, fp), fp, trainer)
    if resumed.start_epoch > 1 and dist_ctx.is_main:
        log.info("train: resuming run %s after epoch %d of %d", fp, resumed.start_epoch - 1, params.epochs)
    _distribute(trainer, dist_ctx)
    return trainer, fp, resumed


def _checkpoint_file(checkpoint_dir: Path, fp: str) -> Path:
    return checkpoint_dir / fp / "last.pt"


def _open_loggers(params: TrainParams, rt: TrainRuntime, seed: int, dist_ctx: Dist, inputs: _Inputs,
                  live_dir: Path | None, resumed: Resumed) -> RunLoggers:
    """DVCLive (and W&B when enabled) for rank 0, with the epochs run before a resume replayed."""
    run_config = {**params.model_dump(), "runtime": rt.model_dump(), "seed": seed, "world_size": dist_ctx.world_size,
                  "n_train": len(inputs.train_set), "n_val": len(inputs.val_set)}
    loggers = RunLoggers(live_dir, params.wandb, run_config, resumed.wandb_id)
    for record in resumed.history:
        loggers.log_epoch(record, replay=True)
    return loggers


def _log_progress(record: dict, epochs: int) -> None:
    log.info("epoch %d/%d  loss %.4f  acc %.4f  val_acc %s  leak-free %s  %.0f img/s  %.1f s", record["epoch"],
             epochs, record["train/loss"], record["train/accuracy"], record["val/accuracy"],
             record["val/accuracy_leak_free"], record["images_per_s"], record["epoch_seconds"])


def final_metrics(history: list[dict], *, n_train: int, val: LabelledImages, world_size: int, epochs: int) -> dict:
    """The last epoch's metrics plus ``throughput`` (the only part that varies between identical runs):
    training images per second (training passes only), mean epoch seconds (with validation and
    checkpointing) and their total, over every epoch, also those run before a resume."""
    last = history[-1] if history else {}
    timed = [h for h in history if h.get("train_seconds")]
    train_seconds = sum(h["train_seconds"] for h in timed)
    n_leaked = int(val.frame["leaked"].sum())
    return {
        "epochs": epochs,
        "n_train": n_train,
        "n_val": len(val),
        "n_val_leak_free": len(val) - n_leaked,
        "world_size": world_size,
        "train_loss": last.get("train/loss"),
        "train_accuracy": last.get("train/accuracy"),
        "val_loss": last.get("val/loss"),
        "val_accuracy": last.get("val/accuracy"),
        "val_accuracy_leak_free": last.get("val/accuracy_leak_free"),
        "throughput": {
            "images_per_s": round(sum(h["images"] for h in timed) / train_seconds, 1) if train_seconds else None,
            "seconds_per_epoch": round(float(np.mean([h["epoch_seconds"] for h in timed])), 2) if timed else None,
            "total_seconds": round(float(sum(h["epoch_seconds"] for h in timed)), 1),
        },
    }
