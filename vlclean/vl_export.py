"""Write an analysis (:mod:`vlclean.detect`) in Visual Layer's export format, and nothing else.

The analyzer is an independent, local stand-in for Visual Layer: it reports the same issue types,
and writes them as VL's platform export (``metadata.json`` schema 1.1: ``info`` + ``media_items``
with ``metadata_items``), so later stages read a local export and a real VL export the same way.
See ``../shared/VL_EXPORT_FORMAT.md``.
The detectors that produce the analysis live in :mod:`vlclean.detect`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from vlclean.datasets import folder_paths
from vlclean.detect import NAMESPACE, Analysis
from vlclean.storage import atomic_path

SCHEMA_VERSION = "1.1"
VL_ISSUE_NAMES = {
    "duplicate": "duplicates",
    "outlier": "outliers",
    "mislabel": "mislabels",
    "blur": "blur",
    "dark": "dark",
    "bright": "bright",
    "invalid": "invalid",
}
EXPORT_CSV_COLUMNS = (
    "media_id", "image_id", "file_name", "file_path", "split", "label", "category_name",
    "uniqueness_score", "cluster_id", "issue_type", "confidence", "duplicate_group_id",
    "duplicate_threshold", "suggested_label", "description",
)  # fmt: skip


def media_id(image_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"media:{image_id}"))


# -- writing ---------------------------------------------------------------------------------------
def _file_size(n: int) -> str:
    return f"{n / 1024:.2f}KB" if n < 1024**2 else f"{n / 1024**2:.2f}MB"


def _issue_items(issues: pd.DataFrame, class_names: dict[int, str]) -> dict[str, list[dict]]:
    """Each image's issue metadata items, in the order of ``issues``: one pass over the table (a
    per-image ``groupby`` + ``itertuples`` cost ~4 ms an image with issues: an hour at ImageNet's)."""
    out: dict[str, list[dict]] = {}
    for r in issues.itertuples(index=False):
        props: dict[str, object] = {"issue_type": VL_ISSUE_NAMES[r.issue], "confidence": round(float(r.confidence), 4)}
        if r.issue == "duplicate":
            props["duplicate_group_id"] = r.duplicate_group_id
            props["duplicate_threshold"] = round(float(r.duplicate_threshold), 4)
        if r.issue == "mislabel" and not pd.isna(r.suggested_label):
            props["suggested_label"] = class_names.get(int(r.suggested_label), str(r.suggested_label))
        if isinstance(r.description, str) and r.description:
            props["issues_description"] = r.description
        out.setdefault(r.image_id, []).append({"type": "issue", "properties": props})
    return out


def iter_media_items(analysis: Analysis, classes: pd.DataFrame, dataset: str) -> Iterator[dict]:
    names = dict(zip(classes["label"].astype(int), classes["class_name"]))
    by_image = _issue_items(analysis.issues, names)
    for m, file_path in zip(analysis.media.itertuples(index=False), folder_paths(analysis.media, dataset)):
        meta = [{"type": "image_label", "properties": {"category_name": m.class_name, "source": "User",
                                                       "original_id": str(m.label)}}]
        meta.extend(by_image.get(m.image_id, ()))
        yield {
            "media_id": media_id(m.image_id),
            "media_type": "image",
            "file_name": m.file_name,
            "file_path": file_path,
            "file_size": _file_size(int(m.file_size)),
            "height": int(m.height),
            "width": int(m.width),
            "url": "",
            "cluster_id": m.cluster_id or None,
            "uniqueness_score": None if pd.isna(m.uniqueness_score) else round(float(m.uniqueness_score), 4),
            "media_status": "indexed",
            "metadata_items": meta,
        }


def write_export_json(path: str | Path, analysis: Analysis, classes: pd.DataFrame, dataset: str,
                      *, description: str = "") -> None:
    """Stream the export to ``path`` atomically (one media item at a time, bounded memory)."""
    info = {"schema_version": SCHEMA_VERSION, "dataset": dataset, "description": description or
            f"{dataset}: local analysis by vl-imagenet-cleaning", "dataset_url": "", "export_time": "",
            "exported_by": "vlclean.analyze", "total_media_items": len(analysis.media)}
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        fh.write('{"info": ' + json.dumps(info) + ', "media_items": [\n')
        for i, item in enumerate(iter_media_items(analysis, classes, dataset)):
            fh.write(("" if i == 0 else ",\n") + json.dumps(item))
        fh.write("\n]}\n")


def export_table(analysis: Analysis, classes: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The flat export: one row per image x issue; images without issues get one row, issue empty."""
    names = dict(zip(classes["label"].astype(int), classes["class_name"]))
    media = analysis.media.assign(
        media_id=lambda f: f["image_id"].map(media_id),
        file_path=lambda f: folder_paths(f, dataset),
        category_name=lambda f: f["class_name"],
    )
    issues = analysis.issues.assign(issue_type=lambda f: f["issue"].map(VL_ISSUE_NAMES))
    issues["suggested_label"] = issues["suggested_label"].map(
        lambda v: "" if pd.isna(v) else names.get(int(v), str(v)))
    flat = media.merge(issues.drop(columns=["issue"]), on="image_id", how="left")
    flat["issue_type"] = flat["issue_type"].fillna("")
    flat["confidence"] = flat["confidence"].astype(float).round(4)
    flat["uniqueness_score"] = flat["uniqueness_score"].astype(float).round(4)
    return flat[list(EXPORT_CSV_COLUMNS)]
