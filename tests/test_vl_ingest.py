"""VL export ingestion: every format through its fixture, matching to the index, bad inputs, fuzzing."""

from __future__ import annotations

import copy
import json
import math
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.vl_fixtures import (
    DUP_LEVELS,
    fixed_uuid,
    issue_item,
    platform_document,
    platform_item,
    write_fastdup_dir,
    write_hub_enriched,
    write_platform_json,
    write_platform_parquet,
    write_platform_zip,
    write_vl_datasets_csv,
)
from vlclean import schema
from vlclean.errors import ExportFormatError, SchemaError, UnsafePathError
from vlclean.vl_ingest import (
    ISSUE_ALIASES,
    FastdupThresholds,
    VLExport,
    detect_format,
    extract_images,
    match_paths,
    match_report,
    match_to_index,
    normalise_issue_type,
    parse_file_size,
    read_export,
)


def rich_items() -> list[dict]:
    """Three media items covering every metadata item type and the odd cases."""
    return [
        platform_item(
            "n02328150_10770.JPEG", label="Angora", tags=["review", "keep"],
            issues=[("mislabels", 0.91), ("normal", 0.99), ("Sparkly", 0.4)],
            dup_levels=DUP_LEVELS, fields={"vendor_score": {"a": 1}},
        ),
        platform_item(
            "ILSVRC2012_val_00040623.JPEG", label="tabby", label_source="Model", extra_labels=[("tiger cat", "User")],
            issues=[{"issue_type": "Outliers", "issues_description": "far from its class"},
                    {"issue_type": "blur", "confidence": 0.6, "suggested_label": "x"}],
            objects=[{"bbox": [1, 2, 30, 40], "category_name": "cat", "source": "Model",
                      "metadata_items": [issue_item("dark", 0.77)]}],
            caption="a cat", uniqueness=None, file_size="1.5MB",
        ),
        platform_item("n01440764_1.JPEG", issues=[], uniqueness=1.0, file_size="garbage"),
    ]


def extras(frame: pd.DataFrame) -> list[dict]:
    return [json.loads(x) for x in frame["extra"]]


def check_schema(export: VLExport) -> None:
    assert list(export.media.columns)[: len(schema.VL_MEDIA)] == list(schema.VL_MEDIA)
    assert list(export.issues.columns)[: len(schema.VL_ISSUES)] == list(schema.VL_ISSUES)
    schema.to_arrow(export.media, schema.VL_MEDIA, "vl_media")
    schema.to_arrow(export.issues, schema.VL_ISSUES, "vl_issues")
    assert export.media["media_key"].is_unique
    assert set(export.issues["media_key"]) <= set(export.media["media_key"])
    assert export.issues["confidence"].dropna().between(0, 1).all()


# ------------------------------------------------------------------ platform JSON


def test_platform_json_round_trip(tmp_path: Path) -> None:
    path = write_platform_json(tmp_path / "metadata.json", rich_items())
    assert detect_format(path) == "platform_json"
    export = read_export(path)
    check_schema(export)
    media = export.media.set_index("file_name")
    assert list(export.media["match"].astype(str)) == ["no_index"] * 3
    assert (export.media["image_id"] == "").all()
    first = media.loc["n02328150_10770.JPEG"]
    assert first["media_key"] == fixed_uuid("media:n02328150_10770.JPEG")
    assert first["file_path"] == "imagenet1k/n02328150_10770.JPEG"
    assert (first["label_name"], first["label_source"], first["user_tags"]) == ("Angora", "User", "review;keep")
    assert first["uniqueness_score"] == pytest.approx(0.513)
    extra0 = json.loads(first["extra"])
    assert extra0["vendor_score"] == {"a": 1}  # unknown field kept
    assert extra0["file_size_bytes"] == round(185.09 * 1024) and extra0["width"] == 500
    assert "url" not in extra0

    second = media.loc["ILSVRC2012_val_00040623.JPEG"]
    assert (second["label_name"], second["label_source"]) == ("tiger cat", "User")  # User preferred
    assert math.isnan(second["uniqueness_score"])
    extra1 = json.loads(second["extra"])
    assert extra1["other_labels"][0]["category_name"] == "tabby"
    assert extra1["captions"] == [{"text": "a cat", "source": "Model"}]
    assert extra1["object_labels"][0]["bbox"] == [1, 2, 30, 40]
    assert extra1["file_size_bytes"] == round(1.5 * 1024**2)
    assert json.loads(media.loc["n01440764_1.JPEG", "extra"])["file_size"] == "garbage"

    issues = export.issues
    key0 = first["media_key"]
    dups = issues[(issues["media_key"] == key0) & (issues["issue_type"] == "duplicate")]
    assert sorted(dups["group_threshold"]) == list(DUP_LEVELS)  # every nested level is its own row
    assert dups["group_id"].nunique() == len(DUP_LEVELS)
    assert (dups["raw_issue_type"] == "duplicates").all() and (dups["confidence"] == 0.8).all()
    types0 = set(issues.loc[issues["media_key"] == key0, "issue_type"])
    assert types0 == {"duplicate", "mislabel", "sparkly"}  # normal gives no row; unknown kept lower-cased
    rows1 = issues[issues["media_key"] == second["media_key"]].set_index("issue_type")
    assert math.isnan(rows1.loc["outlier", "confidence"])  # confidence missing -> NaN
    assert rows1.loc["outlier", "description"] == "far from its class"
    assert json.loads(rows1.loc["blur", "extra"]) == {"suggested_label": "x"}
    assert json.loads(rows1.loc["dark", "extra"])["object"]["bbox"] == [1, 2, 30, 40]  # object-level issue
    assert export.stats["unknown_issue_types"] == {"sparkly": 1}
    assert export.stats["normal"] == 1
    assert export.stats["files"][0]["info"]["schema_version"] == "1.1"
    assert export.stats["formats"]["platform_json"] == {"files": 1, "media": 3, "issues": len(issues)}


