"""analyze: image features once for the whole dataset, and a local Visual Layer-format export.

Inputs:  ``--raw`` (data/raw), params ``base``, ``analyze``.
Outputs: ``--features`` (data/features: features.parquet, embeddings/), ``--export`` (VL JSON, schema
         1.1) and ``--export_csv`` (one row per image x issue), ``--metrics`` (counts; precision and
         recall against the planted truth; ``choices``: what each ``auto`` setting chose and why;
         ``warnings``: the sanity guard's lines, also printed), ``--plots`` (issue counts, mislabel confidence).
Decode once: each image is decoded exactly once here, and everything later stages need from its pixels
(hashes of its mirror and centre crops, grey thumbnails, the embedding) lands in ``--features``.
Scale-out: ``torchrun --nproc_per_node G -m stages.analyze ...`` encodes whole raw shards per rank
(gloo on CPU, nccl on GPUs); rank 0 assembles the features and runs the detectors.
Standalone, without DVC, on any ImageFolder tree (labels = class folder names):
         ``python -m stages.analyze --images_dir DIR --output export.json``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vlclean import cli
from vlclean.adapt import auto_blur_side, auto_input_size, implausible, resolve_label_features
from vlclean.analysis_report import analysis_metrics, write_analysis_plots
from vlclean.datasets import RawDataset
from vlclean.datasets.convert import convert
from vlclean.detect import analyze
from vlclean.embeddings import build_embedder, embedding_threads, torch_threads, torchrun_group
from vlclean.encode import EncodeOptions, encode_dataset, load_embeddings
from vlclean.errors import DatasetError
from vlclean.params import (AnalyzeParams, AnalyzeRuntime, BaseParams, DownloadParams, FolderParams, RuntimeParams,
                            load_params)
from vlclean.storage import scratch_dir, write_csv, write_json
from vlclean.vl_export import export_table, write_export_json

def require_two_classes(raw: RawDataset, where: Path) -> None:
    """Mislabel detection compares classes: a dataset of one class is refused before any work."""
    valid = raw.index().query("valid")
    names = sorted(valid["class_name"].astype(str).unique())
    if len(names) < 2:
        found = f"only class '{names[0]}'" if names else "no valid image"
        raise DatasetError(f"{where}: analyze needs valid images of at least two classes (mislabel detection "
                           f"compares them); found {found}. An ImageFolder tree holds one folder per class")


def settings(index, p: AnalyzeParams) -> tuple[int, int | None, dict]:
    """``(embedding input size, blur side, choice record)``: the ``auto`` settings resolved from the
    valid images' sizes (vlclean/adapt.py); fixed settings as they are."""
    valid = index[index["valid"]]
    shorter = np.minimum(valid["width"].to_numpy(), valid["height"].to_numpy())
    e = p.embedding
    input_size = auto_input_size(shorter) if e.input_size == "auto" else e.input_size
    blur_side = auto_blur_side(shorter) if p.blur_side == "auto" else p.blur_side
    median = float(np.median(shorter)) if len(shorter) else None
    return input_size, blur_side, {
        "median_shorter_side": median,
        "embedding_input_size": {"setting": e.input_size, "chosen": input_size},
        "blur_side": {"setting": p.blur_side, "chosen": blur_side},
    }


def run(raw_dir: Path, features_dir: Path, export: Path, export_csv: Path, metrics: Path | None, plots: Path | None,
        work_dir: Path, base: BaseParams, p: AnalyzeParams, rt: AnalyzeRuntime, crop_scales: list[float]) -> dict | None:
    """Encode (every rank under torchrun), then detect and export (rank 0; other ranks return None)."""
    raw = RawDataset.open(raw_dir)
    require_two_classes(raw, raw_dir)
    e = p.embedding
    input_size, blur_side, choices = settings(raw.index(), p)
    options = EncodeOptions(workers=rt.workers, chunk_size=rt.chunk_size, draft=p.draft, dtype=e.dtype,
                            blur_side=blur_side, thumbnail_side=p.thumbnail_side, crop_scales=tuple(crop_scales))
    with torchrun_group(rt.embedding.device) as group, torch_threads(embedding_threads(rt.embedding.threads, rt.workers)):
        features = encode_dataset(
            raw, features_dir, work_dir=work_dir,
            make_embedder=lambda: build_embedder(e.model, input_size=input_size, batch_size=rt.embedding.batch_size,
                                                 device=group.device, weights_path=e.weights_path,
                                                 allow_download=e.allow_download),
            embedder_key={"model": e.model, "input_size": input_size, "weights_path": e.weights_path},
            options=options, rank=group.rank, world_size=group.world_size, barrier=group.barrier,
        )
    if features is None:
        return None
    index, classes = raw.index(), raw.classes()
    valid = features["valid"].to_numpy()
    emb = load_embeddings(features_dir)[valid]
    labels = index.loc[valid, "label"].to_numpy(dtype=np.int64)
    chosen, matrix, choices["label_features"] = resolve_label_features(features_dir, p, labels, len(classes), base.seed,
                                                                         embedding=emb)
    label_features = None if chosen == "embedding" else matrix
    result = analyze(index, features, emb, classes, p.detect, seed=base.seed, label_features=label_features)
    write_export_json(export, result, classes, base.dataset)
    write_csv(export_csv, export_table(result, classes, base.dataset))
    m = analysis_metrics(result, raw.truth(), index)
    m["choices"] = choices
    m["warnings"] = guard(m, choices, features.loc[valid], p)
    for line in describe(choices) + m["warnings"]:
        print(f"analyze: {line}")
    if metrics is not None:
        write_json(metrics, m)
    if plots is not None:
        write_analysis_plots(result, plots)
    return m


