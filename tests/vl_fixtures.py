"""Writers of small Visual Layer exports in every format ``vlclean.vl_ingest`` reads.

Built from ``../shared/VL_EXPORT_FORMAT.md``; no work happens at import. Each writer takes the
target path (a ``tmp_path`` child) and returns it, so tests build their fixtures per test.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# Thresholds of a real ImageNet export's nested duplicate levels.
DUP_LEVELS = (0.9159, 0.9229, 0.9267, 0.9306, 0.9348, 0.9451)
INFO = {
    "schema_version": "1.1", "dataset": "ImageNet_1k", "description": "fixture", "dataset_url": "",
    "export_time": "2026-02-01T00:00:00", "dataset_creation_time": "2026-01-01T00:00:00",
    "exported_by": "tests",
}  # fmt: skip


def fixed_uuid(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


def issue_item(issue_type: str, confidence: float | None = 0.8, **props: Any) -> dict:
    """One ``metadata_items`` entry of type ``issue``."""
    p: dict[str, Any] = {"issue_type": issue_type}
    if confidence is not None:
        p["confidence"] = confidence
    p.update(props)
    return {"type": "issue", "properties": p}


def platform_item(
    file_name: str,
    *,
    issues: Sequence[tuple[str, float | None] | dict] = (),
    label: str | None = None,
    label_source: str = "User",
    extra_labels: Sequence[tuple[str, str]] = (),
    tags: Sequence[str] = (),
    dup_levels: Sequence[float | tuple[float, str]] = (),
    dup_confidence: float = 0.8,
    objects: Sequence[dict] = (),
    caption: str | None = None,
    media_id: str | None = None,
    file_path: str | None = None,
    dataset: str = "imagenet1k",
    uniqueness: float | None = 0.513,
    cluster_id: str | None = None,
    file_size: Any = "185.09KB",
    fields: Mapping[str, Any] | None = None,
) -> dict:
    """A ``media_items`` entry in the real shape.

    ``issues``: ``(issue_type, confidence)`` pairs or full ``properties`` dicts. ``dup_levels``:
    one ``duplicates`` issue per threshold (or ``(threshold, group_id)``). ``label`` becomes an
    ``image_label`` (``extra_labels`` more of them, ``(name, source)``). ``objects``: ``object_label``
    properties (with nested ``metadata_items``). ``fields``: unknown top-level fields to add.
    """
    meta: list[dict] = []
    if label is not None:
        meta.append({"type": "image_label", "properties": {"category_name": label, "source": label_source,
                                                           "original_id": fixed_uuid(label)}})
    for name, source in extra_labels:
        meta.append({"type": "image_label", "properties": {"category_name": name, "source": source}})
    for tag in tags:
        meta.append({"type": "user_tag", "properties": {"tag_name": tag, "assigned_date": "2026-02-01"}})
    for issue in issues:
        if isinstance(issue, dict):
            meta.append({"type": "issue", "properties": dict(issue)})
        else:
            meta.append(issue_item(issue[0], issue[1]))
    for level in dup_levels:
        thr, gid = level if isinstance(level, tuple) else (level, fixed_uuid(f"group:{file_name}:{level}"))
        meta.append(issue_item("duplicates", dup_confidence, duplicate_group_id=gid, duplicate_threshold=thr))
    for obj in objects:
        meta.append({"type": "object_label", "properties": dict(obj)})
    if caption is not None:
        meta.append({"type": "caption", "properties": {"text": caption, "source": "Model"}})
    item = {
        "media_id": media_id or fixed_uuid(f"media:{file_name}"),
        "media_type": "image",
        "file_name": file_name,
        "file_path": file_path if file_path is not None else f"{dataset}/{file_name}",
        "file_size": file_size,
        "height": 375,
        "width": 500,
        "url": f"https://example.invalid/{file_name}?sig=abc",
        "cluster_id": cluster_id or fixed_uuid(f"cluster:{file_name[:3]}"),
        "uniqueness_score": uniqueness,
        "media_status": "indexed",
        "insertion_time": "2026-02-01T00:00:00",
        "metadata_items": meta,
    }
    item.update(fields or {})
    return item


def platform_document(items: Sequence[dict], *, info: Mapping[str, Any] | None = None) -> dict:
    return {"info": {**INFO, "total_media_items": len(items), **(info or {})}, "media_items": list(items)}


def write_platform_json(path: Path, items: Sequence[dict], *, info: Mapping[str, Any] | None = None,
                        info_last: bool = False) -> Path:
    """``metadata.json``: ``info`` then ``media_items`` (``info_last``: the other order)."""
    doc = platform_document(items, info=info)
    if info_last:
        doc = {"media_items": doc["media_items"], "info": doc["info"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def platform_parquet_table(items: Sequence[dict], *, layout: str = "list") -> pa.Table:
    """Rows of ``metadata.parquet`` from platform items.

    ``layout="list"``: one row per media item with a list column ``issues`` of issue structs;
    ``"flat"``: one row per media item x issue with ``issue_type``/``confidence``/... columns
    (a row with empty ``issue_type`` for items without issues); ``"metadata"``: a
    ``metadata_items`` column holding each item's metadata as a JSON string.
    """
    rows: list[dict] = []
    for it in items:
        meta = it.get("metadata_items", [])
        labels = [m["properties"] for m in meta if m["type"] == "image_label"]
        base = {
            "image_filename": it["file_path"], "media_id": it["media_id"],
            "uniqueness_score": it["uniqueness_score"], "cluster_id": it["cluster_id"],
            "category_name": labels[0]["category_name"] if labels else None, "height": it["height"],
            "width": it["width"], "mystery_column": f"m-{it['file_name']}",
        }
        issues = [m["properties"] for m in meta if m["type"] == "issue"]
        if layout == "list":
            rows.append({**base, "issues": [{"issue_type": p["issue_type"], "confidence": p.get("confidence"),
                                             "duplicate_group_id": p.get("duplicate_group_id"),
                                             "duplicate_threshold": p.get("duplicate_threshold")} for p in issues]})
        elif layout == "metadata":
            rows.append({**base, "metadata_items": json.dumps([m for m in meta if m["type"] != "image_label"])})
        else:
            for p in issues or [{"issue_type": ""}]:
                rows.append({**base, "issue_type": p["issue_type"], "confidence": p.get("confidence"),
                             "duplicate_group_id": p.get("duplicate_group_id"),
                             "duplicate_threshold": p.get("duplicate_threshold")})
    return pa.Table.from_pylist(rows)


def write_platform_parquet(path: Path, items: Sequence[dict], *, layout: str = "list") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(platform_parquet_table(items, layout=layout), path)
    return path


def write_platform_zip(
    path: Path,
    items: Sequence[dict],
    *,
    flavour: str = "json",
    images: Mapping[str, bytes] | None = None,
    folder: str = "",
    layout: str = "list",
    extra_members: Mapping[str, bytes] | None = None,
) -> Path:
    """The platform's ZIP: ``[folder/]metadata.json`` or ``metadata.parquet`` (+ ``images/<name>``)."""
    prefix = f"{folder.strip('/')}/" if folder else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if flavour == "json":
            zf.writestr(prefix + "metadata.json", json.dumps(platform_document(items)))
        elif flavour == "parquet":
            sink = pa.BufferOutputStream()
            pq.write_table(platform_parquet_table(items, layout=layout), sink)
            zf.writestr(prefix + "metadata.parquet", sink.getvalue().to_pybytes())
        elif flavour != "none":
            raise ValueError(f"flavour {flavour!r}: json | parquet | none")
        for name, data in (images or {}).items():
            zf.writestr(f"{prefix}images/{name}", data)
        for name, data in (extra_members or {}).items():
            zf.writestr(name, data)
    return path


