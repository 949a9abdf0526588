"""The tagging system: a tag taxonomy, ordered rules over VL issues, and manual reviews on top.

Inputs are the normalised VL tables (``VL_MEDIA``, ``VL_ISSUES`` of :mod:`vlclean.schema`) and,
when known, the dataset index; the output is one decision per image: tags, an action
(``keep | drop | relabel | review``), the reasons (every rule and review that made it) and a new
label for relabels.

Rules (evaluated for every image; all conditions of a rule must hold):

=====================  ======================================================================
``issue``              one issue type or a list (normalised names); an issue row of that type
                       must satisfy the issue conditions below
``unless_issue``       the image carries none of these issue types
``min_confidence``     the issue's confidence is at least this (issues without one pass: they
                       come from lists VL already thresholded)
``min_group_threshold``  duplicates: the group's similarity level is at least this
``max_uniqueness``     the image's ``uniqueness_score`` is below this
``user_tags``          the image carries any of these VL user tags (case-insensitive)
``label_source``       the exported label's source (``User`` / ``Model``)
``splits``             the image's split is one of these
``keep_best_of_group`` duplicates (``group_by: duplicate``) or clusters (``group_by: cluster``):
                       every member but the best one matches; the best is the most unique
                       image not dropped by another rule (ties: smallest image id), so each
                       group keeps exactly one survivor unless other rules drop them all
=====================  ======================================================================

A matching rule applies its ``tag`` and its action (the rule's ``action`` or the tag's default).
Precedence when several rules match: the highest ``priority`` wins (default 0), then the most
severe action (``drop`` > ``relabel`` > ``review`` > ``keep``), then the earlier rule. Every
matching rule is listed in ``reasons``. Manual reviews override rules; reviewers who disagree on
an image leave it at ``review`` and the conflict is reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vlclean.params import Rule, TagDef, validate_rules

__all__ = ["MANIFEST_COLUMNS", "Rule", "TagDef", "apply_reviews", "decide", "validate_rules"]

SEVERITY = {"drop": 3, "relabel": 2, "review": 1, "keep": 0}
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_id", "file_name", "split", "label", "class_name", "issues", "tags", "action", "reasons",
    "new_label", "duplicate_group", "uniqueness_score", "match", "review_name",
)  # fmt: skip


# -- evaluation ------------------------------------------------------------------------------------
@dataclass
class _Decision:
    tags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    best: tuple[int, int, int] | None = None  # (priority, severity, -rule order)
    action: str = "keep"
    new_label: str = ""


def _issue_hits(issues: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    rows = issues
    if rule.issue:
        rows = rows[rows["issue_type"].isin(rule.issue)]
    if rule.min_confidence is not None:
        # an issue without a confidence (vl-datasets clean lists) was already thresholded by VL
        rows = rows[rows["confidence"].fillna(1.0) >= rule.min_confidence]
    if rule.min_group_threshold is not None:
        rows = rows[rows["group_threshold"].fillna(-1.0) >= rule.min_group_threshold]
    return rows


def _suggested(issue_rows: pd.DataFrame) -> str:
    for extra in issue_rows.get("extra", pd.Series(dtype=str)):
        try:
            value = json.loads(extra or "{}").get("suggested_label")
        except (TypeError, ValueError):
            value = None
        if value:
            return str(value)
    return ""


def decide(
    images: pd.DataFrame, issues: pd.DataFrame, rules: list[Rule], taxonomy: Mapping[str, TagDef]
) -> pd.DataFrame:
    """Apply ``rules`` to ``images`` (one row per image: ``key, split, uniqueness_score, cluster_id,
    user_tags, label_source``) with their ``issues`` (``key`` + VL_ISSUES columns).

    Returns ``key, tags, action, reasons, new_label, duplicate_group`` per image.
    """
    keys = images["key"].tolist()
    info = images.set_index("key")
    dec = {k: _Decision() for k in keys}
    order = {r.name: i for i, r in enumerate(rules)}

    def apply(key: str, rule: Rule, why: str, new_label: str = "") -> None:
        d = dec[key]
        action = rule.action or taxonomy[rule.tag].action
        if rule.tag not in d.tags:
            d.tags.append(rule.tag)
        d.reasons.append(f"{rule.name}: {why}")
        rank = (rule.priority, SEVERITY[action], -order[rule.name])
        if d.best is None or rank > d.best:
            d.best, d.action = rank, action
            d.new_label = new_label if action == "relabel" else ""

    group_rules = [r for r in rules if r.keep_best_of_group]
    for rule in (r for r in rules if not r.keep_best_of_group):
        for key, why, new_label in _matches(rule, info, issues):
            apply(key, rule, why, new_label)
    dropped = {k for k, d in dec.items() if d.action == "drop"}
    group_of = _duplicate_groups(issues)
    for rule in group_rules:
        for key, why in _group_matches(rule, info, issues, dropped):
            apply(key, rule, why)
    out = pd.DataFrame({
        "key": keys,
        "tags": [";".join(dec[k].tags) for k in keys],
        "action": [dec[k].action for k in keys],
        "reasons": [" | ".join(dec[k].reasons) for k in keys],
        "new_label": [dec[k].new_label for k in keys],
        "duplicate_group": [group_of.get(k, "") for k in keys],
    })
    return out


def _matches(rule: Rule, info: pd.DataFrame, issues: pd.DataFrame) -> Iterable[tuple[str, str, str]]:
    """``(key, reason, suggested label)`` of every image matching a non-group rule."""
    candidates = pd.Series(True, index=info.index)
    if rule.splits:
        candidates &= info["split"].isin(rule.splits)
    if rule.max_uniqueness is not None:
        candidates &= info["uniqueness_score"].fillna(1.0) < rule.max_uniqueness
    if rule.user_tags:
        wanted = {t.lower() for t in rule.user_tags}
        candidates &= info["user_tags"].fillna("").map(lambda s: bool(wanted & {t.strip().lower() for t in s.split(";") if t}))
    if rule.label_source:
        candidates &= info["label_source"].fillna("").str.lower() == rule.label_source.lower()
    keys = set(candidates.index[candidates])
    if rule.unless_issue:
        keys -= set(issues.loc[issues["issue_type"].isin(rule.unless_issue), "key"])
    if rule.issue or rule.min_confidence is not None or rule.min_group_threshold is not None:
        hits = _issue_hits(issues[issues["key"].isin(keys)], rule)
        for key, rows in hits.groupby("key", sort=False):
            conf = rows["confidence"].max()
            types = ",".join(sorted(set(rows["issue_type"])))
            why = f"{types}" + ("" if pd.isna(conf) else f" (confidence {conf:.2f})")
            yield key, why, _suggested(rows) if rule.action == "relabel" or rule.tag == "mislabeled" else ""
        return
    for key in sorted(keys):
        parts = []
        if rule.max_uniqueness is not None:
            parts.append(f"uniqueness {info.at[key, 'uniqueness_score']:.2f} < {rule.max_uniqueness}")
        if rule.user_tags:
            parts.append(f"user tag {info.at[key, 'user_tags']}")
        yield key, ", ".join(parts) or "matched", ""


def _duplicate_groups(issues: pd.DataFrame, min_threshold: float | None = None) -> dict[str, str]:
    """Each image's duplicate group at the loosest level >= ``min_threshold``."""
    dups = issues[issues["issue_type"] == "duplicate"].dropna(subset=["group_id"])
    dups = dups[dups["group_id"] != ""]
    if min_threshold is not None:
        dups = dups[dups["group_threshold"].fillna(-1.0) >= min_threshold]
    dups = dups.sort_values("group_threshold", na_position="last").drop_duplicates("key", keep="first")
    return dict(zip(dups["key"], dups["group_id"]))


