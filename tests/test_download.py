"""The download stage end to end for every source, the raw layout's schema and the planted truth."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stages import download, export_images
from tests.conftest import write_hub_shards, write_params
from vlclean import schema
from vlclean.datasets import RawDataset
from vlclean.datasets.builtin import LEAK_TRANSFORMS
from vlclean.datasets.hub import HubReader
from vlclean.errors import DatasetError


def run_download(tmp: Path, overrides: dict) -> tuple[int, Path]:
    params = write_params(tmp / "params.yaml", overrides)
    rc = download.main(["--params", str(params), "--out", str(tmp / "raw"), "--metrics", str(tmp / "m.json"),
                        "--plots", str(tmp / "plots"), "--work_dir", str(tmp / "work")])
    return rc, tmp / "raw"


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


# -- built-in -----------------------------------------------------------------------------------
def test_builtin_layout_and_schema(builtin_raw: Path) -> None:
    ds = RawDataset.open(builtin_raw / "raw")
    index, classes = ds.index(), ds.classes()
    assert len(classes) == 10
    assert set(index["split"]) == {"train", "test"}
    for shard in ds.shards():
        assert pq.read_schema(shard).names == list(schema.RAW_SHARD)
    # every index row points at its own bytes, and sha256 matches
    import hashlib

    for shard, group in index.groupby("shard"):
        table = pq.read_table(ds.root / "shards" / shard).to_pandas()
        assert list(table["image_id"]) == list(group.sort_values("row")["image_id"])
        assert all(hashlib.sha256(b).hexdigest() == h for b, h in zip(table["image"], table["sha256"]))
    metrics = json.loads((builtin_raw / "m.json").read_text())
    assert metrics["images"] == len(index) == sum(metrics["images_per_split"].values())
    assert metrics["invalid"] == 3 == metrics["quarantined"]
    png = (builtin_raw / "plots" / "class_histogram.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    hist = pd.read_csv(builtin_raw / "plots" / "class_histogram.csv")
    assert hist["count"].sum() == len(index)


def test_builtin_truth_is_consistent(builtin_raw: Path) -> None:
    ds = RawDataset.open(builtin_raw / "raw")
    index = ds.index().set_index("image_id")
    truth = schema.validate_truth(ds.truth(), ds.index())  # every (related) id exists
    counts = truth["issue"].value_counts()
    for issue in ("leakage", "duplicate", "mislabel", "dark", "bright", "blur", "outlier", "invalid"):
        assert counts.get(issue, 0) > 0, issue
    leaks = truth[truth["issue"] == "leakage"]
    assert set(leaks["detail"]) == set(LEAK_TRANSFORMS)
    assert (index.loc[leaks["image_id"], "split"] == "train").all()
    assert (index.loc[leaks["related_image_id"], "split"] == "test").all()
    # about 3 % of train labels are wrong
    n_train = (index["split"] == "train").sum()
    assert 0.02 < counts["mislabel"] / n_train < 0.04
    data = ds.read_images(list(leaks["image_id"]) + list(leaks["related_image_id"]))
    for row in leaks.itertuples():
        copy, orig = data[row.image_id], data[row.related_image_id]
        a, b = pixels(copy), pixels(orig)
        if row.detail == "exact":
            assert copy == orig
        elif row.detail == "png_reencode":
            assert copy != orig and np.array_equal(a, b)
        elif row.detail == "hflip":
            assert np.array_equal(a, b[:, ::-1])
        elif row.detail == "grayscale":
            assert np.array_equal(a[..., 0], a[..., 1]) and not np.array_equal(b[..., 0], b[..., 1])
        elif row.detail.startswith("resize_"):
            f = float(row.detail.split("_")[1])
            assert a.shape[0] == round(b.shape[0] * f)
        elif row.detail == "jpeg_q30":
            assert copy[:3] == b"\xff\xd8\xff"
        elif row.detail == "center_crop_0.9":
            assert a.shape[0] == round(b.shape[0] * 0.9)
        else:  # brightness / contrast
            assert a.shape == b.shape and not np.array_equal(a, b)
    # dark images are dark, bright ones bright
    dark = ds.read_images(truth.loc[truth["issue"] == "dark", "image_id"])
    bright = ds.read_images(truth.loc[truth["issue"] == "bright", "image_id"])
    assert max(pixels(d).mean() for d in dark.values()) < 40
    assert min(pixels(d).mean() for d in bright.values()) > 200
    mis = truth[truth["issue"] == "mislabel"]
    true_labels = mis["detail"].str.removeprefix("true_label=").astype(int).to_numpy()
    assert (index.loc[mis["image_id"], "label"].to_numpy() != true_labels).all()


def test_builtin_is_deterministic(builtin_raw: Path, tmp_path: Path) -> None:
    rc, raw = run_download(tmp_path, {})
    assert rc == 0
    a, b = RawDataset.open(raw), RawDataset.open(builtin_raw / "raw")
    pd.testing.assert_frame_equal(a.index(), b.index())
    pd.testing.assert_frame_equal(a.truth(), b.truth())


def test_builtin_quarantine_has_reasons(builtin_raw: Path) -> None:
    ds = RawDataset.open(builtin_raw / "raw")
    q = ds.quarantine()
    index = ds.index()
    assert set(q["image_id"]) == set(index.loc[~index["valid"], "image_id"])
    reasons = " | ".join(q["error"])
    assert "empty file" in reasons and "truncated" in reasons and "not an image" in reasons


def test_export_images_writes_an_image_folder(builtin_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "folder"
    assert export_images.main(["--raw", str(builtin_raw / "raw"), "--out", str(out)]) == 0
    index = RawDataset.open(builtin_raw / "raw").index()
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == len(index)
    assert {p.name for p in files} == set(index["file_name"])
    row = index.iloc[0]
    assert (out / row["split"] / row["class_id"] / row["file_name"]).is_file()


# -- folder ------------------------------------------------------------------------------------
def test_folder_source_end_to_end(image_folder: Path, tmp_path: Path) -> None:
    rc, raw = run_download(tmp_path, {"download": {"source": "folder", "folder": {"root": str(image_folder)}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    index = ds.index()
    assert list(ds.classes()["class_id"]) == ["cat", "dog"]
    # the two 'a' stems collide, so both get path-based ids
    assert {"train__cat__a", "val__dog__a", "b", "c", "noext"} <= set(index["image_id"])
    assert index.set_index("image_id").loc["b", "file_name"] == "b.jpg"
    valid = index[index["valid"]]
    assert set(valid["image_id"]) == {"train__cat__a", "b", "c", "noext", "d", "e", "val__dog__a"}
    q = ds.quarantine().set_index("source")
    assert "empty file" in q.loc["train/dog/zero.JPEG", "error"]
    assert "not an image" in q.loc["train/dog/text.JPEG", "error"]
    assert "truncated" in q.loc["train/dog/trunc.png", "error"]
    assert "outside the dataset root" in q.loc["train/cat/escape.png", "error"]
    assert "hidden" in q.loc["train/.DS_Store", "error"]
    assert "not inside" in q.loc["README.txt", "error"]
    # every file of the tree is accounted for: in the index or in the quarantine
    n_files = sum(1 for p in image_folder.rglob("*") if p.is_file() or p.is_symlink())
    assert len(index) + (q["image_id"].fillna("") == "").sum() == n_files
    assert set(index.loc[index["split"] == "test", "image_id"]) == {"d", "e", "val__dog__a"}


def test_folder_subset_and_cap(image_folder: Path, tmp_path: Path) -> None:
    rc, raw = run_download(tmp_path, {"download": {"source": "folder", "classes": ["dog"], "max_per_class": 2,
                                                   "folder": {"root": str(image_folder)}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    assert list(ds.classes()["class_id"]) == ["dog"] and list(ds.classes()["label"]) == [0]
    index = ds.index()
    assert index.groupby("split").size().to_dict() == {"train": 2, "test": 2}


def test_folder_missing_root_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc, _ = run_download(tmp_path, {"download": {"source": "folder", "folder": {"root": str(tmp_path / "nope")}}})
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


# -- Hugging Face Hub (local shards in the Hub's format) ---------------------------------------
def test_hub_source_from_local_shards(tmp_path: Path) -> None:
    hub = write_hub_shards(tmp_path / "hub", {"train": 40, "val": 12, "test": 6}, names=["ant", "bee", "cat"])
    rc, raw = run_download(tmp_path, {"download": {"source": "hf", "hf": {"local_dir": str(hub)}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    index = ds.index()
    assert index.groupby("split").size().to_dict() == {"train": 40, "test": 12}  # Hub 'test' is unlabelled: skipped
    assert list(ds.classes()["class_name"]) == ["ant", "bee", "cat"]
    assert index["image_id"].str.match(r"^(train|val)_\d{6}$").all()
    assert index["file_name"].str.endswith(".JPEG").all()
    assert index["valid"].all()
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["skipped_shards"] == 2


def test_hub_ids_without_paths_and_imagenet_wnids(tmp_path: Path) -> None:
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    names = [info.index_to_description(i) for i in range(info.num_classes())]
    hub = write_hub_shards(tmp_path / "hub", {"train": 10, "val": 4}, names=names, with_paths=False)
    rc, raw = run_download(tmp_path, {"download": {"source": "hf", "hf": {"local_dir": str(hub)}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    classes = ds.classes()
    assert list(classes["class_id"][:2]) == ["n01440764", "n01443537"]
    index = ds.index()
    assert index["image_id"].is_unique and index["file_name"].str.endswith(".jpg").all()


def test_hub_subset_and_max_per_class(tmp_path: Path) -> None:
    hub = write_hub_shards(tmp_path / "hub", {"train": 60, "val": 30}, names=["ant", "bee", "cat"], shards_per_split=3)
    rc, raw = run_download(tmp_path, {"download": {"source": "hf", "classes": ["bee", "cat"], "max_per_class": 4,
                                                   "hf": {"local_dir": str(hub)}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    assert list(ds.classes()["class_name"]) == ["bee", "cat"]
    sizes = ds.index().groupby(["split", "label"]).size()
    assert (sizes == 4).all() and len(sizes) == 4


def test_hub_conversion_resumes_after_interruption(tmp_path: Path) -> None:
    """A crash in shard 3 keeps shards 1-2; the rerun converts only what is left."""
    from vlclean.datasets.convert import convert
    from vlclean.params import DownloadParams
    from vlclean.params import parse

    hub = write_hub_shards(tmp_path / "hub", {"train": 30, "val": 9}, names=["a", "b"], shards_per_split=3)
    params = parse(DownloadParams, {"source": "hf", "hf": {"local_dir": str(hub)}}, "download")
    opened: list[str] = []
    original = HubReader._records

    def flaky(self, f):  # noqa: ANN001
        opened.append(f.repo_path)
        if len(opened) == 3 and fail[0]:
            raise KeyboardInterrupt("killed")
        yield from original(self, f)

    fail = [True]
    HubReader._records = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            convert(params, 42, tmp_path / "raw", tmp_path / "work")
        assert not (tmp_path / "raw").exists()  # nothing half-written
        fail[0] = False
        opened.clear()
        convert(params, 42, tmp_path / "raw", tmp_path / "work")
    finally:
        HubReader._records = original
    assert len(opened) == 4  # 6 shards, 2 finished before the crash
    assert len(RawDataset.open(tmp_path / "raw").index()) == 39


def test_hub_unlabelled_split_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hub = write_hub_shards(tmp_path / "hub", {"train": 4, "test": 4}, names=["a", "b"], shards_per_split=1)
    rc, _ = run_download(tmp_path, {"download": {"source": "hf", "hf": {
        "local_dir": str(hub), "split_map": {"train": "train", "test": "test"}}}})
    assert rc == 2
    err = capsys.readouterr().err
    assert "test-00000-of-00001-abc0.parquet:0" in err and "label -1" in err


def write_hub_cache(cache: Path, repo_id: str, shards: Path) -> None:
    """Lay out ``shards`` as huggingface_hub's cache holds a downloaded dataset repo."""
    import shutil

    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    shutil.copytree(shards, repo / "snapshots" / rev)


