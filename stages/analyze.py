"""analyze: image features once for the whole dataset, and a local Visual Layer-format export.

Inputs:  ``--raw`` (data/raw), params ``base``, ``analyze``.
Outputs: ``--features`` (data/features: features.parquet, embeddings/), ``--export`` (VL JSON, schema
         1.1) and ``--export_csv`` (one row per image x issue), ``--metrics`` (counts; precision and
         recall against the planted truth), ``--plots`` (issue counts, mislabel confidence).
Decode once: each image is decoded exactly once here, and everything later stages need from its pixels
(hashes of its mirror and centre crops, grey thumbnails, the embedding) lands in ``--features``.
Scale-out: ``torchrun --nproc_per_node G -m stages.analyze ...`` encodes whole raw shards per rank
(gloo on CPU, nccl on GPUs); rank 0 assembles the features and runs the detectors.
Standalone, without DVC, on any ImageFolder tree (labels = class folder names):
         ``python -m stages.analyze --images_dir DIR --output export.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlclean import cli
from vlclean.analysis_report import analysis_metrics, write_analysis_plots
from vlclean.config import BaseParams, check_range, from_dict, read_params_file
from vlclean.datasets import RawDataset
from vlclean.detect import CLASSIFIERS, DetectParams, analyze
from vlclean.embeddings import build_embedder, torchrun_group
from vlclean.encode import EncodeOptions, encode_dataset, load_embeddings, load_label_features
from vlclean.errors import DatasetError, ParamsError
from vlclean.leaks import LeakParams
from vlclean.storage import scratch_dir, write_csv, write_json
from vlclean.vl_export import export_table, write_export_json

# cleanlab.filter.find_label_issues filter_by choices
FILTER_BY = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
             "low_normalized_margin", "low_self_confidence")


@dataclass(frozen=True)
class EmbeddingParams:
    model: Literal["efficientnet_lite0", "resnet18", "resnet50", "pixels"] = "efficientnet_lite0"
    input_size: int = 64
    batch_size: int = 64
    dtype: Literal["float16", "float32"] = "float16"
    device: str = "cpu"
    weights_path: str | None = None
    allow_download: bool = False


@dataclass(frozen=True)
class AnalyzeParams:
    workers: int = 2
    chunk_size: int = 256
    draft: bool = True
    blur_side: int | None = None  # judge blur at this shorter side (None: native, at most 256 px)
    embedding: EmbeddingParams = field(default_factory=EmbeddingParams)
    # what the label classifier of the mislabel detector sees: the CNN embedding, or the
    # network-free pixel representation (better for tiny images such as the built-in 32 px digits)
    label_features: Literal["embedding", "pixels"] = "embedding"
    label_pixels_side: int = 8  # side of the grey thumbnail when label_features is pixels
    thumbnail_side: int = 16  # grey thumbnails stored for pixel features (noise, denoise: any side up to it)
    detect: DetectParams = field(default_factory=DetectParams)

    def validate(self, prefix: str) -> None:
        check_range(prefix, "workers", self.workers, 1, 256)
        check_range(prefix, "chunk_size", self.chunk_size, 1)
        if self.blur_side is not None:
            check_range(prefix, "blur_side", self.blur_side, 8, 4096)
        check_range(prefix, "embedding.input_size", self.embedding.input_size, 32, 1024)
        check_range(prefix, "embedding.batch_size", self.embedding.batch_size, 1, 65536)
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?|mps", self.embedding.device):
            raise ParamsError(f"params key '{prefix}.embedding.device': {self.embedding.device!r} is not one of "
                              "cpu, auto, cuda, cuda:N, mps")
        d = self.detect
        check_range(prefix, "detect.duplicates.k", d.duplicates.k, 1, 1000)
        check_range(prefix, "detect.duplicates.hash_distance", d.duplicates.hash_distance, 0, 64)
        if d.mislabels.filter_by not in FILTER_BY:
            raise ParamsError(f"params key '{prefix}.detect.mislabels.filter_by': {d.mislabels.filter_by!r} is not "
                              f"one of {list(FILTER_BY)}")
        check_range(prefix, "detect.mislabels.knn_k", d.mislabels.knn_k, 1, 1000)
        if d.mislabels.C <= 0:
            raise ParamsError(f"params key '{prefix}.detect.mislabels.C': {d.mislabels.C} must be > 0")
        check_range(prefix, "detect.clusters", d.clusters, 0)
        levels = self.detect.duplicates.levels
        if not levels or any(not 0.0 < lv <= 1.0 for lv in levels):
            raise ParamsError(f"params key '{prefix}.detect.duplicates.levels': {levels} must be in (0, 1]")
        check_range(prefix, "detect.outliers.z", self.detect.outliers.z, 0.0)
        check_range(prefix, "detect.outliers.k", self.detect.outliers.k, 1)
        if self.detect.mislabels.classifier not in CLASSIFIERS:
            raise ParamsError(f"params key '{prefix}.detect.mislabels.classifier': "
                              f"{self.detect.mislabels.classifier!r} is not one of {list(CLASSIFIERS)}")
        check_range(prefix, "detect.mislabels.repeats", self.detect.mislabels.repeats, 1, 10)
        check_range(prefix, "label_pixels_side", self.label_pixels_side, 4, 64)
        check_range(prefix, "thumbnail_side", self.thumbnail_side, 4, 64)
        if self.label_pixels_side > self.thumbnail_side:
            raise ParamsError(f"params key '{prefix}.label_pixels_side': {self.label_pixels_side} exceeds "
                              f"{prefix}.thumbnail_side {self.thumbnail_side}")
        check_range(prefix, "detect.mislabels.folds", self.detect.mislabels.folds, 2, 20)
        check_range(prefix, "detect.quality.dark_below", self.detect.quality.dark_below, 0, 255)
        check_range(prefix, "detect.quality.bright_above", self.detect.quality.bright_above, 0, 255)


def require_two_classes(raw: RawDataset, where: Path) -> None:
    """Mislabel detection compares classes: a dataset of one class is refused before any work."""
    valid = raw.index().query("valid")
    names = sorted(valid["class_name"].astype(str).unique())
    if len(names) < 2:
        found = f"only class '{names[0]}'" if names else "no valid image"
        raise DatasetError(f"{where}: analyze needs valid images of at least two classes (mislabel detection "
                           f"compares them); found {found}. An ImageFolder tree holds one folder per class")


def run(raw_dir: Path, features_dir: Path, export: Path, export_csv: Path, metrics: Path | None, plots: Path | None,
        work_dir: Path, base: BaseParams, p: AnalyzeParams, crop_scales: list[float]) -> dict | None:
    """Encode (every rank under torchrun), then detect and export (rank 0; other ranks return None)."""
    raw = RawDataset.open(raw_dir)
    require_two_classes(raw, raw_dir)
    e = p.embedding
    options = EncodeOptions(workers=p.workers, chunk_size=p.chunk_size, draft=p.draft, dtype=e.dtype,
                            blur_side=p.blur_side, thumbnail_side=p.thumbnail_side, crop_scales=tuple(crop_scales))
    with torchrun_group(e.device) as group:
        features = encode_dataset(
            raw, features_dir, work_dir=work_dir,
            make_embedder=lambda: build_embedder(e.model, input_size=e.input_size, batch_size=e.batch_size,
                                                 device=group.device, weights_path=e.weights_path,
                                                 allow_download=e.allow_download),
            embedder_key={"model": e.model, "input_size": e.input_size, "weights_path": e.weights_path},
            options=options, rank=group.rank, world_size=group.world_size, barrier=group.barrier,
        )
    if features is None:
        return None
    index, classes = raw.index(), raw.classes()
    emb = load_embeddings(features_dir)[features["valid"].to_numpy()]
    label_features = None
    if p.label_features == "pixels":
        label_features = load_label_features(features_dir, "pixels", side=p.label_pixels_side)[1]
    detect = dataclasses.replace(p.detect, seed=base.seed)
    result = analyze(index, features, emb, classes, detect, label_features=label_features)
    write_export_json(export, result, classes, base.dataset)
    write_csv(export_csv, export_table(result, classes, base.dataset))
    m = analysis_metrics(result, raw.truth(), index)
    if metrics is not None:
        write_json(metrics, m)
    if plots is not None:
        write_analysis_plots(result, plots)
    return m


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--features", default="data/features")
    p.add_argument("--export", default=None, help="VL JSON export (default data/vl/<dataset>_vl_export.json)")
    p.add_argument("--export_csv", default=None, help="flat export (default: beside --export, .csv)")
    p.add_argument("--metrics", default="metrics/analyze.json")
    p.add_argument("--plots", default="plots/analyze")
    p.add_argument("--work_dir", default="data/.cache/analyze")
    p.add_argument("--images_dir", default=None, help="standalone: analyze this ImageFolder tree instead of --raw")
    p.add_argument("--output", default=None, help="standalone: where to write the export JSON")

    def body(args: argparse.Namespace) -> int:
        data = read_params_file(args.params) if Path(args.params).exists() else {}
        base = from_dict(BaseParams, data.get("base"), "base")
        params = from_dict(AnalyzeParams, data.get("analyze"), "analyze")
        crop_scales = from_dict(LeakParams, data.get("detect_leaks"), "detect_leaks").crop_scales
        export = Path(args.output or args.export or f"data/vl/{base.dataset}_vl_export.json")
        export_csv = Path(args.export_csv) if args.export_csv else export.with_suffix(".csv")
        if args.images_dir:
            return standalone(Path(args.images_dir), export, export_csv, base, params, crop_scales)
        m = run(Path(args.raw), Path(args.features), export, export_csv, Path(args.metrics), Path(args.plots),
                Path(args.work_dir), base, params, crop_scales)
        if m is not None:
            print(f"analyze: {m['issue_counts']}")
        return 0

    return cli.run(body, p, argv)


def standalone(images_dir: Path, export: Path, export_csv: Path, base: BaseParams, p: AnalyzeParams,
               crop_scales: list[float]) -> int:
    """Analyze an ImageFolder tree without DVC: convert it to a temporary raw dataset first."""
    from stages.download import DownloadParams, FolderParams, convert

    with scratch_dir("vlclean-analyze-") as t:
        dl = DownloadParams(source="folder", workers=p.workers, folder=FolderParams(root=str(images_dir), no_split="train"))
        convert(dl, base.seed, t / "raw", t / "work")
        require_two_classes(RawDataset.open(t / "raw"), images_dir)
        quarantine = RawDataset.open(t / "raw").quarantine()
        for row in quarantine.itertuples():
            print(f"unreadable: {row.source}: {row.error}")
        m = run(t / "raw", t / "features", export, export_csv, None, None, t / "work-analyze", base, p, crop_scales)
        if m is None:
            return 0
    print(f"analyze: {m['images']} images, issues {m['issue_counts']}; export written to {export}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
