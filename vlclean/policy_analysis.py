"""What a cleaning policy removes, from which classes, and whether it over-prunes; and the class guard.

Scope: the splits the policy acts on (train; test too with ``build_manifest.apply_to_test``). A
*reason* is the head of one entry of the cleaned manifest's ``reasons`` (``rule_name: why``): the
rule names of the policy in force (rules whose action is ``keep`` excluded) and build_manifest's own
``leak``, ``unreadable``, ``review`` and ``review conflict``. Each reason has a bucket
(from the tag of the rule, :data:`TAG_BUCKETS`, documented in :mod:`vlclean.policy`: redundant, quality,
atypical, harmful, manual, other); an image's *primary*
bucket is its most severe one (harmful > quality > atypical > redundant > manual > other), so
primary counts add up to the images dropped.

Over-pruning: a class is flagged when it loses at least ``min_drop_fraction`` of its images and at
least ``ratio_to_median`` times the median class's share; severity ``high`` at ``high_ratio`` or past
the class cap, else ``medium``.

Guard (:func:`guard_class_drops`): with ``max_class_drop.share`` set, classes losing more are
reported; with ``action: restore`` their lowest-ranked drops are restored (``action`` keep, reason
``restored: ...`` first) until the class is within the cap. Only drops made by policy rules whose
buckets are redundant, atypical, quality or other can be restored (never mislabels, user flags,
leaks, unreadable files or manual reviews). Ranking, restored first: least severe bucket
(redundant, then other, atypical, quality), highest uniqueness, lowest issue confidence, image id;
deterministic.

Every count is checked when written (kept + dropped + relabelled = images; primary buckets and
reason combinations add up to dropped; per-class drops add up): a mismatch raises
:class:`~vlclean.errors.ConsistencyError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vlclean.errors import ConsistencyError, SchemaError
from vlclean.params import ClassDropCap, OverPruning
from vlclean.reporting import _pyplot, save_figure
from vlclean.storage import write_csv

BUCKETS: tuple[str, ...] = ("redundant", "quality", "atypical", "harmful", "manual", "other")
TAG_BUCKETS: dict[str, str] = {
    "duplicate": "redundant", "near_duplicate": "redundant",
    "low_quality": "quality", "unreadable": "quality",
    "outlier": "atypical", "ambiguous": "atypical",
    "mislabeled": "harmful", "leak": "harmful", "user_flagged": "harmful",
}  # fmt: skip
# Reasons build_manifest itself gives (not rules): reason head -> bucket.
MANIFEST_REASON_BUCKETS: dict[str, str] = {"leak": "harmful", "unreadable": "quality", "review": "manual",
                                           "review conflict": "manual"}
SEVERITY_ORDER: tuple[str, ...] = ("harmful", "quality", "atypical", "redundant", "manual", "other")
RESTORE_ORDER: dict[str, int] = {"redundant": 0, "other": 1, "atypical": 2, "quality": 3}
NON_REASONS = ("undecided review kept", "test image", "relabel to an unknown class ignored", "restored")
BUCKET_COLORS = {"redundant": "#4c78a8", "quality": "#f58518", "atypical": "#54a24b", "harmful": "#e45756",
                 "manual": "#b279a2", "other": "#9d9da0"}
BINS = np.linspace(0.0, 1.0, 21)


@dataclass
class PolicyAnalysis:
    """Tables of :func:`analyze_policy` (each written as CSV plot data) and the metrics."""

    metrics: dict
    reasons: pd.DataFrame
    buckets: pd.DataFrame
    overlap: pd.DataFrame
    combinations: pd.DataFrame
    classes: pd.DataFrame
    uniqueness: pd.DataFrame
    confidence: pd.DataFrame
    issue_types_by_class: pd.DataFrame
    guard: dict = field(default_factory=dict)


def read_policy_record(path: str | Path) -> dict:
    """The policy in force as apply_tags wrote it (vlclean.policy.policy_record); a missing or malformed
    file fails naming it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SchemaError(f"policy record {path} does not exist (apply_tags --policy writes it)") from err
    except ValueError as err:
        raise SchemaError(f"policy record {path} is not valid JSON: {err}") from err
    if not isinstance(record, dict) or not isinstance(record.get("rules"), list):
        raise SchemaError(f"policy record {path}: expected an object with a 'rules' list")
    for i, rule in enumerate(record["rules"]):
        missing = [k for k in ("name", "tag", "action", "bucket") if not isinstance(rule, dict) or k not in rule]
        if missing:
            raise SchemaError(f"policy record {path}: rules[{i}] lacks {missing}")
    return record


