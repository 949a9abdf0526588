"""Cleaning policies: the research team's policy YAML read onto the rule language, and reason buckets.

The team's policy file (``cleaning_policy.yaml`` of the team's ImageNet scripts) maps onto
:mod:`vlclean.tagging` rules, every rule dropping:

=====================================  ===============================================================
team field                             rule
=====================================  ===============================================================
``uniqueness_threshold: T``            ``low_uniqueness``: ``max_uniqueness: T`` (uniqueness < T), tag
                                       ``near_duplicate``
``dedupe_by_cluster: true``            ``cluster_dedupe``: ``keep_best_of_group``, ``group_by: cluster``
                                       (one survivor per VL cluster, the most unique), tag ``duplicate``
``drop_issues: [{issue_type, min_confidence}]``  ``issue_<type>``: ``issue: [type]``, ``min_confidence``
                                       (default 1.0, as the team's script), tag by issue type
``drop_tags: [...]``                   ``drop_tags``: ``user_tags``, tag ``user_flagged``
=====================================  ===============================================================

Issue types are the team's names (``visual_outlier``, ``blurry``, ``overexposed``, ``corrupted``, ...)
or ours; both normalise to :data:`vlclean.schema.ISSUE_TYPES`. Descriptive fields (``policy_name``,
``notes``, an issue's ``description``, ``priority``, ...) are kept as text, never as behaviour. Any
other field, and any issue type we cannot name, is an error naming the field.

Where the rule language differs from the team's script (documented, tested):
- a cluster's survivor is its most unique member *not dropped by another rule* (the team keeps the
  most unique member even when an issue drops it, so such a cluster loses every image);
- an image without a uniqueness score is kept by the uniqueness rule (the team's script scores it 0);
- user tags match case-insensitively; an issue without a confidence passes ``min_confidence``.

Reason buckets (for the policy analysis) come from the tag of the rule that gave the reason:
``duplicate``, ``near_duplicate`` -> redundant; ``low_quality``, ``unreadable`` -> quality;
``outlier``, ``ambiguous`` -> atypical; ``mislabeled``, ``leak``, ``user_flagged`` -> harmful;
build_manifest's own reasons: ``leak`` -> harmful, ``unreadable`` -> quality; manual ``review`` ->
manual; any other tag -> other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vlclean.errors import ParamsError
from vlclean.policy_analysis import TAG_BUCKETS
from vlclean.schema import ISSUE_TYPES
from vlclean.tagging import Rule, TagDef
from vlclean.vl_ingest import normalise_issue_type

# The team's issue names that our normalisation does not know.
TEAM_ISSUE_ALIASES: dict[str, str] = {"visual_outlier": "outlier", "visual_outliers": "outlier",
                                      "overexposed": "bright", "underexposed": "dark"}
ISSUE_TAGS: dict[str, str] = {
    "duplicate": "duplicate", "outlier": "outlier", "mislabel": "mislabeled", "label_outlier": "mislabeled",
    "blur": "low_quality", "dark": "low_quality", "bright": "low_quality", "invalid": "unreadable",
    "leakage": "leak",
}  # fmt: skip
TEAM_TOP_FIELDS = {"uniqueness_threshold", "dedupe_by_cluster", "drop_issues", "drop_tags"}
TEAM_TEXT_FIELDS = {"policy_version", "policy_name", "dataset", "created_by", "date_created", "description", "notes",
                    "analysis_variant"}
ISSUE_FIELDS = {"issue_type", "min_confidence"}
ISSUE_TEXT_FIELDS = {"description", "priority", "expected_removal", "notes"}


def _issue_type(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ParamsError(f"{where}: expected an issue type name, got {raw!r}")
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    name = normalise_issue_type(TEAM_ISSUE_ALIASES.get(key, key))
    if name not in ISSUE_TYPES:
        raise ParamsError(f"{where}: issue type {raw!r} cannot be mapped onto the rule language; known: "
                          f"{sorted(set(ISSUE_TYPES) | set(TEAM_ISSUE_ALIASES))}")
    return name


def _number(value: Any, where: str, lo: float = 0.0, hi: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
        raise ParamsError(f"{where}: {value!r} is not a number in [{lo}, {hi}]")
    return float(value)


def rules_from_team_policy(data: Mapping[str, Any], where: str) -> list[Rule]:
    """The rules equivalent to a team policy (a parsed YAML mapping); ``where`` names it in errors."""
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: top level must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - TEAM_TOP_FIELDS - TEAM_TEXT_FIELDS)
    if unknown:
        raise ParamsError(f"{where}: field '{unknown[0]}' cannot be mapped onto the rule language; policy fields: "
                          f"{sorted(TEAM_TOP_FIELDS)} (descriptive: {sorted(TEAM_TEXT_FIELDS)})")
    rules: list[Rule] = []
    if data.get("uniqueness_threshold") is not None:
        t = _number(data["uniqueness_threshold"], f"{where}: uniqueness_threshold")
        rules.append(Rule(name="low_uniqueness", tag="near_duplicate", action="drop", max_uniqueness=t))
    dedupe = data.get("dedupe_by_cluster", False)
    if not isinstance(dedupe, bool):
        raise ParamsError(f"{where}: dedupe_by_cluster: expected true/false, got {dedupe!r}")
    if dedupe:
        rules.append(Rule(name="cluster_dedupe", tag="duplicate", action="drop", keep_best_of_group=True,
                          group_by="cluster"))
    issues = data.get("drop_issues") or []
    if not isinstance(issues, list):
        raise ParamsError(f"{where}: drop_issues: expected a list, got {type(issues).__name__}")
    seen: set[str] = set()
    for i, entry in enumerate(issues):
        at = f"{where}: drop_issues[{i}]"
        if not isinstance(entry, Mapping):
            raise ParamsError(f"{at}: expected a mapping with issue_type and min_confidence, got {entry!r}")
        extra = sorted(set(entry) - ISSUE_FIELDS - ISSUE_TEXT_FIELDS)
        if extra:
            raise ParamsError(f"{at}.{extra[0]}: field cannot be mapped onto the rule language; fields: "
                              f"{sorted(ISSUE_FIELDS)} (descriptive: {sorted(ISSUE_TEXT_FIELDS)})")
        if "issue_type" not in entry:
            raise ParamsError(f"{at}.issue_type is required")
        issue = _issue_type(entry["issue_type"], f"{at}.issue_type")
        conf = _number(entry.get("min_confidence", 1.0), f"{at}.min_confidence")
        name = f"issue_{issue}"
        if name in seen:
            raise ParamsError(f"{at}.issue_type: {entry['issue_type']!r} is listed twice")
        seen.add(name)
        rules.append(Rule(name=name, tag=ISSUE_TAGS[issue], action="drop", issue=[issue], min_confidence=conf))
    tags = data.get("drop_tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ParamsError(f"{where}: drop_tags: expected a list of tag names, got {tags!r}")
    if tags:
        rules.append(Rule(name="drop_tags", tag="user_flagged", action="drop", user_tags=list(tags)))
    if not rules:
        raise ParamsError(f"{where}: the policy drops nothing (no uniqueness_threshold, dedupe_by_cluster, "
                          "drop_issues or drop_tags)")
    return rules


def read_team_policy(path: str | Path) -> tuple[str, list[Rule]]:
    """``(policy name, rules)`` of the team's policy YAML at ``path``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ParamsError(f"policy file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"policy file {path} is not valid YAML: {err}") from err
    rules = rules_from_team_policy(data, f"policy file {path}")
    return str(data.get("policy_name") or path.stem), rules


def rule_bucket(rule: Rule) -> str:
    return TAG_BUCKETS.get(rule.tag, "other")


def policy_record(name: str, source: str, rules: list[Rule], taxonomy: Mapping[str, TagDef]) -> dict:
    """What apply_tags writes beside its manifest: the policy in force, each rule's tag, action and bucket."""
    return {
        "name": name, "source": source,
        "rules": [{"name": r.name, "tag": r.tag, "action": r.action or taxonomy[r.tag].action, "bucket": rule_bucket(r)}
                  for r in rules],
    }  # fmt: skip

