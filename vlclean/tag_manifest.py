"""The tagged manifest of ``apply_tags``: images with their VL issues, one decision each, reviews, the review site.

Two sources of images: the dataset index matched to an ingested export (:func:`images_from_index`,
the pipeline) or an export alone (:func:`images_from_export`, the standalone command, one row per
exported image). :func:`tag_images` decides with the rules of :mod:`vlclean.tagging` and applies the
reviews read by :func:`read_reviews`; :func:`write_review` writes the paginated review site of the
flagged images, reading their thumbnails one page at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pandas as pd

from vlclean.datasets import folder_paths
from vlclean.errors import UnsafePathError
from vlclean.storage import scratch_dir
from vlclean.review import REVIEW_COLUMNS, ThumbnailSpool, read_reviews_csv, safe_thumbnail, write_review_site
from vlclean.tagging import MANIFEST_COLUMNS, Rule, TagDef, apply_reviews, decide
from vlclean.vl_ingest import VLExport

STANDALONE_COLUMNS: tuple[str, ...] = ("file_name", "label", "issues", "tags", "action", "reason", "new_label",
                                       "duplicate_group", "uniqueness_score")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def check_dataset_name(name: str) -> str:
    """``name`` when it is usable inside an output file name (letters, digits, ``_ . -``; no folders)."""
    if not isinstance(name, str) or not _DATASET_NAME.match(name) or ".." in name:
        raise UnsafePathError(f"dataset name {name[:100]!r} must be 1-100 letters, digits, '_', '.' or '-' "
                              "(no folders, no '..'): it becomes part of output file names")
    return name


def issue_text(issues: pd.DataFrame) -> pd.Series:
    """'type:confidence;...' per key (one entry per issue type, its highest confidence)."""
    if issues.empty:
        return pd.Series(dtype=str)
    best = issues.groupby(["key", "issue_type"], observed=True)["confidence"].max().reset_index()
    best["txt"] = [t if pd.isna(c) else f"{t}:{c:.2f}" for t, c in zip(best["issue_type"], best["confidence"])]
    return best.groupby("key")["txt"].agg(";".join)


def review_names(index: pd.DataFrame) -> pd.Series:
    """The name reviews use for each image: its file name, or ``split/class_id/file_name`` where the file
    name is not unique in the dataset (an ImageFolder tree may repeat names across folders)."""
    names = index["file_name"].astype(str)
    return names.where(~names.duplicated(keep=False), folder_paths(index))


def images_from_index(index: pd.DataFrame, media: pd.DataFrame) -> pd.DataFrame:
    """Every dataset image with what the matched export items say about it (``match`` not_in_export if none)."""
    matched = media[media["image_id"] != ""]
    agg = matched.groupby("image_id").agg(
        uniqueness_score=("uniqueness_score", "min"), cluster_id=("cluster_id", "first"),
        user_tags=("user_tags", lambda s: ";".join(sorted({t for x in s for t in str(x).split(";") if t}))),
        label_source=("label_source", "first"), match=("match", "first"),
    )
    images = index[["image_id", "file_name", "split", "label", "class_name"]].merge(
        agg, left_on="image_id", right_index=True, how="left")
    images["review_name"] = review_names(index).to_numpy()
    images["match"] = images["match"].fillna("not_in_export")
    return images.assign(key=images["image_id"])


def images_from_export(export: VLExport) -> pd.DataFrame:
    """One row per exported media item (no dataset index), keyed by its media key."""
    media = export.media
    images = pd.DataFrame({
        "key": media["media_key"], "image_id": media["media_key"], "file_name": media["file_name"],
        "split": "", "label": media["label_name"], "class_name": media["label_name"],
        "uniqueness_score": media["uniqueness_score"], "cluster_id": media["cluster_id"],
        "user_tags": media["user_tags"], "label_source": media["label_source"], "match": "no_index",
    })
    names = media["file_name"].astype(str)
    images["review_name"] = names.where(~names.duplicated(keep=False), media["file_path"].astype(str)).to_numpy()
    return images


def tag_images(images: pd.DataFrame, issues: pd.DataFrame, rules: list[Rule], taxonomy: Mapping[str, TagDef],
               reviews: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tagged manifest (``MANIFEST_COLUMNS``) and the review conflicts."""
    decisions = decide(images, issues, rules, taxonomy)
    conflicts = pd.DataFrame(columns=["key", "file_name", "reviews", "sources"])
    if reviews is not None and len(reviews):
        names = images["review_name"] if "review_name" in images else images["file_name"]
        decisions, conflicts, _ = apply_reviews(decisions, reviews, dict(zip(names, images["key"])))
    out = images.merge(decisions, on="key", how="left")
    out["issues"] = out["key"].map(issue_text(issues)).fillna("")
    for col in MANIFEST_COLUMNS:
        if col not in out:
            out[col] = ""
    return out[list(MANIFEST_COLUMNS)], conflicts


def standalone_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The standalone command's output: one row per exported image, people-facing column names."""
    return manifest.rename(columns={"reasons": "reason"})[list(STANDALONE_COLUMNS)]