def test_platform_json_info_after_items_and_unzipped_folder(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    write_platform_json(folder / "metadata.json", rich_items()[:2], info_last=True, info={"total_media_items": 5})
    (folder / "images").mkdir()
    export = read_export(folder)
    assert export.images_dir == folder / "images"
    stats = export.stats["files"][0]
    assert stats["info"]["dataset"] == "ImageNet_1k"
    assert "total_media_items says 5" in stats["warnings"][0]


def test_any_json_with_info_and_media_items(tmp_path: Path) -> None:
    path = tmp_path / "export_2026.json"
    path.write_text(json.dumps(platform_document([platform_item("a.png")])))
    assert detect_format(path) == "platform_json"
    assert len(read_export(path).media) == 1


def test_own_analyzer_export_parses(tmp_path: Path) -> None:
    from vlclean.detect import Analysis
    from vlclean.vl_export import write_export_json

    ids = [f"digits_{i:05d}" for i in range(4)]
    media = pd.DataFrame({
        "image_id": ids, "file_name": [f"{i}.png" for i in ids], "split": ["train", "train", "test", "test"],
        "label": [1, 1, 2, 3], "class_id": ["c1", "c1", "c2", "c3"], "class_name": ["one", "one", "two", "three"],
        "width": 32, "height": 32,
        "file_size": 1500, "uniqueness_score": [0.1, 0.0, np.nan, 0.9], "cluster_id": ["c1", "c1", "", "c2"],
    })
    issues = pd.DataFrame({
        "image_id": [ids[0], ids[1], ids[0], ids[1], ids[2], ids[3]],
        "issue": ["duplicate", "duplicate", "duplicate", "duplicate", "invalid", "mislabel"],
        "confidence": [0.99, 0.99, 0.98, 0.98, 1.0, 0.7],
        "duplicate_group_id": ["g94", "g94", "g98", "g98", None, None],
        "duplicate_threshold": [0.94, 0.94, 0.98, 0.98, np.nan, np.nan],
        "suggested_label": [np.nan, np.nan, np.nan, np.nan, np.nan, 2.0],
        "description": [None, None, None, None, "cannot decode", None],
    })
    classes = pd.DataFrame({"label": [1, 2, 3], "class_name": ["one", "two", "three"]})
    path = tmp_path / "digits_vl_export.json"
    write_export_json(path, Analysis(media=media, issues=issues), classes, "digits")
    export = read_export(path)
    check_schema(export)
    assert len(export.media) == 4 and len(export.issues) == 6
    index = pd.DataFrame({"image_id": ids, "file_name": media["file_name"], "split": media["split"]})
    matched = match_to_index(export, index)
    assert (matched.media["image_id"] == pd.Series(ids)).all()
    assert set(matched.media["match"].astype(str)) == {"name"}  # "digits/" prefix stripped
    by_type = matched.issues.set_index(["image_id", "issue_type", "group_threshold"]).sort_index()
    assert by_type.loc[(ids[3], "mislabel")]["extra"].map(json.loads).iloc[0] == {"suggested_label": "two"}
    assert by_type.loc[(ids[2], "invalid")]["description"].iloc[0] == "cannot decode"
    assert len(matched.issues[(matched.issues["issue_type"] == "duplicate")]) == 4


def test_platform_json_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_platform_json(tmp_path / "metadata.json", rich_items())
    read_export(path, progress=True)
    assert "metadata.json" in capsys.readouterr().err


def test_unknown_metadata_types_and_video_info_kept(tmp_path: Path) -> None:
    item = platform_item("clip_0001.jpg", fields={"media_type": "video_frame"})
    item["metadata_items"] += [
        {"type": "video_info", "properties": {"frame_number": 12, "video_id": "v1", "timestamp": 0.4}},
        {"type": "segmentation_mask", "properties": {"rle": "abc"}},
        {"type": "caption", "properties": {"caption": "sdk-style caption"}},
    ]
    export = read_export(write_platform_json(tmp_path / "metadata.json", [item]))
    extra = json.loads(export.media["extra"].iloc[0])
    assert extra["video_info"]["frame_number"] == 12 and extra["media_type"] == "video_frame"
    assert extra["other_metadata_items"][0]["type"] == "segmentation_mask"
    assert extra["captions"] == [{"text": "sdk-style caption", "source": None}]
    assert export.stats["files"][0]["other_metadata_types"] == {"segmentation_mask": 1}


# ------------------------------------------------------------------ ZIP and parquet


def test_platform_zip_json_with_images(tmp_path: Path) -> None:
    items = rich_items()
    images = {it["file_name"]: b"jpegbytes" for it in items}
    path = write_platform_zip(tmp_path / "export.zip", items, images=images, folder="ImageNet_1k_export")
    assert detect_format(path) == "platform_zip"
    export = read_export(path)
    check_schema(export)
    assert len(export.media) == 3
    assert export.stats["files"][0]["images"] == 3
    assert export.images_zip == path and export.images_zip_dir == "ImageNet_1k_export/images/"
    out = extract_images(export, tmp_path / "imgs")
    assert sorted(p.name for p in out.iterdir()) == sorted(images)
    assert "ImageNet_1k_export/metadata.json" in export.media["source_file"].iloc[0]


@pytest.mark.parametrize("layout", ["list", "flat", "metadata"])
def test_platform_zip_parquet(tmp_path: Path, layout: str) -> None:
    items = rich_items()
    path = write_platform_zip(tmp_path / "export.zip", items, flavour="parquet", layout=layout)
    export = read_export(path)
    check_schema(export)
    assert export.images_zip is None and export.images_dir is None
    assert len(export.media) == 3
    media = export.media.set_index("file_name")
    assert media.loc["n02328150_10770.JPEG", "media_key"] == items[0]["media_id"]
    assert media.loc["n02328150_10770.JPEG", "file_path"] == "imagenet1k/n02328150_10770.JPEG"
    assert media.loc["n01440764_1.JPEG", "uniqueness_score"] == 1.0
    assert json.loads(media.loc["n01440764_1.JPEG", "extra"])["mystery_column"] == "m-n01440764_1.JPEG"
    issues = export.issues
    dups = issues[issues["issue_type"] == "duplicate"]
    assert sorted(dups["group_threshold"]) == list(DUP_LEVELS)
    assert "normal" not in set(issues["raw_issue_type"])
    assert set(issues["issue_type"]) >= {"duplicate", "mislabel", "outlier", "blur", "sparkly"}


def test_zip_layouts(tmp_path: Path) -> None:
    items = [platform_item("a.png")]
    both = write_platform_zip(tmp_path / "both.zip", items, flavour="parquet",
                              extra_members={"metadata.json": json.dumps(platform_document(items)).encode()})
    assert read_export(both).stats["files"][0]["member"] == "metadata.json"  # JSON preferred
    two = write_platform_zip(tmp_path / "two.zip", items, folder="x",
                             extra_members={"y/metadata.json": json.dumps(platform_document(items)).encode()})
    with pytest.raises(ExportFormatError, match=r"two\.zip: ZIP holds several exports"):
        read_export(two)
    plain = read_export(write_platform_zip(tmp_path / "plain.zip", items))
    with pytest.raises(ExportFormatError, match="no images"):
        extract_images(plain, tmp_path / "out")


def test_platform_parquet_file(tmp_path: Path) -> None:
    path = write_platform_parquet(tmp_path / "metadata.parquet", rich_items(), layout="flat")
    assert detect_format(path) == "platform_parquet"
    export = read_export(path)
    assert len(export.media) == 3
    assert export.stats["files"][0]["layout"] == "flat"


# ------------------------------------------------------------------ vl-datasets CSV


def test_vl_datasets_csv(tmp_path: Path) -> None:
    rows = [
        ("imagenet1k/train/n01/a.JPEG", "Duplicate", 0.9681, "imagenet1k/train/n01/b.JPEG"),
        ("imagenet1k/train/n01/a.JPEG", "dark", 0.02, ""),
        ("imagenet1k/val/c.JPEG", "leakage", 0.99, "imagenet1k/train/n02/d.JPEG"),
        ("imagenet1k/val/e.JPEG", "MISLABELED", "", None),
        ("imagenet1k/val/f.JPEG", "Normal", 0.1, None),
        ("imagenet1k/val/g.JPEG", "Brand-New", 0.5, None),
    ]
    path = write_vl_datasets_csv(tmp_path / "imagenet1k_images_issue_file_list.csv", rows,
                                 counts=[("Duplicate", 1, 0.1, "train"), ("dark", 1, 0.1, "train")],
                                 extra_columns={"note": ["x", "", "", "", "", ""]})
    count_path = tmp_path / "imagenet1k_images_issue_count.csv"
    assert detect_format(path) == "vl_datasets_csv" == detect_format(count_path)
    export = read_export([path, count_path])
    check_schema(export)
    assert list(export.media["media_key"]) == list(dict.fromkeys(r[0] for r in rows))  # one row per filename
    assert export.media.set_index("media_key").loc["imagenet1k/val/c.JPEG", "file_name"] == "c.JPEG"
    issues = export.issues
    assert list(issues["issue_type"]) == ["duplicate", "dark", "leakage", "mislabel", "brand-new"]
    assert issues["related_file"].iloc[0] == "imagenet1k/train/n01/b.JPEG"
    assert issues["raw_value"].iloc[0] == pytest.approx(0.9681)
    assert math.isnan(issues["raw_value"].iloc[3]) and issues["confidence"].isna().all()
    assert json.loads(issues["extra"].iloc[0]) == {"note": "x"}
    assert export.stats["unknown_issue_types"] == {"brand-new": 1}
    assert export.stats["files"][1]["issue_counts"][0] == {"reason": "Duplicate", "count": 1, "pct": "0.1",
                                                            "split": "train"}


# ------------------------------------------------------------------ Hub enriched


@pytest.mark.parametrize("columns", [("image_uri", "image_label", "image_issues"), ("image_id", "label", "issues")])
def test_hub_enriched(tmp_path: Path, columns: tuple[str, str, str]) -> None:
    rows = [
        {"uri": "hf://datasets/x/train/n01/a.JPEG", "label": "tench",
         "issues": [{"issue_type": "duplicates", "confidence": 0.8, "duplicate_group_id": "g1"},
                    {"issue_type": "blur", "confidence": 0.6, "description": "soft"}], "split": "train"},
        {"uri": "train/n01/b.JPEG", "label": "tench", "issues": [], "split": "train"},
        {"uri": "train/n02/c.JPEG", "label": None, "issues": [{"issue_type": "normal", "confidence": 1.0}],
         "split": "train"},
    ]
    path = write_hub_enriched(tmp_path / "enriched.parquet", rows, uri_column=columns[0], label_column=columns[1],
                              issues_column=columns[2], with_image=True)
    assert detect_format(path) == "hub_enriched"
    export = read_export(path)
    check_schema(export)
    media = export.media
    assert list(media["file_path"]) == ["datasets/x/train/n01/a.JPEG", "train/n01/b.JPEG", "train/n02/c.JPEG"]
    assert list(media["label_name"].astype(str)) == ["tench", "tench", ""]
    assert json.loads(media["extra"].iloc[0]) == {"split": "train"}  # image bytes column skipped
    assert export.stats["files"][0]["skipped_columns"] == ["image"]
    issues = export.issues
    assert list(issues["issue_type"]) == ["duplicate", "blur"]
    assert issues["group_id"].iloc[0] == "g1" and issues["description"].iloc[1] == "soft"


# ------------------------------------------------------------------ fastdup


def test_fastdup_folder(tmp_path: Path) -> None:
    files = [f"/data/imagenet/train/n01/{i}.JPEG" for i in range(6)]
    folder = write_fastdup_dir(
        tmp_path / "fd", files,
        similarity=[(0, 1, 0.97), (1, 0, 0.97), (2, 3, 0.93)],
        outliers=[(5, 0, 0.3), (5, 1, 0.35)],
        stats={0: (500.0, 100.0), 1: (40.0, 100.0), 2: (500.0, 5.0), 3: (500.0, 254.5)},
        bad=[("/data/imagenet/val/broken.JPEG", "ERROR_CORRUPT_IMAGE")],
        components={0: 7, 1: 7, 2: 8, 3: 9},
    )
    assert detect_format(folder) == "fastdup"
    export = read_export(folder)
    check_schema(export)
    assert export.stats["files"][0]["root"] == "/data/imagenet/"
    keys = list(export.media["media_key"])
    assert keys[:6] == [f"train/n01/{i}.JPEG" for i in range(6)] and "val/broken.JPEG" in keys
    assert json.loads(export.media["extra"].iloc[0])["blur"] == 500
    iss = export.issues
    dup = iss[iss["issue_type"] == "duplicate"].set_index("media_key")
    assert len(dup) == 4  # both sides, the repeated (1, 0) row merged
    assert dup.loc["train/n01/0.JPEG", "related_file"] == "train/n01/1.JPEG"
    assert dup.loc["train/n01/0.JPEG", "raw_value"] == pytest.approx(0.97)
    assert dup.loc["train/n01/0.JPEG", "group_id"] == "7" and dup.loc["train/n01/3.JPEG", "group_id"] == "9"
    out = iss[iss["issue_type"] == "outlier"]
    assert list(out["media_key"]) == ["train/n01/5.JPEG"]
    assert out["raw_value"].iloc[0] == pytest.approx(0.35) and out["confidence"].iloc[0] == pytest.approx(0.65)
    rules = iss[iss["issue_type"].isin(["blur", "dark", "bright"])].set_index("issue_type")
    assert rules.loc["blur", "media_key"] == "train/n01/1.JPEG"
    assert rules.loc["dark", "media_key"] == "train/n01/2.JPEG"
    assert rules.loc["bright", "media_key"] == "train/n01/3.JPEG"
    bad = iss[iss["issue_type"] == "invalid"]
    assert bad["description"].iloc[0] == "ERROR_CORRUPT_IMAGE"
    strict = read_export(folder, fastdup_thresholds=FastdupThresholds(blur_below=30, dark_below=4, bright_above=255))
    assert not strict.issues["issue_type"].isin(["blur", "dark", "bright"]).any()


def test_fastdup_old_column_names_and_paths(tmp_path: Path) -> None:
    files = ["train/n01/a.JPEG", "train/n01/b.JPEG", "train/n02/c.JPEG"]
    folder = write_fastdup_dir(tmp_path / "fd", files, similarity=[(0, 2, 0.95)], components={0: 1, 1: 2, 2: 1},
                               old=True, paths_in_pairs=True)
    export = read_export(folder)
    assert export.stats["files"][0]["root"] == ""
    dup = export.issues.set_index("media_key")
    assert dup.loc["train/n01/a.JPEG", "related_file"] == "train/n02/c.JPEG"
    assert dup.loc["train/n02/c.JPEG", "group_id"] == "1"


# ------------------------------------------------------------------ several paths


def test_several_paths_concatenated_and_merged(tmp_path: Path) -> None:
    a = write_platform_json(tmp_path / "a" / "metadata.json", rich_items()[:2])
    b = write_platform_json(tmp_path / "b" / "metadata.json", rich_items()[1:])
    export = read_export([a, b])
    check_schema(export)
    assert len(export.media) == 3 and export.stats["merged_media"] == 1
    one = read_export(a)
    key = rich_items()[1]["media_id"]
    assert (export.issues["media_key"] == key).sum() == (one.issues["media_key"] == key).sum()
    assert export.stats["formats"]["platform_json"]["files"] == 2


def test_same_key_different_content_is_an_error(tmp_path: Path) -> None:
    a = write_platform_json(tmp_path / "a" / "metadata.json", [platform_item("x.png", label="cat")])
    b = write_platform_json(tmp_path / "b" / "metadata.json", [platform_item("x.png", label="dog")])
    with pytest.raises(ExportFormatError, match=r"x\.png.*a/metadata\.json and .*b/metadata\.json.*label_name"):
        read_export([a, b])


# ------------------------------------------------------------------ matching


@pytest.fixture
def index() -> pd.DataFrame:
    rows = [
        ("n01_1", "n01_1.JPEG", "train", "n01", "train/n01/n01_1.JPEG"),
        ("n01_2", "n01_2.JPEG", "train", "n01", "train/n01/n01_2.JPEG"),
        ("val_1", "ILSVRC2012_val_00000001.JPEG", "test", "n01", "val/n01/ILSVRC2012_val_00000001.JPEG"),
        ("same_a", "same.JPEG", "train", "n01", "train/n01/same.JPEG"),
        ("same_b", "same.JPEG", "train", "n02", "train/n02/same.JPEG"),
        ("stem_1", "pic.png", "train", "n02", "train/n02/pic.png"),
    ]
    return pd.DataFrame(rows, columns=["image_id", "file_name", "split", "class_id", "source"])


def test_match_to_index(tmp_path: Path, index: pd.DataFrame) -> None:
    items = [
        platform_item("n01_1.JPEG", file_path="imagenet1k/train/n01/n01_1.JPEG", issues=[("blur", 0.9)]),  # path
        platform_item("n01_2.JPEG"),  # imagenet1k/n01_2.JPEG -> name
        platform_item("ILSVRC2012_val_00000001.JPEG",
                      file_path="bucket/imagenet1k/val/n01/ILSVRC2012_val_00000001.JPEG"),
        platform_item("same.JPEG", file_path="imagenet1k/train/n02/same.JPEG"),  # path disambiguates
        platform_item("same.JPEG", file_path="imagenet1k/same.JPEG", media_id="m-same"),  # ambiguous name
        platform_item("pic.jpg", issues=[("dark", 0.7)]),  # stem
        platform_item("nowhere.JPEG", issues=[("outliers", 0.9)]),  # unmatched
    ]
    export = read_export(write_platform_json(tmp_path / "metadata.json", items))
    matched = match_to_index(export, index)
    got = list(zip(matched.media["image_id"], matched.media["match"].astype(str)))
    assert got == [("n01_1", "path"), ("n01_2", "name"), ("val_1", "path"), ("same_b", "path"), ("", "ambiguous"),
                   ("stem_1", "stem"), ("", "unmatched")]
    assert len(matched.media) == len(export.media)  # nothing dropped
    iss = matched.issues.set_index("issue_type")
    assert iss.loc["blur", "image_id"] == "n01_1" and iss.loc["dark", "image_id"] == "stem_1"
    assert iss.loc["outlier", "image_id"] == ""
    assert matched.stats["match"] == {"path": 3, "name": 1, "stem": 1, "unmatched": 1, "ambiguous": 1}
    report = match_report(matched)
    assert list(report["match"]) == ["ambiguous", "unmatched"]
    assert "same_a" in report["reason"].iloc[0] and "same_b" in report["reason"].iloc[0]
    assert "nowhere" in report["reason"].iloc[1]
    assert len(match_report(export)) == len(export.media)  # before matching: everything, with the reason
    assert export.media["image_id"].eq("").all()  # the input export is left as it was


def test_match_explicit_prefix(tmp_path: Path, index: pd.DataFrame) -> None:
    # "train" looks like a split folder, so only an explicit prefix gets it off
    items = [platform_item("n01_1.JPEG", file_path="train/n01/n01_1.JPEG/x/n01_1.JPEG")]
    export = read_export(write_platform_json(tmp_path / "metadata.json", items))
    assert match_to_index(export, index).media["match"].astype(str).tolist() == ["name"]
    items = [platform_item("renamed.JPEG", file_path="mydata/v2/train/n01/n01_2.JPEG")]
    export = read_export(write_platform_json(tmp_path / "m2" / "metadata.json", items))
    matched = match_to_index(export, index, dataset_prefixes=["mydata/v2"])
    assert matched.media["image_id"].tolist() == ["n01_2"] and matched.media["match"].astype(str).tolist() == ["path"]


def test_match_odd_paths_and_related_files(index: pd.DataFrame) -> None:
    got = match_paths(["ds\\train\\n01\\n01_1.JPEG", "./train/n01/n01_2.JPEG", "", "pic"], index)
    assert list(got["image_id"]) == ["n01_1", "n01_2", "", "stem_1"]
    assert list(got["match"].astype(str)) == ["path", "path", "unmatched", "stem"]
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['split'\]"):
        match_paths(["a"], index.drop(columns=["split"]))


# ------------------------------------------------------------------ normalisation helpers


def test_issue_aliases() -> None:
    for raw, norm in [("Duplicate", "duplicate"), ("duplicates", "duplicate"), ("Outlier", "outlier"),
                      ("Mislabeled", "mislabel"), ("mislabels", "mislabel"), ("label_outlier", "label_outlier"),
                      ("Blurry", "blur"), ("leak", "leakage"), ("corrupt", "invalid"), ("NORMAL", None),
                      (" Label Outlier ", "label_outlier"), ("Weird", "weird")]:
        assert normalise_issue_type(raw) == norm
    assert {v for v in ISSUE_ALIASES.values() if v} == set(schema.ISSUE_TYPES)
    assert parse_file_size("185.09KB") == round(185.09 * 1024)
    assert parse_file_size("2 MB") == 2 * 1024**2 and parse_file_size(12) == 12 and parse_file_size("?") is None


# ------------------------------------------------------------------ bad input: clear errors


def doc_with(item_change: dict | None = None, drop: str | None = None) -> dict:
    items = [platform_item("a.JPEG", issues=[("blur", 0.5)]), platform_item("b.JPEG", issues=[("dark", 0.5)])]
    if item_change:
        items[1].update(item_change)
    if drop:
        del items[1][drop]
    return platform_document(items)


BAD_JSON = {
    "invalid_json": ('{"info": {}, "media_items": [\n{"file_name": "a.png",}\n]}', ExportFormatError,
                     [r"invalid JSON at line 2 column"]),
    "truncated": ('{"info": {}, "media_items": [{"file_name": "a.png"}, {"file_na', ExportFormatError,
                  [r"invalid JSON", r"after media_items\[0\]"]),
    "top_level_list": ("[1, 2]", ExportFormatError, [r"top level is a list"]),
    "no_media_items": ({"info": {}, "items": []}, ExportFormatError, [r"no 'media_items'"]),
    "media_items_object": ({"info": {}, "media_items": {"a": 1}}, ExportFormatError, [r"'media_items' is an object"]),
    "empty": ({"info": {}, "media_items": []}, ExportFormatError, [r"empty export"]),
    "missing_file_name": (doc_with(drop="file_name"), ExportFormatError, [r"media_items\[1\]\.file_name", "missing"]),
    "file_name_number": (doc_with({"file_name": 7}), ExportFormatError, [r"media_items\[1\]\.file_name", "string"]),
    "item_not_object": ({"info": {}, "media_items": [3]}, ExportFormatError, [r"media_items\[0\]", "object"]),
    "confidence_range": (doc_with({"metadata_items": [issue_item("blur", 1.7)]}), ExportFormatError,
                         [r"media_items\[1\]\.metadata_items\[0\]\.properties\.confidence", "outside"]),
    "confidence_text": (doc_with({"metadata_items": [issue_item("blur", "high")]}), ExportFormatError,
                        [r"media_items\[1\]\.metadata_items\[0\]\.properties\.confidence", "not a number"]),
    "confidence_bool": (doc_with({"metadata_items": [issue_item("blur", True)]}), ExportFormatError,
                        [r"properties\.confidence", "expected a number"]),
    "no_issue_type": (doc_with({"metadata_items": [{"type": "issue", "properties": {"confidence": 0.5}}]}),
                      ExportFormatError, [r"media_items\[1\]\.metadata_items\[0\]\.properties\.issue_type"]),
    "metadata_not_list": (doc_with({"metadata_items": "x"}), ExportFormatError, [r"media_items\[1\]\.metadata_items"]),
    "uniqueness_range": (doc_with({"uniqueness_score": -3}), ExportFormatError,
                         [r"media_items\[1\]\.uniqueness_score"]),
    "duplicate_ids": (doc_with({"media_id": fixed_uuid("media:a.JPEG")}), ExportFormatError,
                      [r"appears more than once", r"media_items\[0\]", r"media_items\[1\]"]),
    "dotdot_name": (doc_with({"file_name": "../../etc/passwd"}), UnsafePathError,
                    [r"media_items\[1\]\.file_name", r"'\.\.'"]),
    "absolute_path": (doc_with({"file_path": "/etc/passwd"}), UnsafePathError,
                      [r"media_items\[1\]\.file_path", "absolute"]),
    "windows_path": (doc_with({"file_path": "C:\\data\\x.png"}), UnsafePathError, [r"file_path", "absolute"]),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_bad_platform_json(tmp_path: Path, case: str) -> None:
    content, error, patterns = BAD_JSON[case]
    path = tmp_path / "metadata.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(error) as info:
        read_export(path)
    message = str(info.value)
    assert str(path) in message
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)


def test_bad_zip(tmp_path: Path) -> None:
    empty = write_platform_zip(tmp_path / "e.zip", [], flavour="none", images={"a.png": b"x"})
    with pytest.raises(ExportFormatError, match=r"e\.zip: ZIP holds no metadata\.json or metadata\.parquet"):
        detect_format(empty)
    slip = write_platform_zip(tmp_path / "s.zip", [platform_item("a.png")], extra_members={"../evil.sh": b"x"})
    with pytest.raises(UnsafePathError, match=r"s\.zip.*'\.\./evil\.sh'"):
        read_export(slip)
    broken = tmp_path / "b.zip"
    broken.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ExportFormatError, match=r"b\.zip: not a readable ZIP"):
        read_export(broken)
    bad_item = write_platform_zip(tmp_path / "i.zip", [platform_item("a.png", uniqueness=2.0)])
    with pytest.raises(ExportFormatError, match=r"i\.zip!metadata\.json: media_items\[0\]\.uniqueness_score"):
        read_export(bad_item)


