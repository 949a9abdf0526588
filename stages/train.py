"""train: a ResNet-18 on the given labels (noisy or cleaned), resumable, logged with DVCLive, DDP under torchrun.

Inputs:  ``--raw`` (data/raw), ``--labels`` (train label CSV: image_id, label; ``train.labels: raw`` trains on
         every readable train image of ``--raw`` with its given label instead), ``--val_labels`` (eval label
         CSV: image_id, label, leaked; per-epoch validation only when ``train.val_fraction`` is 0, else a
         held-out share of the train images carries the curves), params ``base`` (seed), ``train``.
Outputs: ``--model`` (models/model.pt), ``--live`` (DVCLive folder: per-epoch plots + metrics.json),
         ``--metrics`` (metrics/train.json: final metrics and throughput).
State:   ``--checkpoint_dir`` (per-epoch checkpoints, not a DVC output): a killed run resumes where it
         stopped and ends with the same weights and metrics as an uninterrupted one.
Multi-GPU: ``torchrun --nproc_per_node=N -m stages.train ...`` (only rank 0 writes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vlclean import cli
from vlclean.datasets import RawDataset
from vlclean.params import load_params
from vlclean.storage import write_csv, write_json
from vlclean.tracking import check_wandb
from vlclean.training.data import raw_train_labels
from vlclean.training.loop import train


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--labels", required=True, help="train label CSV (image_id, label)")
    p.add_argument("--val_labels", required=True, help="evaluation label CSV (image_id, label, leaked)")
    p.add_argument("--model", default="models/model.pt")
    p.add_argument("--live", default="dvclive/train", help="DVCLive directory")
    p.add_argument("--checkpoint_dir", default="data/.cache/train", help="resumable state (not a DVC output)")
    p.add_argument("--metrics", default="metrics/train.json")

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params)
        base, params = every.base, every.train
        check_wandb(params.wandb.enabled)
        labels = args.labels
        if params.labels == "raw":
            labels = Path(args.checkpoint_dir) / "raw_train_labels.csv"
            write_csv(labels, raw_train_labels(RawDataset.open(args.raw)))
        result = train(params, seed=base.seed if params.seed is None else params.seed, data_seed=base.seed,
                       raw_dir=args.raw,
                       train_labels=labels, val_labels=args.val_labels, model_path=args.model,
                       checkpoint_dir=args.checkpoint_dir, live_dir=args.live, runtime=every.runtime.train)
        if result.is_main:
            write_json(Path(args.metrics), result.metrics)
            m = result.metrics
            print(f"train: {m['epochs']} epochs on {m['n_train']} images; val accuracy {m['val_accuracy']} "
                  f"(leak-free {m['val_accuracy_leak_free']}); {m['throughput']['images_per_s']} images/s"
                  + (f"; resumed after epoch {result.resumed_from_epoch}" if result.resumed_from_epoch else ""))
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