def review_files(folder: Path) -> list[Path]:
    """The reviews CSVs of ``folder``; a symlink that leads out of the folder is refused."""
    if not folder.is_dir():
        return []
    root = folder.resolve()
    files = []
    for path in sorted(folder.glob("*.csv")):
        if path.is_symlink() and root not in path.resolve().parents:
            raise UnsafePathError(f"{path}: a symlink out of the reviews folder ({path.resolve()}); "
                                  "copy the file in instead")
        files.append(path)
    return files


def read_reviews(folder: Path | None, taxonomy: Iterable[str], class_names: list[str],
                 file_names: list[str]) -> pd.DataFrame:
    """Every reviews CSV of ``folder`` (validated), with a ``source`` column; empty when there are none."""
    frames = [read_reviews_csv(path, taxonomy=list(taxonomy), class_names=class_names, file_names=file_names,
                               with_source=True) for path in (review_files(folder) if folder else [])]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*REVIEW_COLUMNS, "source"])


def flagged(manifest: pd.DataFrame) -> pd.DataFrame:
    """The images people should look at: an action other than keep, or any issue."""
    return manifest[(manifest["action"] != "keep") | (manifest["issues"] != "")]


def review_items(manifest: pd.DataFrame) -> pd.DataFrame:
    """The review page's items (``review.ITEM_COLUMNS``) for the flagged images of a tagged manifest."""
    rows = flagged(manifest)
    return pd.DataFrame({
        "image_id": rows["image_id"].astype(str), "file_name": rows["review_name"].astype(str),
        "split": rows["split"].astype(str), "label": rows["class_name"].astype(str),
        "issues": rows["issues"], "tags": rows["tags"], "action": rows["action"],
        "reasons": rows["reasons"], "new_label": rows["new_label"].fillna(""),
        "duplicate_group": rows["duplicate_group"].fillna(""),
    })


def write_review(folder: str | Path, manifest: pd.DataFrame, images: Iterator[tuple[str, bytes | None]] | None,
                 taxonomy: Mapping[str, TagDef], class_names: list[str], title: str) -> list:
    """Write the review site of ``manifest``'s flagged images into ``folder``.

    ``images`` yields ``(image_id, encoded bytes)`` of (at least) the flagged images, in any order (for
    example shard by shard); each is made a safe thumbnail and spooled to a temporary file, so memory
    holds one image and one page at a time. None: placeholders only.
    """
    items = review_items(manifest)
    wanted = set(items["image_id"])
    with scratch_dir("vl_review_") as tmp:
        spool = ThumbnailSpool(tmp)
        try:
            for image_id, data in images or ():
                if image_id in wanted:
                    spool.add(image_id, safe_thumbnail(data))
            return write_review_site(folder, items, thumbnails=spool.get,
                                     taxonomy={k: v.description for k, v in taxonomy.items()},
                                     class_names=class_names, title=title)
        finally:
            spool.close()


def export_image_files(folder: Path, names: Iterable[str]) -> Iterator[tuple[str, Path]]:
    """``(name, file)`` of the export's image files whose base name is in ``names``; files reached through
    a symlink that leads out of ``folder`` are skipped (an export cannot make us read other files)."""
    wanted = set(names)
    root = folder.resolve()
    for dirpath, _, files in os.walk(folder, followlinks=False):
        for name in files:
            if name not in wanted:
                continue
            path = Path(dirpath) / name
            if path.is_symlink() and root not in path.resolve().parents:
                continue
            yield name, path


def standalone_images(manifest: pd.DataFrame, folder: Path | None) -> Iterator[tuple[str, bytes | None]]:
    """``(image_id, bytes)`` for the standalone command: the export's image files matched by file name."""
    if folder is None:
        return
    ids = dict(zip(manifest["file_name"].astype(str), manifest["image_id"]))
    for name, path in export_image_files(folder, ids):
        yield ids[name], path.read_bytes()


def tag_metrics(manifest: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Counts per action, per split and per tag, and the frame of the tags-and-actions bar plot."""
    tags = manifest.assign(tag=manifest["tags"].str.split(";")).explode("tag")
    tags = tags[tags["tag"].fillna("") != ""]
    metrics = {
        "images": len(manifest),
        "actions": {k: int(v) for k, v in manifest["action"].value_counts().sort_index().items()},
        "actions_per_split": {s: {k: int(v) for k, v in g["action"].value_counts().sort_index().items()}
                              for s, g in manifest.groupby("split")},
        "tags": {k: int(v) for k, v in tags["tag"].value_counts().sort_index().items()},
        "flagged": int((manifest["issues"] != "").sum()),
    }
    rows = ([("tag", k, v) for k, v in metrics["tags"].items()]
            + [("action", k, v) for k, v in metrics["actions"].items()])
    frame = pd.DataFrame(rows, columns=["kind", "name", "images"])
    return metrics, frame.assign(label=frame["kind"] + ": " + frame["name"])


def site_folder(output: Path, html: str | None) -> Path:
    """Where the standalone review site goes: ``html``, or ``<output stem>_review/`` beside the CSV; never
    the CSV itself."""
    folder = Path(html) if html else output.with_name(f"{output.stem}_review")
    if folder.resolve() == output.resolve():
        raise UnsafePathError(f"--html {folder} is the --output file; give the review site its own folder")
    return folder

