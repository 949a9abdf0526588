"""The tag-rule engine and manual reviews: precedence, exactly one survivor per group, conflicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlclean.params import parse
from vlclean.errors import ParamsError
from vlclean.tagging import Rule, TagDef, apply_reviews, decide, validate_rules

TAXONOMY = {
    "mislabeled": TagDef(description="wrong label", action="drop"),
    "duplicate": TagDef(description="copy", action="drop"),
    "near_duplicate": TagDef(description="look-alike", action="drop"),
    "low_quality": TagDef(description="blur", action="review"),
    "user_flagged": TagDef(description="flagged", action="drop"),
    "verified_ok": TagDef(description="checked", action="keep"),
}


def images(n: int, **cols: list) -> pd.DataFrame:
    base = {"key": [f"i{k}" for k in range(n)], "file_name": [f"i{k}.png" for k in range(n)], "split": ["train"] * n,
            "uniqueness_score": [0.5] * n, "cluster_id": [""] * n, "user_tags": [""] * n, "label_source": ["User"] * n}
    base.update(cols)
    return pd.DataFrame(base)


def issues(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["key", "issue_type", "confidence", "group_id", "group_threshold", "extra"])


def test_thresholds_and_precedence() -> None:
    rules = [
        Rule(name="mis", tag="mislabeled", issue=["mislabel"], min_confidence=0.7),
        Rule(name="quality", tag="low_quality", issue=["blur"]),
        Rule(name="verified", tag="verified_ok", user_tags=["verified_ok"], priority=10),
    ]
    imgs = images(4, user_tags=["", "", "", "Verified_OK"])
    iss = issues([("i0", "mislabel", 0.9, None, None, "{}"), ("i1", "mislabel", 0.6, None, None, "{}"),
                  ("i1", "blur", 0.8, None, None, "{}"), ("i2", "blur", 0.9, None, None, "{}"),
                  ("i2", "mislabel", 0.95, None, None, "{}"), ("i3", "mislabel", 0.99, None, None, "{}")])
    d = decide(imgs, iss, rules, TAXONOMY).set_index("key")
    assert d.loc["i0", "action"] == "drop" and "mis: mislabel (confidence 0.90)" in d.loc["i0", "reasons"]
    assert d.loc["i1", "action"] == "review"  # 0.6 < 0.7: only the quality rule
    assert d.loc["i2", "action"] == "drop" and d.loc["i2", "tags"] == "mislabeled;low_quality"  # drop beats review
    assert d.loc["i3", "action"] == "keep" and "verified" in d.loc["i3", "reasons"]  # priority wins


def test_keep_best_of_group_leaves_exactly_one_survivor() -> None:
    rules = [Rule(name="mis", tag="mislabeled", issue=["mislabel"]),
             Rule(name="dups", tag="duplicate", issue=["duplicate"], keep_best_of_group=True)]
    imgs = images(5, uniqueness_score=[0.2, 0.25, 0.1, 0.9, 0.05])
    iss = issues([("i0", "duplicate", 0.9, "g1", 0.94, "{}"), ("i1", "duplicate", 0.9, "g1", 0.94, "{}"),
                  ("i2", "duplicate", 0.9, "g1", 0.94, "{}"), ("i1", "mislabel", 0.9, None, None, "{}"),
                  ("i4", "duplicate", 0.9, "g2", 0.94, "{}")])
    d = decide(imgs, iss, rules, TAXONOMY).set_index("key")
    # i1 is the most unique of g1 but is dropped as mislabelled: i0 is the survivor
    assert d.loc[["i0", "i1", "i2"], "action"].tolist() == ["keep", "drop", "drop"]
    assert "keeps i0" in d.loc["i2", "reasons"]
    assert d.loc["i4", "action"] == "keep"  # a group of one is no duplicate group
    assert d.loc["i3", "action"] == "keep"


def test_nested_duplicate_levels_pick_the_loosest_qualifying() -> None:
    rule = Rule(name="dups", tag="duplicate", issue=["duplicate"], keep_best_of_group=True, min_group_threshold=0.96)
    imgs = images(3, uniqueness_score=[0.3, 0.2, 0.1])
    iss = issues([("i0", "duplicate", 0.9, "loose", 0.94, "{}"), ("i1", "duplicate", 0.9, "loose", 0.94, "{}"),
                  ("i2", "duplicate", 0.9, "loose", 0.94, "{}"), ("i0", "duplicate", 0.9, "tight", 0.98, "{}"),
                  ("i1", "duplicate", 0.9, "tight", 0.98, "{}")])
    d = decide(imgs, iss, [rule], TAXONOMY).set_index("key")
    assert d["action"].tolist() == ["keep", "drop", "keep"]  # i2 is only in the 0.94 group


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 1), st.integers(0, 20)), min_size=1, max_size=40))
def test_any_grouping_keeps_exactly_one_per_group(rows: list[tuple[int, float, int]]) -> None:
    n = 21
    imgs = images(n, uniqueness_score=list(np.linspace(0, 1, n)))
    iss = issues([(f"i{k}", "duplicate", conf, f"g{g}", 0.95, "{}") for g, conf, k in rows])
    d = decide(imgs, iss, [Rule(name="d", tag="duplicate", issue=["duplicate"], keep_best_of_group=True)], TAXONOMY)
    group_of = iss.drop_duplicates("key").set_index("key")["group_id"]
    d = d[d["key"].isin(group_of.index)].assign(g=lambda f: f["key"].map(group_of))
    for _, g in d.groupby("g"):
        assert (g["action"] == "keep").sum() == 1 or len(g) == 1


def test_reviews_override_and_conflicts_are_reported() -> None:
    imgs = images(3)
    d = decide(imgs, issues([("i0", "mislabel", 0.9, None, None, "{}")]),
               [Rule(name="mis", tag="mislabeled", issue=["mislabel"])], TAXONOMY)
    reviews = pd.DataFrame({
        "file_name": ["i0.png", "i1.png", "i1.png", "i9.png"], "tag": ["verified_ok", "", "", ""],
        "action": ["keep", "drop", "relabel", "drop"], "new_label": ["", "", "cat", ""],
        "reviewer": ["ann", "bob", "cy", "dee"], "note": ["fine", "", "", ""],
        "source": ["a.csv:1", "a.csv:2", "b.csv:1", "b.csv:2"],
    })
    out, conflicts, unmatched = apply_reviews(d, reviews, dict(zip(imgs["file_name"], imgs["key"])))
    out = out.set_index("key")
    assert out.loc["i0", "action"] == "keep" and out.loc["i0", "reasons"].startswith("review: ann=keep (fine)")
    assert "verified_ok" in out.loc["i0", "tags"]
    assert out.loc["i1", "action"] == "review" and list(conflicts["key"]) == ["i1"]
    assert "bob=drop" in conflicts.iloc[0]["reviews"] and "cy=relabel->cat" in conflicts.iloc[0]["reviews"]
    assert list(unmatched["file_name"]) == ["i9.png"]


def test_rule_validation_names_the_key() -> None:
    with pytest.raises(ParamsError, match="rule_sets.default\\[0\\].tag"):
        validate_rules([Rule(name="x", tag="nope")], TAXONOMY, "apply_tags.rule_sets.default")
    with pytest.raises(ParamsError, match="min_confidence"):
        parse(Rule, {"name": "x", "tag": "duplicate", "min_confidence": 1.5}, "r")
    with pytest.raises(ParamsError, match="'r.colour' is unknown"):
        parse(Rule, {"name": "x", "tag": "duplicate", "colour": "red"}, "r")
