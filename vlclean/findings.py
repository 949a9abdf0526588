"""The findings report: what label noise costs and what cleaning buys, from a sweep of experiments.

Input: the experiments of a ``dvc exp run --queue -S noise.rate=... -S noise.kind=... -S denoise.method=...``
sweep (``dvc exp show --json``), each with its params and ``metrics/eval.json``. Output: a table of
test accuracy (mean +- std over seeds) per noise kind, noise rate and cleaning method, a plot, and
the three headline numbers the team's notes leave open:

X      accuracy drop at 20 % label noise (random, no cleaning): ``acc(0) - acc(0.2)``
Y      share of that loss recovered by cleaning at 80 % recall (``denoise.method=oracle``):
       ``(acc(0.2, oracle) - acc(0.2, none)) / (acc(0) - acc(0.2, none))``
ratio  damage of 40 % noise over damage of 20 %: ``(acc(0) - acc(0.4)) / (acc(0) - acc(0.2))``
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from vlclean.errors import VLCleanError

KEYS = ("noise.kind", "noise.rate", "denoise.method", "base.seed")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _records(node: Any) -> Iterator[dict]:
    """Every experiment record (a dict with 'data' holding params and metrics) in dvc exp show --json."""
    if isinstance(node, list):
        for x in node:
            yield from _records(x)
    elif isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "params" in data:
            yield {"name": node.get("name") or data.get("name") or node.get("rev", ""), **data}
        for key in ("experiments", "revs"):
            if key in node:
                yield from _records(node[key])


def experiments_table(exp_show: Any) -> pd.DataFrame:
    """One row per experiment: the sweep keys and the evaluate metrics."""
    rows = []
    for rec in _records(exp_show):
        params = _flatten((rec.get("params") or {}).get("params.yaml", {}).get("data", {}) or {})
        metrics_file = (rec.get("metrics") or {}).get("metrics/eval.json", {}) or {}
        metrics = metrics_file.get("data") or {}
        if not metrics or "accuracy" not in metrics:
            continue
        row = {k: params.get(k) for k in KEYS}
        row.update({"name": rec["name"], "accuracy": metrics["accuracy"],
                    "accuracy_leak_free": metrics.get("accuracy_leak_free", np.nan),
                    "leak_inflation": metrics.get("leak_inflation", np.nan)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise VLCleanError("no experiment with metrics/eval.json in the dvc exp show output (run the sweep first)")
    frame = frame.drop_duplicates(subset=[*KEYS, "accuracy"])  # one run listed under several revs
    frame["noise.rate"] = frame["noise.rate"].astype(float)
    return frame


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of accuracy per (noise kind, noise rate, cleaning), with the number of seeds."""
    g = frame.groupby(["noise.kind", "noise.rate", "denoise.method"], dropna=False)
    out = g.agg(accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"), seeds=("accuracy", "size"),
                accuracy_leak_free=("accuracy_leak_free", "mean"), leak_inflation=("leak_inflation", "mean"))
    return out.reset_index().fillna({"accuracy_std": 0.0})


def _acc(summary: pd.DataFrame, kind: str, rate: float, method: str) -> float | None:
    rows = summary[(summary["noise.kind"] == kind) & np.isclose(summary["noise.rate"], rate)
                   & (summary["denoise.method"] == method)]
    return float(rows["accuracy"].iloc[0]) if len(rows) else None


def headline(summary: pd.DataFrame, kind: str = "random") -> dict[str, float | None]:
    """X, Y and the 40 %-vs-20 % damage ratio (None where the sweep lacks a needed experiment)."""
    clean = _acc(summary, kind, 0.0, "none")
    if clean is None:  # rate 0 with any method is the clean baseline
        rows = summary[(summary["noise.kind"] == kind) & np.isclose(summary["noise.rate"], 0.0)]
        clean = float(rows["accuracy"].mean()) if len(rows) else None
    a20, a40 = _acc(summary, kind, 0.2, "none"), _acc(summary, kind, 0.4, "none")
    o20 = _acc(summary, kind, 0.2, "oracle")
    x = None if clean is None or a20 is None else clean - a20
    y = None if x is None or o20 is None or x <= 0 else (o20 - a20) / x
    ratio = None if x is None or a40 is None or x <= 0 else (clean - a40) / x
    r = lambda v: None if v is None else round(v, 4)  # noqa: E731
    return {"clean_accuracy": r(clean), "X_drop_at_20": r(x), "Y_recovered_by_80pct_cleaning": r(y),
            "damage_ratio_40_vs_20": r(ratio)}


def markdown(summary: pd.DataFrame, heads: dict[str, dict]) -> str:
    lines = ["# Findings: label noise and cleaning", "",
             "Test accuracy (mean +- std over seeds) of ResNet-18 trained on the noisy, optionally cleaned labels.", "",
             "| noise kind | noise rate | cleaning | accuracy | leak-free accuracy | seeds |",
             "|---|---|---|---|---|---|"]
    for r in summary.sort_values(["noise.kind", "noise.rate", "denoise.method"]).itertuples(index=False):
        lines.append(f"| {r[0]} | {r[1]:.2f} | {r[2]} | {r.accuracy:.4f} +- {r.accuracy_std:.4f} | "
                     f"{r.accuracy_leak_free:.4f} | {r.seeds} |")
    lines += ["", "| noise kind | X: drop at 20 % | Y: share recovered by 80 %-recall cleaning | 40 % vs 20 % damage |",
              "|---|---|---|---|"]
    fmt = lambda v, pct=False: "n/a" if v is None else (f"{100 * v:.1f} %" if pct else f"{v:.2f}x")  # noqa: E731
    for kind, h in heads.items():
        lines.append(f"| {kind} | {fmt(h['X_drop_at_20'], True)} | {fmt(h['Y_recovered_by_80pct_cleaning'], True)} | "
                     f"{fmt(h['damage_ratio_40_vs_20'])} |")
    lines += ["", "X: accuracy(0 %) - accuracy(20 %), no cleaning. Y: (accuracy(20 %, oracle cleaning at 80 % recall) - "
              "accuracy(20 %, none)) / X. Ratio: accuracy loss at 40 % / loss at 20 %.", ""]
    return "\n".join(lines)


def load_exp_show(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise VLCleanError(f"dvc exp show --json output is not JSON: {err}") from err