def test_bad_vl_datasets_csv(tmp_path: Path) -> None:
    path = write_vl_datasets_csv(tmp_path / "x_issue_file_list.csv",
                                 [("imagenet1k/a.JPEG", "dark", 0.1, ""), ("imagenet1k/b.JPEG", "dark", "abc", "")])
    with pytest.raises(ExportFormatError,
                       match=r"x_issue_file_list\.csv: line 3, field 'value': 'abc' is not a number"):
        read_export(path)
    write_vl_datasets_csv(path, [("imagenet1k/a.JPEG", "Duplicate", 0.9, "../../b.JPEG")])
    with pytest.raises(UnsafePathError, match=r"line 2, field 'prototype'"):
        read_export(path)
    write_vl_datasets_csv(path, [("imagenet1k/a.JPEG", "", 0.9, "")])
    with pytest.raises(ExportFormatError, match=r"line 2, field 'reason'.*missing or empty"):
        read_export(path)
    other = tmp_path / "other.csv"
    other.write_text("filename,score\na.png,1\n")
    with pytest.raises(ExportFormatError, match=r"other\.csv: CSV is not a Visual Layer export.*filename, reason"):
        read_export(other)


def test_bad_hub_and_parquet(tmp_path: Path) -> None:
    path = write_hub_enriched(tmp_path / "h.parquet", [
        {"uri": "a.png", "issues": []}, {"uri": "b.png", "issues": [{"issue_type": "blur", "confidence": 2.0}]}])
    with pytest.raises(ExportFormatError, match=r"h\.parquet: row 1\.image_issues\[0\]\.confidence: 2\.0 is outside"):
        read_export(path)
    write_hub_enriched(path, [{"uri": "a.png", "issues": []}, {"uri": "a.png", "issues": []}])
    with pytest.raises(ExportFormatError, match=r"'a\.png' appears more than once \(row 0, row 1\)"):
        read_export(path)
    junk = tmp_path / "j.parquet"
    junk.write_bytes(b"PAR1 not really")
    with pytest.raises(ExportFormatError, match=r"j\.parquet: not a readable parquet"):
        read_export(junk)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1]}), plain)
    with pytest.raises(ExportFormatError,
                       match=r"plain\.parquet: parquet is not a Visual Layer export.*image_filename"):
        detect_format(plain)


