"""report: the findings of a study, from its experiments (``dvc.api.exp_show``), with intervals and paired tests.

Inputs:  the experiments of the current commit (``--rev`` for others, ``--all-commits`` for the whole
         first-parent history), their params and metrics; each run's ``--predictions`` file (per-image
         test predictions, read at the run's revision with ``dvc.api``) for per-image paired tests.
         Only runs with ``base.dataset == --dataset`` (default: params.yaml's) are used.
Outputs: ``--out_dir`` (reports/<dataset>/): findings.md, findings.png, findings.json (``cells``: noise_kind,
         noise_rate, cleaning, n, mean, std, ci95, detection; ``answers``), runs.csv (one row per run used).
Not a DVC stage: it reads many experiments, not one workspace. See vlclean/findings.py for the method.
Usage:   python -m stages.study --study studies/fashion_mnist.yaml   (queues, runs, then calls this)
         python -m stages.report --dataset fashion_mnist
"""

from __future__ import annotations

import argparse
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from vlclean import cli
from vlclean import findings as fd
from vlclean.errors import VLCleanError
from vlclean.csvio import read_csv
from vlclean.params import load_params, read_params_file
from vlclean.schema import PREDICTIONS, validate_predictions
from vlclean.storage import write_csv, write_json, write_text

SMOKE_TEST_DATASETS = ("digits",)  # the built-in dataset: its findings check the machinery only


def _flat_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--dataset", default=None, help="use runs of this base.dataset (default: params.yaml's)")
    p.add_argument("--rev", action="append", default=None, help="baseline revision(s) to read (default: HEAD)")
    p.add_argument("--all-commits", action="store_true", help="read every commit of the first-parent history")
    p.add_argument("--out_dir", default=None, help="default: reports/<dataset>")
    p.add_argument("--predictions", default="data/evaluate/predictions.csv", help="per-run prediction file")
    p.add_argument("--repo", default=None, help="DVC repository (default: the current one)")

    def body(args: argparse.Namespace) -> int:
        import dvc.api
        from dvc.exceptions import DvcException
        from dvc.repo import Repo

        dataset = args.dataset or load_params(args.params).base.dataset
        out = Path(args.out_dir or f"reports/{dataset}")
        rows = dvc.api.exp_show(repo=args.repo, revs=args.rev, num=-1 if args.all_commits else 1)
        with Repo(args.repo) as repo:
            resolve = lru_cache(maxsize=None)(lambda rev: repo.scm.resolve_rev(rev))
            keys = set(_flat_keys(read_params_file(Path(repo.root_dir) / args.params)))
            for row in rows:  # older commits may name other keys
                if row.get("typ") == "baseline" and row.get("rev") != "workspace":
                    try:
                        text = repo.scm.get_fs(resolve(row["rev"])).read_text(args.params)
                    except FileNotFoundError:
                        continue
                    import yaml

                    keys |= set(_flat_keys(yaml.safe_load(text) or {}))
            runs = fd.runs_from_exp_show(rows, keys, resolve=resolve)

        frame = runs.frame
        other = frame[fd.DATASET].astype(str) != dataset if fd.DATASET in frame else pd.Series(False, index=frame.index)
        if other.all():
            raise VLCleanError(f"none of the {len(frame)} runs read has base.dataset={dataset} "
                               f"(found {sorted(frame[fd.DATASET].astype(str).unique())})")
        if other.any():
            runs.skipped.append(f"{int(other.sum())} runs of other datasets "
                                f"({sorted(frame.loc[other, fd.DATASET].astype(str).unique())}): another report's")
        runs.frame = frame[~other].reset_index(drop=True)
        table, varied = fd.cell_columns(runs)
        cells = fd.make_cells(table)

        @lru_cache(maxsize=None)
        def load(rev: str) -> pd.DataFrame | None:
            try:
                text = dvc.api.read(args.predictions, repo=args.repo, rev=rev)
            except (FileNotFoundError, DvcException):  # runs from before evaluate wrote it: McNemar n/a, said so
                return None
            return validate_predictions(read_csv(io.StringIO(text), columns=PREDICTIONS))

        result = fd.answers(cells, rng=np.random.default_rng(0), load=load)
        commits = sorted(table["commit"].unique())
        metrics = [m for m in runs.metrics if m in fd.METRICS or table[m].nunique(dropna=False) > 1]
        write_csv(out / "runs.csv", fd.runs_table(table, varied, metrics))
        write_json(out / "findings.json", {"dataset": dataset, "commits": commits, "varied_params": varied,
                                           "replicate_seeds": list(fd.REPLICATE_SEEDS), "runs": len(table),
                                           "skipped": runs.skipped, "cells": fd.cells_json(cells), "answers": result})
        text = fd.markdown(dataset=dataset, cells=cells, result=result, runs=runs, varied=varied, commits=commits,
                           smoke_test=dataset in SMOKE_TEST_DATASETS)
        write_text(out / "findings.md", text)
        fd.findings_plot(cells, result, png_path=out / "findings.png")
        print(text)
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
