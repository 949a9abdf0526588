"""The analyze stage: features + a VL-format export, judged against the built-in dataset's planted truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import analyze
from tests.conftest import png_bytes, write_params
from vlclean.datasets import RawDataset
from vlclean.encode import load_embeddings, load_features
from vlclean.detect import OutlierParams, find_duplicates, find_outliers


def test_every_planted_issue_type_is_found(builtin_analyzed: Path) -> None:
    """The acceptance bar: recall >= 0.9 and precision >= 0.8 per type (mislabels: F1 >= 0.8)."""
    m = json.loads((builtin_analyzed / "analyze.json").read_text())
    scores = m["truth"]
    assert set(scores) == {"duplicate", "outlier", "mislabel", "dark", "bright", "blur", "invalid"}
    for issue, s in scores.items():
        if issue == "mislabel":
            assert s["f1"] >= 0.8, (issue, s)
        else:
            assert s["recall"] >= 0.9 and s["precision"] >= 0.8, (issue, s)
    assert m["mislabel_suggestion_accuracy"] >= 0.8


def test_features_are_complete_and_aligned(builtin_analyzed: Path) -> None:
    raw = RawDataset.open(builtin_analyzed / "raw")
    index = raw.index()
    features = load_features(builtin_analyzed / "features")
    assert list(features["image_id"]) == list(index["image_id"])
    assert features["valid"].sum() == index["valid"].sum()
    assert features["phash"].dtype == np.uint64
    emb = load_embeddings(builtin_analyzed / "features")
    assert emb.shape[0] == len(index)
    norms = np.linalg.norm(emb[features["valid"].to_numpy()], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-2)
    assert np.all(emb[~features["valid"].to_numpy()] == 0)


def test_export_follows_vl_schema(builtin_analyzed: Path) -> None:
    export = json.loads((builtin_analyzed / "vl" / "digits_vl_export.json").read_text())
    raw = RawDataset.open(builtin_analyzed / "raw")
    index = raw.index()
    assert export["info"]["schema_version"] == "1.1"
    items = export["media_items"]
    assert len(items) == len(index) == export["info"]["total_media_items"]
    assert {i["file_name"] for i in items} == set(index["file_name"])
    assert len({i["media_id"] for i in items}) == len(items)
    issue_types = set()
    for item in items:
        assert item["file_path"].startswith("digits/") and item["file_path"].endswith("/" + item["file_name"])
        assert item["uniqueness_score"] is None or 0.0 <= item["uniqueness_score"] <= 1.0
        labels = [m for m in item["metadata_items"] if m["type"] == "image_label"]
        assert len(labels) == 1 and labels[0]["properties"]["category_name"]
        for meta in item["metadata_items"]:
            if meta["type"] != "issue":
                continue
            props = meta["properties"]
            issue_types.add(props["issue_type"])
            assert 0.0 <= props["confidence"] <= 1.0
            if props["issue_type"] == "duplicates":
                assert props["duplicate_group_id"] and 0.9 <= props["duplicate_threshold"] <= 1.0
    assert {"duplicates", "outliers", "mislabels", "blur", "dark", "bright", "invalid"} <= issue_types


def test_export_csv_is_the_flattened_json(builtin_analyzed: Path) -> None:
    flat = pd.read_csv(builtin_analyzed / "vl" / "digits_vl_export.csv", keep_default_na=False)
    export = json.loads((builtin_analyzed / "vl" / "digits_vl_export.json").read_text())
    n_issues = sum(1 for i in export["media_items"] for m in i["metadata_items"] if m["type"] == "issue")
    n_clean = sum(1 for i in export["media_items"] if not any(m["type"] == "issue" for m in i["metadata_items"]))
    assert len(flat) == n_issues + n_clean
    assert set(flat["image_id"]) == {i["file_name"].rsplit(".", 1)[0] for i in export["media_items"]}
    invalid = flat[flat["issue_type"] == "invalid"]
    assert len(invalid) == 3 and (invalid["description"] != "").all()


def test_duplicate_levels_nest(builtin_analyzed: Path) -> None:
    """Like VL: a tighter level's group lies inside one group of every looser level."""
    flat = pd.read_csv(builtin_analyzed / "vl" / "digits_vl_export.csv", keep_default_na=False)
    dups = flat[flat["issue_type"] == "duplicates"]
    levels = sorted(dups["duplicate_threshold"].astype(float).unique())
    assert len(levels) >= 2
    group_of = {lv: dict(zip(g["image_id"], g["duplicate_group_id"])) for lv, g in dups.groupby("duplicate_threshold")}
    for loose, tight in zip(levels, levels[1:]):
        for _, members in dups[dups["duplicate_threshold"] == tight].groupby("duplicate_group_id"):
            assert len({group_of[loose][m] for m in members["image_id"]}) == 1