# -- reasons ---------------------------------------------------------------------------------------
def _reason_buckets(policy: dict) -> dict[str, str]:
    """Reason head -> bucket: the policy's rules (keep rules excluded), then build_manifest's own reasons."""
    out = dict(MANIFEST_REASON_BUCKETS)
    for r in policy.get("rules", []):
        if r["action"] != "keep":
            out[r["name"]] = r["bucket"]
    return out


def _keep_rules(policy: dict) -> set[str]:
    return {r["name"] for r in policy.get("rules", []) if r["action"] == "keep"}


def reason_table(frame: pd.DataFrame, policy: dict) -> pd.DataFrame:
    """One row per (image, reason) of ``frame``'s rows: ``image_id, reason, bucket`` (first seen order);
    an image whose reasons name nothing known gets ``unexplained`` (bucket other)."""
    known = _reason_buckets(policy)
    skip = _keep_rules(policy)
    parts = frame.set_index("image_id")["reasons"].fillna("").str.split(" | ", regex=False).explode()
    heads = parts.str.split(":", n=1).str[0].str.strip()
    heads = heads[(heads != "") & ~heads.isin(skip) & ~heads.str.startswith(NON_REASONS)]
    table = heads.rename("reason").reset_index().drop_duplicates(["image_id", "reason"])
    missing = sorted(set(frame["image_id"]) - set(table["image_id"]))
    if missing:
        table = pd.concat([table, pd.DataFrame({"image_id": missing, "reason": "unexplained"})], ignore_index=True)
    table["bucket"] = table["reason"].map(known).fillna("other")
    return table


def _issue_table(issues: pd.Series) -> pd.DataFrame:
    """``image_id, issue_type, confidence`` from the manifest's 'type:conf;...' text (NaN: no confidence)."""
    issues = issues.fillna("").astype(str)
    parts = issues[issues != ""].str.split(";").explode()
    parts = parts[parts != ""]
    split = parts.str.split(":", n=1)
    out = pd.DataFrame({"image_id": parts.index, "issue_type": split.str[0].to_numpy(),
                        "confidence": pd.to_numeric(split.str[1], errors="coerce").to_numpy()})
    return out.drop_duplicates(["image_id", "issue_type"])


# -- guard -----------------------------------------------------------------------------------------
def scope_of(cleaned: pd.DataFrame, apply_to_test: bool) -> pd.Series:
    return cleaned["split"].isin(["train", "test"] if apply_to_test else ["train"])


