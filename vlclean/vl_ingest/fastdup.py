"""A fastdup output folder: ``similarity.csv``, ``outliers.csv``, ``atrain_features.dat.csv``,
``atrain_stats.csv``, ``atrain_features.bad.csv``, ``connected_components.csv``.

Duplicates come from similarity pairs, outliers from ``outliers.csv``, dark / bright / blur from the
threshold rules of :class:`~vlclean.vl_ingest.model.FastdupThresholds` on ``atrain_stats.csv``, invalid
files from ``atrain_features.bad.csv``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.csv_rows import CsvRows
from vlclean.vl_ingest.items import PlatformItems
from vlclean.vl_ingest.limits import IngestLimits
from vlclean.vl_ingest.model import FastdupThresholds, Part, Reader
from vlclean.vl_ingest.probe import Probe, inside
from vlclean.vl_ingest.validate import (
    EMPTY_EXTRA, NAN, WINDOWS_ABS, check_export_path, as_number, dumps_extra,
)

FASTDUP_FILES: tuple[str, ...] = (
    "similarity.csv", "outliers.csv", "atrain_features.dat.csv", "atrain_stats.csv",
    "atrain_features.bad.csv", "connected_components.csv", "component_info.csv",
)  # fmt: skip
class _FastdupFiles:
    """Index -> file name map and path normalisation of one fastdup folder.

    fastdup records the paths it was given, often absolute: when they are, the common folder of
    all of them is taken off (recorded in stats as ``root``) so that they become relative paths.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_index: dict[str, str] = {}
        self.order: list[str] = []
        self.root = ""  # the common folder taken off absolute paths, with its trailing "/"
        self._rel: dict[str, str] = {}

    @staticmethod
    def columns(table: CsvRows, display: str, options: dict[str, tuple[str, ...]],
                required: Sequence[str]) -> dict[str, str]:
        cols = table.cols
        found = {role: next((cols[o] for o in opts if o in cols), "") for role, opts in options.items()}
        missing = [f"{'|'.join(options[r])}" for r in required if not found[r]]
        if missing:
            raise ExportFormatError(f"{display}: missing column(s) {missing}; has {table.columns}")
        return found

    def set_root(self, raw_paths: Iterable[str]) -> None:
        """Take off the common folder of the absolute paths among ``raw_paths`` (one pass, O(1) memory: the
        common prefix of the smallest and largest strings is that of all of them)."""
        lo = hi = None
        for p in raw_paths:
            if p.startswith(("/", "\\")) or WINDOWS_ABS.match(p):
                p = p.replace("\\", "/")
                lo = p if lo is None or p < lo else lo
                hi = p if hi is None or p > hi else hi
        if lo is not None:
            common = os.path.commonprefix([lo, hi])
            self.root = common[: common.rfind("/") + 1]

    def rel(self, raw: str, where: str) -> str:
        """The relative path of a file name from the folder's CSVs (checked)."""
        hit = self._rel.get(raw)
        if hit is not None:
            return hit
        path = raw.replace("\\", "/")
        if self.root and path.startswith(self.root):
            path = path[len(self.root):]
        while path.startswith("./"):
            path = path[2:]
        if not path:
            raise ExportFormatError(f"{where}: empty file name")
        path = check_export_path(path, where)
        self._rel[raw] = path
        return path

    def resolve(self, value: str, where: str) -> str:
        """A ``from``/``to`` value: an index (mapped through atrain_features.dat.csv) or a file path."""
        value = value.strip()
        if value.isdigit() and self.by_index:
            name = self.by_index.get(str(int(value)))
            if name is None:
                raise ExportFormatError(f"{where}: index {value} is not in atrain_features.dat.csv / atrain_stats.csv")
            return name
        if value.isdigit():
            raise ExportFormatError(f"{where}: index {value} given, but the folder has no atrain_features.dat.csv "
                                    "to map indices to file names")
        return self.rel(value, where)


_FD_ID = ("index", "fastdup_id", "__id")
_FD_NAME = ("filename", "img_filename")


