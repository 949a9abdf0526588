"""ingest_vl + apply_tags end to end: the built-in dataset, every export format standalone, the
review page round trip in a real browser, and bad exports failing clearly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from stages import apply_tags, ingest_vl
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, png_bytes, require_browser, write_params
from tests.vl_fixtures import (platform_item, write_fastdup_dir, write_hub_enriched, write_platform_json,
                               write_platform_parquet, write_platform_zip, write_vl_datasets_csv)
from vlclean.datasets import RawDataset


def run_ingest(root: Path, params: Path, out: Path, exports: list[str] | None = None) -> int:
    argv = ["--params", str(params), "--raw", str(root / "raw"), "--out", str(out), "--metrics", str(out) + ".json"]
    for e in exports or [str(root / "vl" / "digits_vl_export.json")]:
        argv += ["--export", e]
    return ingest_vl.main(argv)


def run_tags(root: Path, params: Path, ingested: Path, reviews: Path, out: Path) -> int:
    return apply_tags.main(["--params", str(params), "--raw", str(root / "raw"), "--ingested", str(ingested),
                            "--reviews", str(reviews), "--output", str(out / "tagged.csv"), "--html",
                            str(out / "review"), "--conflicts", str(out / "conflicts.csv"),
                            "--metrics", str(out / "m.json"), "--plots", str(out / "plots")])


def test_every_dataset_image_gets_exactly_one_decision(builtin_tagged: Path) -> None:
    index = RawDataset.open(builtin_tagged / "raw").index()
    tagged = pd.read_csv(builtin_tagged / "tags" / "tagged.csv", keep_default_na=False)
    assert sorted(tagged["image_id"]) == sorted(index["image_id"])
    assert set(tagged["action"]) <= {"keep", "drop", "relabel", "review"}
    decided = tagged[tagged["action"] != "keep"]
    assert (decided["reasons"] != "").all() and (decided["tags"] != "").all()
    ingest = json.loads((builtin_tagged / "ingested.json").read_text())
    assert ingest["match"]["unmatched"] == 0 and ingest["media_items"] == len(index)
    # the team's policy: exactly one image of each duplicate group survives (train split)
    dup = tagged[(tagged["duplicate_group"] != "") & (tagged["split"] == "train")]
    survivors = dup.groupby("duplicate_group")["action"].apply(lambda a: (a != "drop").sum())
    sizes = dup.groupby("duplicate_group").size()
    assert (survivors[sizes > 1] <= 1).all()
    m = json.loads((builtin_tagged / "tags" / "m.json").read_text())
    assert sum(m["actions"].values()) == len(index)
    assert (builtin_tagged / "tags" / "plots" / "tags_actions.png").read_bytes()[:4] == b"\x89PNG"


def test_review_page_is_self_contained(builtin_tagged: Path) -> None:
    html = (builtin_tagged / "tags" / "review" / "page-0001.html").read_text()
    assert "<script" in html and "http://" not in html and "https://" not in html
    assert "data:image/png;base64" in html


@pytest.mark.parametrize("fmt", ["platform_json", "platform_zip_json", "platform_zip_parquet", "platform_parquet",
                                 "vl_datasets_csv", "hub_enriched", "fastdup"])
def test_standalone_apply_tags_reads_every_format(fmt: str, tmp_path: Path) -> None:
    names = ["n01_1.JPEG", "n01_2.JPEG", "n02_3.JPEG"]
    items = [platform_item(names[0], issues=[("mislabels", 0.95)], label="tench", dup_levels=[(0.95, "g")]),
             platform_item(names[1], label="tench", dup_levels=[(0.95, "g")], uniqueness=0.9),
             platform_item(names[2], issues=[("blur", 0.9), ("normal", None)], label="goldfish", tags=["suspicious"])]
    path = tmp_path / "export"
    if fmt == "platform_json":
        path = write_platform_json(tmp_path / "metadata.json", items)
    elif fmt == "platform_zip_json":
        path = write_platform_zip(tmp_path / "export.zip", items, images={n: png_bytes(i) for i, n in enumerate(names)})
    elif fmt == "platform_zip_parquet":
        path = write_platform_zip(tmp_path / "export.zip", items, flavour="parquet")
    elif fmt == "platform_parquet":
        path = write_platform_parquet(tmp_path / "metadata.parquet", items)
    elif fmt == "vl_datasets_csv":
        path = write_vl_datasets_csv(tmp_path / "imagenet1k_images_issue_file_list.csv",
                                     [(f"imagenet1k/{names[0]}", "Mislabeled", 0.95, None),
                                      (f"imagenet1k/{names[2]}", "blur", 0.9, None)])
    elif fmt == "hub_enriched":
        path = write_hub_enriched(tmp_path / "enriched.parquet", [
            {"uri": names[0], "label": "tench", "issues": [
                {"issue_type": "mislabels", "confidence": 0.95, "description": "", "duplicate_group_id": None}]},
            {"uri": names[2], "label": "goldfish", "issues": [
                {"issue_type": "blur", "confidence": 0.9, "description": "", "duplicate_group_id": None}]}])
    else:
        path = write_fastdup_dir(tmp_path / "fastdup", names, stats={0: (500.0, 120.0), 1: (400.0, 110.0),
                                                                     2: (20.0, 120.0)})
    params = write_params(tmp_path / "params.yaml")
    out = tmp_path / "tagged.csv"
    assert apply_tags.main(["--params", str(params), "--vl_export", str(path), "--dataset", "imagenet1k",
                            "--output", str(out), "--generate_html"]) == 0
    tagged = pd.read_csv(out, keep_default_na=False)
    assert {"file_name", "label", "issues", "tags", "action", "reason"} <= set(tagged.columns)
    assert tagged["file_name"].is_unique
    site = tmp_path / "tagged_review"
    assert (site / "index.html").exists() and (site / "page-0001.html").exists()
    by_name = tagged.set_index("file_name")
    if fmt != "fastdup":
        assert by_name.loc[names[0], "action"] == "drop" and "mislabel" in by_name.loc[names[0], "issues"]
    assert "blur" in by_name.loc[names[2], "issues"]


def test_bad_export_fails_naming_the_item(builtin_analyzed: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = write_platform_json(tmp_path / "metadata.json",
                              [platform_item("a.png", issues=[("mislabels", 1.7)])])
    rc = run_ingest(builtin_analyzed, builtin_analyzed / "params.yaml", tmp_path / "ingested", [str(bad)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "metadata.json" in err and "confidence" in err and "1.7" in err
    assert not (tmp_path / "ingested").exists()


def test_review_page_round_trip_in_a_browser(builtin_tagged: Path, tmp_path: Path) -> None:
    """Open the page, tag two images with the keyboard, export, feed the CSV back: the manifest changes."""
    require_browser()
    from playwright import sync_api

    root = builtin_tagged
    before = pd.read_csv(root / "tags" / "tagged.csv", keep_default_na=False).set_index("file_name")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(accept_downloads=True)
        page.goto((root / "tags" / "review" / "page-0001.html").as_uri())
        page.wait_for_function("typeof window.vlReviewsCsv === 'function'")
        page.keyboard.press("j")  # first card
        page.keyboard.press("g")  # keep
        page.keyboard.press("ArrowRight")
        page.keyboard.press("d")  # drop
        page.fill("#reviewer", "tester")
        page.wait_for_function("document.querySelector('#export').hasAttribute('href')")
        assert len(page.evaluate("window.vlReviewsCsv()").splitlines()) == 3
        with page.expect_download() as info:
            page.click("#export")
        csv_path = tmp_path / "reviews.csv"
        info.value.save_as(csv_path)
        browser.close()
    reviews = pd.read_csv(csv_path, keep_default_na=False)
    assert len(reviews) == 2 and set(reviews["action"]) == {"keep", "drop"}
    reviews_dir = tmp_path / "reviews"
    reviews_dir.mkdir()
    shutil.copy(csv_path, reviews_dir / "tester.csv")
    assert run_tags(root, root / "params.yaml", root / "ingested", reviews_dir, tmp_path / "tags2") == 0
    after = pd.read_csv(tmp_path / "tags2" / "tagged.csv", keep_default_na=False).set_index("file_name")
    for row in reviews.itertuples():
        assert after.loc[row.file_name, "action"] == row.action
        assert after.loc[row.file_name, "reasons"].startswith("review: tester=")
    changed = [f for f in reviews["file_name"] if before.loc[f, "action"] != after.loc[f, "action"]]
    assert changed, "feeding the reviews back must change the manifest"


def test_standalone_outputs_stay_where_the_user_pointed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--output x.html --generate_html`` keeps the CSV (the site goes to x_review/); ``--dataset ../..``
    is refused before anything is written; a ZIP whose members clash as file and folder fails cleanly."""
    export = write_platform_json(tmp_path / "metadata.json", [platform_item("a.png", issues=[("blur", 0.9)])])
    params = write_params(tmp_path / "params.yaml")
    out = tmp_path / "x.html"
    assert apply_tags.main(["--params", str(params), "--vl_export", str(export), "--dataset", "d", "--output",
                            str(out), "--generate_html"]) == 0
    assert pd.read_csv(out)["file_name"].tolist() == ["a.png"]
    assert (tmp_path / "x_review" / "index.html").exists()
    work = tmp_path / "work"
    (work / "data" / "manifests").mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code = apply_tags.main(["--params", str(params), "--vl_export", str(export), "--dataset", "../..",
                                "--generate_html"])
    finally:
        os.chdir(cwd)
    assert code == 2 and "dataset name '../..'" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    clash = write_platform_zip(tmp_path / "clash.zip", [platform_item("a.png")],
                               extra_members={"images/a.png": b"x", "images/a.png/b.png": b"y"})
    assert apply_tags.main(["--params", str(params), "--vl_export", str(clash), "--dataset", "d", "--output",
                            str(tmp_path / "c.csv"), "--generate_html"]) == 2
    assert "is a file and also the folder" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()