def guard_class_drops(cleaned: pd.DataFrame, uniqueness: pd.Series, policy: dict, cap: ClassDropCap, *,
                      apply_to_test: bool = False) -> tuple[pd.DataFrame, dict]:
    """Report (and with ``action: restore`` undo) drops past ``cap.share`` of a class; see module doc.

    ``uniqueness``: uniqueness score by image id. Returns the manifest (restored rows changed) and a
    report ``{share, action, over_cap: {class: share before}, restored: {class: n}, still_over: [...]}``.
    """
    report: dict = {"share": cap.share, "action": cap.action, "over_cap": {}, "restored": {}, "still_over": []}
    if cap.share is None:
        return cleaned, report
    in_scope = scope_of(cleaned, apply_to_test)
    scoped = cleaned[in_scope]
    dropped = scoped["action"] == "drop"
    per_class = pd.DataFrame({"images": scoped.groupby("class_name").size(),
                              "dropped": dropped.groupby(scoped["class_name"]).sum()})
    per_class["fraction"] = per_class["dropped"] / per_class["images"]
    over = per_class[per_class["fraction"] > cap.share + 1e-12].sort_index()
    report["over_cap"] = {str(c): round(float(f), 4) for c, f in over["fraction"].items()}
    if cap.action != "restore" or over.empty:
        return cleaned, report
    rules = {r["name"] for r in policy.get("rules", []) if r["action"] != "keep"}
    candidates = scoped[dropped & scoped["class_name"].isin(over.index)]
    reasons = reason_table(candidates, policy)
    reasons["restorable"] = reasons["reason"].isin(rules) & reasons["bucket"].isin(list(RESTORE_ORDER))
    ok = reasons.groupby("image_id")["restorable"].all()
    rank = reasons.assign(r=reasons["bucket"].map(RESTORE_ORDER).fillna(99)).groupby("image_id")["r"].max()
    conf = _issue_table(candidates.set_index("image_id")["issues"]).groupby("image_id")["confidence"].max()
    c = candidates.set_index("image_id")
    order = pd.DataFrame({"class_name": c["class_name"], "ok": ok.reindex(c.index).fillna(False).astype(bool),
                          "rank": rank.reindex(c.index).fillna(99),
                          "uniq": -uniqueness.reindex(c.index).fillna(-1.0).astype(float),
                          "conf": conf.reindex(c.index).fillna(0.0), "id": c.index.astype(str)})
    order = order[order["ok"]].sort_values(["class_name", "rank", "uniq", "conf", "id"], kind="mergesort")
    out = cleaned.copy()
    pos = pd.Series(np.arange(len(out)), index=out["image_id"])
    for cls, row in over.iterrows():
        need = int(row["dropped"] - math.floor(cap.share * row["images"] + 1e-9))
        chosen = order.loc[order["class_name"] == cls, "id"].head(need).tolist()
        if chosen:
            idx = out.index[pos[chosen].to_numpy()]
            note = f"restored: class {cls} capped at {cap.share:.0%} (lost {row['fraction']:.1%})"
            out.loc[idx, "reasons"] = note + " | " + out.loc[idx, "reasons"]
            out.loc[idx, "action"] = "keep"
            out.loc[idx, "final_label"] = out.loc[idx, "label"]
            if "in_clean_test" in out:  # a restored test image (apply_to_test) rejoins the clean view unless leaked
                out.loc[idx, "in_clean_test"] = (out.loc[idx, "split"] == "test") & ~out.loc[idx, "leaked"].astype(bool)
            report["restored"][str(cls)] = len(chosen)
        if len(chosen) < need:
            report["still_over"].append(str(cls))
    return out, report


# -- analysis --------------------------------------------------------------------------------------
def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ConsistencyError(f"policy analysis: {what}")


def _hist(values: pd.Series) -> np.ndarray:
    v = values.dropna().clip(0.0, 1.0).to_numpy(dtype=float)
    return np.histogram(v, bins=BINS)[0]


