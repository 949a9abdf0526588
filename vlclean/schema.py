"""Columns of every table that crosses a stage boundary, and one ``validate_*`` per table.

A table is declared once here as an ordered mapping of column name to pyarrow type. Writers build
their frames with :func:`empty_frame` / :func:`conform` and readers call the matching ``validate``
function, so a missing column or a bad value fails at the boundary with the table and column named.

Tables
------
raw shard   ``data/raw/shards/<split>-NNNNN.parquet``: one row per image, encoded bytes included.
index       ``data/raw/index.parquet``: the raw columns without the bytes, plus ``source`` (where the
            image came from), ``shard`` and ``row``.
classes     ``data/raw/classes.csv``: ``label -> class_id, class_name``.
truth       ``data/raw/truth.csv``: planted issues of the built-in dataset.
quarantine  ``data/raw/quarantine.csv``: unreadable images (they stay in the index, ``valid=False``).
features    ``data/features/features.parquet``: per-image hashes and quality stats.
crop hashes ``data/features/crop_hashes.parquet``: hashes of the centred crops of each test image
            (one row per image x scale; detect_leaks' crop-robust query expansion).
arrays      ``data/features/embeddings/<shard>.npy`` (rows, dim) float16/32 and
            ``data/features/thumbnails/<shard>.npy`` (rows, side, side) uint8 grey thumbnails, rows in
            index order within their raw shard (:data:`THUMBNAIL_DTYPE`; invalid images: zeros).
            ``features.json`` names the shards, the thumbnail side, the crop scales and the copy thumbnails'
            side and version.

CSV tables (:data:`CSV_TABLES`, read with ``vlclean.csvio.read_csv(path, columns=...)``): the tagged
manifest, reviews, leaks report, cleaned manifest, train / eval / noisy labels, the match report and
the per-image test predictions (``data/evaluate/predictions.csv``: ``image_id, label, predicted,
correct``, sorted by ``image_id`` so two experiments' files pair row by row).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import pyarrow as pa

from vlclean.errors import SchemaError

# Issue vocabulary shared by the analyzer, the VL ingester, the truth file and the tagger.
ISSUE_TYPES: tuple[str, ...] = (
    "duplicate",
    "outlier",
    "mislabel",
    "label_outlier",
    "blur",
    "dark",
    "bright",
    "leakage",
    "invalid",
)
SPLITS: tuple[str, ...] = ("train", "test")

RAW_SHARD: dict[str, pa.DataType] = {
    "image_id": pa.string(),
    "split": pa.string(),
    "label": pa.int64(),
    "class_id": pa.string(),
    "class_name": pa.string(),
    "file_name": pa.string(),
    "image": pa.binary(),
    "width": pa.int32(),
    "height": pa.int32(),
    "format": pa.string(),
    "file_size": pa.int64(),
    "sha256": pa.string(),
    "valid": pa.bool_(),
    "error": pa.string(),
}

INDEX: dict[str, pa.DataType] = {
    **{k: v for k, v in RAW_SHARD.items() if k != "image"},
    "source": pa.string(),
    "shard": pa.string(),
    "row": pa.int64(),
}

CLASSES: dict[str, pa.DataType] = {
    "label": pa.int64(),
    "class_id": pa.string(),
    "class_name": pa.string(),
}

TRUTH: dict[str, pa.DataType] = {
    "issue": pa.string(),
    "image_id": pa.string(),
    "related_image_id": pa.string(),
    "detail": pa.string(),
}

QUARANTINE: dict[str, pa.DataType] = {
    "image_id": pa.string(),
    "split": pa.string(),
    "file_name": pa.string(),
    "source": pa.string(),
    "error": pa.string(),
}

FEATURES: dict[str, pa.DataType] = {
    "image_id": pa.string(),
    "valid": pa.bool_(),
    "error": pa.string(),
    "sha256": pa.string(),
    "pixel_md5": pa.string(),
    "phash": pa.uint64(),
    "dhash": pa.uint64(),
    "phash_mirror": pa.uint64(),
    "dhash_mirror": pa.uint64(),
    "brightness": pa.float32(),
    "blur": pa.float32(),
    "contrast": pa.float32(),
    "width": pa.int32(),
    "height": pa.int32(),
    "aspect_ratio": pa.float32(),
    "content_aspect": pa.float32(),  # width / height inside uniform borders (vlclean.copies.copy_views); NaN: not made
    "file_size": pa.int64(),
}

CROP_HASHES: dict[str, pa.DataType] = {
    "image_id": pa.string(),
    "scale": pa.float32(),  # fraction of each side kept, centred
    "phash": pa.uint64(),
    "dhash": pa.uint64(),
    "phash_mirror": pa.uint64(),
    "dhash_mirror": pa.uint64(),
}
THUMBNAIL_DTYPE = "uint8"

# Normalised Visual Layer export (ingest_vl): one row per exported media item ...
VL_MEDIA: dict[str, pa.DataType] = {
    "media_key": pa.string(),  # media_id when the format has one, else the file path as exported
    "file_name": pa.string(),  # basename as exported
    "file_path": pa.string(),  # path as exported (dataset prefix included)
    "image_id": pa.string(),  # matched dataset image ("" when unmatched or ambiguous)
    "match": pa.string(),  # how it matched: path | name | stem | unmatched | ambiguous | no_index
    "label_name": pa.string(),  # exported class name ("" when none)
    "label_source": pa.string(),  # User | Model | ""
    "uniqueness_score": pa.float64(),  # NaN when absent
    "cluster_id": pa.string(),
    "user_tags": pa.string(),  # ';'-joined tag names
    "source_format": pa.string(),  # platform_json | platform_parquet | vl_datasets_csv | hub_enriched | fastdup
    "source_file": pa.string(),
    "extra": pa.string(),  # JSON object of fields the format notes do not name (kept, never dropped)
}
# ... and one row per media item x issue.
VL_ISSUES: dict[str, pa.DataType] = {
    "media_key": pa.string(),
    "image_id": pa.string(),
    "issue_type": pa.string(),  # normalised: ISSUE_TYPES, or the raw type lower-cased when unknown
    "raw_issue_type": pa.string(),
    "confidence": pa.float64(),  # 0..1, NaN when the format has none
    "group_id": pa.string(),  # duplicate group id (one row per nested level)
    "group_threshold": pa.float64(),
    "related_file": pa.string(),  # prototype / matched image for duplicates and leakage
    "raw_value": pa.float64(),  # the format's own score (e.g. similarity, distance)
    "description": pa.string(),
    "source": pa.string(),  # source_format of the row
    "extra": pa.string(),
}

# CSV tables crossing a stage boundary (written with vlclean.csvio.write_csv, read back with
# csvio.read_csv(path, columns=<table>): text cells round-trip exactly, formula-like cells are escaped).
TAGGED_MANIFEST: dict[str, pa.DataType] = {  # apply_tags -> build_manifest: data/manifests/<ds>_tagged_manifest.csv
    "image_id": pa.string(),
    "file_name": pa.string(),
    "split": pa.string(),
    "label": pa.int64(),
    "class_name": pa.string(),
    "issues": pa.string(),  # 'type:confidence;...'
    "tags": pa.string(),  # ';'-joined
    "action": pa.string(),  # keep | drop | relabel | review
    "reasons": pa.string(),
    "new_label": pa.string(),
    "duplicate_group": pa.string(),
    "uniqueness_score": pa.float64(),
    "match": pa.string(),
    "review_name": pa.string(),  # the name the review page and reviews CSVs use
}
REVIEWS: dict[str, pa.DataType] = {  # people (review page export) -> apply_tags: data/reviews/*.csv
    "file_name": pa.string(),
    "tag": pa.string(),
    "action": pa.string(),
    "new_label": pa.string(),
    "reviewer": pa.string(),
    "note": pa.string(),
}
LEAKS_REPORT: dict[str, pa.DataType] = {  # detect_leaks -> build_manifest: data/manifests/<ds>_leaks_report.csv
    "test_id": pa.string(),
    "test_path": pa.string(),
    "train_id": pa.string(),
    "train_path": pa.string(),
    "method": pa.string(),
    "distance": pa.float64(),
    "tier": pa.string(),
    "scope": pa.string(),
    "phash_distance": pa.float64(),
    "dhash_distance": pa.float64(),
    "similarity": pa.float64(),
    "mirrored": pa.bool_(),
    "query_crop": pa.string(),
}
CLEANED_MANIFEST: dict[str, pa.DataType] = {  # build_manifest -> people: data/manifests/<ds>_cleaned_manifest.csv
    "image_id": pa.string(),
    "file_name": pa.string(),
    "split": pa.string(),
    "label": pa.int64(),
    "class_name": pa.string(),
    "final_label": pa.int64(),
    "final_class_name": pa.string(),
    "action": pa.string(),
    "reasons": pa.string(),
    "issues": pa.string(),
    "tags": pa.string(),
    "leaked": pa.bool_(),
    "in_clean_test": pa.bool_(),
}
TRAIN_LABELS: dict[str, pa.DataType] = {  # build_manifest -> noise, denoise -> train: image_id, label
    "image_id": pa.string(),
    "label": pa.int64(),
}
EVAL_LABELS: dict[str, pa.DataType] = {**TRAIN_LABELS, "leaked": pa.bool_()}  # build_manifest -> evaluate
NOISY_LABELS: dict[str, pa.DataType] = {  # noise -> denoise: data/noise/train_labels.csv
    "image_id": pa.string(),
    "true_label": pa.int64(),
    "label": pa.int64(),
    "flipped": pa.bool_(),
}
PREDICTIONS: dict[str, pa.DataType] = {  # evaluate -> report (paired comparisons): data/evaluate/predictions.csv
    "image_id": pa.string(),
    "label": pa.int64(),
    "predicted": pa.int64(),
    "correct": pa.bool_(),
}
MATCH_REPORT: dict[str, pa.DataType] = {  # ingest_vl -> people: data/vl_ingested/match_report.csv
    "media_key": pa.string(),
    "file_name": pa.string(),
    "file_path": pa.string(),
    "source_file": pa.string(),
    "match": pa.string(),
    "key": pa.string(),
    "reason": pa.string(),
}
CSV_TABLES: dict[str, dict[str, pa.DataType]] = {
    "tagged_manifest": TAGGED_MANIFEST,
    "reviews": REVIEWS,
    "leaks_report": LEAKS_REPORT,
    "cleaned_manifest": CLEANED_MANIFEST,
    "train_labels": TRAIN_LABELS,
    "eval_labels": EVAL_LABELS,
    "noisy_labels": NOISY_LABELS,
    "match_report": MATCH_REPORT,
    "predictions": PREDICTIONS,
}

TABLES: dict[str, dict[str, pa.DataType]] = {
    "raw_shard": RAW_SHARD,
    "index": INDEX,
    "classes": CLASSES,
    "truth": TRUTH,
    "quarantine": QUARANTINE,
    "features": FEATURES,
    "crop_hashes": CROP_HASHES,
    "vl_media": VL_MEDIA,
    "vl_issues": VL_ISSUES,
}


def arrow_schema(columns: Mapping[str, pa.DataType]) -> pa.Schema:
    """The pyarrow schema of a table declared above."""
    return pa.schema([pa.field(name, dtype) for name, dtype in columns.items()])


def empty_frame(columns: Mapping[str, pa.DataType]) -> pd.DataFrame:
    """A zero-row frame with the table's columns and dtypes."""
    return arrow_schema(columns).empty_table().to_pandas()


