"""Params are validated before any work: one line naming the dotted key for every malformed value.

One test per failure mode: unknown key or section, wrong type, out of range, NaN/infinity, duplicate
YAML keys, alias bombs, deep nesting, a stale JSON Schema, code defaults that disagree with params.yaml.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, write_params
from vlclean import params as P
from vlclean.errors import ParamsError
from vlclean.params import DownloadParams, Params, Section, load_params, parse, read_params_file


def _load_text(tmp_path: Path, text: str) -> Params:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def _fails(tmp_path: Path, text: str, *needles: str) -> str:
    with pytest.raises(ParamsError) as err:
        _load_text(tmp_path, text)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sorce": "hf"}, "'download.sorce' is unknown; allowed keys under 'download'"),
        ({"source": "s3"}, "'download.source': input should be 'builtin', 'folder', 'hf', 'idx' or 'cifar', got 's3'"),
        ({"shard_max_mb": "two"}, "'download.shard_max_mb': input should be a valid integer, got 'two'"),
        ({"shard_max_mb": "2"}, "'download.shard_max_mb': input should be a valid integer, got '2'"),  # strict
        ({"shard_max_mb": 2.0}, "'download.shard_max_mb': input should be a valid integer"),
        ({"shard_max_mb": 0}, "'download.shard_max_mb': input should be greater than or equal to 1, got 0"),
        ({"workers": 2}, "'download.workers' is unknown"),  # a speed knob: runtime.download.workers
        ({"builtin": {"mislabel_fraction": 1.5}}, "'download.builtin.mislabel_fraction': input should be less"),
        ({"builtin": {"image_size": True}}, "'download.builtin.image_size': input should be a valid integer"),
        ({"classes": "cat"}, "'download.classes': input should be a valid list"),
        ({"hf": {"split_map": {"val": "validation"}}}, "'download.hf.split_map.val'"),
        ({"source": "folder"}, "'download.folder.root': is required"),
        ({"max_per_class": 0}, "'download.max_per_class': input should be greater than or equal to 1"),
        ({"builtin": 5}, "'download.builtin': input should be a valid dictionary"),
    ],
)
def test_bad_download_params_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(ParamsError) as err:
        parse(DownloadParams, section, "download")
    assert message in str(err.value)


def test_repo_params_are_valid() -> None:
    p = load_params(REPO / "params.yaml")
    assert p.base.seed == 42 and p.download.source == "builtin"


def test_code_defaults_equal_params_yaml() -> None:
    """One source of defaults: every section of params.yaml equals the models' defaults, and lists every knob."""
    data = read_params_file(REPO / "params.yaml")
    parsed, defaults = parse(Params, data, ""), Params()
    assert sorted(data) == sorted(Params.model_fields), "params.yaml sections != the models' sections"
    for name in Params.model_fields:
        assert getattr(parsed, name) == getattr(defaults, name), f"params.yaml '{name}' differs from the code defaults"

    def missing(model: type[Section], section: dict, key: str) -> list[str]:
        out = []
        for field, info in model.model_fields.items():
            sub = f"{key}.{field}"
            if field not in section:
                out.append(sub)
            elif isinstance(info.annotation, type) and issubclass(info.annotation, Section):
                out += missing(info.annotation, section[field] or {}, sub)
        return out

    gaps = [k for name, info in Params.model_fields.items() for k in missing(info.annotation, data[name] or {}, name)]
    assert not gaps, f"knobs missing from params.yaml (document them there): {gaps}"


def test_standalone_without_params_file_uses_the_same_defaults(tmp_path: Path) -> None:
    assert load_params(tmp_path / "absent.yaml", missing_ok=True) == load_params(REPO / "params.yaml")
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "absent.yaml")


def test_unknown_top_level_section_is_refused(tmp_path: Path) -> None:
    _fails(tmp_path, "detect_leak:\n  k: 5\n", "'detect_leak' is an unknown section", "detect_leaks")


def test_unknown_nested_key_is_refused(tmp_path: Path) -> None:
    _fails(tmp_path, "analyze:\n  detect:\n    outliers:\n      zz: 1\n", "'analyze.detect.outliers.zz' is unknown")


@pytest.mark.parametrize(("text", "key"), [
    ("train:\n  lr: .nan\n", "train.lr"),
    ("denoise:\n  recall: .nan\n", "denoise.recall"),
    ("analyze:\n  detect:\n    outliers:\n      z: .inf\n", "analyze.detect.outliers.z"),
    ("train:\n  step_milestones: [0.5, -.inf]\n", "train.step_milestones[1]"),
    ("detect_leaks:\n  min_similarity: .NaN\n", "detect_leaks.min_similarity"),
])
def test_nan_and_infinity_are_refused(tmp_path: Path, text: str, key: str) -> None:
    _fails(tmp_path, text, f"'{key}'", "finite number")


@pytest.mark.parametrize(("text", "key"), [
    ("base:\n  seed: -1\n", "base.seed"),
    ("noise:\n  seed: -7\n", "noise.seed"),
    ("train:\n  seed: 4294967296\n", "train.seed"),
    ("denoise:\n  recall: 1.5\n", "denoise.recall"),
    ("denoise:\n  false_positive_rate: -0.1\n", "denoise.false_positive_rate"),
    ("noise:\n  rate: 0.99\n", "noise.rate"),
    ("apply_tags:\n  rule_sets:\n    default:\n      - {name: a, tag: leak, min_confidence: 2}\n  rule_set: default\n",
     "apply_tags.rule_sets.default[0].min_confidence"),
    ("train:\n  warmup_epochs: 20.0\n", "train.warmup_epochs"),
])
def test_out_of_range_values_are_refused(tmp_path: Path, text: str, key: str) -> None:
    _fails(tmp_path, text, f"'{key}'")