def test_bad_fastdup(tmp_path: Path) -> None:
    folder = write_fastdup_dir(tmp_path / "fd", ["a.png", "b.png"], similarity=[(0, 5, 0.95)])
    with pytest.raises(ExportFormatError, match=r"similarity\.csv: line 2, field 'to': index 5 is not in"):
        read_export(folder)
    write_fastdup_dir(folder, ["a.png", "b.png"], similarity=[(0, 1, "high")])
    with pytest.raises(ExportFormatError, match=r"similarity\.csv: line 2, field 'distance'"):
        read_export(folder)
    write_fastdup_dir(folder, ["a.png", "x/../../b.png"], similarity=[(0, 1, 0.95)])
    with pytest.raises(UnsafePathError, match=r"atrain_features\.dat\.csv: line 3, field 'filename'"):
        read_export(folder)


def test_unknown_inputs(tmp_path: Path) -> None:
    with pytest.raises(ExportFormatError, match=r"nothing\.json: no such file"):
        read_export(tmp_path / "nothing.json")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ExportFormatError,
                       match=r"empty: folder is not a Visual Layer export: looked for metadata\.json"):
        detect_format(empty_dir)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    with pytest.raises(ExportFormatError, match=r"blob\.bin: not a Visual Layer export: looked for"):
        detect_format(blob)
    other = tmp_path / "config.json"
    other.write_text('{"a": 1}')
    with pytest.raises(ExportFormatError, match=r"config\.json: JSON is not a Visual Layer export.*'media_items'"):
        detect_format(other)
    with pytest.raises(ExportFormatError, match="no export path"):
        read_export([])


