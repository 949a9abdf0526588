"""A tiny study end to end in a temporary clone: `stages.study` queues `dvc exp run`s, runs them, and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_params
from vlclean.denoise import DENOISE_METHODS

pytestmark = pytest.mark.slow

TINY = {
    "analyze": {"embedding": {"model": "pixels"}},
    "train": {"epochs": 3, "max_train_images": 600, "batch_size": 64},
}
ARMS = [m for m in DENOISE_METHODS if m not in ("none", "vl_export")]  # vl_export needs an export of the noisy data


def sh(repo: Path, *args: str, timeout: int = 3600) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def committed_baseline(repo: Path) -> list[str]:
    """Run the tiny pipeline in ``repo`` and commit it (queued experiments need committed code); the dvc command."""
    write_params(repo / "params.yaml", TINY)
    dvc = [sys.executable, "-m", "dvc"]
    sh(repo, *dvc, "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    return dvc


def names_of(repo: Path, dvc: list[str]) -> list[str]:
    return [line.split()[0] for line in sh(repo, *dvc, "exp", "ls", "--name-only").splitlines()[1:]]


def test_tiny_study_directions_and_every_cleaning_arm(repo_copy: Path) -> None:
    """The study commits its own baseline: the preset applied, setup stages run once, stale metrics left out."""
    dvc = [sys.executable, "-m", "dvc"]
    assert sh(repo_copy, "git", "status", "--porcelain") == ""  # repo_copy is a committed clone
    preset = {"analyze.embedding.model": "pixels", "train.epochs": 3, "train.max_train_images": 600,
              "train.batch_size": 64}
    study = {"dataset": "digits", "seeds": [1], "preset": preset, "jobs": 2, "threads_per_job": 1,
             "cost": {"train_images": 600, "epochs": 3, "train_images_per_s": 600, "test_images": 350,
                      "eval_images_per_s": 2000, "overhead_s": 20, "setup_s": 0},
             "groups": {"noise": {"grid": {"noise.kind": ["random"], "noise.rate": [0.0, 0.2, 0.4]}},
                        "cleaning": {"grid": {"noise.kind": ["random"], "noise.rate": [0.2]},
                                     "arms": [{"denoise.method": m} for m in ARMS]}}}
    study_file = repo_copy.parent / "tiny_study.yaml"  # outside the clone: the baseline commit needs a clean tree
    study_file.write_text(yaml.safe_dump(study))
    out = sh(repo_copy, sys.executable, "-m", "stages.study", "--study", str(study_file))
    assert f"{3 + len(ARMS)} experiments" in out and "expected duration" in out
    assert "baseline: committed" in out and "metrics/eval.json" in out
    assert "study digits: baseline" in sh(repo_copy, "git", "log", "-1", "--format=%s")
    for name in ("download", "analyze", "detect_leaks"):  # run once, for the baseline: no experiment reran them
        for line in sh(repo_copy, *dvc, "queue", "logs", names_of(repo_copy, dvc)[0]).splitlines():
            assert f"Running stage '{name}'" not in line
    findings = json.loads((repo_copy / "reports/digits/findings.json").read_text())
    # the baseline commit ran no evaluate: listed as not used, never counted
    assert len(findings["skipped"]) == 1 and findings["skipped"][0].endswith("no metrics/eval.json accuracy")
    cells = {(c["noise_kind"], c["noise_rate"], c["cleaning"]): c for c in findings["cells"]}
    assert cells[("random", 0.4, "none")]["mean"] < cells[("random", 0.0, "none")]["mean"]
    # the baseline commit ran no evaluate (its stale metrics were left out): it is no run
    assert cells[("random", 0.0, "none")]["n"] == 1
    answers = findings["answers"]["kinds"]["random"]
    assert answers["X"]["value"] > 0 and answers["X_mcnemar"]["image_pairs"] > 300
    for arm in ARMS:
        assert answers["arms"][arm]["Y"]["value"] is not None, arm
        assert cells[("random", 0.2, arm)]["detection"]["recall"] is not None
    runs = (repo_copy / "reports/digits/runs.csv").read_text().splitlines()
    assert len(runs) - 1 == sum(c["n"] for c in findings["cells"]) == 3 + len(ARMS)
    assert "(smoke test)" in (repo_copy / "reports/digits/findings.md").read_text()
    names = names_of(repo_copy, dvc)[:2]
    sh(repo_copy, *dvc, "plots", "diff", *names, "--json")