def conform(frame: pd.DataFrame, columns: Mapping[str, pa.DataType], table: str) -> pd.DataFrame:
    """Select and order the table's columns, cast to its types; extra columns are kept at the end.

    Raises :class:`SchemaError` naming the table and the missing columns.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"table '{table}' lacks column(s) {missing}; has {list(frame.columns)}")
    extra = [c for c in frame.columns if c not in columns]
    return frame[list(columns) + extra]


def to_arrow(frame: pd.DataFrame, columns: Mapping[str, pa.DataType], table: str) -> pa.Table:
    """Convert a frame to an arrow table with exactly the declared schema (extras dropped)."""
    frame = conform(frame, columns, table)
    try:
        return pa.Table.from_pandas(frame[list(columns)], schema=arrow_schema(columns), preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
        raise SchemaError(f"table '{table}': a column does not fit its declared type: {err}") from err


def _check_unique(frame: pd.DataFrame, column: str, table: str) -> None:
    dup = frame[column][frame[column].duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        rows = list(dup.index[dup == first][:5])
        raise SchemaError(f"table '{table}': {column} '{first}' appears more than once (rows {rows})")


def _check_no_nulls(frame: pd.DataFrame, cols: list[str], table: str) -> None:
    for col in cols:
        nulls = frame.index[frame[col].isna()]
        if len(nulls):
            raise SchemaError(f"table '{table}': column '{col}' is empty at row {nulls[0]}")


def validate_index(frame: pd.DataFrame, classes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check the raw index: unique ids, known splits, labels present in ``classes``."""
    frame = conform(frame, INDEX, "index")
    _check_no_nulls(frame, ["image_id", "split", "label", "file_name", "shard", "row", "valid"], "index")
    _check_unique(frame, "image_id", "index")
    bad_split = frame.index[~frame["split"].isin(SPLITS)]
    if len(bad_split):
        i = bad_split[0]
        raise SchemaError(f"table 'index': row {i} has split '{frame.at[i, 'split']}', expected one of {SPLITS}")
    if classes is not None:
        known = set(classes["label"].astype(int))
        bad = frame.index[~frame["label"].astype(int).isin(known)]
        if len(bad):
            i = bad[0]
            raise SchemaError(f"table 'index': row {i} ({frame.at[i, 'image_id']}) has label {frame.at[i, 'label']} not in classes")
    return frame


