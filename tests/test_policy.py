"""Cleaning policies: the team's policy file, the policy analysis, the class guard, on a 120-class VL export
and on the built-in dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, PolicyExport, write_params
from vlclean.errors import ConsistencyError, ParamsError
from vlclean.manifest import build_cleaned_manifest
from vlclean.params import ApplyTagsParams, ManifestParams, parse
from vlclean.tag_manifest import tag_images
from vlclean.policy import read_team_policy, rules_from_team_policy
from vlclean.policy_analysis import ClassDropCap, OverPruning, analyze_policy, guard_class_drops, summary_lines, write_analysis
from vlclean.vl_ingest import read_export

TEAM_POLICY = REPO / "policies" / "imagenet_1k_aggressive_clean.yaml"
# The same policy written by hand in the rule language (what the file must be equivalent to).
EQUIVALENT_RULES = yaml.safe_load("""
- {name: low_uniqueness, tag: near_duplicate, action: drop, max_uniqueness: 0.3}
- {name: cluster_dedupe, tag: duplicate, action: drop, keep_best_of_group: true, group_by: cluster}
- {name: issue_mislabel, tag: mislabeled, action: drop, issue: [mislabel], min_confidence: 0.7}
- {name: issue_label_outlier, tag: mislabeled, action: drop, issue: [label_outlier], min_confidence: 0.8}
- {name: issue_outlier, tag: outlier, action: drop, issue: [outlier], min_confidence: 0.75}
- {name: issue_blur, tag: low_quality, action: drop, issue: [blur], min_confidence: 0.8}
- {name: issue_dark, tag: low_quality, action: drop, issue: [dark], min_confidence: 0.85}
- {name: issue_bright, tag: low_quality, action: drop, issue: [bright], min_confidence: 0.85}
- {name: issue_invalid, tag: unreadable, action: drop, issue: [invalid], min_confidence: 0.5}
- {name: drop_tags, tag: user_flagged, action: drop, user_tags: [incorrect_label, mislabeled, delete, remove,
    poor_quality, bad_example, suspicious, test_image, duplicate, wrong_class]}
""")


def tag_params(**apply_tags) -> ApplyTagsParams:
    section = yaml.safe_load((REPO / "params.yaml").read_text())["apply_tags"]
    section.update(apply_tags)
    return parse(ApplyTagsParams, section, "apply_tags")


def run_policy(export: PolicyExport, params: ApplyTagsParams, manifest: ManifestParams | None = None):
    """The export through apply_tags' tagging and build_manifest (every image a train image): (cleaned, tagged)."""
    vl = read_export(export.path)
    media = vl.media.sort_values("file_name", ignore_index=True)
    label_of = {c: i for i, c in enumerate(export.classes)}
    images = pd.DataFrame({
        "key": media["media_key"], "image_id": media["file_name"].str.replace(".JPEG", "", regex=False),
        "file_name": media["file_name"], "split": "train", "label": media["label_name"].astype(str).map(label_of),
        "class_name": media["label_name"].astype(str), "uniqueness_score": media["uniqueness_score"],
        "cluster_id": media["cluster_id"].astype(str), "user_tags": media["user_tags"],
        "label_source": media["label_source"].astype(str), "match": "path", "review_name": media["file_name"],
    })
    tagged, _ = tag_images(images, vl.issues.assign(key=vl.issues["media_key"]), params.rules, params.taxonomy, None)
    index = images[["image_id", "file_name", "split", "label", "class_name"]].assign(valid=True, error="")
    classes = pd.DataFrame({"label": range(len(export.classes)), "class_name": export.classes})
    leaks = pd.DataFrame(columns=["test_id", "train_id", "scope", "tier"])
    cleaned = build_cleaned_manifest(index, classes, tagged, leaks, manifest or ManifestParams())
    return cleaned, tagged


# -- the team's policy file ------------------------------------------------------------------------
def test_team_policy_file_maps_onto_the_rule_language() -> None:
    name, rules = read_team_policy(TEAM_POLICY)
    assert name == "imagenet_1k_aggressive_clean"
    expected = parse(ApplyTagsParams, {**yaml.safe_load((REPO / "params.yaml").read_text())["apply_tags"],
                                           "rule_sets": {"eq": EQUIVALENT_RULES}, "rule_set": "eq"}, "apply_tags").rules
    assert rules == expected