def write_vl_datasets_csv(
    path: Path,
    rows: Iterable[tuple[str, str, float | str | None, str | None]],
    *,
    counts: Iterable[tuple[str, int, float, str]] | None = None,
    extra_columns: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """``<dataset>_images_issue_file_list.csv`` (``filename, reason, value, prototype``).

    With ``counts``, also writes the companion ``<dataset>_images_issue_count.csv`` next to it.
    """
    rows = list(rows)
    extra = dict(extra_columns or {})
    header = ["filename", "reason", "value", "prototype", *extra]
    lines = [",".join(header)]
    for i, (fname, reason, value, proto) in enumerate(rows):
        cells = [fname, reason, "" if value is None else str(value), proto or ""]
        cells += [extra[c][i] for c in extra]
        lines.append(",".join(_csv_cell(c) for c in cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if counts is not None:
        count_path = path.with_name(path.name.replace("issue_file_list", "issue_count"))
        out = ["reason,count,pct,split"] + [f"{r},{c},{p},{s}" for r, c, p, s in counts]
        count_path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(ch in text for ch in ',"\n') else text


def write_hub_enriched(
    path: Path,
    rows: Sequence[dict],
    *,
    uri_column: str = "image_uri",
    label_column: str = "image_label",
    issues_column: str = "image_issues",
    with_image: bool = False,
) -> Path:
    """Hub enriched parquet. ``rows``: ``{"uri", "label", "issues": [{issue_type, confidence, ...}], **other}``."""
    issue_type = pa.list_(pa.struct([
        ("issue_type", pa.string()), ("confidence", pa.float64()), ("description", pa.string()),
        ("duplicate_group_id", pa.string()),
    ]))
    data: dict[str, list] = {uri_column: [], label_column: [], issues_column: []}
    others = sorted({k for r in rows for k in r if k not in ("uri", "label", "issues")})
    for k in others:
        data[k] = []
    if with_image:
        data["image"] = []
    for r in rows:
        data[uri_column].append(r["uri"])
        data[label_column].append(r.get("label"))
        data[issues_column].append([{"issue_type": i.get("issue_type"), "confidence": i.get("confidence"),
                                     "description": i.get("description"),
                                     "duplicate_group_id": i.get("duplicate_group_id")} for i in r.get("issues", [])])
        for k in others:
            data[k].append(r.get(k))
        if with_image:
            data["image"].append({"bytes": b"\x89PNG fake", "path": r["uri"].rsplit("/", 1)[-1]})
    arrays = {k: (pa.array(v, type=issue_type) if k == issues_column else pa.array(v)) for k, v in data.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)
    return path


def write_fastdup_dir(
    folder: Path,
    files: Sequence[str],
    *,
    similarity: Sequence[tuple[int, int, float]] = (),
    outliers: Sequence[tuple[int, int, float]] = (),
    stats: Mapping[int, tuple[float, float]] | None = None,
    bad: Sequence[tuple[str, str]] = (),
    components: Mapping[int, int] | None = None,
    old: bool = False,
    paths_in_pairs: bool = False,
) -> Path:
    """A fastdup output folder for ``files`` (index = position).

    ``similarity`` / ``outliers``: ``(from, to, distance)`` by index (``paths_in_pairs``: written as
    file paths, like old versions). ``stats``: ``index -> (blur, mean)`` for ``atrain_stats.csv``.
    ``bad``: ``(filename, error_code)``. ``components``: ``index -> component_id``. ``old``: old
    column names (``fastdup_id``, ``img_filename``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    idc, namec = ("fastdup_id", "img_filename") if old else ("index", "filename")

    def ref(i: int) -> str:
        return files[i] if paths_in_pairs else str(i)

    def write(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        lines = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    write("atrain_features.dat.csv", [idc, namec], [(i, f) for i, f in enumerate(files)])
    if similarity or not outliers:
        write("similarity.csv", ["from", "to", "distance"], [(ref(a), ref(b), d) for a, b, d in similarity])
    if outliers:
        write("outliers.csv", ["from", "to", "distance"], [(ref(a), ref(b), d) for a, b, d in outliers])
    if stats is not None:
        write("atrain_stats.csv", [idc, namec, "width", "height", "unique", "blur", "mean", "min", "max", "stdv",
                                   "file_size"],
              [(i, files[i], 500, 375, 1000, b, m, 0, 255, 40.0, 12345) for i, (b, m) in stats.items()])
    if bad:
        write("atrain_features.bad.csv", [idc, namec, "error_code"],
              [(len(files) + k, f, e) for k, (f, e) in enumerate(bad)])
    if components is not None:
        cid = "__id" if old else "index"
        write("connected_components.csv", [cid, "component_id", "count"],
              [(i, c, sum(1 for v in components.values() if v == c)) for i, c in components.items()])
        write("component_info.csv", ["component_id", "Count"],
              [(c, sum(1 for v in components.values() if v == c)) for c in sorted(set(components.values()))])
    return folder