def test_find_duplicates_groups_by_level() -> None:
    ids = np.array(["a", "b", "c", "d", "e"])
    pairs = pd.DataFrame({"a": [0, 1, 3], "b": [1, 2, 4], "similarity": [0.99, 0.95, 0.97]})
    groups = find_duplicates(ids, pairs, [0.94, 0.98])
    loose = groups[groups["level"] == 0.94].groupby("group_id")["image_id"].apply(set).tolist()
    tight = groups[groups["level"] == 0.98].groupby("group_id")["image_id"].apply(set).tolist()
    assert sorted(map(sorted, loose)) == [["a", "b", "c"], ["d", "e"]]
    assert tight == [{"a", "b"}]


def test_find_outliers_flags_the_far_ones() -> None:
    rng = np.random.default_rng(0)
    sims = np.concatenate([rng.normal(0.9, 0.01, 500), [0.5, 0.55]])
    flag, conf = find_outliers(sims, OutlierParams(z=6.0))
    assert list(np.flatnonzero(flag)) == [500, 501]
    assert conf[500] > 0.5 and conf[:500].max() < 0.5


def test_standalone_on_a_plain_class_folder_tree(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--images_dir DIR --output F`` on <class>/** folders (no split level), with unreadable files."""
    tree = tmp_path / "photos"
    for c in ("cat", "dog"):
        for i in range(12):
            (tree / c / "nested").mkdir(parents=True, exist_ok=True)
            (tree / c / ("nested" if i % 2 else "") / f"{c}{i}.png").write_bytes(png_bytes(i + (100 if c == "dog" else 0)))
    (tree / "dog" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "export.json"
    params = write_params(tmp_path / "params.yaml", {"analyze": {"embedding": {"model": "pixels"}}})
    rc = analyze.main(["--params", str(params), "--images_dir", str(tree), "--output", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "unreadable: dog/broken.png: not an image" in text
    export = json.loads(out.read_text())
    assert export["info"]["total_media_items"] == 25
    broken = [i for i in export["media_items"] if i["file_name"] == "broken.png"][0]
    assert broken["metadata_items"][1]["properties"]["issue_type"] == "invalid"
    assert out.with_suffix(".csv").exists()


def test_standalone_on_a_one_class_tree_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tree = tmp_path / "photos"
    (tree / "cat").mkdir(parents=True)
    for i in range(6):
        (tree / "cat" / f"cat{i}.png").write_bytes(png_bytes(i))
    params = write_params(tmp_path / "params.yaml", {"analyze": {"embedding": {"model": "pixels"}}})
    rc = analyze.main(["--params", str(params), "--images_dir", str(tree), "--output", str(tmp_path / "x.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{tree}: analyze needs valid images of at least two classes" in err and "only class 'cat'" in err
    assert "Traceback" not in err and not (tmp_path / "x.json").exists()


def test_batched_label_issues_find_the_flips_the_dense_path_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above DENSE_PROBS_MAX the kNN probabilities are judged chunk by chunk (cleanlab's LabelInspector)."""
    import sys

    from vlclean import detect

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_mislabels_scale import synthetic_neighbours

    n, k_classes = 6000, 100
    rng = np.random.default_rng(0)
    true = rng.integers(0, k_classes, n)
    sims, ids = synthetic_neighbours(n, 20, true, rng)
    given = true.copy()
    flip = rng.choice(n, 180, replace=False)
    given[flip] = (true[flip] + 1) % k_classes
    p = detect.MislabelParams(classifier="knn")
    dense = detect.label_issues(np.zeros((n, 1), np.float32), given, k_classes, p, 0, neighbours=(sims, ids))
    monkeypatch.setattr(detect, "DENSE_PROBS_MAX", 1000)
    monkeypatch.setattr(detect, "_PROBS_CHUNK_ROWS", 1024)  # several chunks
    batched = detect.label_issues(np.zeros((n, 1), np.float32), given, k_classes, p, 0, neighbours=(sims, ids))
    for found in (dense, batched):
        assert found.flag[flip].mean() >= 0.6 and found.flag[flip].sum() / found.flag.sum() >= 0.9
        assert found.confidence.dtype == np.float32 and len(found.suggested) == n
    np.testing.assert_array_equal(dense.suggested, batched.suggested)
