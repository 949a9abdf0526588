"""The findings from experiments: runs, cells, answers (vlclean/findings.py), and the report stage on a real DVC repo.

Rows are in the shape ``dvc.api.exp_show`` returns (checked against real DVC in the last test):
one flat dict per baseline / experiment, None and booleans stringified, numbers as floats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vlclean import findings as fd

KEYS = ["base.seed", "base.dataset", "noise.kind", "noise.rate", "noise.seed", "denoise.method", "denoise.seed",
        "train.seed", "train.lr"]


def row(rev: str, acc: float | None, *, kind: str = "random", rate: float = 0.0, method: str = "none", seed: int = 1,
        typ: str = "branch_commit", lr: float = 0.05, name: str | None = None, precision: float = 0.5) -> dict:
    s = "None" if seed is None else float(seed)
    return {"Experiment": name or (None if typ == "baseline" else f"exp-{rev}"), "rev": rev, "typ": typ,
            "Created": None, "parent": None, "State": None, "Executor": None,
            "metrics/eval.json:accuracy": acc, "accuracy_leak_free": acc, "detection.precision": precision,
            "detection.recall": 0.8, "train.accuracy": 0.99,
            "base.seed": 42.0, "base.dataset": "toy", "noise.kind": kind, "noise.rate": rate, "noise.seed": s,
            "denoise.method": method, "denoise.seed": s, "train.seed": s, "train.lr": lr, "stages/train.py": "0" * 32}


def study_rows(seeds=(1, 2, 3)) -> list[dict]:
    """Known effects: clean 0.90, 20 % noise -0.05, 40 % -0.15 (ratio 3), oracle recovers 60 %; seed jitter."""
    rows = [row("main", None, typ="baseline", seed=None)]
    for s in seeds:
        j = 0.002 * s
        rows += [row(f"c{s}", 0.90 + j, seed=s), row(f"n{s}", 0.85 + j, rate=0.2, seed=s),
                 row(f"m{s}", 0.75 + j, rate=0.4, seed=s), row(f"o{s}", 0.88 + j, rate=0.2, method="oracle", seed=s),
                 row(f"b{s}", 0.82 + j, rate=0.2, kind="border", seed=s)]
    return rows


def build(rows: list[dict]):
    runs = fd.runs_from_exp_show(rows, KEYS)
    table, varied = fd.cell_columns(runs)
    return runs, table, varied, fd.make_cells(table)


def test_answers_recover_the_known_effects() -> None:
    runs, table, varied, cells = build(study_rows())
    assert sorted(varied) == ["denoise.method", "noise.kind", "noise.rate"]
    assert runs.skipped == ["main (main): no metrics/eval.json accuracy"]
    res = fd.answers(cells, rng=np.random.default_rng(0))
    rnd = res["kinds"]["random"]
    assert rnd["X"]["value"] == pytest.approx(0.05) and rnd["X"]["n"] == 3
    assert rnd["X"]["ci95"] == pytest.approx([0.05, 0.05])  # the seed jitter is shared: pairs cancel it
    assert rnd["arms"]["oracle"]["Y"]["value"] == pytest.approx(0.6)
    assert rnd["arms"]["oracle"]["detection"] == {"precision": 0.5, "recall": 0.8, "n": 3}
    assert rnd["ratio_40_20"]["value"] == pytest.approx(3.0) and rnd["ratio_vs_linear"] == "above 2"
    border = res["kinds"]["border"]
    assert border["X"]["value"] == pytest.approx(0.08)  # border has no rate-0 cell of its own: random's clean runs
    assert border["vs_random"]["0.2"]["difference"]["value"] == pytest.approx(-0.03)


def test_no_run_is_dropped_or_counted_twice() -> None:
    rows = study_rows(seeds=(1, 2))
    rows.append(row("dup", 0.902, seed=3))  # same accuracy as c1... and as another run: both count
    rows.append(row("dup2", 0.902, seed=4))
    rows += [dict(r) for r in rows if r["rev"] in ("c1", "n1")]  # listed again under another revision
    rows.append({**row("main2", None, typ="baseline"), "rev": "workspace"})  # the workspace is not a run
    runs, table, _, cells = build(rows)
    assert len(table) == 2 * 5 + 2
    clean = next(c for c in cells if c.noise_rate == 0 and c.cleaning == "none")
    assert clean.summary.n == 4 and sorted(clean.runs["run"]) == ["exp-c1", "exp-c2", "exp-dup", "exp-dup2"]
    assert sum(c.summary.n for c in cells) == len(table)


def test_runs_differing_in_any_other_param_or_commit_are_not_pooled() -> None:
    rows = study_rows(seeds=(1, 2))
    rows.append(row("lr", 0.70, lr=0.5, seed=1))  # another learning rate: its own cell, never pooled
    rows.append(row("other", None, typ="baseline"))  # a second commit and its experiment
    rows.append(row("c1-other", 0.91, seed=1))
    runs = fd.runs_from_exp_show(rows, KEYS, resolve=lambda rev: {"main": "aaa", "other": "bbb"}.get(rev, rev))
    table, varied = fd.cell_columns(runs)
    assert varied[:1] == ["commit"] and "train.lr" in varied
    cells = fd.make_cells(table)
    lr_cell = [c for c in cells if c.runs["train.lr"].iloc[0] == 0.5]
    assert len(lr_cell) == 1 and lr_cell[0].summary.n == 1 and "train.lr=0.5" in lr_cell[0].setting
    other = [c for c in cells if (c.runs["commit"] == "bbb").all()]
    assert len(other) == 1 and other[0].summary.n == 1
    assert all(c.runs["commit"].nunique() == 1 and c.runs["train.lr"].nunique() == 1 for c in cells)


def test_one_run_prints_n_a_never_zero_spread() -> None:
    runs, table, varied, cells = build(study_rows(seeds=(1,)))
    res = fd.answers(cells, rng=np.random.default_rng(0))
    text = fd.markdown(dataset="toy", cells=cells, result=res, runs=runs, varied=varied, commits=["main"])
    assert "+- 0" not in text and "± 0" not in text
    assert "| 1 | 0.9020 | n/a | n/a |" in text
    assert "95 % CI n/a, n = 1 seed pairs" in text
    for c in fd.cells_json(cells):
        assert c["n"] == 1 and c["std"] is None and c["ci95"] is None


def test_other_settings_are_compared_with_the_reference() -> None:
    rows = study_rows()
    for s in (1, 2, 3):  # leaks kept: +0.01 on the clean runs
        rows.append({**row(f"k{s}", 0.91 + 0.002 * s, seed=s), "build_manifest.drop_leaked_train_copies": "False"})
    for r in rows:
        r.setdefault("build_manifest.drop_leaked_train_copies", "True")
    runs = fd.runs_from_exp_show(rows, [*KEYS, "build_manifest.drop_leaked_train_copies"])
    table, _ = fd.cell_columns(runs)
    res = fd.answers(fd.make_cells(table), rng=np.random.default_rng(0))
    assert res["reference_setting"] == "build_manifest.drop_leaked_train_copies=True"
    (s,) = res["settings"]
    assert s["setting"] == "build_manifest.drop_leaked_train_copies=False"
    assert s["difference"]["value"] == pytest.approx(0.01) and s["difference"]["n"] == 3


def test_mcnemar_pairs_images_of_runs_sharing_seeds() -> None:
    _, _, _, cells = build(study_rows(seeds=(1, 2)))
    ids = [f"t{i:03d}" for i in range(100)]

    def load(rev: str) -> pd.DataFrame:
        wrong = 10 if rev.startswith("c") else 15  # the noisy runs get 5 more images wrong
        correct = np.arange(100) >= wrong
        return pd.DataFrame({"image_id": ids, "label": 0, "predicted": np.where(correct, 0, 1), "correct": correct})

    res = fd.answers(cells, rng=np.random.default_rng(0), load=load)
    m = res["kinds"]["random"]["X_mcnemar"]
    assert m == {"seed_pairs": 2, "image_pairs": 200, "only_first_right": 10, "only_second_right": 0,
                 "p": pytest.approx(2 * 0.5**10, rel=1e-3)}


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


FAKE_EVALUATE = """
import json, os, yaml
import numpy as np, pandas as pd
p = yaml.safe_load(open("params.yaml"))
seed = p["train"]["seed"] if p["train"]["seed"] is not None else p["base"]["seed"]
rate = p["noise"]["rate"]
rng = np.random.default_rng(seed)
correct = rng.random(400) < 0.9 - 0.5 * rate ** 2 + (0.05 if p["denoise"]["method"] == "oracle" else 0)
os.makedirs("metrics", exist_ok=True); os.makedirs("data/evaluate", exist_ok=True)
json.dump({"accuracy": float(correct.mean()), "n_test": 400}, open("metrics/eval.json", "w"))
json.dump({"detection": {"precision": 0.6, "recall": 0.8}}, open("metrics/denoise.json", "w"))
pd.DataFrame({"image_id": [f"t{i:03d}" for i in range(400)], "label": 1, "predicted": np.where(correct, 1, 0),
              "correct": correct}).to_csv("data/evaluate/predictions.csv", index=False)