# ------------------------------------------------------------------ properties: never a raw traceback


def read_or_clean_error(path: Path) -> None:
    try:
        export = read_export(path)
    except (ExportFormatError, UnsafePathError) as err:
        assert str(err)
        return
    assert isinstance(export, VLExport)
    check_schema(export)


json_scalars = st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)
keys = st.sampled_from(["info", "media_items", "file_name", "file_path", "media_id", "metadata_items", "type",
                        "properties", "issue_type", "confidence", "uniqueness_score", "cluster_id", "x"])
vl_values = st.recursive(
    json_scalars | st.sampled_from(["issue", "duplicates", "normal", "image_label", "user_tag", "object_label",
                                    "../x", "/abs", "a.png"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=5), max_leaves=25)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(doc=st.one_of(json_values, vl_values,
                     st.fixed_dictionaries({"info": json_values, "media_items": st.lists(vl_values, max_size=4)})))
def test_fuzz_json_documents(doc: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metadata.json"
        path.write_text(json.dumps(doc))
        read_or_clean_error(path)


@FUZZ
@given(where=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(
    ["file_name", "file_path", "media_id", "uniqueness_score", "cluster_id", "metadata_items", "meta0", "meta_props",
     "new_field"])), min_size=1, max_size=3), value=vl_values, delete=st.booleans())