def analyze_policy(cleaned: pd.DataFrame, tagged: pd.DataFrame, policy: dict, over: OverPruning, *,
                   cap: ClassDropCap | None = None, guard: dict | None = None,
                   apply_to_test: bool = False) -> PolicyAnalysis:
    """The analysis of the policy in force over ``cleaned`` (build_manifest's manifest) with the
    uniqueness scores of ``tagged`` (apply_tags' manifest); ``guard`` is :func:`guard_class_drops`' report."""
    cap = cap or ClassDropCap(share=None)
    scoped = cleaned[scope_of(cleaned, apply_to_test)].copy()
    uniq = pd.to_numeric(tagged.set_index("image_id")["uniqueness_score"], errors="coerce")
    scoped["uniqueness"] = scoped["image_id"].map(uniq)
    n = len(scoped)
    is_drop = scoped["action"] == "drop"
    kept, dropped = int((scoped["action"] == "keep").sum()), int(is_drop.sum())
    relabelled = int((scoped["action"] == "relabel").sum())
    _check(kept + dropped + relabelled == n, f"kept {kept} + dropped {dropped} + relabelled {relabelled} != {n} images")

    reasons = reason_table(scoped[is_drop], policy)
    _check(reasons["image_id"].nunique() == dropped, f"{reasons['image_id'].nunique()} dropped images have reasons, "
                                                      f"{dropped} were dropped")
    per_reason = reasons.groupby(["reason", "bucket"]).size().rename("images").reset_index()
    per_reason = per_reason.sort_values(["images", "reason"], ascending=[False, True], ignore_index=True)
    per_reason["share_of_images"] = (per_reason["images"] / max(n, 1)).round(6)
    per_reason["share_of_dropped"] = (per_reason["images"] / max(dropped, 1)).round(6)
    _check(int(per_reason["images"].sum()) == len(reasons), "per-reason counts do not add up to the reason table")

    sev = {b: i for i, b in enumerate(SEVERITY_ORDER)}
    primary = reasons.assign(s=reasons["bucket"].map(sev)).groupby("image_id")["s"].min().map(dict(enumerate(SEVERITY_ORDER)))
    any_bucket = reasons.drop_duplicates(["image_id", "bucket"]).groupby("bucket").size()
    buckets = pd.DataFrame({"bucket": list(BUCKETS)})
    buckets["images"] = buckets["bucket"].map(any_bucket).fillna(0).astype(int)
    buckets["primary"] = buckets["bucket"].map(primary.value_counts()).fillna(0).astype(int)
    buckets["share_of_images"] = (buckets["primary"] / max(n, 1)).round(6)
    buckets["share_of_dropped"] = (buckets["primary"] / max(dropped, 1)).round(6)
    _check(int(buckets["primary"].sum()) == dropped, f"primary buckets add up to {buckets['primary'].sum()}, not {dropped}")

    names = per_reason["reason"].tolist()
    img_codes, _ = pd.factorize(reasons["image_id"])
    reason_codes = pd.Categorical(reasons["reason"], categories=names).codes
    m = np.zeros((img_codes.max() + 1 if len(img_codes) else 0, len(names)), dtype=np.int64)
    m[img_codes, reason_codes] = 1
    co = m.T @ m
    diag = np.diag(co)
    union = diag[:, None] + diag[None, :] - co
    jac = np.divide(co, union, out=np.zeros(co.shape, dtype=float), where=union > 0)
    ia, ib = np.meshgrid(np.arange(len(names)), np.arange(len(names)), indexing="ij")
    overlap = pd.DataFrame({"reason_a": np.array(names, dtype=object)[ia.ravel()],
                            "reason_b": np.array(names, dtype=object)[ib.ravel()],
                            "images": co.ravel(), "jaccard": jac.ravel().round(6)})

    patterns, counts = np.unique(m.astype(bool), axis=0, return_counts=True) if len(m) else (m, np.array([], int))
    combinations = pd.DataFrame({
        "combination": pd.Series([" + ".join(np.array(names, dtype=object)[row]) for row in patterns], dtype=object),
        "images": pd.Series(counts, dtype=np.int64)})
    combinations["reasons"] = combinations["combination"].str.count(r" \+ ") + 1
    combinations = combinations.sort_values(["images", "combination"], ascending=[False, True], ignore_index=True)
    _check(int(combinations["images"].sum()) == dropped, "reason combinations do not add up to the images dropped")

    classes = _class_table(scoped, is_drop, reasons, primary, over, cap, guard or {})
    _check(int(classes["dropped"].sum()) == dropped, "per-class drops do not add up to the images dropped")

    dec = np.where(is_drop, "dropped", np.where(scoped["action"] == "relabel", "relabelled", "kept"))
    lows = BINS[:-1].round(2)
    uniqueness = pd.DataFrame({"uniqueness": lows, "kept": _hist(scoped.loc[dec == "kept", "uniqueness"]),
                               "dropped": _hist(scoped.loc[dec == "dropped", "uniqueness"])})
    issues = _issue_table(scoped.set_index("image_id")["issues"])
    issues["decision"] = issues["image_id"].map(pd.Series(dec, index=scoped["image_id"]))
    confidence = pd.concat([pd.DataFrame({"issue_type": t, "confidence": lows,
                                          "kept": _hist(g.loc[g["decision"] == "kept", "confidence"]),
                                          "dropped": _hist(g.loc[g["decision"] == "dropped", "confidence"])})
                            for t, g in issues.groupby("issue_type")]
                           or [pd.DataFrame(columns=["issue_type", "confidence", "kept", "dropped"])], ignore_index=True)
    issues["class_name"] = issues["image_id"].map(scoped.set_index("image_id")["class_name"])
    by_class = (issues.assign(dropped=issues["decision"] == "dropped").groupby(["class_name", "issue_type"])
                .agg(images=("image_id", "size"), dropped=("dropped", "sum")).reset_index())

    metrics = {
        "name": policy.get("name", ""), "source": policy.get("source", ""),
        "scope": "train+test" if apply_to_test else "train",
        "images": n, "kept": kept, "dropped": dropped, "relabelled": relabelled,
        "dropped_share": round(dropped / max(n, 1), 6),
        "by_bucket": {b: int(v) for b, v in zip(buckets["bucket"], buckets["primary"])},
        "by_reason": {r: int(v) for r, v in zip(per_reason["reason"], per_reason["images"])},
        "classes": int(len(classes)),
        "median_class_drop": round(float(classes["drop_fraction"].median()), 6) if len(classes) else 0.0,
        "max_class_drop": round(float(classes["drop_fraction"].max()), 6) if len(classes) else 0.0,
        "over_pruned_classes": int(classes["over_pruned"].sum()),
        "over_pruned_high": int((classes["severity"] == "high").sum()),
        "over_cap_classes": len((guard or {}).get("over_cap", {})),
        "restored": int(sum((guard or {}).get("restored", {}).values())),
        "consistent": True,
    }
    return PolicyAnalysis(metrics, per_reason, buckets, overlap, combinations, classes, uniqueness, confidence,
                          by_class, guard or {})


