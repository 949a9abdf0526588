"""The cleaned dataset manifest and its human-readable cleaning summary.

Every image of the dataset appears exactly once, with its final label, an action (``keep``,
``drop``, ``relabel``) and the reasons: the tagging decisions (VL issues, rules, reviews), leaks
found between test and train, and unreadable files. The clean test view (``in_clean_test``)
excludes leaked test images, so evaluation can report accuracy with and without them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlclean.params import ManifestParams

CLEANED_COLUMNS: tuple[str, ...] = (
    "image_id", "file_name", "split", "label", "class_name", "final_label", "final_class_name",
    "action", "reasons", "issues", "tags", "leaked", "in_clean_test",
)  # fmt: skip
EVAL_COLUMNS: tuple[str, ...] = ("image_id", "label", "leaked")


def build_cleaned_manifest(
    index: pd.DataFrame, classes: pd.DataFrame, tagged: pd.DataFrame, leak_pairs: pd.DataFrame, p: ManifestParams
) -> pd.DataFrame:
    """One row per image of ``index``: see the module doc. ``tagged`` is the apply_tags manifest."""
    name_of = dict(zip(classes["label"].astype(int), classes["class_name"]))
    label_of_name = {v: k for k, v in name_of.items()}
    t = tagged.set_index("image_id")
    m = index[["image_id", "file_name", "split", "label", "class_name", "valid", "error"]].copy()
    m["action"] = m["image_id"].map(t["action"]).fillna("keep")
    m["reasons"] = m["image_id"].map(t["reasons"]).fillna("")
    m["issues"] = m["image_id"].map(t["issues"]).fillna("")
    m["tags"] = m["image_id"].map(t["tags"]).fillna("")
    new_label = m["image_id"].map(t["new_label"]).fillna("")
    if p.review_action == "drop":
        m.loc[m["action"] == "review", "action"] = "drop"
    m.loc[m["action"] == "review", "reasons"] = "undecided review kept | " + m.loc[m["action"] == "review", "reasons"]
    m.loc[m["action"] == "review", "action"] = "keep"
    if not p.apply_to_test:
        test_flagged = (m["split"] == "test") & (m["action"] != "keep")
        m.loc[test_flagged, "reasons"] = ("test image: " + m.loc[test_flagged, "action"] + " not applied | "
                                          + m.loc[test_flagged, "reasons"])
        m.loc[test_flagged, "action"] = "keep"
    m["final_label"] = m["label"].astype(int)
    relabel = (m["action"] == "relabel").to_numpy()
    target = np.array([label_of_name.get(str(s), int(s) if str(s).isdigit() else -1) for s in new_label], dtype=np.int64)
    bad = relabel & (target < 0)
    m.loc[bad, "reasons"] = "relabel to an unknown class ignored | " + m.loc[bad, "reasons"]
    m.loc[bad, "action"] = "keep"
    good = relabel & (target >= 0)
    m.loc[good, "final_label"] = target[good]

    cross = leak_pairs[(leak_pairs["scope"] == "test-train") & leak_pairs["tier"].isin(p.leak_tiers)]
    leaked_test = set(cross["test_id"])
    m["leaked"] = m["image_id"].isin(leaked_test) & (m["split"] == "test")
    if p.drop_leaked_train_copies and len(cross):
        copies = cross.groupby("train_id")["test_id"].agg(lambda s: ",".join(sorted(set(s))))
        hit = m["image_id"].isin(copies.index) & (m["split"] == "train") & (m["action"] != "drop")
        m.loc[hit, "reasons"] = ("leak: copy of test " + m.loc[hit, "image_id"].map(copies) + " | "
                                 + m.loc[hit, "reasons"])
        m.loc[hit, "action"] = "drop"
    invalid = ~m["valid"].astype(bool)
    m.loc[invalid, "reasons"] = "unreadable: " + m.loc[invalid, "error"].fillna("") + " | " + m.loc[invalid, "reasons"]
    m.loc[invalid, "action"] = "drop"
    m["reasons"] = m["reasons"].str.rstrip(" |")
    m["in_clean_test"] = (m["split"] == "test") & (m["action"] != "drop") & ~(m["leaked"] & p.exclude_leaked_test)
    m["final_class_name"] = m["final_label"].map(name_of)
    return m[list(CLEANED_COLUMNS)]


def eval_labels(cleaned: pd.DataFrame) -> pd.DataFrame:
    """The test images to evaluate on (readable ones), with ``leaked`` marking train copies."""
    test = cleaned[(cleaned["split"] == "test") & (cleaned["action"] != "drop")]
    return pd.DataFrame({"image_id": test["image_id"], "label": test["final_label"].astype(int),
                         "leaked": test["leaked"].astype(bool)})


def train_labels(cleaned: pd.DataFrame) -> pd.DataFrame:
    """The train images that survive cleaning, with their final labels."""
    train = cleaned[(cleaned["split"] == "train") & (cleaned["action"] != "drop")]
    return pd.DataFrame({"image_id": train["image_id"], "label": train["final_label"].astype(int)})


def _reason_kind(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head or "other"


def cleaning_summary(cleaned: pd.DataFrame, dataset: str) -> tuple[str, pd.DataFrame]:
    """The summary text (what was removed or relabelled and why, per issue type and split, with
    percentages, in the spirit of VL's dataset reports) and the per-reason table behind it."""
    lines = [f"Cleaning summary: {dataset}", "=" * (18 + len(dataset)), ""]
    total = len(cleaned)
    lines.append(f"Images: {total:,}")
    for split, g in cleaned.groupby("split"):
        lines.append(f"  {split:5s}: {len(g):,}")
    lines.append("")
    lines.append(f"{'split':6s} {'action':8s} {'images':>8s} {'% of split':>10s}")
    for (split, action), g in cleaned.groupby(["split", "action"]):
        n_split = (cleaned["split"] == split).sum()
        lines.append(f"{split:6s} {action:8s} {len(g):8,d} {100 * len(g) / n_split:9.2f}%")
    lines.append("")
    rows = []
    for row in cleaned[cleaned["action"] != "keep"].itertuples():
        first = row.reasons.split(" | ")[0] if row.reasons else "other"
        kind = _reason_kind(first)
        issue_types = sorted({i.split(":")[0] for i in str(row.issues).split(";") if i}) or ["-"]
        rows.append((row.split, row.action, kind, ",".join(issue_types)))
    table = pd.DataFrame(rows, columns=["split", "action", "reason", "issues"])
    lines.append("Removed or relabelled, by deciding reason (rule, review, leak, unreadable) and split:")
    if len(table):
        counts = table.groupby(["split", "action", "reason"]).size().rename("images").reset_index()
        for r in counts.itertuples():
            n_split = (cleaned["split"] == r.split).sum()
            lines.append(f"  {r.split:5s} {r.action:8s} {r.reason:40s} {r.images:7,d}  ({100 * r.images / n_split:.2f}%)")
    else:
        lines.append("  nothing")
    lines.append("")
    lines.append("By issue type (images acted on that carry the issue):")
    flagged = cleaned[cleaned["action"] != "keep"]
    issue_counts: dict[tuple[str, str], int] = {}
    for split, issues in zip(flagged["split"], flagged["issues"]):
        for t in {i.split(":")[0] for i in str(issues).split(";") if i}:
            issue_counts[(split, t)] = issue_counts.get((split, t), 0) + 1
    for (split, t), n in sorted(issue_counts.items()):
        n_split = (cleaned["split"] == split).sum()
        lines.append(f"  {split:5s} {t:14s} {n:7,d}  ({100 * n / n_split:.2f}%)")
    if not issue_counts:
        lines.append("  none")
    lines.append("")
    test = cleaned[cleaned["split"] == "test"]
    if len(test):
        lines.append(f"Leaked test images (train copy found): {int(test['leaked'].sum()):,} "
                     f"({100 * test['leaked'].mean():.2f}% of test); clean test view: {int(test['in_clean_test'].sum()):,}")
    return "\n".join(lines) + "\n", table


def manifest_metrics(cleaned: pd.DataFrame) -> dict:
    out: dict = {"images": len(cleaned)}
    for split, g in cleaned.groupby("split"):
        out[split] = {a: int((g["action"] == a).sum()) for a in ("keep", "drop", "relabel")}
        out[split]["removed_fraction"] = round(float((g["action"] == "drop").mean()), 4)
    test = cleaned[cleaned["split"] == "test"]
    out["leaked_test"] = int(test["leaked"].sum())
    out["clean_test"] = int(test["in_clean_test"].sum())
    return out


def leak_copy_metrics(cleaned: pd.DataFrame, leak_pairs: pd.DataFrame, p: ManifestParams) -> dict:
    """Train copies of leaked test images: how many were found and how many stay in training
    (``drop_leaked_train_copies: false`` keeps them, to measure what they inflate)."""
    cross = leak_pairs[(leak_pairs["scope"] == "test-train") & leak_pairs["tier"].isin(p.leak_tiers)]
    train = cleaned[(cleaned["split"] == "train") & cleaned["image_id"].isin(set(cross["train_id"]))]
    return {"found": len(train), "kept": int((train["action"] != "drop").sum())}


def removal_truth_metrics(cleaned: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """On the built-in dataset: how many planted issues cleaning acted on (drop or relabel)."""
    acted = set(cleaned.loc[cleaned["action"] != "keep", "image_id"])
    out = {}
    for issue, g in truth.groupby("issue"):
        ids = set(g["image_id"])
        out[issue] = {"planted": len(ids), "acted_on": len(ids & acted), "share": round(len(ids & acted) / len(ids), 4)}
    return out
