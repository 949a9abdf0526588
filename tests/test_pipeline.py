"""The DVC pipeline end to end on the built-in dataset, in a fresh git repository, and the README contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def dvc(repo: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_dvc_repro_runs_and_reruns_as_noop(repo_copy: Path) -> None:
    dvc(repo_copy, "repro")
    metrics = json.loads((repo_copy / "metrics" / "download.json").read_text())
    assert metrics["images"] > 1800 and metrics["invalid"] == 3
    analyzed = json.loads((repo_copy / "metrics" / "analyze.json").read_text())
    assert analyzed["images"] == metrics["images"] and analyzed["truth"]
    assert (repo_copy / "data" / "vl" / "digits_vl_export.csv").is_file()
    assert "up to date" in dvc(repo_copy, "status")
    lock = (repo_copy / "dvc.lock").read_text()
    again = dvc(repo_copy, "repro")
    assert "didn't change, skipping" in again and "Running stage" not in again
    assert (repo_copy / "dvc.lock").read_text() == lock
    shown = json.loads(dvc(repo_copy, "metrics", "show", "--json"))
    assert shown  # DVC reads the declared metrics


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README must start with a code block holding the two commands"
    lines = [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines()]
    return [ln for ln in lines if ln]


def test_readme_starts_with_two_commands_and_ci_runs_the_second() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands
    setup_and_run, test = commands
    assert "repro" in setup_and_run
    ci = (REPO / ".ci" / "run").read_text()
    assert test in ci.splitlines(), f"CI must run exactly the README's test command {test!r}"
    makefile = (REPO / "Makefile").read_text()
    assert "torch==2.14.1" in (REPO / "requirements.txt").read_text()
    assert "torchvision==0.29.1" in (REPO / "requirements.txt").read_text()
    assert "dvc repro" in makefile and "pytest" in makefile


def test_repo_config_turns_analytics_off() -> None:
    assert re.search(r"analytics\s*=\s*false", (REPO / ".dvc" / "config").read_text())


def test_every_plot_renders_once_and_every_stage_explains_itself(repo_copy: Path) -> None:
    """A file drawn by a named plot is not also a stage plot (DVC would render it twice, the second time
    with the default template); `dvc plots show` renders exactly the named plots plus the stage plots;
    `dvc stage list` has a description for every stage; rendered plots stay out of git."""
    import yaml

    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    named, drawn = [], set()
    for entry in pipeline["plots"]:
        if isinstance(entry, str):
            named.append(entry)
            drawn.add(entry)
            continue
        ((title, spec),) = entry.items()
        named.append(title)
        drawn |= set(spec["y"]) if isinstance(spec.get("y"), dict) else {title}
    stage_plots = [next(iter(p)) if isinstance(p, dict) else p
                   for stage in pipeline["stages"].values() for p in stage.get("plots", [])]
    assert not drawn & set(stage_plots), "drawn by a named plot and declared as a stage plot too"
    assert not any(p.startswith(d.rstrip("/") + "/") for p in stage_plots for d in drawn)
    shown = json.loads(dvc(repo_copy, "plots", "show", "--json"))["data"]

    def declared_by(plot_id: str) -> list[str]:  # a folder entry renders as one plot per file in it
        return [d for d in named + stage_plots if plot_id == d or plot_id.startswith(d.rstrip("/") + "/")]

    assert all(len(declared_by(i)) == 1 for i in shown), [(i, declared_by(i)) for i in shown]
    assert {d for i in shown for d in declared_by(i)} == set(named + stage_plots)
    undescribed = [name for name, stage in pipeline["stages"].items() if not stage.get("desc")]
    assert not undescribed, f"stages without desc: {undescribed}"
    listed = dvc(repo_copy, "stage", "list")
    assert all(stage["desc"] in listed for stage in pipeline["stages"].values())
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", "dvc_plots/index.html"], cwd=REPO)
    assert ignored.returncode == 0, "dvc_plots/ is not git-ignored"
