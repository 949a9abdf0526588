"""A noise sweep with `dvc exp run --queue` in a temporary clone (tiny config), and the findings report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_params

pytestmark = pytest.mark.slow

TINY = {
    "analyze": {"embedding": {"model": "pixels"}},
    "train": {"epochs": 1, "max_train_images": 300, "batch_size": 64},
}


def sh(repo: Path, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_queued_noise_sweep_and_findings_report(repo_copy: Path) -> None:
    write_params(repo_copy / "params.yaml", TINY)
    dvc = [sys.executable, "-m", "dvc"]
    sh(repo_copy, *dvc, "repro")
    sh(repo_copy, "git", "add", "-A")
    sh(repo_copy, "git", "commit", "-qm", "baseline")
    sh(repo_copy, *dvc, "exp", "run", "--queue", "-S", "noise.rate=0.0,0.2,0.4", "-S", "noise.kind=random,intelligent")
    sh(repo_copy, *dvc, "queue", "start", "-j", "2")
    deadline = time.time() + 900
    while time.time() < deadline:
        status = sh(repo_copy, *dvc, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    failed = [line.split()[1] for line in status.splitlines() if "Failed" in line and len(line.split()) > 1]
    logs = "".join(subprocess.run([*dvc, "queue", "logs", name], cwd=repo_copy, capture_output=True, text=True,
                                  env={**os.environ, "DVC_NO_ANALYTICS": "1"}).stdout[-3000:] for name in failed)
    assert not failed, f"{status}\n{logs}"
    shown = json.loads(sh(repo_copy, *dvc, "exp", "show", "--json"))
    out = repo_copy / "sweep_report"  # reports/ holds the committed findings of the full-size sweep
    out.mkdir()
    (out / "exp.json").write_text(json.dumps(shown))
    sh(repo_copy, sys.executable, "-m", "stages.report", "--exp_json", str(out / "exp.json"),
       "--output", str(out / "findings.md"), "--plot", str(out / "findings.png"), "--json", str(out / "findings.json"))
    findings = json.loads((out / "findings.json").read_text())
    cells = {(r["noise.kind"], r["noise.rate"]) for r in findings["summary"]}
    assert {(k, r) for k in ("random", "intelligent") for r in (0.0, 0.2, 0.4)} <= cells
    assert findings["headline"]["random"]["X_drop_at_20"] is not None
    assert "| random |" in (out / "findings.md").read_text()
    names = [line.split()[0] for line in sh(repo_copy, *dvc, "exp", "ls", "--name-only").splitlines()[1:3]]
    sh(repo_copy, *dvc, "plots", "diff", *names, "--json")
