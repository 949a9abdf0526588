"""DVC's view of the code is true: each stage's deps cover every repo module its module imports, transitively."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.conftest import REPO
from vlclean import dvc_deps


def test_every_stage_deps_cover_its_import_closure() -> None:
    missing = {stage: mods for stage, mods in dvc_deps.missing_deps(REPO).items() if mods}
    assert not missing, ("dvc.yaml deps miss modules the stage imports (run `python -m vlclean.dvc_deps --write`): "
                         + "; ".join(f"stage {s}: {', '.join(m)}" for s, m in missing.items()))


def test_every_stage_module_is_found() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert sorted(dvc_deps.stage_modules(REPO)) == sorted(stages)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    _write(tmp_path, {
        "stages/__init__.py": "",
        "stages/one.py": "import numpy\nfrom vlclean import cli\n\ndef main():\n    from vlclean.pkg.deep import f\n",
        "vlclean/__init__.py": "",
        "vlclean/cli.py": "from .errors import E\n",
        "vlclean/errors.py": "class E(Exception): ...\n",
        "vlclean/pkg/__init__.py": "",
        "vlclean/pkg/deep.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..hinted import H\n"
                               "from . import sibling\n",
        "vlclean/pkg/sibling.py": "",
        "vlclean/hinted.py": "",
        "vlclean/unused.py": "",
    })
    assert dvc_deps.import_closure(tmp_path, "stages.one") == [
        "stages/__init__.py", "stages/one.py", "vlclean/__init__.py", "vlclean/cli.py", "vlclean/errors.py",
        "vlclean/hinted.py", "vlclean/pkg/__init__.py", "vlclean/pkg/deep.py", "vlclean/pkg/sibling.py"]
    assert dvc_deps.covered("vlclean/pkg/deep.py", ["vlclean/pkg"])
    assert not dvc_deps.covered("vlclean/pkgx.py", ["vlclean/pkg"])


def test_missing_dep_is_named_and_write_fixes_it(tmp_path: Path) -> None:
    for folder in ("stages", "vlclean"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    text = (REPO / "dvc.yaml").read_text()
    assert "      - vlclean/params.py\n" in text
    (tmp_path / "dvc.yaml").write_text(text.replace("      - vlclean/params.py\n", "", 1))
    missing = dvc_deps.missing_deps(tmp_path)
    assert missing["download"] == ["vlclean/params.py"], missing
    dvc_deps.write_deps(tmp_path)
    assert not any(dvc_deps.missing_deps(tmp_path).values())
    once = (tmp_path / "dvc.yaml").read_text()
    assert once == text, "dvc.yaml is not what `python -m vlclean.dvc_deps --write` generates"
    dvc_deps.write_deps(tmp_path)
    assert (tmp_path / "dvc.yaml").read_text() == once  # idempotent


def test_no_stage_imports_another_stage() -> None:
    others = {stage: mods for stage, mods in dvc_deps.stage_imports(REPO).items() if mods}
    assert not others, others