def _class_table(scoped: pd.DataFrame, is_drop: pd.Series, reasons: pd.DataFrame, primary: pd.Series,
                 over: OverPruning, cap: ClassDropCap, guard: dict) -> pd.DataFrame:
    """Per class (worst first): images, drops, drop fraction, share per primary bucket (these add up to the
    drop fraction), top reason, ratio to the median class, over-pruning flag and severity, guard columns."""
    cls = scoped["class_name"].astype(str)
    t = pd.DataFrame({"images": cls.groupby(cls).size(), "dropped": is_drop.groupby(cls).sum().astype(int),
                      "relabelled": (scoped["action"] == "relabel").groupby(cls).sum().astype(int)})
    t["drop_fraction"] = (t["dropped"] / t["images"]).round(6)
    cls_of = pd.Series(cls.to_numpy(), index=scoped["image_id"])
    r = reasons.assign(class_name=reasons["image_id"].map(cls_of))
    top = r.groupby(["class_name", "reason"]).size().rename("n").reset_index()
    top = top.sort_values(["class_name", "n", "reason"], ascending=[True, False, True]).drop_duplicates("class_name")
    top_of = dict(zip(top["class_name"], top["reason"]))
    t["top_reason"] = [top_of.get(c, "") for c in t.index]
    prim = pd.DataFrame({"bucket": primary, "class_name": primary.index.map(cls_of)})
    for b in BUCKETS:
        per = prim[prim["bucket"] == b].groupby("class_name").size()
        t[f"{b}_fraction"] = (t.index.map(per).fillna(0) / t["images"]).round(6)
    median = float(t["drop_fraction"].median()) if len(t) else 0.0
    t["ratio_to_median"] = (t["drop_fraction"] / median).round(4) if median > 0 else np.where(t["dropped"] > 0, np.inf, 0.0)
    t["over_pruned"] = (t["drop_fraction"] >= over.min_drop_fraction) & (t["ratio_to_median"] >= over.ratio_to_median)
    past_cap = t["drop_fraction"] > (cap.share if cap.share is not None else 1.0)
    t["severity"] = np.where(t["over_pruned"], np.where((t["ratio_to_median"] >= over.high_ratio) | past_cap,
                                                        "high", "medium"), "")
    t["over_cap_before_guard"] = t.index.map(guard.get("over_cap", {})).astype(float)
    t["restored"] = t.index.map(guard.get("restored", {})).fillna(0).astype(int)
    t = t.rename_axis("class_name").reset_index()
    return t.sort_values(["drop_fraction", "class_name"], ascending=[False, True], ignore_index=True)