def read_fastdup(folder: Path, *, fastdup_thresholds: FastdupThresholds | None = None,
                 limits: IngestLimits | None = None) -> Part:
    """A fastdup output folder: duplicates, outliers, quality rules and bad files (see module doc).

    Each CSV is streamed (:class:`~vlclean.vl_ingest.csv_rows.CsvRows`: one row in memory at a time, the
    limits enforced while reading); the file-name lists are read twice, first for their common root."""
    thresholds = fastdup_thresholds or FastdupThresholds()
    files = _FastdupFiles(folder)
    frames: dict[str, CsvRows] = {}
    for name in FASTDUP_FILES:
        p = folder / name
        if p.is_file():
            frames[name] = CsvRows(inside(folder, p), limits or IngestLimits(), str(p))
    if not frames:
        raise ExportFormatError(f"{folder}: no fastdup files (looked for {', '.join(FASTDUP_FILES)})")

    # file names: collect every raw path first to find a common absolute root
    maps = []
    for name in ("atrain_features.dat.csv", "atrain_stats.csv", "atrain_features.bad.csv"):
        if name in frames:
            display = str(folder / name)
            c = files.columns(frames[name], display, {"id": _FD_ID, "name": _FD_NAME}, ["name"])
            maps.append((name, display, c))
    files.set_root(_raw_paths(frames, maps))

    builder = PlatformItems("fastdup", str(folder))
    media: dict[str, dict[str, Any]] = {}  # rel path -> extra

    def add_media(rel: str, extra: dict[str, Any] | None = None) -> None:
        if rel not in media:
            media[rel] = {}
        if extra:
            media[rel].update(extra)

    for name, display, c in maps:
        table = frames[name]
        others = [col for col in table.columns if col not in (c["id"], c["name"])]
        for line, rec in table:
            where = f"{display}: line {line}, field '{c['name']}'"
            rel = files.rel(rec[c["name"]], where)
            if c["id"]:
                idx = rec[c["id"]].strip()
                if idx:
                    if not idx.isdigit():
                        raise ExportFormatError(f"{display}: line {line}, field '{c['id']}': {idx!r} is not an index")
                    files.by_index[str(int(idx))] = rel
            extra = {"fastdup_index": int(rec[c["id"]])} if c["id"] and rec[c["id"]].strip() else {}
            if name == "atrain_stats.csv":
                extra.update({col: _maybe_number(rec[col]) for col in others if rec[col] != ""})
            add_media(rel, extra)

    issues: list[tuple[str, tuple]] = []  # (media key, issue row without the key)
    if "atrain_stats.csv" in frames:
        issues += _fastdup_quality(frames["atrain_stats.csv"], str(folder / "atrain_stats.csv"), files, thresholds)
    if "atrain_features.bad.csv" in frames:
        display = str(folder / "atrain_features.bad.csv")
        table = frames["atrain_features.bad.csv"]
        c = files.columns(table, display, {"name": _FD_NAME, "error": ("error_code", "error")}, ["name"])
        for line, rec in table:
            rel = files.rel(rec[c["name"]], f"{display}: line {line}, field '{c['name']}'")
            code = rec[c["error"]] if c["error"] else ""
            issues.append((rel, ("invalid", "bad", 1.0, "", NAN, "", NAN, code, EMPTY_EXTRA)))

    components = _fastdup_components(frames, folder, files)
    if "similarity.csv" in frames:
        issues += _fastdup_pairs(frames["similarity.csv"], str(folder / "similarity.csv"), files, components)
    if "outliers.csv" in frames:
        issues += _fastdup_outliers(frames["outliers.csv"], str(folder / "outliers.csv"), files)
    for rel, _ in issues:
        add_media(rel)

    if not media:
        raise ExportFormatError(f"{folder}: empty export: the fastdup files name no images")
    for rel, extra in media.items():
        builder.media.append((rel, rel.rsplit("/", 1)[-1], rel, "", "", NAN, "", "", dumps_extra(extra)))
    for rel, row in issues:
        builder.issues.append((rel, *row))
    return builder.parts(root=files.root, files=sorted(frames), thresholds=vars(thresholds))


def _raw_paths(frames: dict[str, CsvRows], maps: list[tuple[str, str, dict[str, str]]]) -> Iterator[str]:
    """Every file name the folder's CSVs record: the name lists' name column, or without those the non-index
    values of the first two columns of the pair files."""
    for name, _, c in maps:
        yield from (rec[c["name"]] for _, rec in frames[name])
    if not maps:
        for name in ("similarity.csv", "outliers.csv"):
            if name in frames:
                first_two = frames[name].columns[:2]
                for _, rec in frames[name]:
                    yield from (rec[col] for col in first_two if not rec[col].strip().isdigit())


def _maybe_number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _fastdup_quality(table: CsvRows, display: str, files: _FastdupFiles,
                     t: FastdupThresholds) -> list[tuple[str, tuple]]:
    c = _FastdupFiles.columns(table, display, {"name": _FD_NAME, "blur": ("blur",), "mean": ("mean",)}, ["name"])
    out = []
    for n, rec in table:
        line = f"{display}: line {n}"
        rel = files.rel(rec[c["name"]], f"{line}, field '{c['name']}'")
        blur = as_number(rec[c["blur"]], f"{line}, field 'blur'") if c["blur"] else NAN
        mean = as_number(rec[c["mean"]], f"{line}, field 'mean'") if c["mean"] else NAN
        if mean < t.dark_below:
            note = dumps_extra({"rule": f"mean < {t.dark_below:g}"})
            conf = min(1.0, 0.5 + 0.5 * (t.dark_below - mean) / max(t.dark_below, 1e-9))
            out.append((rel, ("dark", "dark", conf, "", NAN, "", mean, "", note)))
        if mean > t.bright_above:
            note = dumps_extra({"rule": f"mean > {t.bright_above:g}"})
            conf = min(1.0, 0.5 + 0.5 * (mean - t.bright_above) / max(255.0 - t.bright_above, 1e-9))
            out.append((rel, ("bright", "bright", conf, "", NAN, "", mean, "", note)))
        if blur < t.blur_below:
            note = dumps_extra({"rule": f"blur < {t.blur_below:g}"})
            conf = min(1.0, 0.5 + 0.5 * (t.blur_below - blur) / max(t.blur_below, 1e-9))
            out.append((rel, ("blur", "blur", conf, "", NAN, "", blur, "", note)))
    return out


