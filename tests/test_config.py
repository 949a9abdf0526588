"""Params are validated before any work: unknown keys, wrong types, out-of-range values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.download import DownloadParams
from tests.conftest import REPO, write_params
from vlclean.config import from_dict, load_base, read_params_file
from vlclean.errors import ParamsError


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sorce": "hf"}, "'download.sorce' is unknown"),
        ({"source": "s3"}, "'download.source': 's3' is not one of"),
        ({"workers": "two"}, "'download.workers': expected an integer"),
        ({"workers": 0}, "'download.workers': 0 is outside"),
        ({"builtin": {"mislabel_fraction": 1.5}}, "'download.builtin.mislabel_fraction': 1.5 is outside"),
        ({"builtin": {"image_size": True}}, "'download.builtin.image_size': expected an integer"),
        ({"classes": "cat"}, "'download.classes': expected a list"),
        ({"hf": {"split_map": {"val": "validation"}}}, "split_map.val"),
        ({"source": "folder"}, "'download.folder.root' is required"),
        ({"max_per_class": 0}, "'download.max_per_class': 0 is outside"),
    ],
)
def test_bad_download_params_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        from_dict(DownloadParams, section, "download")


def test_repo_params_are_valid() -> None:
    data = read_params_file(REPO / "params.yaml")
    from_dict(DownloadParams, data["download"], "download")
    assert load_base(REPO / "params.yaml").seed == 42


def test_bad_params_fail_the_stage_before_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from stages import download

    params = write_params(tmp_path / "params.yaml", {"download": {"shard_max_mb": -1}})
    rc = download.main(["--params", str(params), "--out", str(tmp_path / "raw"), "--metrics", str(tmp_path / "m.json"),
                        "--plots", str(tmp_path / "p"), "--work_dir", str(tmp_path / "w")])
    assert rc == 2
    assert "download.shard_max_mb" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists() and not (tmp_path / "w").exists()


def test_malformed_params_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        read_params_file(bad)
    with pytest.raises(ParamsError, match="does not exist"):
        read_params_file(tmp_path / "missing.yaml")
