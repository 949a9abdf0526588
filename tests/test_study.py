"""Study tables (vlclean/study.py) and the committed study files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stages import study as study_stage
from vlclean.errors import ParamsError
from vlclean.study import Study, expected_seconds, experiments, load_study, missing_keys, runs, set_args

REPO = Path(__file__).resolve().parents[1]
COST = {"train_images": 1000, "epochs": 2, "train_images_per_s": 500, "test_images": 1000, "eval_images_per_s": 1000,
        "overhead_s": 10, "setup_s": 100}


def tiny() -> Study:
    return Study.model_validate({
        "dataset": "toy", "preset": {"base.dataset": "toy"}, "seeds": [1, 2], "cost": COST,
        "groups": {"noise": {"grid": {"noise.kind": ["random", "border"], "noise.rate": [0.0, 0.2]}},
                   "sweep": {"grid": {"noise.kind": ["random"], "noise.rate": [0.0, 0.2, 0.3]}},
                   "arms": {"grid": {"noise.rate": [0.2]}, "arms": [{"denoise.method": "oracle"},
                                                                      {"denoise.method": "cleanlab"}]}}})


def test_groups_expand_once_per_setting_and_seed() -> None:
    s = tiny()
    exps = experiments(s)
    # noise: 4 less border at 0 (rate 0 flips nothing: random's runs), sweep adds only 0.3, arms: 2
    assert len(exps) == 6 and all(e["base.dataset"] == "toy" for e in exps)
    assert not any(e.get("noise.kind") == "border" and e["noise.rate"] == 0.0 for e in exps)
    plan = runs(s)
    assert len(plan) == 12
    assert [r["noise.seed"] for r in plan[:4]] == [1, 2, 1, 2]  # each setting's seeds together
    assert {(r["noise.seed"], r["train.seed"], r["denoise.seed"]) for r in plan} == {(1, 1, 1), (2, 2, 2)}
    assert "base.seed" not in {k for r in plan for k in r}  # the data stays fixed
    est = expected_seconds(s)
    assert est["experiments"] == 12 and est["trainings"] == 12
    assert est["seconds"] == pytest.approx(100 + 12 * 10 + 12 * (1000 * 2 / 500 + 1))
    assert set_args({"a.b": None, "c": True, "d": 0.2}) == ["-S", "a.b=null", "-S", "c=true", "-S", "d=0.2"]


def test_missing_keys_and_bad_files(tmp_path: Path) -> None:
    params = {"base": {"dataset": "x", "seed": 1}, "noise": {"kind": "random", "rate": 0.0, "seed": None},
              "train": {"seed": None}, "denoise": {"seed": None}}
    assert missing_keys(tiny(), params) == ["denoise.method"]
    bad = tmp_path / "s.yaml"
    bad.write_text(yaml.safe_dump({"dataset": "x", "seeds": [1], "cost": COST, "groups": {}, "sedes": [1]}))
    with pytest.raises(ParamsError, match="sedes"):
        load_study(bad)
    bad.write_text(yaml.safe_dump({"dataset": "x", "seeds": [], "cost": COST, "groups": {}}))
    with pytest.raises(ParamsError, match="seeds"):
        load_study(bad)


def test_dry_run_prints_the_plan_and_duration(capsys: pytest.CaptureFixture) -> None:
    assert study_stage.main(["--study", str(REPO / "studies/digits.yaml"), "--params", str(REPO / "params.yaml"),
                             "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "expected duration" in out and out.count("dvc exp run --queue") == len(runs(load_study(REPO / "studies/digits.yaml")))


def test_the_fashion_mnist_study_has_the_cells_the_issue_asks_for() -> None:
    s = load_study(REPO / "studies/fashion_mnist.yaml")
    assert len(s.seeds) >= 3 and s.preset["base.dataset"] == s.dataset == "fashion_mnist"
    exps = experiments(s)

    def has(**kv) -> bool:
        return any(all(e.get(k.replace("__", ".")) == v for k, v in kv.items()) for e in exps)

    for kind in ("random", "border", "pair"):
        for rate in (0.2, 0.4):
            assert has(noise__kind=kind, noise__rate=rate, denoise__method="none")
    assert has(noise__kind="random", noise__rate=0.0, denoise__method="none")  # every kind's rate 0 (flips nothing)
    for kind in ("random", "border", "pair"):
        for method in ("oracle", "cleanlab", "analyzer"):
            assert has(noise__kind=kind, noise__rate=0.2, denoise__method=method)
        assert has(noise__kind=kind, noise__rate=0.2, denoise__method="oracle", denoise__miss="hardest")
    for rate in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        assert has(noise__kind="random", noise__rate=rate) and (rate == 0 or has(noise__kind="border", noise__rate=rate))
    assert has(build_manifest__drop_leaked_train_copies=False) and has(train__labels="raw")
    assert expected_seconds(s)["seconds"] < 2.5 * 3600


def test_preset_applied_compares_every_dotted_key() -> None:
    from vlclean.study import preset_applied

    study = load_study(Path("studies/fashion_mnist.yaml"))
    params = yaml.safe_load(Path("params.yaml").read_text())
    assert not preset_applied(study, params)  # params.yaml is the built-in dataset's
    for key, value in study.preset.items():
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    assert preset_applied(study, params)
    params["train"]["epochs"] = 99
    assert not preset_applied(study, params)
