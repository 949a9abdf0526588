"""DVC reruns what changed results and nothing else: speed knobs (``runtime``) never make a stage stale.

Checked with the real ``dvc status`` in a fresh copy of the project: its dvc.lock's params are first
brought in line with params.yaml (so no stage starts stale on params), then every ``runtime`` knob is
changed (no stage may become stale on params), then one result knob per stage (that stage must).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from vlclean.params import Params, load_params

pytestmark = pytest.mark.slow


def _dvc_status(repo: Path) -> dict[str, set[str]]:
    """Stage -> the params.yaml keys ``dvc status`` reports as changed for it."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, set[str]] = {}
    for stage, changes in json.loads(proc.stdout or "{}").items():
        for change in changes if isinstance(changes, list) else []:
            if isinstance(change, dict):
                out.setdefault(stage, set()).update((change.get("changed deps") or {}).get("params.yaml", {}) or {})
    return {k: v for k, v in out.items() if v}


def _sync_lock_params(repo: Path) -> None:
    """Record params.yaml's current values in dvc.lock for the keys each stage tracks (a `dvc commit` of params)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for name, stage in lock["stages"].items():
        tracked = {}
        for key in stages[name].get("params", []):
            node = params
            for part in str(key).split("."):
                node = node[part]
            tracked[str(key)] = node
        stage["params"] = {"params.yaml": tracked}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def _set(path: Path, changes: dict[str, object]) -> None:
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_params(path)  # still a valid file


RUNTIME_CHANGES = {
    "runtime.download.workers": 3, "runtime.analyze.workers": 1, "runtime.analyze.chunk_size": 64,
    "runtime.analyze.embedding.batch_size": 16, "runtime.analyze.embedding.device": "auto",
    "runtime.analyze.embedding.threads": 1,
    "runtime.train.device": "cpu", "runtime.train.workers": 2, "runtime.evaluate.batch_size": 32,
    "runtime.evaluate.device": "cpu", "runtime.evaluate.workers": 1, "runtime.evaluate.loader": "memory",
    "runtime.evaluate.cache_max_mb": 64,
}
RESULT_CHANGES = {  # one result knob per stage -> the stage that must become stale
    "download.shard_max_mb": "download", "analyze.draft": "analyze", "detect_leaks.k": "detect_leaks",
    "ingest_vl.dataset_prefixes": "ingest_vl", "apply_tags.rule_set": "apply_tags",
    "build_manifest.review_action": "build_manifest", "noise.rate": "noise", "denoise.recall": "denoise",
    "train.lr": "train", "evaluate.amp_dtype": "evaluate",
}
RESULT_VALUES = {"download.shard_max_mb": 128, "analyze.draft": False, "detect_leaks.k": 7,
                 "ingest_vl.dataset_prefixes": ["x/"], "apply_tags.rule_set": "conservative",
                 "build_manifest.review_action": "drop", "noise.rate": 0.2, "denoise.recall": 0.5, "train.lr": 0.1,
                 "evaluate.amp_dtype": "float16"}


def test_no_stage_tracks_runtime_and_every_knob_is_covered() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        tracked = [str(p) for p in stage.get("params", [])]
        assert not [p for p in tracked if p == "runtime" or p.startswith("runtime.")], name
    leaves = []

    def walk(model: type, prefix: str) -> None:
        for field, info in model.model_fields.items():
            sub = info.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                walk(sub, f"{prefix}{field}.")
            else:
                leaves.append(f"{prefix}{field}")

    walk(Params.model_fields["runtime"].annotation, "runtime.")
    assert sorted(leaves) == sorted(RUNTIME_CHANGES)  # the test below changes every speed knob


def test_dvc_status_speed_knobs_rerun_nothing_result_knobs_rerun_their_stage(repo_copy: Path) -> None:
    _sync_lock_params(repo_copy)
    assert _dvc_status(repo_copy) == {}
    _set(repo_copy / "params.yaml", RUNTIME_CHANGES)
    assert _dvc_status(repo_copy) == {}, "a speed knob made a stage stale"
    _set(repo_copy / "params.yaml", RESULT_VALUES)
    stale = _dvc_status(repo_copy)
    for key, stage in RESULT_CHANGES.items():
        section = key.split(".")[0]
        assert stage in stale and (key in stale[stage] or section in stale[stage]), (key, stale.get(stage))
