"""Convert the configured dataset source (``download.source``: built-in, ImageFolder tree, Hugging Face
Hub, IDX files, CIFAR archive) into the raw parquet layout of :mod:`vlclean.datasets.raw`.

:func:`convert` is what the ``download`` stage and the standalone commands (``analyze --images_dir``)
run; finished conversion units are kept in ``work_dir`` under a fingerprint of the params, the seed and
the source's file listing, so an interrupted conversion resumes and a changed one starts afresh.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from vlclean.datasets.arrays import array_units, classes_from_names, subset_labels
from vlclean.datasets.builtin import builtin_classes, builtin_units, generate_builtin
from vlclean.datasets.cifar import CifarArchive, cifar_class_names, cifar_listing, read_cifar_splits
from vlclean.datasets.folder import folder_units, scan_folder
from vlclean.datasets.hub import HubReader, class_names_from_parquet, classes_table, classify_files, fetch_hub_file, list_hub_files
from vlclean.datasets.idx import idx_listing, read_idx_splits
from vlclean.datasets.raw import RawDatasetWriter, fingerprint
from vlclean.errors import DatasetError, ParamsError
from vlclean.params import DownloadParams


def _subset(classes: pd.DataFrame, wanted: list[str]) -> dict[int, int] | None:
    """Map original label -> new label for the requested class ids/names (None: keep all)."""
    if not wanted:
        return None
    keys = {str(c): int(l) for l, c in zip(classes["label"], classes["class_id"])}
    keys |= {str(n): int(l) for l, n in zip(classes["label"], classes["class_name"])}
    missing = [w for w in wanted if w not in keys]
    if missing:
        raise ParamsError(f"params key 'download.classes': {missing} are not classes of this dataset")
    old = sorted({keys[w] for w in wanted})
    return {o: n for n, o in enumerate(old)}


def _relabel(classes: pd.DataFrame, label_map: dict[int, int] | None) -> pd.DataFrame:
    if label_map is None:
        return classes
    kept = classes[classes["label"].isin(label_map)].copy()
    kept["label"] = kept["label"].map(label_map)
    return kept.sort_values("label", ignore_index=True)


def _builtin(p: DownloadParams, seed: int, out: Path, work_dir: Path, common: dict, fp_base: dict) -> dict:
    records, truth = generate_builtin(p.builtin, seed)
    writer = RawDatasetWriter(builtin_classes(), work_dir=work_dir, fingerprint="builtin-nocache", **common)
    # Built-in generation takes seconds: no resumability needed, so never reuse stale units.
    shutil.rmtree(writer.work_dir, ignore_errors=True)
    writer.write(builtin_units(records), out, truth=truth)
    shutil.rmtree(writer.work_dir, ignore_errors=True)
    return {}


def _folder(p: DownloadParams, seed: int, out: Path, work_dir: Path, common: dict, fp_base: dict) -> dict:
    scan = scan_folder(p.folder.root, p.folder.split_map, no_split=p.folder.no_split)
    classes = _relabel(scan.classes, _subset(scan.classes, p.classes))
    units = folder_units(p.folder.root, scan.files, classes, unit_size=p.unit_size, max_per_class=p.max_per_class)
    listing = [f.rel for f in scan.files]
    writer = RawDatasetWriter(classes, work_dir=work_dir, fingerprint="folder-" + _fp(fp_base, listing), **common)
    writer.write(units, out, extra_quarantine=scan.rejected)
    return {"rejected_files": len(scan.rejected)}


def _hf(p: DownloadParams, seed: int, out: Path, work_dir: Path, common: dict, fp_base: dict) -> dict:
    h = p.hf
    paths = list_hub_files(h.repo_id, revision=h.revision, local_dir=h.local_dir, cache_dir=h.cache_dir)
    files, skipped = classify_files(paths, h.split_map)
    if not files:
        raise DatasetError(f"no shard of {h.repo_id} maps to train/test with split_map {h.split_map}")

    def fetch(repo_path: str) -> Path:
        return fetch_hub_file(h.repo_id, repo_path, revision=h.revision, local_dir=h.local_dir, cache_dir=h.cache_dir)

    names = class_names_from_parquet(fetch(files[0].repo_path), h.label_column)
    if names is None:
        raise DatasetError(f"{files[0].repo_path}: no ClassLabel names in the parquet metadata of '{h.label_column}'")
    all_classes = classes_table(names)
    label_map = _subset(all_classes, p.classes)
    reader = HubReader(h.repo_id, files, fetch, image_column=h.image_column, label_column=h.label_column,
                       label_map=label_map, max_per_class=p.max_per_class)
    writer = RawDatasetWriter(_relabel(all_classes, label_map), work_dir=work_dir,
                              fingerprint="hf-" + _fp(fp_base, paths), **common)
    writer.write(reader.units(), out, on_unit_done=reader.unit_done)
    return {"skipped_shards": len(skipped)}


def _idx(p: DownloadParams, seed: int, out: Path, work_dir: Path, common: dict, fp_base: dict) -> dict:
    classes = classes_from_names(p.idx.class_names)
    splits = read_idx_splits(p.idx.root, len(classes))
    return _write_arrays(p, splits, classes, out, work_dir, common, "idx-" + _fp(fp_base, idx_listing(p.idx.root)))


def _cifar(p: DownloadParams, seed: int, out: Path, work_dir: Path, common: dict, fp_base: dict) -> dict:
    archive = CifarArchive.open(p.cifar.path)
    classes = classes_from_names(cifar_class_names(archive, p.cifar.label))
    splits = read_cifar_splits(archive, p.cifar.label, len(classes))
    fp = f"{archive.variant}-" + _fp(fp_base, cifar_listing(p.cifar.path))
    return {"variant": archive.variant, **_write_arrays(p, splits, classes, out, work_dir, common, fp)}


def _write_arrays(p: DownloadParams, splits: list, classes: pd.DataFrame, out: Path, work_dir: Path, common: dict,
                  fp: str) -> dict:
    label_map = subset_labels(classes, p.classes)
    units = array_units(splits, label_map=label_map, max_per_class=p.max_per_class, unit_size=p.unit_size)
    RawDatasetWriter(_relabel(classes, label_map), work_dir=work_dir, fingerprint=fp, **common).write(units, out)
    return {}


# source name -> converter (params, seed, out, work_dir, writer options, fingerprint base) -> extra metrics
SOURCES = {"builtin": _builtin, "folder": _folder, "hf": _hf, "idx": _idx, "cifar": _cifar}


def convert(p: DownloadParams, seed: int, out: Path, work_dir: Path, *, workers: int = 2) -> dict:
    """Run the configured source into ``out`` with ``workers`` processes; return extra metrics of the source."""
    common = dict(shard_max_bytes=p.shard_max_mb * 2**20, workers=workers, max_pixels=p.max_pixels)
    fp_base = {"params": p.model_dump(), "seed": seed, "layout": 1}
    return SOURCES[p.source](p, seed, out, work_dir, common, fp_base)


def _fp(base: dict, listing: list[str]) -> str:
    return fingerprint({**base, "listing": listing})