# -- the summary lines -----------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def summary_lines(a: PolicyAnalysis, over: OverPruning, cap: ClassDropCap, *, top: int = 12) -> list[str]:
    m = a.metrics
    n = max(m["images"], 1)
    lines = [f"Policy analysis: {m['name']} ({m['source']}), {m['scope']} split",
             f"  dropped {m['dropped']:,} of {m['images']:,} images ({_pct(m['dropped'] / n)}); "
             f"relabelled {m['relabelled']:,}; kept {m['kept']:,}"]
    b = a.buckets[a.buckets["primary"] > 0]
    if len(b):
        lines.append("  by bucket (most severe reason): " + ", ".join(
            f"{r.bucket} {r.primary:,} ({_pct(r.primary / n)})" for r in b.itertuples()))
    if len(a.reasons):
        lines.append("  by reason (images; share of dropped): " + ", ".join(
            f"{r.reason} {r.images:,} ({_pct(r.share_of_dropped)})" for r in a.reasons.head(top).itertuples()))
        multi = a.combinations[a.combinations["reasons"] > 1]
        lines.append(f"  {int(multi['images'].sum()):,} dropped images have several reasons"
                     + (": " + ", ".join(f"{r.combination} {r.images:,}" for r in multi.head(5).itertuples())
                        if len(multi) else ""))
    c = a.classes
    if len(c):
        lines.append(f"  the median class loses {_pct(m['median_class_drop'])}, the worst {c['class_name'].iloc[0]} "
                     f"{_pct(c['drop_fraction'].iloc[0])}")
        limit = cap.share if cap.share is not None else 0.4
        past = c[c["drop_fraction"] > limit]
        lines.append(f"  {len(past)} classes lose over {limit:.0%}" + (": " + ", ".join(
            f"{r.class_name} ({_pct(r.drop_fraction)})" for r in past.head(top).itertuples())
            + (", ..." if len(past) > top else "") if len(past) else ""))
        flagged = c[c["over_pruned"]]
        lines.append(f"  over-pruned (>= {over.ratio_to_median:g}x the median and >= {over.min_drop_fraction:.0%}): "
                     f"{len(flagged)} classes, {int((flagged['severity'] == 'high').sum())} high" + (": " + ", ".join(
                         f"{r.class_name} {_pct(r.drop_fraction)} {r.severity}" for r in flagged.head(top).itertuples())
                         + (", ..." if len(flagged) > top else "") if len(flagged) else ""))
    g = a.guard
    if g.get("share") is not None:
        over_cap = g.get("over_cap", {})
        line = f"  class cap {g['share']:.0%} ({g['action']}): {len(over_cap)} classes were over it"
        if g["action"] == "restore":
            line += (f"; {sum(g['restored'].values()):,} drops restored in {len(g['restored'])} classes; "
                     f"{len(g['still_over'])} still over (only drops of redundant/atypical/quality rules are restored)")
        lines.append(line)
    return lines


# -- figures and plot data --------------------------------------------------------------------------
def write_analysis(a: PolicyAnalysis, plots: str | Path, *, cap: ClassDropCap, page_size: int = 50) -> list[Path]:
    """Plot data (CSV) and PNG figures under ``plots``; per-class pages under ``plots/classes/``."""
    plots = Path(plots)
    write_csv(plots / "reasons.csv", a.reasons)
    write_csv(plots / "buckets.csv", a.buckets)
    write_csv(plots / "reason_overlap.csv", a.overlap)
    write_csv(plots / "reason_combinations.csv", a.combinations)
    write_csv(plots / "classes.csv", a.classes)
    write_csv(plots / "uniqueness.csv", a.uniqueness)
    write_csv(plots / "confidence.csv", a.confidence)
    write_csv(plots / "issue_types_by_class.csv", a.issue_types_by_class)
    plt = _pyplot()
    written = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(3.0, 0.35 * max(len(a.reasons), 6))),
                                   gridspec_kw={"width_ratios": [2, 1]})
    r = a.reasons.iloc[::-1]
    ax1.barh(r["reason"], r["images"], color=[BUCKET_COLORS.get(b, "#999") for b in r["bucket"]])
    for y, (v, s) in enumerate(zip(r["images"], r["share_of_dropped"])):
        ax1.text(v, y, f" {v:,} ({100 * s:.1f} %)", va="center", fontsize=8)
    ax1.set_xlabel("images dropped with this reason (an image can have several)")
    ax1.set_title("Drops per reason (colour: bucket)")
    b = a.buckets[a.buckets["primary"] > 0].iloc[::-1]
    ax2.barh(b["bucket"], b["primary"], color=[BUCKET_COLORS[x] for x in b["bucket"]])
    ax2.set_xlabel("images (most severe bucket)")
    ax2.set_title("Drops per bucket")
    fig.tight_layout()
    save_figure(fig, plots / "reasons.png")
    written.append(plots / "reasons.png")

    names = a.reasons["reason"].tolist()
    k = len(names)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * k + 3), max(4.0, 0.5 * k + 2)))
    if k:
        jac = a.overlap.pivot(index="reason_a", columns="reason_b", values="jaccard").reindex(index=names, columns=names)
        cnt = a.overlap.pivot(index="reason_a", columns="reason_b", values="images").reindex(index=names, columns=names)
        im = ax.imshow(jac.to_numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(k), names, rotation=45, ha="right")
        ax.set_yticks(range(k), names)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, f"{int(cnt.iat[i, j]):,}", ha="center", va="center", fontsize=7,
                            color="white" if jac.iat[i, j] < 0.6 else "black")
        fig.colorbar(im, ax=ax, label="Jaccard (shared / either)")
    ax.set_title("Reason overlap among dropped images (numbers: shared images)")
    fig.tight_layout()
    save_figure(fig, plots / "reason_overlap.png")
    written.append(plots / "reason_overlap.png")

    issue_types = sorted(a.confidence["issue_type"].unique())
    panels = ["uniqueness", *issue_types]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), panels):
        data = a.uniqueness if name == "uniqueness" else a.confidence[a.confidence["issue_type"] == name]
        x = "uniqueness" if name == "uniqueness" else "confidence"
        for d, color in (("kept", "#4c78a8"), ("dropped", "#e45756")):
            total = int(data[d].sum())
            ax.step(data[x] + 0.025, data[d] / total if total else data[d], where="mid", color=color,
                    label=f"{d} ({total:,})")
        ax.set_title(name if name == "uniqueness" else f"{name} confidence", fontsize=9)
        ax.set_xlim(0, 1)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle("Kept vs dropped: share of each group per bin")
    fig.tight_layout()
    save_figure(fig, plots / "distributions.png")
    written.append(plots / "distributions.png")

    written += _class_pages(a, plots / "classes", cap=cap, page_size=page_size)
    return written


