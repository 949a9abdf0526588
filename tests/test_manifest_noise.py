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
from vlclean.params import DenoiseParams, NoiseParams, parse
from vlclean.datasets import RawDataset
from vlclean.errors import ParamsError
from vlclean.denoise import oracle_denoise
from vlclean.noise import NoiseSpec, confusion_share, inject_noise


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


def test_keeping_leaked_train_copies_is_an_experiment_on_the_same_test_images(builtin_manifest: Path,
                                                                              tmp_path: Path) -> None:
    root = builtin_manifest
    params = write_params(tmp_path / "params.yaml", {"build_manifest": {"drop_leaked_train_copies": False}})
    m = tmp_path / "manifest"
    assert build_manifest.main(["--params", str(params), "--raw", str(root / "raw"), "--tagged",
                                str(root / "tags" / "tagged.csv"), "--leaks", str(root / "leaks.csv"), "--output",
                                str(m / "cleaned.csv"), "--summary", str(m / "summary.txt"), "--eval_labels",
                                str(m / "eval.csv"), "--train_labels", str(m / "train.csv"), "--metrics",
                                str(m / "m.json"), "--plots", str(m / "plots")]) == 0
    kept, dropped = json.loads((m / "m.json").read_text()), json.loads((root / "manifest" / "m.json").read_text())
    assert kept["train_copies_of_leaks"]["found"] == dropped["train_copies_of_leaks"]["found"] > 0
    assert dropped["train_copies_of_leaks"]["kept"] == 0
    assert kept["train_copies_of_leaks"]["kept"] >= dropped["train_copies_of_leaks"]["found"] * 0.8  # unless tagged
    pd.testing.assert_frame_equal(pd.read_csv(m / "eval.csv"), pd.read_csv(root / "manifest" / "eval.csv"))
    assert len(pd.read_csv(m / "train.csv")) > len(pd.read_csv(root / "manifest" / "train.csv"))


def run_noise(root: Path, tmp: Path, **noise_params: object) -> pd.DataFrame:
    params = write_params(tmp / "params.yaml", {"noise": noise_params})
    assert noise.main(["--params", str(params), "--raw", str(root / "raw"), "--features", str(root / "features"),
                       "--train_labels", str(root / "manifest" / "train.csv"), "--output", str(tmp / "noisy.csv"),
                       "--metrics", str(tmp / "noise.json"), "--plots", str(tmp / "plots")]) == 0
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


def run_denoise(root: Path, tmp: Path, **denoise_params: object) -> dict:
    params = write_params(tmp / "params.yaml", {"noise": {"rate": 0.2}, "denoise": denoise_params})
    assert denoise.main(["--params", str(params), "--raw", str(root / "raw"), "--features", str(root / "features"),
                         "--noisy", str(tmp / "noisy.csv"), "--output", str(tmp / "clean.csv"),
                         "--metrics", str(tmp / "d.json")]) == 0
    return json.loads((tmp / "d.json").read_text())


def test_noise_stage_writes_the_transition_matrix_and_margins(builtin_manifest: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"noise": {"rate": 0.2, "kind": "border"}})
    assert noise.main(["--params", str(params), "--raw", str(builtin_manifest / "raw"), "--features",
                       str(builtin_manifest / "features"), "--train_labels", str(builtin_manifest / "manifest" / "train.csv"),
                       "--output", str(tmp_path / "noisy.csv"), "--metrics", str(tmp_path / "noise.json"),
                       "--plots", str(tmp_path / "plots")]) == 0
    noisy = pd.read_csv(tmp_path / "noisy.csv")
    assert list(noisy.columns) == ["image_id", "label", "true_label", "flipped"]
    m = json.loads((tmp_path / "noise.json").read_text())
    assert m["kind"] == "border" and m["flipped"] == int(noisy["flipped"].sum()) == int(0.2 * len(noisy))
    assert m["flipped_margin_percentile_mean"] < 20
    assert len(m["largest_off_diagonal_share"]) == 10
    transition = pd.read_csv(tmp_path / "plots" / "transition.csv")
    names = RawDataset.open(builtin_manifest / "raw").classes()["class_name"]
    assert len(transition) == len(noisy) and (transition["true_class"] != transition["noisy_label"]).sum() == m["flipped"]
    assert set(transition["true_class"]) <= set(names)
    assert (tmp_path / "plots" / "transition.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("method", ["oracle", "cleanlab", "analyzer"])
def test_denoise_reports_detection_against_the_flips(builtin_manifest: Path, tmp_path: Path, method: str) -> None:
    run_noise(builtin_manifest, tmp_path, rate=0.2, kind="random")
    m = run_denoise(builtin_manifest, tmp_path, method=method)
    det = m["detection"]
    if method == "oracle":
        assert abs(det["recall"] - 0.8) < 0.01 and m["recall_asked"] == 0.8
    else:
        assert det["recall"] >= 0.6 and det["precision"] >= 0.6, det  # real detection on 20 % random noise
    out = pd.read_csv(tmp_path / "clean.csv")
    assert len(out) == m["train_images_out"] < m["train_images_in"]


def test_oracle_hardest_misses_the_smallest_margin_flips(builtin_manifest: Path, tmp_path: Path) -> None:
    run_noise(builtin_manifest, tmp_path, rate=0.2, kind="random")
    m = run_denoise(builtin_manifest, tmp_path, method="oracle", miss="hardest", recall=0.5, action="relabel",
                    relabel_accuracy=0.6)
    assert abs(m["detection"]["recall"] - 0.5) < 0.01
    assert m["relabelled_to_true_class"] == round(0.6 * m["detection"]["tp"])
    assert m["train_images_out"] == m["train_images_in"]  # relabel keeps every image


def test_oracle_hardest_picks_by_margin() -> None:
    true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    noisy = np.array([1, 1, 0, 0, 0, 0, 1, 1])  # flips at 0, 1, 4, 5
    hardness = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.05, 0.6])
    r = oracle_denoise(true, noisy, recall=0.5, false_positive_rate=0.25, action="drop",
                       rng=np.random.default_rng(0), miss="hardest", hardness=hardness)
    assert sorted(np.flatnonzero(r.flagged)) == [1, 5, 6]  # the two easiest flips, the hardest clean image


