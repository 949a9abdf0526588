"""Policies compared through real dvc experiments in a temporary clone (tiny config): a queued rule-set sweep,
a team policy file, and `python -m stages.compare_policies` reading them with dvc.api.exp_show."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_sweep import committed_baseline, sh

pytestmark = pytest.mark.slow


def test_policies_side_by_side_from_dvc_experiments(repo_copy: Path) -> None:
    dvc = committed_baseline(repo_copy)
    sh(repo_copy, *dvc, "exp", "run", "--queue", "-S", "apply_tags.rule_set=default,conservative")
    sh(repo_copy, *dvc, "exp", "run", "--queue", "-S", "apply_tags.policy_file=policies/imagenet_1k_aggressive_clean.yaml",
       "-S", "build_manifest.max_class_drop.action=restore", "-S", "build_manifest.max_class_drop.share=0.05")
    sh(repo_copy, *dvc, "queue", "start", "-j", "2")
    deadline = time.time() + 900
    while time.time() < deadline:
        status = sh(repo_copy, *dvc, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert "Failed" not in status, status
    out = repo_copy / "policy_report"
    sh(repo_copy, sys.executable, "-m", "stages.compare_policies", "--output", str(out / "policies.md"),
       "--csv", str(out / "policies.csv"), "--plot", str(out / "policies.png"))
    table = pd.read_csv(out / "policies.csv")
    policies = set(table["policy"])
    assert {"default", "conservative", "imagenet_1k_aggressive_clean"} <= policies
    t = table.drop_duplicates("policy").set_index("policy")
    assert t.at["default", "dropped"] > t.at["conservative", "dropped"]
    assert t.at["imagenet_1k_aggressive_clean", "restored"] > 0  # the 5 % cap restored drops
    assert t.at["imagenet_1k_aggressive_clean", "cap_action"] == "restore"
    assert t["accuracy"].notna().all()  # every experiment trained and evaluated
    assert "| imagenet_1k_aggressive_clean |" in (out / "policies.md").read_text()
    assert (out / "policies.png").stat().st_size > 0
