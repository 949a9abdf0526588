"""build_manifest, noise and denoise on the built-in dataset: every image once, flips with their truth,
detection scored against it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import build_manifest, denoise, noise
from tests.conftest import write_params
from vlclean.config import from_dict
from vlclean.datasets import RawDataset
from vlclean.errors import ParamsError
from vlclean.noise import confusion_share, inject_noise, oracle_denoise


@pytest.fixture(scope="session")
def builtin_manifest(builtin_tagged: Path, builtin_leaks: Path) -> Path:
    root = builtin_tagged
    m = root / "manifest"
    rc = build_manifest.main(["--params", str(root / "params.yaml"), "--raw", str(root / "raw"),
                              "--tagged", str(root / "tags" / "tagged.csv"), "--leaks", str(root / "leaks.csv"),
                              "--output", str(m / "cleaned.csv"), "--summary", str(m / "summary.txt"),
                              "--eval_labels", str(m / "eval.csv"), "--train_labels", str(m / "train.csv"),
                              "--metrics", str(m / "m.json"), "--plots", str(m / "plots")])
    assert rc == 0
    return root


def test_cleaned_manifest_has_every_image_once(builtin_manifest: Path) -> None:
    m = builtin_manifest / "manifest"
    index = RawDataset.open(builtin_manifest / "raw").index()
    cleaned = pd.read_csv(m / "cleaned.csv", keep_default_na=False)
    assert sorted(cleaned["image_id"]) == sorted(index["image_id"])
    assert set(cleaned["action"]) <= {"keep", "drop", "relabel"}
    assert (cleaned.loc[cleaned["action"] != "keep", "reasons"] != "").all()
    invalid = set(index.loc[~index["valid"], "image_id"])
    assert (cleaned.set_index("image_id").loc[sorted(invalid), "action"] == "drop").all()
    train = pd.read_csv(m / "train.csv")
    assert set(train["image_id"]) == set(cleaned.loc[(cleaned["split"] == "train") & (cleaned["action"] != "drop"), "image_id"])
    ev = pd.read_csv(m / "eval.csv")
    assert ev["leaked"].sum() == cleaned["leaked"].astype(str).eq("True").sum()
    summary = (m / "summary.txt").read_text()
    assert "Cleaning summary: digits" in summary and "%" in summary and "Leaked test images" in summary
    metrics = json.loads((m / "m.json").read_text())
    acted = metrics["planted_issues_acted_on"]
    assert acted["mislabel"]["share"] >= 0.8 and acted["leakage"]["share"] >= 0.9 and acted["invalid"]["share"] == 1.0


def run_noise(root: Path, tmp: Path, **noise_params: object) -> pd.DataFrame:
    params = write_params(tmp / "params.yaml", {"noise": noise_params})
    assert noise.main(["--params", str(params), "--raw", str(root / "raw"), "--features", str(root / "features"),
                       "--train_labels", str(root / "manifest" / "train.csv"), "--output", str(tmp / "noisy.csv"),
                       "--metrics", str(tmp / "noise.json")]) == 0
    return pd.read_csv(tmp / "noisy.csv")


@pytest.mark.parametrize("kind", ["random", "intelligent"])
def test_noise_flips_the_requested_share_with_truth(builtin_manifest: Path, tmp_path: Path, kind: str) -> None:
    noisy = run_noise(builtin_manifest, tmp_path, rate=0.2, kind=kind)
    assert abs(noisy["flipped"].mean() - 0.2) < 0.005
    assert (noisy["flipped"] == (noisy["label"] != noisy["true_label"])).all()
    again = run_noise(builtin_manifest, tmp_path, rate=0.2, kind=kind)
    pd.testing.assert_frame_equal(noisy, again)  # deterministic for a seed


def test_intelligent_noise_targets_look_alike_classes(builtin_manifest: Path, tmp_path: Path) -> None:
    rnd = run_noise(builtin_manifest, tmp_path, rate=0.3, kind="random")
    smart = run_noise(builtin_manifest, tmp_path, rate=0.3, kind="intelligent")
    share = lambda f: confusion_share(f["true_label"].to_numpy(), f["label"].to_numpy(), 10)  # noqa: E731
    assert share(smart) > 1.5 * share(rnd)  # flips concentrate on the most confusable class


@pytest.mark.parametrize("method", ["oracle", "cleanlab"])
def test_denoise_reports_detection_against_the_flips(builtin_manifest: Path, tmp_path: Path, method: str) -> None:
    run_noise(builtin_manifest, tmp_path, rate=0.2, kind="random")
    params = write_params(tmp_path / "params.yaml", {"noise": {"rate": 0.2}, "denoise": {"method": method}})
    assert denoise.main(["--params", str(params), "--raw", str(builtin_manifest / "raw"), "--features",
                         str(builtin_manifest / "features"), "--noisy", str(tmp_path / "noisy.csv"), "--vl_issues",
                         str(builtin_manifest / "ingested" / "issues.parquet"), "--output", str(tmp_path / "clean.csv"),
                         "--metrics", str(tmp_path / "d.json")]) == 0
    m = json.loads((tmp_path / "d.json").read_text())
    det = m["detection"]
    if method == "oracle":
        assert abs(det["recall"] - 0.8) < 0.01
    else:
        assert det["recall"] >= 0.6 and det["precision"] >= 0.6, det  # real detection on 20 % random noise
    out = pd.read_csv(tmp_path / "clean.csv")
    assert len(out) == m["train_images_out"] < m["train_images_in"]


def test_oracle_relabel_restores_caught_labels() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 10, 1000)
    noisy = inject_noise(true, 10, rate=0.4, kind="random", rng=rng)
    r = oracle_denoise(true, noisy, recall=0.8, false_positive_rate=0.0, action="relabel", rng=rng)
    assert r.keep.all()
    assert ((r.labels != true).sum()) == pytest.approx(0.2 * 400, abs=1)


def test_noise_params_are_validated() -> None:
    with pytest.raises(ParamsError, match="noise.rate"):
        from_dict(noise.NoiseParams, {"rate": 1.5}, "noise")
    with pytest.raises(ParamsError, match="noise.kind"):
        from_dict(noise.NoiseParams, {"kind": "adversarial"}, "noise")
    with pytest.raises(ParamsError, match="denoise.method"):
        from_dict(denoise.DenoiseParams, {"method": "magic"}, "denoise")


def test_zero_rate_needs_no_features_for_either_kind() -> None:
    labels = np.arange(20) % 4
    for kind in ("random", "intelligent"):
        out = inject_noise(labels, 4, rate=0.0, kind=kind, rng=np.random.default_rng(0))
        assert (out == labels).all()
