"""What each DVC stage runs: the repo modules its ``stages/<name>.py`` imports, transitively.

``dvc repro`` reruns a stage when one of its ``deps`` changes, so the code deps of a stage must be
the import closure of its module: every file under ``vlclean/`` and ``stages/`` reached from it by
``import`` statements anywhere in a module (top level, inside functions, under ``TYPE_CHECKING``),
parent packages' ``__init__.py`` included (importing ``a.b`` runs ``a/__init__.py``). Imports of
other packages (numpy, torch, ...) are not repo code and pinned by ``requirements.txt``.

``python -m vlclean.dvc_deps`` reports what each stage's deps miss; ``--write`` rewrites the code
deps of every stage in ``dvc.yaml`` (data deps, package data such as ``vlclean/templates`` and
comments are kept; a package whose every module is in the closure is listed as its folder), so adding
an import is one command. Files a module reads at run time (templates) are not imports: list them by hand.
``tests/test_dvc_deps.py`` fails naming the stage and the module when ``dvc.yaml`` misses one.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import sys
from pathlib import Path

import yaml

CODE_ROOTS = ("vlclean", "stages")


def _module_file(repo: Path, dotted: str) -> Path | None:
    """The repo file of module ``dotted`` (``a.b`` -> a/b.py or a/b/__init__.py), or None."""
    parts = dotted.split(".")
    if not parts or parts[0] not in CODE_ROOTS:
        return None
    base = repo.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(repo: Path, path: Path) -> str:
    """The package a module's relative imports start from (a/b/c.py and a/b/__init__.py: ``a.b``)."""
    return ".".join(path.relative_to(repo).with_suffix("").parts[:-1])


def imported_modules(repo: Path, path: Path) -> set[str]:
    """Dotted names of the repo modules ``path`` imports anywhere in its code (and their parent packages)."""
    st = path.stat()
    return set(_imported_modules(repo, path, st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=4096)
def _imported_modules(repo: Path, path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(repo, path).split(".")
                base_parts = package[: len(package) - node.level + 1] if node.level > 1 else package
                base = ".".join([*base_parts, *(node.module.split(".") if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            prefix = ".".join(parts[:i])
            if _module_file(repo, prefix) is not None:
                out.add(prefix)
    return frozenset(out)


def import_closure(repo: Path, entry: str) -> list[str]:
    """Repo-relative paths (sorted) of every module reached from module ``entry`` (e.g. ``stages.train``)."""
    seen: set[str] = set()
    todo = _parents(entry)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(repo, name)
        if path is None:
            continue
        todo.extend(imported_modules(repo, path) - seen)
    files = {_module_file(repo, n) for n in seen}
    return sorted(f.relative_to(repo).as_posix() for f in files if f is not None)


def _parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def stage_modules(repo: Path) -> dict[str, str]:
    """Stage name -> its module (``python -m stages.<name>`` in the stage's cmd)."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        cmd = " ".join(stage["cmd"]) if isinstance(stage["cmd"], list) else str(stage["cmd"])
        m = re.search(r"python -m (stages\.\w+)", cmd)
        if m:
            out[name] = m.group(1)
    return out


def covered(path: str, deps: list[str]) -> bool:
    """A dep covers ``path`` when it is the file itself or a folder above it."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def missing_deps(repo: Path) -> dict[str, list[str]]:
    """Stage -> modules of its import closure that its ``deps`` in dvc.yaml do not cover."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, module in stage_modules(repo).items():
        deps = [str(d) for d in stages[name].get("deps", [])]
        out[name] = [m for m in import_closure(repo, module) if not covered(m, deps)]
    return out


def stage_imports(repo: Path) -> dict[str, list[str]]:
    """Stage -> other stage modules in its closure (a stage should import none)."""
    out = {}
    for name, module in stage_modules(repo).items():
        own = module.replace(".", "/") + ".py"
        skip = (own, "stages/__init__.py")
        out[name] = [m for m in import_closure(repo, module) if m.startswith("stages/") and m not in skip]
    return out


def compact(repo: Path, files: list[str]) -> list[str]:
    """``files`` with every package whose modules are all listed replaced by its folder (not the top-level roots)."""
    listed = set(files)
    out: list[str] = []
    folders: set[str] = set()
    for f in files:
        parent = f.rsplit("/", 1)[0]
        if "/" in parent and parent not in folders:  # vlclean/datasets, not vlclean itself
            members = {p.relative_to(repo).as_posix() for p in (repo / parent).rglob("*.py")}
            if members <= listed:
                folders.add(parent)
    for f in files:
        if not any(f.startswith(d + "/") for d in folders):
            out.append(f)
    return sorted(out + sorted(folders), key=lambda p: (not p.startswith("stages/"), p))


def _is_code_dep(repo: Path, dep: str) -> bool:
    """A dep ``--write`` manages: a module under stages/ or vlclean/, or a folder of modules. Package data
    (e.g. ``vlclean/templates``: no modules inside) is kept as written."""
    if not dep.startswith(tuple(f"{r}/" for r in CODE_ROOTS)):
        return False
    path = repo / dep
    return dep.endswith(".py") or (path.is_dir() and any(path.rglob("*.py")))


def code_deps(repo: Path, module: str) -> list[str]:
    return compact(repo, import_closure(repo, module))


def write_deps(repo: Path) -> dict[str, list[str]]:
    """Rewrite the code deps (``stages/...``, ``vlclean/...``) of every stage in dvc.yaml; return them."""
    path = repo / "dvc.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    modules = stage_modules(repo)
    result: dict[str, list[str]] = {}
    out: list[str] = []
    stage = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  (\w+):\s*$", line)
        if m:
            stage = m.group(1)
        if stage in modules and re.match(r"^    deps:\s*$", line):
            out.append(line)
            i += 1
            block: list[str] = []
            while i < len(lines) and re.match(r"^      - ", lines[i]):
                block.append(lines[i])
                i += 1
            kept = [b for b in block if not _is_code_dep(repo, b.split("- ", 1)[1].strip())]
            deps = code_deps(repo, modules[stage])
            result[stage] = deps
            out.extend(f"      - {d}\n" for d in deps)
            out.extend(kept)
            continue
        out.append(line)
        i += 1
    from vlclean.storage import write_text

    write_text(path, "".join(out))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check (default) or rewrite (--write) the code deps of dvc.yaml's stages")
    p.add_argument("--repo", default=".")
    p.add_argument("--write", action="store_true", help="rewrite the code deps of every stage in dvc.yaml")
    args = p.parse_args(argv)
    repo = Path(args.repo).resolve()
    if args.write:
        for stage, deps in write_deps(repo).items():
            print(f"{stage}: {len(deps)} code deps")
    missing = missing_deps(repo)
    for stage, mods in missing.items():
        if mods:
            print(f"{stage}: dvc.yaml deps miss {len(mods)} module(s): {', '.join(mods)}", file=sys.stderr)
    for stage, others in stage_imports(repo).items():
        if others:
            print(f"{stage}: imports other stage module(s) {', '.join(others)}", file=sys.stderr)
    return 1 if any(missing.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
