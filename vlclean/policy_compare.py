"""Cleaning policies side by side: one row per experiment from ``dvc.api.exp_show``.

Each experiment's ``metrics/build_manifest.json`` ``policy`` section (vlclean.policy_analysis) gives
the policy's name and source, the share removed, drops per bucket and per reason, classes
over-pruned and over the cap, drops restored by the guard; ``metrics/eval.json`` gives the test
accuracy where the training stages ran in that experiment. Experiments listed under several
revisions (the workspace and its baseline) count once.

``exp_show`` rows name a column ``name`` when no other metrics or params file has it, else
``file:name``; DVC turns zeros into ``None`` (read back as 0 for the counts of an experiment that has
the policy section).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from vlclean.errors import VLCleanError
from vlclean.policy_analysis import BUCKET_COLORS, BUCKETS
from vlclean.reporting import _pyplot, save_figure

MANIFEST_METRICS = "metrics/build_manifest.json"
EVAL_METRICS = "metrics/eval.json"
COUNTS = ("images", "dropped", "relabelled", "over_pruned_classes", "over_pruned_high", "over_cap_classes", "restored")
SHARES = ("dropped_share", "median_class_drop", "max_class_drop")


def _get(row: dict, file: str, name: str):
    for key in (f"{file}:{name}", name):
        if key in row:
            return row[key]
    return None


def _num(value, default: float = 0.0) -> float:
    """A metric cell as a number: DVC shows zeros and missing values as None (or the text 'None', '-')."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "-", "!")):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _text(value) -> str | None:
    return None if value is None or str(value).strip() in ("", "None", "-", "!") else str(value)


def _keys_under(row: dict, file: str, prefix: str) -> dict[str, str]:
    """``{suffix: column}`` of the columns ``prefix<suffix>`` of ``file``."""
    out = {}
    for key in row:
        bare = key.split(":", 1)[1] if key.startswith(f"{file}:") else key
        if ":" not in bare and bare.startswith(prefix):
            out[bare[len(prefix):]] = key
    return out


def comparison_table(rows: Iterable[dict]) -> pd.DataFrame:
    """One row per experiment that ran build_manifest (see module doc), most removed first."""
    out = []
    for row in rows:
        if _num(_get(row, MANIFEST_METRICS, "policy.images")) == 0:
            continue
        rec = {"experiment": row.get("Experiment") or (row.get("rev") if row.get("typ") != "workspace" else "workspace"),
               "rev": row.get("rev"), "policy": _text(_get(row, MANIFEST_METRICS, "policy.name")),
               "source": _text(_get(row, MANIFEST_METRICS, "policy.source")),
               "rule_set": _text(_get(row, "params.yaml", "apply_tags.rule_set")),
               "policy_file": _text(_get(row, "params.yaml", "apply_tags.policy_file")),
               "cap_share": _num(_get(row, "params.yaml", "build_manifest.max_class_drop.share"), default=np.nan),
               "cap_action": _text(_get(row, "params.yaml", "build_manifest.max_class_drop.action"))}
        for k in COUNTS:
            rec[k] = int(_num(_get(row, MANIFEST_METRICS, f"policy.{k}")))
        for k in SHARES:
            rec[k] = _num(_get(row, MANIFEST_METRICS, f"policy.{k}"))
        for b in BUCKETS:
            rec[f"bucket.{b}"] = int(_num(_get(row, MANIFEST_METRICS, f"policy.by_bucket.{b}")))
        for reason, key in sorted(_keys_under(row, MANIFEST_METRICS, "policy.by_reason.").items()):
            rec[f"reason.{reason}"] = int(_num(row[key]))
        for k in ("accuracy", "accuracy_leak_free"):
            rec[k] = _num(_get(row, EVAL_METRICS, k), default=np.nan)
        out.append(rec)
    if not out:
        raise VLCleanError("no experiment with the policy section of metrics/build_manifest.json in dvc exp show "
                           "(run build_manifest, e.g. dvc exp run --queue -S apply_tags.rule_set=default,conservative)")
    table = pd.DataFrame(out)
    reason_cols = [c for c in table if c.startswith("reason.")]
    table[reason_cols] = table[reason_cols].fillna(0).astype(int)
    same = [c for c in table if c not in ("experiment", "rev")]
    table = table.assign(_ws=table["experiment"] == "workspace").sort_values("_ws", kind="mergesort")
    table = table.drop_duplicates(subset=same).drop(columns="_ws")  # the workspace repeats its baseline
    return table.sort_values(["dropped_share", "experiment"], ascending=[False, True], ignore_index=True)


def markdown(table: pd.DataFrame) -> str:
    reasons = [c for c in table if c.startswith("reason.")]
    lines = ["# Cleaning policies side by side", "",
             "Scope: the split the policy acts on (train). Removed = action drop; buckets by each image's most severe "
             "reason; over-pruned: classes losing >= ratio_to_median x the median class (params build_manifest.over_pruning).",
             "", "| experiment | policy | removed | " + " | ".join(BUCKETS) + " | median class | worst class | "
             "over-pruned (high) | over cap | restored | accuracy |",
             "|---" * (9 + len(BUCKETS)) + "|"]
    for _, d in table.iterrows():
        acc = "n/a" if pd.isna(d["accuracy"]) else f"{d['accuracy']:.4f}"
        lines.append(f"| {d['experiment']} | {d['policy']} | {d['dropped']:,} of {d['images']:,} "
                     f"({100 * d['dropped_share']:.1f} %) | " + " | ".join(f"{d[f'bucket.{b}']:,}" for b in BUCKETS)
                     + f" | {100 * d['median_class_drop']:.1f} % | {100 * d['max_class_drop']:.1f} % | "
                     f"{d['over_pruned_classes']} ({d['over_pruned_high']}) | {d['over_cap_classes']} | "
                     f"{d['restored']:,} | {acc} |")
    if reasons:
        lines += ["", "Images dropped per reason (an image can have several):", "",
                  "| experiment | " + " | ".join(c.split(".", 1)[1] for c in reasons) + " |",
                  "|---" * (1 + len(reasons)) + "|"]
        for _, r in table.iterrows():
            lines.append(f"| {r['experiment']} | " + " | ".join(f"{int(r[c]):,}" for c in reasons) + " |")
    return "\n".join(lines) + "\n"


def comparison_plot(table: pd.DataFrame, *, png_path: str | Path) -> None:
    """Share of images removed per experiment, stacked by bucket; over-pruned classes and accuracy noted."""
    plt = _pyplot()
    t = table.iloc[::-1]
    labels = [f"{e} ({p})" for e, p in zip(t["experiment"], t["policy"])]
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.5 * len(t)))
    left = np.zeros(len(t))
    for b in BUCKETS:
        v = t[f"bucket.{b}"].to_numpy() / np.maximum(t["images"].to_numpy(), 1)
        if v.any():
            ax.barh(labels, v, left=left, color=BUCKET_COLORS[b], label=b)
            left += v
    for y, (_, d) in enumerate(t.iterrows()):
        note = f" {100 * d['dropped_share']:.1f} %; {d['over_pruned_classes']} classes over-pruned"
        if not pd.isna(d["accuracy"]):
            note += f"; accuracy {d['accuracy']:.3f}"
        ax.text(left[y], y, note, va="center", fontsize=8)
    ax.set_xlim(0, min(1.0, max(0.05, float(left.max()) * 1.8)))
    ax.set_xlabel("share of images removed (by most severe reason)")
    ax.set_title("Cleaning policies side by side")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, png_path)