def test_long_or_odd_dataset_names_are_refused_and_echo_is_truncated(tmp_path: Path) -> None:
    msg = _fails(tmp_path, f"base:\n  dataset: {'x' * 300}\n", "'base.dataset'", "at most 64 characters")
    assert "x" * 100 not in msg and len(msg) < 200
    _fails(tmp_path, "base:\n  dataset: ../../etc\n", "'base.dataset'")


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    _fails(tmp_path, "train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n", "'train.lr': duplicate key", "line 4")
    _fails(tmp_path, "base:\n  seed: 1\nbase:\n  seed: 2\n", "'base': duplicate key")


def test_alias_bombs_fail_fast_with_a_short_message(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = "base:\n  seed: 1\n" + "\n".join(lines) + "\n"  # 9**10 (3.5e9) strings once expanded
    t0 = time.perf_counter()
    msg = _fails(tmp_path, text, "alias expansion")
    assert time.perf_counter() - t0 < 2.0 and len(msg) < 300


def test_recursive_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    _fails(tmp_path, "train: &t\n  x: *t\n", "recursive alias")
    _fails(tmp_path, "train:\n  lr: " + "[" * 5000 + "]" * 5000 + "\n", "nested")
    _fails(tmp_path, "noise: " + "[" * 40 + "]" * 40 + "\n", "nested more than")


def test_malformed_params_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("base: [unclosed\n" + "x" * 5000 + "\n")
    with pytest.raises(ParamsError, match="not valid YAML") as err:
        read_params_file(bad)
    assert "\n" not in str(err.value) and len(str(err.value)) <= 400
    with pytest.raises(ParamsError, match="does not exist"):
        read_params_file(tmp_path / "missing.yaml")
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="top level must be a mapping"):
        read_params_file(bad)
    bad.write_bytes(b"base: {dataset: \xff}\n")
    with pytest.raises(ParamsError, match="cannot be read"):
        read_params_file(bad)


JUNK = [float("nan"), float("inf"), -1, 10**30, -1e300, "x" * 1000, "", [], {}, None, True, [[1]], {"k": "v"}]


def _leaves(node: object, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))] or [path]
    if isinstance(node, list) and node:
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [path]


def test_every_malformed_value_is_one_line_naming_its_key() -> None:
    """Each leaf of params.yaml replaced by each junk value: valid, or one short ParamsError line naming it."""
    base = read_params_file(REPO / "params.yaml")
    failures = 0
    for path in _leaves(base):
        for value in JUNK:
            data = json.loads(json.dumps(base))
            node = data
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
            try:
                parse(Params, data, "")
            except ParamsError as err:
                failures += 1
                msg = str(err)
                assert "\n" not in msg and len(msg) < 600, msg
                assert msg.startswith(f"params key '{path[0]}"), (path, msg)
    assert failures > 1000  # most junk is refused; the exact count is not the point


def test_bad_params_fail_the_stage_before_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from stages import download

    params = write_params(tmp_path / "params.yaml", {"download": {"shard_max_mb": -1}})
    rc = download.main(["--params", str(params), "--out", str(tmp_path / "raw"), "--metrics", str(tmp_path / "m.json"),
                        "--plots", str(tmp_path / "p"), "--work_dir", str(tmp_path / "w")])
    assert rc == 2
    assert "download.shard_max_mb" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists() and not (tmp_path / "w").exists()


@pytest.mark.parametrize(("text", "needle"), [
    ("train:\n  lr: .nan\n", "'train.lr'"),
    ("detect_leak:\n  k: 1\n", "'detect_leak' is an unknown section"),
    ("train:\n  lr: 1\n  lr: 2\n", "duplicate key"),
])
def test_stage_exits_2_with_one_line_never_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture, text: str,
                                                       needle: str) -> None:
    from stages import train

    (tmp_path / "params.yaml").write_text(text)
    rc = train.main(["--params", str(tmp_path / "params.yaml"), "--labels", "x.csv", "--val_labels", "y.csv"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and "Traceback" not in err and "\n" not in err, err


def test_json_schema_is_up_to_date() -> None:
    committed = (REPO / P.SCHEMA_FILE).read_text()
    assert committed == P.schema_text(), "params.schema.json is stale: run `python -m vlclean.params --write-schema`"
    first = (REPO / "params.yaml").read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema={P.SCHEMA_FILE}"


def test_json_schema_describes_params_yaml() -> None:
    """The schema refuses what the models refuse (a typo'd section, a string seed) and accepts params.yaml."""
    schema = json.loads((REPO / P.SCHEMA_FILE).read_text())
    assert schema["additionalProperties"] is False and "detect_leaks" in schema["properties"]
    defs = schema["$defs"]
    assert defs["BaseParams"]["properties"]["seed"]["type"] == "integer"
    assert defs["TrainParams"]["additionalProperties"] is False
    assert set(yaml.safe_load((REPO / "params.yaml").read_text())) <= set(schema["properties"])