def test_hub_source_through_huggingface_hub_cache(tmp_path: Path) -> None:
    """The real fetch path (huggingface_hub list + download), served offline from its own cache."""
    repo_id = "evanarlian/imagenet_1k_resized_256"
    shards = write_hub_shards(tmp_path / "hub", {"train": 8, "val": 4}, names=["a", "b"], shards_per_split=1)
    write_hub_cache(tmp_path / "hfcache", repo_id, shards)
    rc, raw = run_download(tmp_path, {"download": {"source": "hf", "hf": {"cache_dir": str(tmp_path / "hfcache")}}})
    assert rc == 0
    assert len(RawDataset.open(raw).index()) == 12


def test_hub_fetch_of_a_missing_file_fails_offline(tmp_path: Path) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    from vlclean.datasets.hub import fetch_hub_file

    with pytest.raises(LocalEntryNotFoundError):
        fetch_hub_file("evanarlian/imagenet_1k_resized_256", "data/x.parquet", cache_dir=tmp_path)


def test_unknown_split_names_the_shard(tmp_path: Path) -> None:
    from vlclean.datasets.hub import classify_files

    with pytest.raises(DatasetError, match="holdout-00000-of-00001.parquet"):
        classify_files(["data/holdout-00000-of-00001.parquet"], {"train": "train"})
