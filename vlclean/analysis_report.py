"""Metrics and plots of an analysis: issue counts, and precision/recall against the planted truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vlclean.reporting import bar_plot
from vlclean.truth import score, truth_images
from vlclean.detect import Analysis

SINGLE_ISSUES = ("outlier", "mislabel", "dark", "bright", "blur", "invalid")


def analysis_metrics(result: Analysis, truth: pd.DataFrame, index: pd.DataFrame) -> dict:
    """Counts per issue type and, where the dataset has planted truth, precision/recall per type.

    Duplicates are scored per image: an image is a true duplicate when it is either side of a
    planted ``duplicate`` or ``leakage`` pair; the headline uses the loosest level, and every level
    is reported under ``duplicate_levels``.
    """
    issues = result.issues
    counts = {k: int(v) for k, v in issues.groupby("issue")["image_id"].nunique().sort_index().items()}
    metrics: dict = {"images": len(index), "valid": int(index["valid"].sum()), "issue_counts": counts}
    if truth.empty:
        return metrics
    scores: dict = {}
    for issue in SINGLE_ISSUES:
        found = set(issues.loc[issues["issue"] == issue, "image_id"])
        scores[issue] = score(found, truth_images(truth, issue))
    dup_truth = truth_images(truth, "duplicate", include_related=True) | truth_images(truth, "leakage", include_related=True)
    dups = issues[issues["issue"] == "duplicate"]
    scores["duplicate"] = score(set(dups["image_id"]), dup_truth)
    metrics["duplicate_levels"] = {
        f"{lv:.2f}": score(set(g["image_id"]), dup_truth) for lv, g in dups.groupby("duplicate_threshold")
    }
    mis = truth[truth["issue"] == "mislabel"]
    flagged = issues[issues["issue"] == "mislabel"].set_index("image_id")
    hit = mis[mis["image_id"].isin(flagged.index)]
    if len(hit):
        true_label = hit["detail"].str.removeprefix("true_label=").astype(int).to_numpy()
        suggested = flagged.loc[hit["image_id"], "suggested_label"].astype(int).to_numpy()
        metrics["mislabel_suggestion_accuracy"] = round(float((true_label == suggested).mean()), 4)
    metrics["truth"] = scores
    return metrics


def write_analysis_plots(result: Analysis, plots_dir: str | Path) -> None:
    plots_dir = Path(plots_dir)
    counts = result.issues.groupby("issue")["image_id"].nunique().rename("images").reset_index()
    bar_plot(counts, x="issue", y="images", csv_path=plots_dir / "issue_counts.csv",
             png_path=plots_dir / "issue_counts.png", title="Images per issue type")
    conf = result.issues.loc[result.issues["issue"] == "mislabel", "confidence"].astype(float)
    edges = np.linspace(0.0, 1.0, 21)
    hist, _ = np.histogram(conf, bins=edges)
    frame = pd.DataFrame({"confidence": [f"{a:.2f}" for a in edges[:-1]], "images": hist})
    bar_plot(frame, x="confidence", y="images", csv_path=plots_dir / "mislabel_confidence.csv",
             png_path=plots_dir / "mislabel_confidence.png", title="Mislabel confidence (flagged images)",
             xlabel="confidence (bin start)")
