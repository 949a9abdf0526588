"""Hostile params: every malformed value fails before any work with one line naming the dotted key (the
params models, then each stage's command line), and any tag rules over any images and issues give one
decision per image or a ParamsError (hypothesis). Each test is one case with its time and peak memory in
pytest's terminal summary (``tests/hostile.py``); the bad-image zoo and interrupted runs are in
``tests/test_hardening.py``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, write_params
from tests.hostile import hostile_case  # noqa: F401 - the fixture behind pytestmark
from vlclean.errors import ParamsError
from vlclean.params import parse

pytestmark = pytest.mark.usefixtures("hostile_case")


# -- params: validated before any work, failing with the dotted key ------------------------------
def _params_class(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _section(section: str) -> dict:
    return (yaml.safe_load((REPO / "params.yaml").read_text()) or {}).get(section) or {}


def _with(data: dict, path: tuple, value: object) -> dict:
    """A deep copy of ``data`` with ``path`` (keys and list indexes) set to ``value``."""
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    return data


# (params class, section, path, bad value, expected dotted key); kinds: unknown key, wrong type, out of range
# or unknown choice. The README's example message is the contract: "params key 'download.workers': ...".
BAD_PARAMS = [
    ("vlclean.params:DownloadParams", "download", ("sources",), "folder", "download.sources"),
    ("vlclean.params:DownloadParams", "download", ("workers",), 2, "download.workers"),  # moved to runtime
    ("vlclean.params:RuntimeParams", "runtime", ("download", "workers"), "two", "runtime.download.workers"),
    ("vlclean.params:RuntimeParams", "runtime", ("download", "workers"), 0, "runtime.download.workers"),
    ("vlclean.params:DownloadParams", "download", ("source",), "ftp", "download.source"),
    ("vlclean.params:DownloadParams", "download", ("folder", "split_map", "val"), "validation",
     "download.folder.split_map.val"),
    ("vlclean.params:AnalyzeParams", "analyze", ("detect", "outliers", "zz"), 1, "analyze.detect.outliers.zz"),
    ("vlclean.params:AnalyzeParams", "analyze", ("draft",), "yes", "analyze.draft"),
    ("vlclean.params:AnalyzeParams", "analyze", ("embedding", "model"), "magic", "analyze.embedding.model"),
    ("vlclean.params:AnalyzeParams", "analyze", ("detect", "duplicates", "levels"), [0.9, 1.5],
     "analyze.detect.duplicates.levels"),
    ("vlclean.params:AnalyzeParams", "analyze", ("detect", "mislabels", "classifier"), "forest",
     "analyze.detect.mislabels.classifier"),
    ("vlclean.params:LeakParams", "detect_leaks", ("method",), ["exact"], "detect_leaks.method"),
    ("vlclean.params:LeakParams", "detect_leaks", ("phash_max",), 4.5, "detect_leaks.phash_max"),
    ("vlclean.params:LeakParams", "detect_leaks", ("methods",), ["exact", "magic"], "detect_leaks.methods"),
    ("vlclean.params:LeakParams", "detect_leaks", ("min_similarity",), 1.5, "detect_leaks.min_similarity"),
    ("vlclean.params:IngestParams", "ingest_vl", ("exports",), [], "ingest_vl.exports"),
    ("vlclean.params:IngestParams", "ingest_vl", ("export",), 5, "ingest_vl.export"),
    ("vlclean.params:IngestParams", "ingest_vl", ("dataset_prefixes",), [1], "ingest_vl.dataset_prefixes[0]"),
    ("vlclean.params:ApplyTagsParams", "apply_tags", ("rules",), [], "apply_tags.rules"),
    ("vlclean.params:ApplyTagsParams", "apply_tags", ("rule_set",), 3, "apply_tags.rule_set"),
    ("vlclean.params:ApplyTagsParams", "apply_tags", ("rule_set",), "nope", "apply_tags.rule_set"),
    ("vlclean.params:ApplyTagsParams", "apply_tags", ("rule_sets", "default", 0, "action"), "explode",
     "apply_tags.rule_sets.default[0].action"),
    ("vlclean.params:ApplyTagsParams", "apply_tags", ("rule_sets", "default", 2, "min_confidence"), 1.5,
     "apply_tags.rule_sets.default[2].min_confidence"),
    ("vlclean.params:ApplyTagsParams", "apply_tags", ("rule_sets", "default", 0, "tag"), "no_such_tag",
     "apply_tags.rule_sets.default[0].tag"),
    ("vlclean.params:ApplyTagsParams", "apply_tags", ("taxonomy", "outlier", "action"), "burn",
     "apply_tags.taxonomy.outlier.action"),
    ("vlclean.params:ManifestParams", "build_manifest", ("review",), "keep", "build_manifest.review"),
    ("vlclean.params:ManifestParams", "build_manifest", ("apply_to_test",), "no", "build_manifest.apply_to_test"),
    ("vlclean.params:ManifestParams", "build_manifest", ("review_action",), "maybe", "build_manifest.review_action"),
    ("vlclean.params:NoiseParams", "noise", ("ratio",), 0.2, "noise.ratio"),
    ("vlclean.params:NoiseParams", "noise", ("rate",), "high", "noise.rate"),
    ("vlclean.params:NoiseParams", "noise", ("rate",), 1.5, "noise.rate"),
    ("vlclean.params:NoiseParams", "noise", ("kind",), "smart", "noise.kind"),
    ("vlclean.params:DenoiseParams", "denoise", ("methods",), "oracle", "denoise.methods"),
    ("vlclean.params:DenoiseParams", "denoise", ("folds",), 2.5, "denoise.folds"),
    ("vlclean.params:DenoiseParams", "denoise", ("method",), "magic", "denoise.method"),
    ("vlclean.params:DenoiseParams", "denoise", ("recall",), 1.2, "denoise.recall"),
    ("vlclean.params:TrainParams", "train", ("epoch",), 3, "train.epoch"),
    ("vlclean.params:TrainParams", "train", ("epochs",), "many", "train.epochs"),
    ("vlclean.params:TrainParams", "train", ("lr",), -0.1, "train.lr"),
    ("vlclean.params:TrainParams", "train", ("schedule",), "exponential", "train.schedule"),
    ("vlclean.params:TrainParams", "train", ("wandb", "mode"), "cloud", "train.wandb.mode"),
    ("vlclean.params:EvaluateParams", "evaluate", ("batch",), 8, "evaluate.batch"),
    ("vlclean.params:EvaluateParams", "evaluate", ("amp",), "on", "evaluate.amp"),
    ("vlclean.params:RuntimeParams", "runtime", ("evaluate", "device"), "tpu", "runtime.evaluate.device"),
    ("vlclean.params:RuntimeParams", "runtime", ("evaluate", "batch_size"), 0, "runtime.evaluate.batch_size"),
    ("vlclean.params:BaseParams", "base", ("name",), "x", "base.name"),
    ("vlclean.params:BaseParams", "base", ("seed",), "42", "base.seed"),
    ("vlclean.params:BaseParams", "base", ("dataset",), "../../etc", "base.dataset"),
]


@pytest.mark.parametrize("spec, section, path, value, key", BAD_PARAMS,
                         ids=[f"{c[4]}={c[3]!r}" for c in BAD_PARAMS])
def test_bad_params_name_the_key(spec: str, section: str, path: tuple, value: object, key: str) -> None:
    cls = _params_class(spec)
    parse(cls, _section(section), section)  # the repo's own section is valid
    with pytest.raises(ParamsError) as err:
        parse(cls, _with(_section(section), path, value), section)
    assert f"'{key}" in str(err.value), str(err.value)


# Knobs that once went unchecked (they failed late with a traceback, or never): now each fails
# naming its key.
_AN, _AN_WHERE = "vlclean.params:AnalyzeParams", "vlclean/params.py AnalyzeParams"
ONCE_UNCHECKED = [
    ("vlclean.params:RuntimeParams", "runtime", ("analyze", "chunk_size"), 0, "vlclean/params.py AnalyzeRuntime"),
    ("vlclean.params:RuntimeParams", "runtime", ("analyze", "embedding", "batch_size"), 0,
     "vlclean/params.py EmbeddingRuntime"),
    ("vlclean.params:RuntimeParams", "runtime", ("analyze", "embedding", "device"), "gpu",
     "vlclean/params.py EmbeddingRuntime"),
    (_AN, "analyze", ("blur_side",), -5, _AN_WHERE),
    (_AN, "analyze", ("detect", "duplicates", "k"), 0, _AN_WHERE),
    (_AN, "analyze", ("detect", "duplicates", "hash_distance"), 65, _AN_WHERE),
    (_AN, "analyze", ("detect", "mislabels", "filter_by"), "magic", _AN_WHERE),
    (_AN, "analyze", ("detect", "mislabels", "knn_k"), 0, _AN_WHERE),
    (_AN, "analyze", ("detect", "mislabels", "C"), -1.0, _AN_WHERE),
    (_AN, "analyze", ("detect", "clusters"), -3, _AN_WHERE),
    ("vlclean.params:LeakParams", "detect_leaks", ("k",), 0, "vlclean/params.py LeakParams"),
    ("vlclean.params:NoiseParams", "noise", ("pixels_side",), 0, "vlclean/params.py NoiseParams"),
    ("vlclean.params:DenoiseParams", "denoise", ("pixels_side",), 0, "vlclean/params.py DenoiseParams"),
    ("vlclean.params:DenoiseParams", "denoise", ("C",), -1.0, "vlclean/params.py DenoiseParams"),
]


@pytest.mark.parametrize("spec, section, path, value, where", [
    pytest.param(*case, id=f"{case[1]}.{'.'.join(map(str, case[2]))}={case[3]!r}") for case in ONCE_UNCHECKED])
def test_once_unchecked_knobs_fail_naming_the_key(spec: str, section: str, path: tuple, value: object,
                                                   where: str) -> None:
    with pytest.raises(ParamsError, match=f"'{section}.{'.'.join(map(str, path))}"):
        parse(_params_class(spec), _with(_section(section), path, value), section)


# Each stage, with one bad key, exits 2 before touching its inputs (which do not exist) or writing an output.
STAGE_FAILS = [
    ("download", {"runtime": {"download": {"workers": 0}}}, "runtime.download.workers", ["--out", "o/raw", "--metrics", "o/m.json",
                                                                     "--plots", "o/plots", "--work_dir", "o/work"]),
    ("analyze", {"analyze": {"embedding": {"model": "magic"}}}, "analyze.embedding.model",
     ["--raw", "in/raw", "--features", "o/features", "--export", "o/vl.json", "--metrics", "o/m.json", "--plots",
      "o/plots", "--work_dir", "o/work"]),
    ("detect_leaks", {"detect_leaks": {"methods": ["magic"]}}, "detect_leaks.methods",
     ["--raw", "in/raw", "--features", "in/features", "--output", "o/leaks.csv", "--by_test", "o/by_test.csv",
      "--metrics", "o/m.json", "--plots", "o/plots"]),
    ("ingest_vl", {"ingest_vl": {"exports": ["x.json"]}}, "ingest_vl.exports",
     ["--raw", "in/raw", "--out", "o/ingested", "--metrics", "o/m.json"]),
    ("apply_tags", {"apply_tags": {"rule_set": "nope"}}, "apply_tags.rule_set",
     ["--raw", "in/raw", "--ingested", "in/ingested", "--reviews", "in/reviews", "--output", "o/tagged.csv",
      "--html", "o/review.html", "--conflicts", "o/conflicts.csv", "--metrics", "o/m.json", "--plots", "o/plots"]),
    ("build_manifest", {"build_manifest": {"review_action": "maybe"}}, "build_manifest.review_action",
     ["--raw", "in/raw", "--tagged", "in/t.csv", "--leaks", "in/l.csv", "--output", "o/c.csv", "--summary", "o/s.txt",
      "--eval_labels", "o/e.csv", "--train_labels", "o/t.csv", "--metrics", "o/m.json", "--plots", "o/plots"]),
    ("noise", {"noise": {"rate": 1.5}}, "noise.rate",
     ["--train_labels", "in/t.csv", "--raw", "in/raw", "--features", "in/f", "--output", "o/noisy.csv",
      "--metrics", "o/m.json"]),
    ("denoise", {"denoise": {"method": "magic"}}, "denoise.method",
     ["--noisy", "in/n.csv", "--raw", "in/raw", "--features", "in/f", "--output", "o/clean.csv",
      "--metrics", "o/m.json"]),
    ("train", {"train": {"epochs": 0}}, "train.epochs",
     ["--raw", "in/raw", "--labels", "in/t.csv", "--val_labels", "in/v.csv", "--model", "o/model.pt",
      "--live", "o/live", "--checkpoint_dir", "o/ckpt", "--metrics", "o/m.json"]),
    ("evaluate", {"runtime": {"evaluate": {"device": "tpu"}}}, "runtime.evaluate.device",
     ["--raw", "in/raw", "--model", "in/model.pt", "--labels", "in/e.csv", "--metrics", "o/m.json",
      "--plots", "o/plots"]),
    ("noise", {"base": {"dataset": "../../etc"}}, "base.dataset",
     ["--train_labels", "in/t.csv", "--raw", "in/raw", "--features", "in/f", "--output", "o/noisy.csv",
      "--metrics", "o/m.json"]),
]


@pytest.mark.parametrize("stage, overrides, key, argv", STAGE_FAILS, ids=[f"{c[0]}:{c[2]}" for c in STAGE_FAILS])
def test_stage_fails_fast_on_bad_params(stage: str, overrides: dict, key: str, argv: list[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_params(tmp_path / "params.yaml", overrides)
    monkeypatch.chdir(tmp_path)
    rc = importlib.import_module(f"stages.{stage}").main(["--params", "params.yaml", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and f"'{key}" in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no output, not even a folder


# -- the tag-rule engine: any rules, any images and issues -> a decision per image or a ParamsError ----
TAXONOMY = {"mislabeled": {"description": "wrong", "action": "drop"}, "duplicate": {"action": "drop"},
            "low_quality": {"action": "review"}, "verified_ok": {"action": "keep"}, "odd <tag>": {"action": "relabel"}}
ISSUE_TYPES = ["duplicate", "mislabel", "blur", "dark", "outlier", "invalid", "leakage", "label_outlier", "Üñknown"]
RULE_FIELDS = list(importlib.import_module("vlclean.params").Rule.model_fields)
text = st.text(max_size=6)
junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), text,
                 st.lists(st.one_of(text, st.integers()), max_size=3), st.dictionaries(text, text, max_size=2))
good_rule = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=4), "tag": st.sampled_from(sorted(TAXONOMY) + ["not_a_tag"])},
    optional={
        "action": st.sampled_from(["keep", "drop", "relabel", "review", "nuke"]),
        "issue": st.lists(st.sampled_from(ISSUE_TYPES), max_size=3),
        "unless_issue": st.lists(st.sampled_from(ISSUE_TYPES), max_size=2),
        "min_confidence": st.floats(-0.5, 1.5), "min_group_threshold": st.floats(allow_nan=True),
        "max_uniqueness": st.floats(allow_nan=True), "user_tags": st.lists(text, max_size=3),
        "label_source": st.sampled_from(["User", "model", ""]),
        "splits": st.lists(st.sampled_from(["train", "test", "x"]), max_size=3),
        "keep_best_of_group": st.booleans(), "group_by": st.sampled_from(["duplicate", "cluster", "both"]),
        "priority": st.integers(-5, 20), "relabel_to": st.sampled_from(["suggested", "other"]),
    })
any_rule = st.one_of(good_rule, good_rule, good_rule, st.dictionaries(st.sampled_from(RULE_FIELDS + ["bogus"]), junk),
                     junk)
maybe_float = st.one_of(st.none(), st.floats(0, 1), st.just(float("nan")))


@st.composite
def tables(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = draw(st.lists(st.text(min_size=1, max_size=5), max_size=8, unique=True))
    n = len(keys)
    images = pd.DataFrame({
        "key": keys,
        "split": draw(st.lists(st.sampled_from(["train", "test", ""]), min_size=n, max_size=n)),
        "uniqueness_score": draw(st.lists(maybe_float, min_size=n, max_size=n)),
        "cluster_id": draw(st.lists(st.sampled_from(["", "c1", "c2"]), min_size=n, max_size=n)),
        "user_tags": draw(st.lists(st.sampled_from(["", "verified", "Delete;verified_ok", ";;", "odd;"]),
                                   min_size=n, max_size=n)),
        "label_source": draw(st.lists(st.sampled_from(["User", "Model", ""]), min_size=n, max_size=n)),
    }, columns=["key", "split", "uniqueness_score", "cluster_id", "user_tags", "label_source"])
    rows = draw(st.lists(st.tuples(
        st.sampled_from(keys) if keys else st.nothing(), st.sampled_from(ISSUE_TYPES), maybe_float,
        st.sampled_from([None, "", "g1", "g2"]), maybe_float,
        st.one_of(st.none(), st.just(""), st.just("{}"), st.just("not json"),
                  st.builds(lambda v: json.dumps({"suggested_label": v}), st.one_of(text, st.integers(), st.none())))),
        max_size=12)) if keys else []
    issues = pd.DataFrame(rows, columns=["key", "issue_type", "confidence", "group_id", "group_threshold", "extra"])
    return images, issues


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables(), rules=st.lists(any_rule, max_size=4), taxonomy_junk=st.booleans())
def test_tag_rules_give_one_decision_per_image_or_a_params_error(data, rules, taxonomy_junk: bool) -> None:
    from vlclean.tagging import Rule, TagDef, decide, validate_rules

    images, issues = data
    taxonomy_raw = {**TAXONOMY, "bad": {"action": "explode"}} if taxonomy_junk else TAXONOMY
    try:
        taxonomy = {k: parse(TagDef, v, f"taxonomy.{k}") for k, v in taxonomy_raw.items()}
        parsed = [parse(Rule, r, f"rules[{i}]") for i, r in enumerate(rules)]
        validate_rules(parsed, taxonomy, "rules")
    except ParamsError as err:
        assert "params key '" in str(err)
        return
    out = decide(images, issues, parsed, taxonomy)
    assert list(out["key"]) == list(images["key"])  # exactly one row per image, in order
    assert set(out["action"]) <= {"keep", "drop", "relabel", "review"}
    assert all(set(t.split(";")) - {""} <= set(taxonomy) for t in out["tags"])
    assert ((out["action"] == "relabel") | (out["new_label"] == "")).all()
    event("decided")