def _group_matches(rule: Rule, info: pd.DataFrame, issues: pd.DataFrame, dropped: set[str]) -> Iterable[tuple[str, str]]:
    if rule.group_by == "cluster":
        groups = info["cluster_id"].fillna("")
        group_of = {k: g for k, g in groups.items() if g}
    else:
        eligible = _issue_hits(issues[issues["issue_type"] == "duplicate"], rule)
        group_of = _duplicate_groups(eligible, rule.min_group_threshold)
    if rule.splits:
        group_of = {k: g for k, g in group_of.items() if info.at[k, "split"] in rule.splits}
    members: dict[str, list[str]] = {}
    for k, g in group_of.items():
        members.setdefault(g, []).append(k)
    for g, keys in members.items():
        if len(keys) < 2:
            continue
        alive = [k for k in keys if k not in dropped] or keys
        best = min(alive, key=lambda k: (-np.nan_to_num(info.at[k, "uniqueness_score"], nan=-1.0), str(k)))
        for k in keys:
            if k != best:
                yield k, f"{rule.group_by} group {g[:8]} of {len(keys)}: keeps {best}"


# -- manual reviews ----------------------------------------------------------------------------------
def apply_reviews(decisions: pd.DataFrame, reviews: pd.DataFrame,
                  key_of_file: Mapping[str, str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Manual reviews override rule decisions. Returns ``(decisions, conflicts, unmatched)``.

    ``reviews`` has vlclean.review.REVIEW_COLUMNS plus ``source`` (file:row). Reviewers who disagree on an image's
    action (or new label) leave it at ``review``; the conflict is listed. Reviews naming a file that is
    not in the dataset are returned as ``unmatched`` (never silently dropped).
    """
    out = decisions.set_index("key").copy()
    reviews = reviews.assign(key=reviews["file_name"].map(key_of_file))
    unmatched = reviews[reviews["key"].isna()]
    conflicts = []
    for key, rows in reviews.dropna(subset=["key"]).groupby("key", sort=False):
        verdicts = {(a, n) for a, n in zip(rows["action"], rows["new_label"].fillna(""))}
        who = ", ".join(f"{r.reviewer or '?'}={r.action}{'->' + r.new_label if r.new_label else ''}" for r in rows.itertuples())
        tags = [t for t in out.at[key, "tags"].split(";") if t]
        for t in rows["tag"].fillna(""):
            if t and t not in tags:
                tags.append(t)
        out.at[key, "tags"] = ";".join(tags)
        prior = out.at[key, "reasons"]
        if len(verdicts) > 1:
            conflicts.append({"key": key, "file_name": rows["file_name"].iloc[0], "reviews": who,
                              "sources": "; ".join(rows["source"])})
            out.at[key, "action"] = "review"
            out.at[key, "new_label"] = ""
            out.at[key, "reasons"] = f"review conflict: {who}" + (f" | {prior}" if prior else "")
            continue
        action, new_label = verdicts.pop()
        out.at[key, "action"] = action
        out.at[key, "new_label"] = new_label if action == "relabel" else ""
        notes = "; ".join(n for n in rows["note"].fillna("") if n)
        out.at[key, "reasons"] = f"review: {who}" + (f" ({notes})" if notes else "") + (f" | {prior}" if prior else "")
    conflicts_df = pd.DataFrame(conflicts, columns=["key", "file_name", "reviews", "sources"])
    return out.reset_index(), conflicts_df, unmatched
