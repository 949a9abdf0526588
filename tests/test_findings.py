"""The findings report from a `dvc exp show --json` document (the real sweep runs in test_sweep.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages import report
from vlclean.errors import VLCleanError
from vlclean.findings import experiments_table, headline, summarise


def exp(name: str, kind: str, rate: float, method: str, seed: int, acc: float) -> dict:
    params = {"base": {"seed": seed, "dataset": "digits"}, "noise": {"kind": kind, "rate": rate},
              "denoise": {"method": method}}
    metrics = {"accuracy": acc, "accuracy_leak_free": acc - 0.01, "leak_inflation": 0.01}
    return {"rev": name, "name": name, "data": {"rev": name, "params": {"params.yaml": {"data": params}},
                                                "metrics": {"metrics/eval.json": {"data": metrics}}}}


def exp_show() -> list:
    revs = []
    for seed, jitter in ((1, 0.0), (2, 0.01)):
        for kind in ("random", "intelligent"):
            revs += [exp(f"{kind}-0-{seed}", kind, 0.0, "none", seed, 0.90 + jitter),
                     exp(f"{kind}-2-{seed}", kind, 0.2, "none", seed, 0.80 + jitter),
                     exp(f"{kind}-4-{seed}", kind, 0.4, "none", seed, 0.55 + jitter),
                     exp(f"{kind}-2o-{seed}", kind, 0.2, "oracle", seed, 0.88 + jitter)]
    baseline = exp("workspace", "random", 0.0, "none", 3, 0.905)  # the committed run counts as a seed too
    return [{**baseline, "experiments": [{"revs": [r], "name": r["name"]} for r in revs]}]


def test_headline_numbers_from_a_sweep() -> None:
    summary = summarise(experiments_table(exp_show()))
    h = headline(summary, "random")
    assert h["X_drop_at_20"] == pytest.approx(0.10)
    assert h["Y_recovered_by_80pct_cleaning"] == pytest.approx(0.8)
    assert h["damage_ratio_40_vs_20"] == pytest.approx(3.5)
    row = summary[(summary["noise.kind"] == "random") & (summary["noise.rate"] == 0.2) & (summary["denoise.method"] == "none")]
    assert int(row["seeds"].iloc[0]) == 2 and row["accuracy_std"].iloc[0] == pytest.approx(0.00707, abs=1e-4)


def test_report_stage_writes_markdown_plot_and_json(tmp_path: Path) -> None:
    src = tmp_path / "exp.json"
    src.write_text(json.dumps(exp_show()))
    out = tmp_path / "findings.md"
    assert report.main(["--exp_json", str(src), "--output", str(out), "--plot", str(tmp_path / "f.png"),
                        "--json", str(tmp_path / "f.json")]) == 0
    text = out.read_text()
    assert "| random | 10.0 % | 80.0 % | 3.50x |" in text
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_no_experiments_is_a_clear_error() -> None:
    with pytest.raises(VLCleanError, match="no experiment"):
        experiments_table([])