def test_vl_export_arm_reads_an_export_of_the_noisy_dataset(builtin_manifest: Path, tmp_path: Path) -> None:
    """The README's route: export the noisy train set as an ImageFolder, have it analysed (here by our
    local stand-in for Visual Layer, analyze --images_dir), and clean with that export."""
    from stages import analyze, export_images

    root = builtin_manifest
    run_noise(root, tmp_path, rate=0.2, kind="random")
    assert export_images.main(["--raw", str(root / "raw"), "--out", str(tmp_path / "tree"), "--labels",
                               str(tmp_path / "noisy.csv"), "--splits", "train"]) == 0
    params = write_params(tmp_path / "p_an.yaml", {"analyze": {"label_features": "pixels", "embedding": {"model": "pixels"}}})
    assert analyze.main(["--params", str(params), "--images_dir", str(tmp_path / "tree"), "--output",
                         str(tmp_path / "vl_noisy.json")]) == 0
    m = run_denoise(root, tmp_path, method="vl_export", vl_export=str(tmp_path / "vl_noisy.json"))
    assert m["export_images_matched"] == m["train_images_in"] and m["train_images_not_in_export"] == 0
    assert m["detection"]["recall"] >= 0.5 and m["detection"]["precision"] >= 0.5, m["detection"]


def test_vl_export_arm_refuses_an_export_of_the_labels_before_noise(builtin_manifest: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    root = builtin_manifest
    run_noise(root, tmp_path, rate=0.2, kind="random")
    params = write_params(tmp_path / "params.yaml", {"denoise": {
        "method": "vl_export", "vl_export": str(root / "vl" / "digits_vl_export.json")}})
    rc = denoise.main(["--params", str(params), "--raw", str(root / "raw"), "--features", str(root / "features"),
                       "--noisy", str(tmp_path / "noisy.csv"), "--output", str(tmp_path / "clean.csv"),
                       "--metrics", str(tmp_path / "d.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "carry another label in this export than in the noisy labels" in err, err


def test_oracle_relabel_restores_caught_labels() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 10, 1000)
    noisy = inject_noise(true, None, rng, NoiseSpec(kind="random", rate=0.4, n_classes=10))
    r = oracle_denoise(true, noisy, recall=0.8, false_positive_rate=0.0, action="relabel", rng=rng)
    assert r.keep.all()
    assert ((r.labels != true).sum()) == pytest.approx(0.2 * 400, abs=1)


def test_noise_params_are_validated() -> None:
    with pytest.raises(ParamsError, match="noise.rate"):
        parse(NoiseParams, {"rate": 1.5}, "noise")
    with pytest.raises(ParamsError, match="noise.kind"):
        parse(NoiseParams, {"kind": "adversarial"}, "noise")
    with pytest.raises(ParamsError, match="noise.pairs"):
        parse(NoiseParams, {"kind": "pair"}, "noise")
    with pytest.raises(ParamsError, match="denoise.method"):
        parse(DenoiseParams, {"method": "magic"}, "denoise")
    with pytest.raises(ParamsError, match="denoise.vl_export"):
        parse(DenoiseParams, {"method": "vl_export"}, "denoise")


def test_zero_rate_needs_no_features_for_any_kind() -> None:
    labels = np.arange(20) % 4
    for kind in ("random", "intelligent", "border", "idn"):
        out = inject_noise(labels, None, np.random.default_rng(0), NoiseSpec(kind=kind, rate=0.0, n_classes=4))
        assert (out == labels).all()