def validate_classes(frame: pd.DataFrame) -> pd.DataFrame:
    frame = conform(frame, CLASSES, "classes")
    _check_no_nulls(frame, list(CLASSES), "classes")
    _check_unique(frame, "label", "classes")
    return frame


def validate_truth(frame: pd.DataFrame, index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check the planted truth: known issue types, every id (and related id) present in the index."""
    frame = conform(frame, TRUTH, "truth")
    _check_no_nulls(frame, ["issue", "image_id"], "truth")
    bad = frame.index[~frame["issue"].isin(ISSUE_TYPES)]
    if len(bad):
        raise SchemaError(f"table 'truth': row {bad[0]} has unknown issue '{frame.at[bad[0], 'issue']}'")
    if index is not None:
        ids = set(index["image_id"])
        for col in ("image_id", "related_image_id"):
            vals = frame[col].dropna()
            vals = vals[vals != ""]
            unknown = vals[~vals.isin(ids)]
            if len(unknown):
                raise SchemaError(f"table 'truth': row {unknown.index[0]} {col} '{unknown.iloc[0]}' is not in the index")
    return frame


def validate_features(frame: pd.DataFrame) -> pd.DataFrame:
    frame = conform(frame, FEATURES, "features")
    _check_no_nulls(frame, ["image_id", "valid"], "features")
    _check_unique(frame, "image_id", "features")
    return frame


def validate_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """Check per-image predictions: unique ids, no empty cells, ``correct == (label == predicted)``."""
    frame = conform(frame, PREDICTIONS, "predictions")
    _check_no_nulls(frame, list(PREDICTIONS), "predictions")
    _check_unique(frame, "image_id", "predictions")
    wrong = frame.index[frame["correct"].astype(bool) != (frame["label"] == frame["predicted"])]
    if len(wrong):
        i = wrong[0]
        raise SchemaError(f"table 'predictions': row {i} ({frame.at[i, 'image_id']}) has correct={frame.at[i, 'correct']} "
                          f"but label {frame.at[i, 'label']} and predicted {frame.at[i, 'predicted']}")
    return frame


def validate_crop_hashes(frame: pd.DataFrame) -> pd.DataFrame:
    frame = conform(frame, CROP_HASHES, "crop_hashes")
    _check_no_nulls(frame, list(CROP_HASHES), "crop_hashes")
    dup = frame.duplicated(["image_id", "scale"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise SchemaError(f"table 'crop_hashes': image_id '{row['image_id']}' has scale {row['scale']} twice")
    return frame