def describe(choices: dict) -> list[str]:
    """The choices of the ``auto`` settings, one printable line each."""
    lf = choices["label_features"]
    acc = ", ".join(f"{k} {v:.3f}" for k, v in lf["cv_accuracy"].items())
    return [f"embedding input size {choices['embedding_input_size']['chosen']} px and blur judged at "
            f"{choices['blur_side']['chosen']} px (settings {choices['embedding_input_size']['setting']}, "
            f"{choices['blur_side']['setting']}; median shorter side {choices['median_shorter_side']})",
            f"mislabel classifier {lf['classifier']} on {lf['chosen']} (setting {lf['setting']}; cross-validated "
            f"accuracy on the given labels: {acc})"]


def guard(m: dict, choices: dict, valid_features, p: AnalyzeParams) -> list[str]:
    """The sanity guard's loud lines (vlclean.adapt.implausible) with each detector's evidence."""
    lf = choices["label_features"]
    b = valid_features["brightness"].to_numpy(dtype=float)
    s = valid_features["blur"].to_numpy(dtype=float)
    q = p.detect.quality
    evidence = {
        "mislabel": f"the classifier ({lf['classifier']} on {lf['chosen']}) predicts the given labels with "
                    f"cross-validated accuracy {lf['cv_accuracy'][lf['chosen']]:.3f}; where that is low the classifier "
                    "cannot tell the classes apart (look-alike classes, features unfit for the images), which is "
                    "no proof that the labels are wrong",
        "dark": f"median brightness {np.median(b):.1f}, dark_below {q.dark_below:g}",
        "bright": f"median brightness {np.median(b):.1f}, bright_above {q.bright_above:g}",
        "blur": f"median Laplacian variance {np.median(s):.1f} at {choices['blur_side']['chosen']} px, blur_below "
                f"{q.blur_below:g}",
        "outlier": f"outliers.z {p.detect.outliers.z:g}",
    }
    return implausible(m["issue_counts"], m["valid"], p.detect.plausible_share, evidence)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--features", default="data/features")
    p.add_argument("--export", default=None, help="VL JSON export (default data/vl/<dataset>_vl_export.json)")
    p.add_argument("--export_csv", default=None, help="flat export (default: beside --export, .csv)")
    p.add_argument("--metrics", default=None, help="metrics JSON (default metrics/analyze.json; standalone: none)")
    p.add_argument("--plots", default="plots/analyze")
    p.add_argument("--work_dir", default="data/.cache/analyze")
    p.add_argument("--images_dir", default=None, help="standalone: analyze this ImageFolder tree instead of --raw")
    p.add_argument("--output", default=None, help="standalone: where to write the export JSON")

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params, missing_ok=bool(args.images_dir))
        base, params = every.base, every.analyze
        export = Path(args.output or args.export or f"data/vl/{base.dataset}_vl_export.json")
        export_csv = Path(args.export_csv) if args.export_csv else export.with_suffix(".csv")
        if args.images_dir:
            return standalone(Path(args.images_dir), export, export_csv, base, params, every.runtime,
                              every.detect_leaks.crop_scales, Path(args.metrics) if args.metrics else None)
        m = run(Path(args.raw), Path(args.features), export, export_csv, Path(args.metrics or "metrics/analyze.json"),
                Path(args.plots),
                Path(args.work_dir), base, params, every.runtime.analyze, every.detect_leaks.crop_scales)
        if m is not None:
            print(f"analyze: {m['issue_counts']}")
        return 0

    return cli.run(body, p, argv)


def standalone(images_dir: Path, export: Path, export_csv: Path, base: BaseParams, p: AnalyzeParams,
               rt: RuntimeParams, crop_scales: list[float], metrics: Path | None = None) -> int:
    """Analyze an ImageFolder tree without DVC: convert it to a temporary raw dataset first."""
    with scratch_dir("vlclean-analyze-") as t:
        dl = DownloadParams(source="folder", folder=FolderParams(root=str(images_dir), no_split="train"))
        convert(dl, base.seed, t / "raw", t / "work", workers=rt.analyze.workers)
        require_two_classes(RawDataset.open(t / "raw"), images_dir)
        quarantine = RawDataset.open(t / "raw").quarantine()
        for row in quarantine.itertuples():
            print(f"unreadable: {row.source}: {row.error}")
        m = run(t / "raw", t / "features", export, export_csv, metrics, None, t / "work-analyze", base, p, rt.analyze,
                crop_scales)
        if m is None:
            return 0
    print(f"analyze: {m['images']} images, issues {m['issue_counts']}; export written to {export}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
