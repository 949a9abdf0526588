"""noise: flip a share of the train labels by one of seven noise models (random, centroid, nn, border, cluster,
pair, idn).

Inputs:  ``--train_labels`` (the cleaned train set from build_manifest), ``--raw`` (its tables only, never the
         image bytes), ``--features``, params ``base``, ``noise``.
Outputs: ``--output`` (data/noise/train_labels.csv: image_id, label (noisy), true_label, flipped: the
         truth of every flip), ``--metrics`` (actual rate, largest off-diagonal share per class, mean
         margin percentile of the flipped images), ``--plots`` (transition.csv: one row per train image,
         true_class x noisy_label for DVC's confusion template; transition.png: the counts heatmap).
See vlclean/noise.py for the models.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from vlclean import cli
from vlclean.config import check_range, from_dict, load_base, read_params_file
from vlclean.datasets import RawDataset
from vlclean.encode import feature_matrix
from vlclean.errors import ParamsError
from vlclean.noise import (PAIR_PRESETS, Neighbours, NoiseSpec, canonical_kind, inject_noise, margins, neighbours,
                           noise_metrics, noisy_labels_frame, resolve_pairs)
from vlclean.reporting import confusion_heatmap
from vlclean.storage import read_csv, write_csv, write_json


@dataclass(frozen=True)
class NoiseParams:
    rate: float = 0.0
    kind: Literal["random", "centroid", "intelligent", "nn", "border", "cluster", "pair", "idn"] = "random"
    features: Literal["embedding", "pixels"] = "pixels"  # space of neighbours, margins and look-alikes
    pixels_side: int = 8
    k: int = 50  # neighbours searched per image (nn, border, cluster, margins)
    temperature: float = 0.05  # centroid
    boundary_top_frac: float = 0.25  # border
    cluster_size: int = 5  # cluster
    pairs: str | dict[int | str, int | str] = ""  # pair: a preset or {from_class: to_class}
    idn_std: float = 0.1  # idn
    seed: int | None = None  # None: base.seed

    def validate(self, prefix: str) -> None:
        check_range(prefix, "rate", self.rate, 0.0, 0.95)
        check_range(prefix, "temperature", self.temperature, 1e-4, 10.0)
        check_range(prefix, "pixels_side", self.pixels_side, 4, 64)
        check_range(prefix, "k", self.k, 2, 1000)
        check_range(prefix, "boundary_top_frac", self.boundary_top_frac, 1e-6, 1.0)
        check_range(prefix, "cluster_size", self.cluster_size, 1, 1000)
        check_range(prefix, "idn_std", self.idn_std, 0.0, 1.0)
        if self.kind == "pair" and not self.pairs:
            raise ParamsError(f"params key '{prefix}.pairs' is required when kind is 'pair': a preset "
                              f"{sorted(PAIR_PRESETS)} or a mapping {{from_class: to_class}}")

    def spec(self, n_classes: int, pairs: dict[int, int], nbrs: Neighbours | None) -> NoiseSpec:
        return NoiseSpec(kind=canonical_kind(self.kind), rate=self.rate, n_classes=n_classes, k=self.k,
                         temperature=self.temperature, boundary_top_frac=self.boundary_top_frac,
                         cluster_size=self.cluster_size, pairs=pairs, idn_std=self.idn_std, neighbours=nbrs)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    for flag in ("train_labels", "raw", "features", "output", "metrics"):
        p.add_argument(f"--{flag}", required=True)
    p.add_argument("--plots", default="plots/noise")

    def body(args: argparse.Namespace) -> int:
        base = load_base(args.params)
        params = from_dict(NoiseParams, read_params_file(args.params).get("noise"), "noise")
        raw = RawDataset.open(args.raw, images=False)  # decode once: the tables, never the bytes
        classes = raw.classes().sort_values("label")
        names = classes["class_name"].astype(str).tolist()
        train = read_csv(args.train_labels)
        ids, true = train["image_id"].to_numpy(), train["label"].to_numpy(dtype=np.int64)
        pairs = resolve_pairs(params.pairs, classes) if canonical_kind(params.kind) == "pair" else {}
        feats = margin = nbrs = None
        if params.rate > 0:  # features also give the margins every kind is judged by
            feats = feature_matrix(args.features, ids, kind=params.features, side=params.pixels_side)
            nbrs = neighbours(feats, max(params.k, params.cluster_size))
            margin = margins(true, nbrs)
        rng = np.random.default_rng(params.seed if params.seed is not None else base.seed)
        noisy = inject_noise(true, feats, rng, params.spec(len(names), pairs, nbrs))
        write_csv(args.output, noisy_labels_frame(ids, true, noisy))
        metrics = {"rate": params.rate, "kind": canonical_kind(params.kind),
                   **noise_metrics(true, noisy, names, margin)}
        if pairs:
            metrics["pairs"] = {names[a]: names[b] for a, b in sorted(pairs.items())}
        write_json(args.metrics, metrics)
        plots = Path(args.plots)
        transition = pd.DataFrame({"true_class": np.asarray(names)[true], "noisy_label": np.asarray(names)[noisy]})
        write_csv(plots / "transition.csv", transition)
        confusion_heatmap(transition.rename(columns={"true_class": "actual", "noisy_label": "predicted"}), names,
                          plots / "transition.png", title=f"Label transitions: {metrics['kind']} noise, rate {params.rate}",
                          xlabel="noisy label", ylabel="true class")
        print(f"noise: {metrics['flipped']} of {len(ids)} train labels flipped ({metrics['kind']}); "
              f"flipped images' mean margin percentile {metrics.get('flipped_margin_percentile_mean')}")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