def _fastdup_components(frames: dict[str, CsvRows], folder: Path, files: _FastdupFiles) -> dict[str, str]:
    """rel path -> component id from connected_components.csv (empty when absent)."""
    if "connected_components.csv" not in frames:
        return {}
    table = frames["connected_components.csv"]
    display = str(folder / "connected_components.csv")
    c = _FastdupFiles.columns(table, display, {"id": ("__id", "index", "fastdup_id"), "name": _FD_NAME,
                                               "component": ("component_id",)}, ["component"])
    if not c["id"] and not c["name"]:
        raise ExportFormatError(f"{display}: needs an id (__id|index) or a filename column; has {table.columns}")
    out = {}
    for line, rec in table:
        where = f"{display}: line {line}"
        if c["name"] and rec[c["name"]]:
            rel = files.rel(rec[c["name"]], f"{where}, field '{c['name']}'")
        else:
            rel = files.resolve(rec[c["id"]], f"{where}, field '{c['id']}'")
        out[rel] = rec[c["component"]].strip()
    return out


def _fastdup_pairs(table: CsvRows, display: str, files: _FastdupFiles,
                   components: dict[str, str]) -> list[tuple[str, tuple]]:
    """Duplicate rows for both sides of each pair (best similarity per unordered pair)."""
    c = _FastdupFiles.columns(table, display, {"from": ("from",), "to": ("to",), "distance": ("distance",)},
                              ["from", "to", "distance"])
    best: dict[tuple[str, str], float] = {}
    for line, rec in table:
        where = f"{display}: line {line}"
        a = files.resolve(rec[c["from"]], f"{where}, field 'from'")
        b = files.resolve(rec[c["to"]], f"{where}, field 'to'")
        sim = as_number(rec[c["distance"]], f"{where}, field 'distance'")
        if math.isnan(sim):
            raise ExportFormatError(f"{where}, field 'distance': empty")
        if a == b:
            continue
        pair = (a, b) if a < b else (b, a)
        if sim > best.get(pair, -math.inf):
            best[pair] = sim
    out = []
    for (a, b), sim in best.items():
        conf = min(max(sim, 0.0), 1.0)
        out.append((a, ("duplicate", "similarity", conf, components.get(a, ""), NAN, b, sim, "", EMPTY_EXTRA)))
        out.append((b, ("duplicate", "similarity", conf, components.get(b, ""), NAN, a, sim, "", EMPTY_EXTRA)))
    return out


def _fastdup_outliers(table: CsvRows, display: str, files: _FastdupFiles) -> list[tuple[str, tuple]]:
    """One outlier row per ``from``: its nearest neighbour's similarity (the highest listed)."""
    c = _FastdupFiles.columns(table, display, {"from": ("from",), "to": ("to",), "distance": ("distance",)},
                              ["from", "distance"])
    best: dict[str, tuple[float, str]] = {}
    for line, rec in table:
        where = f"{display}: line {line}"
        a = files.resolve(rec[c["from"]], f"{where}, field 'from'")
        b = files.resolve(rec[c["to"]], f"{where}, field 'to'") if c["to"] and rec[c["to"]].strip() else ""
        dist = as_number(rec[c["distance"]], f"{where}, field 'distance'")
        if math.isnan(dist):
            raise ExportFormatError(f"{where}, field 'distance': empty")
        if a not in best or dist > best[a][0]:
            best[a] = (dist, b)
    return [(a, ("outlier", "outliers", min(max(1.0 - d, 0.0), 1.0), "", NAN, b, d, "", EMPTY_EXTRA))
            for a, (d, b) in best.items()]


def detect(probe: Probe) -> bool:
    if probe.kind == "csv":
        if probe.path.name in FASTDUP_FILES:
            raise ExportFormatError(f"{probe.path}: a fastdup file: pass its folder ({probe.path.parent}) instead")
        return False
    return any((probe.path / name).is_file() for name in FASTDUP_FILES)


READER = Reader("fastdup", ("dir", "csv"), {"dir": f"fastdup files ({', '.join(FASTDUP_FILES)})"}, detect,
                lambda probe, options: read_fastdup(probe.path, fastdup_thresholds=options.fastdup_thresholds,
                                                    limits=options.limits))
