"""noise: flip a share of the train labels by one of seven noise models (random, centroid, nn, border, cluster,
pair, idn).

Inputs:  ``--train_labels`` (the cleaned train set from build_manifest), ``--raw``, ``--features``,
         params ``base``, ``noise``.
Outputs: ``--output`` (data/noise/train_labels.csv: image_id, label (noisy), true_label, flipped: the
         truth of every flip), ``--metrics`` (actual rate, largest off-diagonal share per class, mean
         margin percentile of the flipped images), ``--plots`` (transition.csv: one row per train image,
         true_class x noisy_label for DVC's confusion template; transition.png: the counts heatmap).
See vlclean/noise.py for the models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from vlclean import cli
from vlclean.datasets import RawDataset
from vlclean.encode import feature_matrix
from vlclean.noise import (Neighbours, NoiseSpec, canonical_kind, inject_noise, margins, neighbours,
                           noise_metrics, noisy_labels_frame, resolve_pairs)
from vlclean.params import NoiseParams, load_params
from vlclean.reporting import confusion_heatmap
from vlclean.storage import read_csv, write_csv, write_json


def noise_spec(p: NoiseParams, n_classes: int, pairs: dict[int, int], nbrs: Neighbours | None) -> NoiseSpec:
    return NoiseSpec(kind=canonical_kind(p.kind), rate=p.rate, n_classes=n_classes, k=p.k,
                     temperature=p.temperature, boundary_top_frac=p.boundary_top_frac,
                     cluster_size=p.cluster_size, pairs=pairs, idn_std=p.idn_std, neighbours=nbrs)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    for flag in ("train_labels", "raw", "features", "output", "metrics"):
        p.add_argument(f"--{flag}", required=True)
    p.add_argument("--plots", default="plots/noise")

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params)
        base, params = every.base, every.noise
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
        noisy = inject_noise(true, feats, rng, noise_spec(params, len(names), pairs, nbrs))
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