def test_team_policy_gives_the_same_decisions_as_the_equivalent_rule_set(policy_export: PolicyExport) -> None:
    from_file, tagged = run_policy(policy_export, tag_params(policy_file=str(TEAM_POLICY)))
    by_hand, _ = run_policy(policy_export, tag_params(rule_sets={"eq": EQUIVALENT_RULES}, rule_set="eq"))
    assert (from_file["action"] == by_hand["action"]).all()
    assert (from_file["reasons"] == by_hand["reasons"]).all()
    dropped = set(from_file.loc[from_file["action"] == "drop", "image_id"])
    assert 0.2 < len(dropped) / len(from_file) < 0.7

    # The team's own semantics, written out independently: same drops except the documented difference
    # (a cluster whose most unique member an issue drops keeps its next most unique member with us).
    vl = read_export(policy_export.path)
    m = vl.media.assign(image_id=vl.media["file_name"].str.replace(".JPEG", "", regex=False)).set_index("media_key")
    policy = yaml.safe_load(TEAM_POLICY.read_text())
    names = {"visual_outlier": "outlier", "blurry": "blur", "overexposed": "bright", "corrupted": "invalid"}
    drop = m["uniqueness_score"] < policy["uniqueness_threshold"]
    by_issue = pd.Series(False, index=m.index)
    for rule in policy["drop_issues"]:
        t = names.get(rule["issue_type"], rule["issue_type"])
        hit = vl.issues[(vl.issues["issue_type"] == t) & (vl.issues["confidence"] >= rule["min_confidence"])]
        by_issue |= m.index.isin(hit["media_key"])
    by_tag = m["user_tags"].fillna("").map(lambda s: bool(set(s.split(";")) & set(policy["drop_tags"])))
    best = m.sort_values(["uniqueness_score", "file_name"], ascending=[False, True]).groupby("cluster_id").head(1)
    in_cluster = m["cluster_id"].map(m["cluster_id"].value_counts()) > 1
    cluster_drop = in_cluster & ~m.index.isin(best.index)
    team = set(m.loc[drop | by_issue | by_tag | cluster_drop, "image_id"])
    only_team = team - dropped
    assert not dropped - team
    survivors_dropped_by_issue = set(m.loc[m.index.isin(best.index) & in_cluster & (by_issue | by_tag), "cluster_id"])
    assert set(m.loc[m["image_id"].isin(only_team), "cluster_id"]) <= survivors_dropped_by_issue
    assert len(only_team) <= len(survivors_dropped_by_issue)


@pytest.mark.parametrize("change, where", [
    ({"max_drop_rate": 0.3}, "field 'max_drop_rate' cannot be mapped"),
    ({"drop_issues": [{"issue_type": "mislabel", "min_confidence": 0.7, "weight": 2}]}, "drop_issues[0].weight"),
    ({"drop_issues": [{"issue_type": "watermark", "min_confidence": 0.7}]}, "drop_issues[0].issue_type: issue type 'watermark'"),
    ({"drop_issues": [{"min_confidence": 0.7}]}, "drop_issues[0].issue_type is required"),
    ({"uniqueness_threshold": 1.5}, "uniqueness_threshold: 1.5 is not a number in [0.0, 1.0]"),
    ({"dedupe_by_cluster": "yes"}, "dedupe_by_cluster: expected true/false"),
])
def test_a_field_that_cannot_be_mapped_is_named(change: dict, where: str) -> None:
    data = {**yaml.safe_load(TEAM_POLICY.read_text()), **change}
    with pytest.raises(ParamsError) as err:
        rules_from_team_policy(data, "policy file team.yaml")
    assert where in str(err.value) and "team.yaml" in str(err.value)