"""


@pytest.mark.slow
def test_report_stage_reads_real_dvc_experiments(tmp_path: Path) -> None:
    """A one-stage DVC project whose metrics follow its params: the report's outputs and their contract."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "fake_evaluate.py").write_text(FAKE_EVALUATE)
    (repo / "params.yaml").write_text("base: {seed: 42, dataset: toy}\nnoise: {kind: random, rate: 0.0, seed: null}\n"
                                      "denoise: {method: none, seed: null}\ntrain: {seed: null}\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  evaluate:\n    cmd: python fake_evaluate.py\n    deps: [fake_evaluate.py]\n"
        "    params: [base, noise, denoise, train]\n    outs: [data/evaluate/predictions.csv]\n"
        "    metrics:\n      - metrics/eval.json: {cache: false}\n      - metrics/denoise.json: {cache: false}\n")
    py = sys.executable
    sh(repo, "git", "init", "-q")
    sh(repo, py, "-m", "dvc", "init", "-q")
    sh(repo, py, "-m", "dvc", "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    plan = [(0.0, "none"), (0.2, "none"), (0.2, "oracle")]
    for seed in (1, 2):
        for rate, method in plan:
            sh(repo, py, "-m", "dvc", "exp", "run", "-q", "-S", f"noise.rate={rate}", "-S", f"denoise.method={method}",
               "-S", f"train.seed={seed}", "-S", f"noise.seed={seed}", "-S", f"denoise.seed={seed}")
    out = tmp_path / "report"
    sh(repo, py, "-m", "stages.report", "--out_dir", str(out))
    findings = json.loads((out / "findings.json").read_text())
    runs = pd.read_csv(out / "runs.csv")
    # the committed baseline (seeds null -> base.seed 42) is a run too: 6 experiments + 1
    assert len(runs) == 7 and sum(c["n"] for c in findings["cells"]) == len(runs)
    assert {"noise_kind", "noise_rate", "cleaning", "accuracy", "noise.rate", "denoise.method"} <= set(runs.columns)
    for c in findings["cells"]:
        assert {"noise_kind", "noise_rate", "cleaning", "n", "mean", "std", "ci95"} <= set(c)
        assert ("detection" in c) == (c["cleaning"] != "none")
    oracle = next(c for c in findings["cells"] if c["cleaning"] == "oracle")
    assert oracle["detection"]["precision"] == pytest.approx(0.6) and oracle["n"] == 2
    x = findings["answers"]["kinds"]["random"]
    assert x["X"]["n"] == 2 and x["X_mcnemar"]["image_pairs"] == 800 and "arms" in x
    assert (out / "findings.png").read_bytes()[:4] == b"\x89PNG"
    assert "## What these results do NOT show" in (out / "findings.md").read_text()


def test_a_kind_with_a_one_seed_rate_0_cell_uses_randoms_three_seed_clean_cell() -> None:
    # rate 0 flips nothing: a single border run at rate 0 must not shrink border's X to n = 1
    _, _, _, cells = build(study_rows() + [row("b0", 0.70, kind="border", rate=0.0, seed=1)])
    border = fd.answers(cells, rng=np.random.default_rng(0))["kinds"]["border"]
    assert border["X"]["n"] == 3 and border["X"]["value"] == pytest.approx(0.08)
    # with as many seeds of its own, the kind's own clean cell is used
    more = [row(f"b0{s}", 0.70, kind="border", rate=0.0, seed=s) for s in (1, 2, 3)]
    _, _, _, cells = build(study_rows() + more)
    border = fd.answers(cells, rng=np.random.default_rng(0))["kinds"]["border"]
    assert border["X"]["value"] == pytest.approx(0.70 - 0.82, abs=0.01)
