"""study: queue a study's experiments (``dvc exp run --queue -S ...``), run them, then write its report.

First the baseline: the study's preset is applied to params.yaml and its setup stages (download ..
build_manifest) run once (``dvc exp run -S <preset> <stage>``), and the result is committed on the
current branch (run it on a branch of its own: ``git switch -c study/<dataset>``). Every experiment
is then based on that commit and reruns only noise, denoise, train and evaluate. Skipped when
params.yaml already holds the preset and ``dvc status`` finds the setup stages up to date.

Inputs:  ``--study`` (studies/<dataset>.yaml, see vlclean/study.py), params.yaml (the keys it must have).
Outputs: one DVC experiment per study run (on the current commit), then ``python -m stages.report
         --dataset <dataset>``: reports/<dataset>/findings.md, .png, .json, runs.csv.
Prints the number of experiments and the expected duration before anything runs; ``--dry-run``
stops there and prints the ``dvc exp run`` commands. Not a DVC stage.
Usage:   make study DATASET=fashion_mnist    (= python -m stages.study --study studies/fashion_mnist.yaml)
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from vlclean import cli
from vlclean.errors import VLCleanError
from vlclean.params import read_params_file
from vlclean.study import Study, expected_seconds, load_study, missing_keys, preset_applied, runs, set_args

DVC = [sys.executable, "-m", "dvc"]


def _dvc(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([*DVC, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise VLCleanError(f"dvc {' '.join(args[:3])} ... failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def worker_env(threads: int | None) -> dict[str, str] | None:
    """The queue workers' environment: OMP/MKL thread counts set when the study names them."""
    if threads is None:
        return None
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise VLCleanError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def stale_metrics(stages: set[str], dvc_yaml: str = "dvc.yaml") -> list[str]:
    """Delete the metrics files of ``stages`` (not run for the baseline: they describe the old params),
    so the baseline commit is no run of the study's report; the paths deleted."""
    import yaml

    spec = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    removed = []
    for name in sorted(stages & set(spec)):
        for entry in spec[name].get("metrics", []):
            path = Path(next(iter(entry)) if isinstance(entry, dict) else entry)
            if path.exists():
                path.unlink()
                removed.append(str(path))
    return removed


def baseline(study: Study, params_path: str, env: dict[str, str] | None) -> str:
    """Apply the preset, run the setup stages and commit them (see the module doc); the commit's id."""
    import json

    up_to_date = not json.loads(_dvc("status", "--json", *study.setup_stages) or "{}")
    if preset_applied(study, read_params_file(params_path)) and up_to_date:
        print("baseline: params.yaml holds the preset and the setup stages are up to date")
        return _git("rev-parse", "HEAD").strip()
    dirty = _git("status", "--porcelain").splitlines()
    if dirty:
        raise VLCleanError(f"the study commits its baseline, so the git tree must be clean; changed: {dirty[:5]}")
    started = time.time()
    print(f"baseline: dvc exp run {' '.join(set_args(study.preset))} {' '.join(study.setup_stages)}", flush=True)
    proc = subprocess.run([*DVC, "exp", "run", *set_args(study.preset), *study.setup_stages], env=env)
    if proc.returncode != 0:
        raise VLCleanError(f"the setup stages failed (exit {proc.returncode}); see the output above")
    stale = json.loads(_dvc("status", "--json") or "{}")
    removed = stale_metrics(set(stale))
    _git("add", "-A")
    _git("commit", "-q", "-m", f"study {study.dataset}: baseline (preset applied; {', '.join(study.setup_stages)} run)")
    print(f"baseline: committed in {time.time() - started:.0f} s (stale metrics left out: {removed})")
    return _git("rev-parse", "HEAD").strip()


def wait_for_queue(poll_s: float = 10.0) -> list[str]:
    """Block until the DVC queue has nothing queued or running; return the failed experiments' names."""
    while True:
        status = _dvc("queue", "status")
        if "Queued" not in status and "Running" not in status:
            return [line.split()[1] for line in status.splitlines() if " Failed " in f" {line} " and len(line.split()) > 1]
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--study", required=True, help="study file (studies/<dataset>.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the commands; queue nothing")
    p.add_argument("--jobs", type=int, default=None, help="experiments at a time (default: the study's)")

    def body(args: argparse.Namespace) -> int:
        study = load_study(args.study)
        missing = missing_keys(study, read_params_file(args.params))
        plan = runs(study)
        est = expected_seconds(study)
        jobs = args.jobs or study.jobs
        print(f"study {args.study}: {est['experiments']} experiments ({len(plan) // len(study.seeds)} settings x "
              f"{len(study.seeds)} seeds), {est['trainings']} distinct trainings of ~{est['seconds_per_training']:.0f} s; "
              f"expected duration ~{est['seconds'] * study.jobs / jobs / 3600:.1f} h with {jobs} job(s)")
        if missing and args.dry_run:
            print(f"warning: {args.params} lacks key(s) the study sets: {', '.join(missing)}")
        elif missing:
            raise VLCleanError(f"{args.params} lacks key(s) the study sets: {', '.join(missing)} "
                               "(a knob not landed yet, or renamed: edit the study file)")
        if args.dry_run:
            for r in plan:
                print(shlex.join(["dvc", "exp", "run", "--queue", *set_args(r)]))
            return 0
        env = worker_env(study.threads_per_job)
        rev = baseline(study, args.params, env)
        for i, r in enumerate(plan, 1):
            _dvc("exp", "run", "--queue", *set_args(r))
            print(f"queued {i}/{len(plan)}", end="\r", flush=True)
        print()
        started = time.time()  # before the start: `dvc queue start` may itself block until the queue is done
        _dvc("queue", "start", "-j", str(jobs), env=env)
        failed = wait_for_queue()
        print(f"study: ran in {(time.time() - started) / 3600:.2f} h; {len(failed)} failed {failed[:10]}"
              + (" (see `dvc queue logs NAME`)" if failed else ""))
        from stages import report

        return report.main(["--params", args.params, "--dataset", study.dataset, "--rev", rev])

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
