"""noise: flip a share of the train labels, randomly or "intelligently" (towards look-alike classes).

Inputs:  ``--train_labels`` (the cleaned train set from build_manifest), ``--raw``, ``--features``,
         params ``base``, ``noise``.
Outputs: ``--output`` (data/noise/train_labels.csv: image_id, true_label, label (noisy), flipped: the
         truth of every flip), ``--metrics`` (actual flip rate, confusion concentration).
See vlclean/noise.py for the method.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vlclean import cli
from vlclean.config import check_range, from_dict, load_base, read_params_file
from vlclean.datasets import RawDataset
from vlclean.encode import feature_matrix
from vlclean.noise import confusion_share, inject_noise, noisy_labels_frame
from vlclean.storage import read_csv, write_csv, write_json


@dataclass(frozen=True)
class NoiseParams:
    rate: float = 0.0
    kind: Literal["random", "intelligent"] = "random"
    features: Literal["embedding", "pixels"] = "pixels"  # space in which classes look alike
    pixels_side: int = 8
    temperature: float = 0.05
    seed: int | None = None  # None: base.seed

    def validate(self, prefix: str) -> None:
        check_range(prefix, "rate", self.rate, 0.0, 0.95)
        check_range(prefix, "temperature", self.temperature, 1e-4, 10.0)
        check_range(prefix, "pixels_side", self.pixels_side, 4, 64)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    for flag in ("train_labels", "raw", "features", "output", "metrics"):
        p.add_argument(f"--{flag}", required=True)

    def body(args: argparse.Namespace) -> int:
        base = load_base(args.params)
        params = from_dict(NoiseParams, read_params_file(args.params).get("noise"), "noise")
        raw = RawDataset.open(args.raw)
        train = read_csv(args.train_labels)
        ids, true = train["image_id"].to_numpy(), train["label"].to_numpy(dtype=np.int64)
        n_classes = len(raw.classes())
        feats = None
        if params.kind == "intelligent" and params.rate > 0:
            feats = feature_matrix(raw, args.features, ids, kind=params.features, side=params.pixels_side)
        rng = np.random.default_rng(params.seed if params.seed is not None else base.seed)
        noisy = inject_noise(true, n_classes, rate=params.rate, kind=params.kind, rng=rng, features=feats,
                             temperature=params.temperature)
        write_csv(args.output, noisy_labels_frame(ids, true, noisy))
        metrics = {"rate": params.rate, "kind": params.kind, "train_images": len(ids),
                   "flipped": int((true != noisy).sum()),
                   "actual_rate": round(float((true != noisy).mean()) if len(ids) else 0.0, 4),
                   "top_confusion_share": confusion_share(true, noisy, n_classes)}
        write_json(args.metrics, metrics)
        print(f"noise: {metrics['flipped']} of {len(ids)} train labels flipped ({params.kind})")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
