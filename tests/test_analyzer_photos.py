"""The analyzer on real photographs with no params at all (issue 13): a small set from the photos that
packages ship (vlclean/photo_sets.py; seed 5, never used for tuning), run as the standalone command.
The full-size figures are in the README (bench/analyzer_photos.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stages import analyze
from vlclean.photo_sets import PhotoSetSpec, build_photo_set, score_export


@pytest.fixture(scope="module")
def small_photo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    t = tmp_path_factory.mktemp("photos")
    truth = build_photo_set(t / "tree", PhotoSetSpec(seed=5, size=96, per_class=12, dark=6, bright=6, blur=6))
    assert analyze.main(["--params", str(t / "absent.yaml"), "--images_dir", str(t / "tree"),
                         "--output", str(t / "export.json"), "--metrics", str(t / "m.json")]) == 0
    return json.loads((t / "m.json").read_text()), score_export(t, truth)


def test_defaults_find_planted_issues_in_real_photographs(small_photo_run: tuple[dict, dict]) -> None:
    """372 images of 31 classes at 96 px; measured: mislabel F1 0.92, dark and bright 6/6 with no false
    alarm, blur 6/6 with one (precision 0.86)."""
    metrics, s = small_photo_run
    assert s["mislabel"]["f1"] >= 0.85, s["mislabel"]
    for issue in ("dark", "bright", "blur"):
        assert s[issue]["recall"] >= 0.8 and s[issue]["precision"] >= 0.8, (issue, s[issue])
    assert metrics["warnings"] == []


def test_auto_choices_are_recorded(small_photo_run: tuple[dict, dict]) -> None:
    choices = small_photo_run[0]["choices"]
    assert choices["embedding_input_size"] == {"setting": "auto", "chosen": 96}
    assert choices["blur_side"] == {"setting": "auto", "chosen": 96}
    lf = choices["label_features"]
    assert lf["setting"] == "auto" and set(lf["cv_accuracy"]) == {"embedding", "pixels:8", "pixels:16"}
    assert lf["chosen"] == max(lf["cv_accuracy"], key=lf["cv_accuracy"].get)


def test_guard_says_so_when_a_detector_flags_an_implausible_share() -> None:
    from vlclean.adapt import implausible

    lines = implausible({"mislabel": 405, "blur": 4}, 816, {"mislabel": 0.15, "blur": 0.1},
                        {"mislabel": "cross-validated accuracy 0.41"})
    assert len(lines) == 1 and "mislabel flags 405 of 816" in lines[0] and "accuracy 0.41" in lines[0]


def test_a_class_of_naturally_dark_soft_photos_is_not_flagged() -> None:
    """Absolute limits alone would flag most of these; judged against their class they are ordinary."""
    import numpy as np

    from vlclean.detect import quality_flags
    from vlclean.params import QualityParams

    rng = np.random.default_rng(0)
    b = np.concatenate([rng.normal(30, 6, 200), rng.normal(120, 15, 200)])  # a night class, a day class
    s = np.concatenate([np.exp(rng.normal(1.5, 0.5, 200)), np.exp(rng.normal(6, 1, 200))])
    labels = np.repeat([0, 1], 200)
    b[[210, 220]] = [20, 25]  # two under-exposed day photos
    s[230] = 2.0  # a blurred day photo
    flags = quality_flags(pd.DataFrame({"brightness": b, "blur": s}), QualityParams(), labels)
    assert {210, 220} <= set(np.flatnonzero(flags["dark"][0])) and flags["blur"][0][230]
    for issue in ("dark", "blur"):  # the night class: its tail at most (2.5 robust SDs: ~1 %)
        assert flags[issue][0][:200].mean() <= 0.02, issue
    q = QualityParams()  # the absolute limits alone would flag the night class wholesale
    assert (b[:200] < q.dark_below).mean() > 0.8 and (s[:200] < q.blur_below).mean() > 0.8


@pytest.mark.parametrize(("sides", "input_size", "blur_side"), [
    ([32] * 5, 64, 32),            # the built-in digits
    ([28] * 5, 64, 28),            # Fashion-MNIST
    ([128, 128, 96], 128, 128),    # the photo sets
    ([375, 333, 500, 256], 224, 256),  # ImageNet
])
def test_auto_sizes_follow_the_images(sides: list[int], input_size: int, blur_side: int) -> None:
    import numpy as np

    from vlclean.adapt import auto_blur_side, auto_input_size

    assert auto_input_size(np.array(sides)) == input_size and auto_blur_side(np.array(sides)) == blur_side
