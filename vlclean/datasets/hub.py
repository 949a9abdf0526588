"""A Hugging Face Hub image-classification dataset (parquet shards) as a dataset source.

The Hub stores such datasets as parquet shards named ``data/<split>-NNNNN-of-MMMMM-<hash>.parquet``
(or ``<config>/<split>/NNNN.parquet`` on the ``refs/convert/parquet`` branch) with an ``image``
struct column (``bytes``, ``path``) and an integer ``label``; class names sit in the shards' arrow
metadata (``huggingface`` key, ``ClassLabel.names``).

Fetching is one small function (:func:`fetch_hub_file`, via ``huggingface_hub``, which resumes
partial downloads and caches finished ones). Everything else reads local parquet files, so tests
point the source at a local directory of shards in the Hub's layout. Each shard is one conversion
unit: it is streamed in record batches (bounded memory), and a finished shard is never redone.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from vlclean.datasets.imagenet import wnids_for_names
from vlclean.datasets.raw import RawRecord, Unit
from vlclean.errors import DatasetError

SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z_]+?)-(?P<num>\d{5})-of-\d{5}")
EXT_OF_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


@dataclass(frozen=True)
class HubFile:
    """One parquet shard: its path in the repo and the split it belongs to."""

    repo_path: str
    split: str
    number: int


def list_hub_files(
    repo_id: str, *, revision: str | None = None, local_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> list[str]:
    """Repo-relative paths of the dataset's parquet shards (from ``local_dir`` when given; from the
    huggingface_hub cache when ``HF_HUB_OFFLINE`` is set)."""
    if local_dir is not None:
        root = Path(local_dir)
        if not root.is_dir():
            raise DatasetError(f"download.hf.local_dir {root} does not exist")
        paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    else:
        from huggingface_hub import HfApi, constants, snapshot_download

        if constants.HF_HUB_OFFLINE:  # offline: list what the huggingface_hub cache holds
            snap = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, local_files_only=True,
                                          cache_dir=str(cache_dir) if cache_dir else None))
            paths = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*.parquet"))
        else:
            files = HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision)
            paths = sorted(f for f in files if f.endswith(".parquet"))
    if not paths:
        raise DatasetError(f"dataset {repo_id} ({local_dir or 'Hub'}) has no parquet files")
    return paths


def fetch_hub_file(
    repo_id: str, repo_path: str, *, revision: str | None = None, local_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Local path of one shard: downloaded (resumable, cached) from the Hub, or found in ``local_dir``."""
    if local_dir is not None:
        return Path(local_dir) / repo_path
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(repo_id, repo_path, repo_type="dataset", revision=revision,
                        cache_dir=str(cache_dir) if cache_dir else None)
    )


def classify_files(paths: list[str], split_map: Mapping[str, str | None]) -> tuple[list[HubFile], list[str]]:
    """Assign each shard its (mapped) split; return ``(kept, skipped_by_null_mapping)``."""
    kept, skipped = [], []
    for i, p in enumerate(paths):
        pure = PurePosixPath(p)
        m = SHARD_NAME.match(pure.stem)
        hub_split = m.group("split") if m else pure.parent.name
        number = int(m.group("num")) if m else i
        if hub_split not in split_map:
            raise DatasetError(
                f"shard {p}: split '{hub_split}' is not in download.hf.split_map {dict(split_map)}; "
                "map it to train/test, or to null to skip it"
            )
        target = split_map[hub_split]
        if target is None:
            skipped.append(p)
        else:
            kept.append(HubFile(p, target, number))
    return kept, skipped


def class_names_from_parquet(path: Path, label_column: str) -> list[str] | None:
    """ClassLabel names stored by ``datasets`` in the shard's arrow metadata, if any."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw)["info"]["features"]
        return list(features[label_column]["names"])
    except (KeyError, TypeError, ValueError):
        return None


def classes_table(names: list[str]) -> pd.DataFrame:
    """Classes from ClassLabel names; ImageNet-1K names get their WordNet ids as class_id."""
    wnids = wnids_for_names(names)
    ids = wnids if wnids is not None else names
    return pd.DataFrame({"label": range(len(names)), "class_id": ids, "class_name": names})


@dataclass
class HubReader:
    """Turns Hub shards into conversion units, applying class subset and ``max_per_class``."""

    repo_id: str
    files: list[HubFile]
    fetch: Callable[[str], Path]
    image_column: str = "image"
    label_column: str = "label"
    label_map: dict[int, int] | None = None  # class subset: original label -> new label
    max_per_class: int | None = None
    batch_size: int = 512
    progress: bool = True
    _taken: Counter = field(default_factory=Counter)
    _seen_ids: set = field(default_factory=set)

    def units(self) -> list[Unit]:
        return [Unit(name=PurePosixPath(f.repo_path).stem, records=lambda f=f: self._records(f)) for f in self.files]

    def unit_done(self, index: pd.DataFrame) -> None:
        """Account for a finished unit (also one resumed from a previous run)."""
        for (split, label), n in index.groupby(["split", "label"]).size().items():
            self._taken[(split, int(label))] += int(n)
        self._seen_ids.update(index["image_id"])

    def _records(self, f: HubFile) -> Iterator[RawRecord]:
        path = self.fetch(f.repo_path)
        pf = pq.ParquetFile(path)
        cols = pf.schema_arrow.names
        for c in (self.image_column, self.label_column):
            if c not in cols:
                raise DatasetError(f"shard {f.repo_path}: column '{c}' missing; columns are {cols} "
                                   "(set download.hf.image_column / label_column)")
        local: Counter = Counter()
        row = 0
        bar = tqdm(total=pf.metadata.num_rows, desc=PurePosixPath(f.repo_path).stem, unit="img",
                   disable=not self.progress, leave=False)
        for batch in pf.iter_batches(batch_size=self.batch_size, columns=[self.image_column, self.label_column]):
            images = batch.column(0).to_pylist()
            labels = batch.column(1).to_pylist()
            for image, label in zip(images, labels):
                source = f"{f.repo_path}:{row}"
                row += 1
                if label is None or label < 0:
                    raise DatasetError(
                        f"{source}: label {label!r} (unlabelled split?); map split '{f.split}' source to null"
                    )
                if self.label_map is not None:
                    if label not in self.label_map:
                        continue
                    label = self.label_map[label]
                key = (f.split, int(label))
                if self.max_per_class is not None and self._taken[key] + local[key] >= self.max_per_class:
                    continue
                local[key] += 1
                yield self._record(image, int(label), f, row - 1, source)
            bar.update(len(labels))
        bar.close()

    def _record(self, image: object, label: int, f: HubFile, row: int, source: str) -> RawRecord:
        if isinstance(image, dict):
            data, path = image.get("bytes") or b"", image.get("path") or ""
        elif isinstance(image, (bytes, bytearray)):
            data, path = bytes(image), ""
        else:
            raise DatasetError(f"{source}: image column holds {type(image).__name__}, expected bytes or a struct")
        stem = PurePosixPath(path).stem if path else ""
        image_id = stem or f"{f.split}-{f.number:05d}-{row:07d}"
        if image_id in self._seen_ids:
            image_id = f"{image_id}__{f.number:05d}_{row:07d}"
        self._seen_ids.add(image_id)
        file_name = PurePosixPath(path).name if path else f"{image_id}.{_guess_ext(data)}"
        return RawRecord(image_id, f.split, label, file_name, data, source)


def _guess_ext(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"