def test_policy_file_param_is_checked_when_params_load(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="does not exist"):
        tag_params(policy_file=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("uniqueness_threshold: 0.3\ndrop_issues: [{issue_type: mislabel, min_confidence: 0.7}]\nextra: 1\n")
    with pytest.raises(ParamsError, match="field 'extra' cannot be mapped"):
        tag_params(policy_file=str(bad))


# -- the analysis ----------------------------------------------------------------------------------
def analyse(policy_export: PolicyExport, cap: ClassDropCap, **apply_tags):
    params = tag_params(**apply_tags)
    cleaned, tagged = run_policy(policy_export, params)
    uniq = tagged.set_index("image_id")["uniqueness_score"]
    guarded, guard = guard_class_drops(cleaned, uniq, params.record(), cap)
    return cleaned, guarded, analyze_policy(guarded, tagged, params.record(), OverPruning(), cap=cap, guard=guard)


def test_analysis_of_a_120_class_export(policy_export: PolicyExport, tmp_path: Path) -> None:
    cap = ClassDropCap(share=0.4, action="report")
    cleaned, guarded, a = analyse(policy_export, cap, policy_file=str(TEAM_POLICY))
    assert guarded.equals(cleaned)  # report only
    m = a.metrics
    assert m["images"] == policy_export.images and m["kept"] + m["dropped"] == m["images"]
    assert m["dropped"] == int((cleaned["action"] == "drop").sum())
    assert sum(m["by_bucket"].values()) == m["dropped"]
    assert m["by_bucket"]["redundant"] > m["by_bucket"]["harmful"] > 0
    # every reason count is the number of dropped images whose reasons name that rule
    drops = cleaned[cleaned["action"] == "drop"]
    for reason, n in m["by_reason"].items():
        assert n == drops["reasons"].str.contains(f"(?:^|\\| ){reason}:", regex=True).sum(), reason
    ov = a.overlap.pivot(index="reason_a", columns="reason_b", values="images")
    assert (ov.to_numpy() == ov.to_numpy().T).all()
    assert all(ov.at[r, r] == n for r, n in m["by_reason"].items())
    jac = a.overlap.pivot(index="reason_a", columns="reason_b", values="jaccard")
    assert np.allclose(np.diag(jac.to_numpy()), 1.0)
    assert a.combinations["images"].sum() == m["dropped"]
    # the redundant classes (many near-duplicates) are the over-pruned ones
    c = a.classes.set_index("class_name")
    assert len(c) == 120 and c["dropped"].sum() == m["dropped"]
    by_bucket = c[[f"{b}_fraction" for b in ("redundant", "quality", "atypical", "harmful", "manual", "other")]]
    assert np.allclose(by_bucket.sum(axis=1), c["drop_fraction"], atol=1e-5)
    flagged = set(c.index[c["over_pruned"]])
    assert set(policy_export.redundant_classes) <= flagged
    assert len(flagged) <= 3 * len(policy_export.redundant_classes)
    assert set(c.loc[list(policy_export.redundant_classes), "severity"]) <= {"high", "medium"}
    assert m["over_cap_classes"] == int((c["drop_fraction"] > 0.4).sum()) > 0
    # kept vs dropped: the uniqueness histogram holds every scored image; dropped ones sit lower
    u = a.uniqueness
    assert u["kept"].sum() + u["dropped"].sum() == m["images"]
    assert np.average(u["uniqueness"], weights=u["dropped"]) < np.average(u["uniqueness"], weights=u["kept"])
    assert {"mislabel", "outlier", "dark"} <= set(a.confidence["issue_type"])
    lines = "\n".join(summary_lines(a, OverPruning(), cap))
    assert f"{m['over_cap_classes']} classes lose over 40%: class_" in lines
    assert "over-pruned (>= 2x the median" in lines and "by bucket (most severe reason): redundant" in lines
    written = write_analysis(a, tmp_path / "plots", cap=cap, page_size=60)
    pages = sorted((tmp_path / "plots" / "classes").glob("classes_*.png"))
    assert len(pages) == 2 and set(pages) <= set(written)
    for name in ("reasons.csv", "buckets.csv", "reason_overlap.csv", "reason_combinations.csv", "classes.csv",
                 "uniqueness.csv", "confidence.csv", "issue_types_by_class.csv", "reasons.png", "reason_overlap.png",
                 "distributions.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 0, name


def test_guard_restores_the_lowest_ranked_drops_to_keep_each_class_within_the_cap(policy_export: PolicyExport) -> None:
    cap = ClassDropCap(share=0.3, action="restore")
    cleaned, guarded, a = analyse(policy_export, cap, policy_file=str(TEAM_POLICY))
    before = cleaned.groupby("class_name")["action"].apply(lambda s: (s == "drop").mean())
    after = guarded.groupby("class_name")["action"].apply(lambda s: (s == "drop").mean())
    over = set(before.index[before > 0.3])
    assert over and set(a.guard["over_cap"]) == over
    still = set(a.guard["still_over"])
    assert (after.drop(list(still)) <= 0.3 + 1e-9).all()
    assert set(after.index[after > 0.3]) == still
    for cls in over - still:  # restored exactly down to the cap, not further
        n = (cleaned["class_name"] == cls).sum()
        assert (guarded.loc[guarded["class_name"] == cls, "action"] == "drop").sum() == int(np.floor(0.3 * n + 1e-9))
    restored = guarded[(cleaned["action"] == "drop") & (guarded["action"] == "keep")]
    assert len(restored) == a.metrics["restored"] == sum(a.guard["restored"].values()) > 0
    assert restored["reasons"].str.startswith("restored: class ").all()
    assert not restored["reasons"].str.contains("issue_mislabel|issue_label_outlier|drop_tags").any()  # harmful stays
    assert ((guarded["action"] != cleaned["action"]) == guarded["image_id"].isin(restored["image_id"])).all()
    # ranking: redundant-only drops are restored first, the most unique first
    uniq = cleaned["image_id"].map(dict(zip(*run_policy_ids(policy_export))))
    redundant_only = cleaned["reasons"].map(
        lambda r: {x.split(":")[0] for x in r.split(" | ")} <= {"low_uniqueness", "cluster_dedupe"})
    for cls in a.guard["restored"]:
        in_cls = (cleaned["class_name"] == cls) & (cleaned["action"] == "drop") & redundant_only
        back, still = in_cls & (guarded["action"] == "keep"), in_cls & (guarded["action"] == "drop")
        if still.any():
            assert back.sum() == a.guard["restored"][cls]
            assert uniq[back].min() >= uniq[still].max()
    again = analyse(policy_export, cap, policy_file=str(TEAM_POLICY))[1]
    assert again.equals(guarded)  # deterministic


def run_policy_ids(export: PolicyExport) -> tuple[list[str], list[float]]:
    vl = read_export(export.path)
    return (vl.media["file_name"].str.replace(".JPEG", "", regex=False).tolist(), vl.media["uniqueness_score"].tolist())


def test_inconsistent_counts_raise_a_clear_error(policy_export: PolicyExport) -> None:
    params = tag_params()
    cleaned, tagged = run_policy(policy_export, params)
    broken = cleaned.copy()
    broken.loc[broken.index[:3], "action"] = "review"  # neither kept, dropped nor relabelled
    with pytest.raises(ConsistencyError, match=r"kept \d+ \+ dropped \d+ \+ relabelled \d+ != 2400 images"):
        analyze_policy(broken, tagged, params.record(), OverPruning())


def test_params_of_the_guard_and_the_over_pruning_flag_are_validated() -> None:
    with pytest.raises(ParamsError, match="build_manifest.max_class_drop.action"):
        parse(ManifestParams, {"max_class_drop": {"share": 0.4, "action": "drop"}}, "build_manifest")
    with pytest.raises(ParamsError, match="build_manifest.max_class_drop.share"):
        parse(ManifestParams, {"max_class_drop": {"share": 1.4}}, "build_manifest")
    with pytest.raises(ParamsError, match="build_manifest.over_pruning.high_ratio"):
        parse(ManifestParams, {"over_pruning": {"ratio_to_median": 2.0, "high_ratio": 1.5}}, "build_manifest")


# -- comparison ------------------------------------------------------------------------------------
def exp_row(name: str, metrics: dict, params: dict) -> dict:
    """A row in the shape dvc.api.exp_show returns: dotted names, zeros as None (as DVC does)."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out
    row = {"Experiment": name, "rev": name[:7], "typ": "branch_commit"}
    row.update({k: (v if v else None) for k, v in flat({"policy": metrics, **params}).items()})
    return row


def test_comparison_puts_policies_side_by_side(policy_export: PolicyExport, tmp_path: Path) -> None:
    from vlclean.policy_compare import comparison_plot, comparison_table, markdown

    rows = []
    for name, kw, cap in (("default", {}, ClassDropCap(share=0.4)),
                          ("conservative", {"rule_set": "conservative"}, ClassDropCap(share=0.4)),
                          ("team", {"policy_file": str(TEAM_POLICY)}, ClassDropCap(share=0.4)),
                          ("team-capped", {"policy_file": str(TEAM_POLICY)}, ClassDropCap(share=0.4, action="restore"))):
        _, _, a = analyse(policy_export, cap, **kw)
        rows.append(exp_row(name, a.metrics, {"apply_tags": kw, "build_manifest": {"max_class_drop": vars(cap)}}))
    rows.append({**rows[0], "Experiment": None, "typ": "workspace"})  # the workspace repeats an experiment
    table = comparison_table(rows)
    assert sorted(table["experiment"]) == ["conservative", "default", "team", "team-capped"]  # workspace once
    assert table["dropped_share"].is_monotonic_decreasing
    t = table.set_index("experiment")
    assert t.at["team", "dropped_share"] > t.at["team-capped", "dropped_share"] > t.at["conservative", "dropped_share"]
    assert t.at["team-capped", "restored"] > 0 and t.at["team", "restored"] == 0
    assert t.at["team", "over_cap_classes"] > 0 and t.at["conservative", "over_pruned_classes"] >= 0
    assert t.at["team", "reason.low_uniqueness"] > 0 and t.at["conservative", "reason.low_uniqueness"] == 0
    assert (t[[f"bucket.{b}" for b in ("redundant", "quality", "atypical", "harmful", "manual", "other")]].sum(axis=1)
            == t["dropped"]).all()
    assert t["accuracy"].isna().all()
    text = markdown(table)
    assert "| team | imagenet_1k_aggressive_clean |" in text and "low_uniqueness" in text
    comparison_plot(table, png_path=tmp_path / "policies.png")
    assert (tmp_path / "policies.png").stat().st_size > 0


# -- the built-in dataset through the stages -------------------------------------------------------
def test_builtin_dataset_analysis_and_restore_guard_through_the_stage(builtin_tagged: Path, builtin_leaks: Path,
                                                                    tmp_path: Path) -> None:
    from stages import build_manifest
    from vlclean.storage import write_json

    root = builtin_tagged
    policy = tmp_path / "policy.json"
    write_json(policy, tag_params().record())  # what apply_tags --policy writes for the default rule set
    out = {}
    for action in ("report", "restore"):
        params = write_params(tmp_path / f"{action}.yaml", {"build_manifest": {"max_class_drop": {"share": 0.05,
                                                                                                  "action": action}}})
        m = tmp_path / action
        assert build_manifest.main(["--params", str(params), "--raw", str(root / "raw"), "--tagged",
                                    str(root / "tags" / "tagged.csv"), "--leaks", str(root / "leaks.csv"),
                                    "--policy", str(policy), "--output", str(m / "cleaned.csv"), "--summary",
                                    str(m / "summary.txt"), "--eval_labels", str(m / "eval.csv"), "--train_labels",
                                    str(m / "train.csv"), "--metrics", str(m / "m.json"), "--plots",
                                    str(m / "plots")]) == 0
        out[action] = (json.loads((m / "m.json").read_text())["policy"], (m / "summary.txt").read_text(),
                       pd.read_csv(m / "cleaned.csv", keep_default_na=False))
    report, text, cleaned = out["report"]
    assert report["name"] == "default" and report["dropped"] == int(((cleaned["split"] == "train")
                                                                     & (cleaned["action"] == "drop")).sum()) > 0
    assert {"leak", "mislabels"} <= set(report["by_reason"])  # planted leaks and mislabels are what it drops
    assert report["by_bucket"]["harmful"] >= report["by_reason"]["leak"]
    assert "Policy analysis: default (rule_set), train split" in text and "class cap 5% (report)" in text
    assert (tmp_path / "report" / "plots" / "classes" / "classes_001.png").is_file()
    restored, text, guarded = out["restore"]
    assert restored["restored"] > 0 and restored["dropped"] == report["dropped"] - restored["restored"]
    back = guarded[guarded["reasons"].str.startswith("restored: ")]
    assert len(back) == restored["restored"] and (back["action"] == "keep").all()
    assert not back["reasons"].str.contains("leak: |mislabels: ").any()  # harmful drops stay dropped
