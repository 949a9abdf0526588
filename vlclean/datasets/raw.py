"""The raw dataset layout every source is converted to, and its reader.

``data/raw/`` holds a few large parquet shards instead of millions of small files (DVC and Google
Drive push a few hundred large files in minutes and 1.3M small ones in days)::

    data/raw/
      shards/<split>-<unit>-<part>.parquet  one row per image, original encoded bytes (RAW_SHARD schema)
      index.parquet                          the same rows without bytes, plus shard + row (INDEX schema)
      classes.csv                            label -> class_id, class_name
      quarantine.csv                         unreadable images (still in the index with valid=False)
      truth.csv                              planted issues (built-in dataset only; header-only otherwise)

Conversion is organised in *units* (one Hub parquet file, one chunk of an ImageFolder tree, ...).
Each finished unit is kept in a work directory outside DVC's outputs, so an interrupted conversion
resumes at the first unfinished unit; the final directory is assembled atomically at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from vlclean import schema
from vlclean.errors import DatasetError
from vlclean.images import DEFAULT_MAX_PIXELS, ImageDecodeError, probe_image
from vlclean.storage import atomic_dir, read_csv, write_csv, write_parquet


@dataclass(frozen=True)
class RawRecord:
    """One input image before probing. ``source`` says where it came from (path, shard:row)."""

    image_id: str
    split: str
    label: int
    file_name: str
    data: bytes
    source: str
    error: str = ""  # set when the source already knows the image is unusable (no probing then)


@dataclass(frozen=True)
class Unit:
    """A resumable piece of a conversion: a name and a factory of its records."""

    name: str
    records: Callable[[], Iterable[RawRecord]]


@dataclass
class ConversionStats:
    images: int = 0
    invalid: int = 0
    bytes: int = 0
    per_split: dict[str, int] = field(default_factory=dict)


def _probe_one(data: bytes, max_pixels: int) -> tuple[bool, int, int, str, str]:
    try:
        info = probe_image(data, max_pixels=max_pixels)
    except ImageDecodeError as err:
        return False, 0, 0, "", err.reason
    return True, info.width, info.height, info.format, ""


def _probe_many(records: Sequence[RawRecord], max_pixels: int, pool: ProcessPoolExecutor | None) -> list[tuple]:
    todo = [r.data for r in records if not r.error]
    if pool is None:
        probes = iter([_probe_one(d, max_pixels) for d in todo])
    else:
        probes = iter(pool.map(_probe_one, todo, [max_pixels] * len(todo), chunksize=32))
    return [(False, 0, 0, "", r.error) if r.error else next(probes) for r in records]


class RawDatasetWriter:
    """Convert units of :class:`RawRecord` into the raw layout (see module doc).

    ``classes`` maps label -> (class_id, class_name). ``shard_max_bytes`` bounds each shard's image
    bytes. ``work_dir`` keeps finished units between runs (resumability); it is keyed by
    ``fingerprint`` so changed params never reuse stale units.
    """

    def __init__(
        self,
        classes: pd.DataFrame,
        *,
        work_dir: str | Path,
        fingerprint: str,
        shard_max_bytes: int = 256 * 2**20,
        batch_size: int = 512,
        workers: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: bool = True,
    ) -> None:
        self.classes = schema.validate_classes(classes)
        self._class_of = {
            int(r.label): (r.class_id, r.class_name) for r in self.classes.itertuples(index=False)
        }
        self.work_dir = Path(work_dir) / fingerprint
        self.shard_max_bytes = shard_max_bytes
        self.batch_size = batch_size
        self.workers = workers
        self.max_pixels = max_pixels
        self.progress = progress

    # -- units ---------------------------------------------------------------------------------
    def _unit_dir(self, unit: Unit) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in unit.name)
        return self.work_dir / "units" / safe

    def convert_unit(self, unit: Unit, pool: ProcessPoolExecutor | None) -> Path:
        """Convert one unit into shards + an index part in the work dir, atomically; skip if done."""
        out = self._unit_dir(unit)
        if (out / "index.parquet").exists():
            return out
        with atomic_dir(out) as tmp:
            (tmp / "shards").mkdir()
            index_parts: list[pd.DataFrame] = []
            part = 0
            pending: list[RawRecord] = []
            shard_rows: list[dict] = []
            shard_bytes = 0

            def flush_shard() -> None:
                nonlocal part, shard_rows, shard_bytes
                if not shard_rows:
                    return
                frame = pd.DataFrame(shard_rows)
                split = frame["split"].iloc[0]
                stem = out.name if out.name.startswith(split) else f"{split}-{out.name}"
                name = f"{stem}-{part:03d}.parquet"
                write_parquet(tmp / "shards" / name, schema.to_arrow(frame, schema.RAW_SHARD, "raw_shard"),
                              row_group_size=1024)
                idx = frame.drop(columns=["image"]).assign(shard=name, row=range(len(frame)))
                index_parts.append(idx)
                part += 1
                shard_rows, shard_bytes = [], 0

            def flush_pending() -> None:
                nonlocal shard_bytes
                if not pending:
                    return
                probes = _probe_many(pending, self.max_pixels, pool)
                for rec, (valid, w, h, fmt, err) in zip(pending, probes):
                    if shard_rows and (shard_rows[-1]["split"] != rec.split or shard_bytes >= self.shard_max_bytes):
                        flush_shard()
                    shard_rows.append(self._row(rec, valid, w, h, fmt, err))
                    shard_bytes += len(rec.data)
                pending.clear()

            for rec in unit.records():
                pending.append(rec)
                if len(pending) >= self.batch_size:
                    flush_pending()
            flush_pending()
            flush_shard()
            index = pd.concat(index_parts, ignore_index=True) if index_parts else schema.empty_frame(schema.INDEX)
            write_parquet(tmp / "index.parquet", schema.to_arrow(index, schema.INDEX, "index"))
        return out

    def _row(self, rec: RawRecord, valid: bool, w: int, h: int, fmt: str, err: str) -> dict:
        if rec.label not in self._class_of:
            raise DatasetError(f"{rec.source}: label {rec.label} is not one of the {len(self._class_of)} classes")
        class_id, class_name = self._class_of[rec.label]
        return {
            "image_id": rec.image_id,
            "split": rec.split,
            "label": rec.label,
            "class_id": class_id,
            "class_name": class_name,
            "file_name": rec.file_name,
            "image": rec.data,
            "width": w,
            "height": h,
            "format": fmt,
            "file_size": len(rec.data),
            "sha256": hashlib.sha256(rec.data).hexdigest(),
            "valid": valid,
            "error": err,
            "source": rec.source,
        }

    # -- assembly ------------------------------------------------------------------------------
    def write(
        self,
        units: Sequence[Unit],
        out_dir: str | Path,
        *,
        truth: pd.DataFrame | None = None,
        extra_quarantine: pd.DataFrame | None = None,
        on_unit_done: Callable[[pd.DataFrame], None] | None = None,
    ) -> ConversionStats:
        """Convert every unit (resuming finished ones) and atomically assemble ``out_dir``.

        ``on_unit_done`` receives each finished unit's index (also of units resumed from an
        earlier run), so sources can keep running counts such as ``max_per_class``.
        """
        self.work_dir.mkdir(parents=True, exist_ok=True)
        pool = ProcessPoolExecutor(self.workers) if self.workers > 1 else None
        unit_dirs = []
        try:
            for u in tqdm(units, desc="convert units", unit="unit", disable=not self.progress or len(units) < 2):
                unit_dirs.append(self.convert_unit(u, pool))
                if on_unit_done is not None:
                    on_unit_done(pd.read_parquet(unit_dirs[-1] / "index.parquet", columns=["image_id", "split", "label"]))
        finally:
            if pool is not None:
                pool.shutdown()
        return self._assemble(unit_dirs, Path(out_dir), truth, extra_quarantine)

    def _assemble(
        self,
        unit_dirs: list[Path],
        out_dir: Path,
        truth: pd.DataFrame | None,
        extra_quarantine: pd.DataFrame | None,
    ) -> ConversionStats:
        parts = [pd.read_parquet(d / "index.parquet") for d in unit_dirs]
        index = pd.concat(parts, ignore_index=True) if parts else schema.empty_frame(schema.INDEX)
        index = index.sort_values(["shard", "row"], kind="stable", ignore_index=True)
        index = schema.validate_index(index, self.classes)
        quarantine = index.loc[~index["valid"], ["image_id", "split", "file_name", "source", "error"]].copy()
        if extra_quarantine is not None and len(extra_quarantine):
            quarantine = pd.concat([quarantine, extra_quarantine], ignore_index=True)
        quarantine = schema.conform(quarantine, schema.QUARANTINE, "quarantine")[list(schema.QUARANTINE)]
        truth = schema.validate_truth(truth if truth is not None else schema.empty_frame(schema.TRUTH), index)
        with atomic_dir(out_dir) as tmp:
            (tmp / "shards").mkdir()
            for d in unit_dirs:
                for shard in sorted((d / "shards").iterdir()):
                    _link_or_copy(shard, tmp / "shards" / shard.name)
            write_parquet(tmp / "index.parquet", schema.to_arrow(index, schema.INDEX, "index"))
            write_csv(tmp / "classes.csv", self.classes[list(schema.CLASSES)])
            write_csv(tmp / "quarantine.csv", quarantine)
            write_csv(tmp / "truth.csv", truth[list(schema.TRUTH)])
        stats = ConversionStats(
            images=len(index),
            invalid=int((~index["valid"]).sum()),
            bytes=int(index["file_size"].sum()),
            per_split={k: int(v) for k, v in index["split"].value_counts().sort_index().items()},
        )
        return stats


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def fingerprint(obj: object) -> str:
    """A short stable hash of a JSON-able description of a conversion (source + params)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# -- reading -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawDataset:
    """Read access to a ``data/raw`` directory."""

    root: Path

    @classmethod
    def open(cls, root: str | Path, *, images: bool = True) -> RawDataset:
        """Open ``root``; ``images=False`` for readers of the tables only (index, classes, truth),
        which then work without the shards (decode once: only analyze and training read bytes)."""
        root = Path(root)
        for name in ("index.parquet", "classes.csv") + (("shards",) if images else ()):
            if not (root / name).exists():
                raise DatasetError(f"{root} is not a raw dataset: {name} is missing (run the download stage)")
        return cls(root)

    def index(self) -> pd.DataFrame:
        return schema.validate_index(pd.read_parquet(self.root / "index.parquet"), self.classes())

    def classes(self) -> pd.DataFrame:
        return schema.validate_classes(read_csv(self.root / "classes.csv"))

    def truth(self) -> pd.DataFrame:
        path = self.root / "truth.csv"
        if not path.exists():
            return schema.empty_frame(schema.TRUTH)
        return schema.validate_truth(read_csv(path, dtype=str))

    def quarantine(self) -> pd.DataFrame:
        return read_csv(self.root / "quarantine.csv", dtype=str)

    def shards(self) -> list[Path]:
        return sorted((self.root / "shards").glob("*.parquet"))

    def iter_images(
        self, *, columns: Sequence[str] = ("image_id", "image"), batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches of ``columns`` over all shards in index order (bounded memory)."""
        for shard in self.shards():
            pf = pq.ParquetFile(shard)
            yield from pf.iter_batches(batch_size=batch_size, columns=list(columns))

    def read_images(self, image_ids: Iterable[str]) -> dict[str, bytes]:
        """Bytes of the given images (reads only the shards that hold them)."""
        return dict(self.iter_selected_images(image_ids))

    def iter_selected_images(self, image_ids: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """``(image_id, bytes)`` of the given images, shard by shard: one shard's bytes in memory at a time."""
        wanted = set(image_ids)
        index = pd.read_parquet(self.root / "index.parquet", columns=["image_id", "shard"])
        index = index[index["image_id"].isin(wanted)]
        for shard, group in index.groupby("shard"):
            ids = set(group["image_id"])
            table = pq.read_table(self.root / "shards" / shard, columns=["image_id", "image"])
            for iid, data in zip(table.column("image_id").to_pylist(), table.column("image").to_pylist()):
                if iid in ids:
                    yield iid, data


def safe_component(name: str, *, what: str) -> str:
    """``name`` as a single safe path component; refuse names that could escape a folder."""
    from vlclean.errors import UnsafePathError

    cleaned = name.replace("/", "_").replace("\\", "_").replace("\x00", "")
    if cleaned in ("", ".", "..") or cleaned != cleaned.strip() and not cleaned.strip():
        raise UnsafePathError(f"{what} {name!r} is not a usable file or folder name")
    return cleaned


def folder_paths(frame: pd.DataFrame, root: str = "") -> pd.Series:
    """Each image's path in the ImageFolder layout :func:`export_image_folder` writes,
    ``[<root>/]<split>/<class_id>/<file_name>``, from a table with those three columns (the raw index)."""
    prefix = f"{root}/" if root else ""
    return prefix + frame["split"].astype(str) + "/" + frame["class_id"].astype(str) + "/" + frame["file_name"].astype(str)


def export_image_folder(
    raw: RawDataset, out_dir: str | Path, *, splits: Sequence[str] = ("train", "test"), valid_only: bool = False,
    progress: bool = True, labels: Mapping[str, int] | None = None,
) -> int:
    """Materialise an ImageFolder tree ``<out>/<split>/<class_id>/<file_name>`` atomically; return the count.

    Bytes are written as stored (never re-encoded), so the tree can be uploaded to Visual Layer and
    its export matched back by file name. ``labels`` (image_id -> label, e.g. the noisy train labels):
    export only these images, each under the class folder of its given label.
    """
    index = raw.index()
    if labels is not None:
        unknown = [i for i in labels if i not in set(index["image_id"])]
        if unknown:
            raise DatasetError(f"{len(unknown)} labelled image(s) are not in {raw.root}, e.g. {unknown[:3]}")
        class_id = dict(zip(raw.classes()["label"], raw.classes()["class_id"]))
        bad = [(i, l) for i, l in labels.items() if l not in class_id]
        if bad:
            raise DatasetError(f"image {bad[0][0]}: label {bad[0][1]} is not a class of {raw.root}")
        index = index[index["image_id"].isin(list(labels))].copy()
        index["class_id"] = [class_id[labels[i]] for i in index["image_id"]]
    meta = dict(zip(index["image_id"], zip(index["split"], index["class_id"], index["file_name"], index["valid"])))
    count = 0
    with atomic_dir(out_dir) as tmp, tqdm(total=len(index), desc="export", unit="img", disable=not progress) as bar:
        for batch in raw.iter_images():
            for iid, data in zip(batch.column("image_id").to_pylist(), batch.column("image").to_pylist()):
                bar.update(1)
                if iid not in meta:
                    continue
                split, class_id, file_name, valid = meta[iid]
                if split not in splits or (valid_only and not valid):
                    continue
                folder = tmp / split / safe_component(str(class_id), what="class id")
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / safe_component(str(file_name), what=f"file name of {iid}")
                if target.exists():
                    raise DatasetError(f"two images export to {target.relative_to(tmp)} (second: {iid})")
                target.write_bytes(data)
                count += 1
    return count