def _class_pages(a: PolicyAnalysis, folder: Path, *, cap: ClassDropCap, page_size: int) -> list[Path]:
    """Per-class pages (``page_size`` classes each, worst first): share lost per bucket and issue types."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("classes_*.png"):
        old.unlink()
    c = a.classes
    issue = a.issue_types_by_class.pivot_table(index="class_name", columns="issue_type", values="images",
                                               aggfunc="sum", fill_value=0)
    types = list(issue.columns)
    cmap = plt.get_cmap("tab10")
    median = a.metrics["median_class_drop"]
    label_chars = int(c["class_name"].astype(str).str.len().max()) if len(c) else 5
    written = []
    for p, start in enumerate(range(0, max(len(c), 1), page_size)):
        page = c.iloc[start:start + page_size].iloc[::-1]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 1.2 + 0.22 * max(len(page), 5)), sharey=True)
        left = np.zeros(len(page))
        for bucket in BUCKETS:
            v = page[f"{bucket}_fraction"].to_numpy()
            if v.any():
                ax1.barh(page["class_name"], v, left=left, color=BUCKET_COLORS[bucket], label=bucket)
                left += v
        ax1.axvline(median, color="black", ls="--", lw=1, label=f"median {100 * median:.1f} %")
        if cap.share is not None:
            ax1.axvline(cap.share, color="red", ls=":", lw=1, label=f"cap {cap.share:.0%}")
        for y, (sev, frac) in enumerate(zip(page["severity"], page["drop_fraction"])):
            if sev:
                ax1.text(frac, y, f" {sev}", va="center", fontsize=7, color="red" if sev == "high" else "darkorange")
        ax1.set_xlabel("share of the class dropped (by bucket)")
        ax1.legend(fontsize=7, loc="lower right")
        left = np.zeros(len(page))
        per = issue.reindex(page["class_name"]).fillna(0)
        images = page["images"].to_numpy()
        for i, t in enumerate(types):
            v = per[t].to_numpy() / np.maximum(images, 1)
            ax2.barh(page["class_name"], v, left=left, color=cmap(i % 10), label=t)
            left += v
        ax2.set_xlabel("issues per image of the class, by type")
        if types:
            ax2.legend(fontsize=7, loc="lower right")
        ax1.tick_params(axis="y", labelsize=7)
        fig.suptitle(f"Classes {start + 1}-{start + len(page)} of {len(c)}, most pruned first")
        height = fig.get_figheight()  # fixed margins: tight_layout would draw every page twice
        fig.subplots_adjust(left=min(0.4, 0.02 + 0.0055 * label_chars), right=0.98, wspace=0.05,
                            top=1 - 0.45 / height, bottom=0.5 / height)
        path = folder / f"classes_{p + 1:03d}.png"
        save_figure(fig, path)
        written.append(path)
    return written