def test_fuzz_mutated_exports(where: list[tuple[int, str]], value: object, delete: bool) -> None:
    doc = platform_document(rich_items())
    for i, field in where:
        item = doc["media_items"][i]
        meta = item.get("metadata_items")
        if field == "meta0" and isinstance(meta, list) and meta:
            target, name = meta, 0
        elif field == "meta_props" and isinstance(meta, list) and meta and isinstance(meta[0], dict) \
                and isinstance(meta[0].get("properties"), dict):
            target, name = item["metadata_items"][0]["properties"], "confidence"
        else:
            target, name = item, field
        if delete and isinstance(target, dict) and name in target:
            del target[name]
        elif isinstance(target, dict) or (isinstance(target, list) and target):
            target[name] = copy.deepcopy(value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metadata.json"
        path.write_text(json.dumps(doc))
        read_or_clean_error(path)
        zpath = Path(tmp) / "export.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.writestr("metadata.json", json.dumps(doc))
        read_or_clean_error(zpath)


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".json", ".csv", ".parquet", ".zip", "", ".txt"]),
       prefix=st.sampled_from([b"", b"PK\x03\x04", b"PAR1", b"{", b"filename,reason,value,prototype\n"]))
def test_fuzz_random_bytes(data: bytes, suffix: str, prefix: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export{suffix}"
        path.write_bytes(prefix + data)
        read_or_clean_error(path)
