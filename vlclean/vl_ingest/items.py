"""Platform media items (dicts shaped like ``metadata.json``'s) -> media and issue rows.

Used by every reader whose rows can be reshaped into platform items (JSON, parquet, Hub parquet,
vl-datasets CSV, fastdup).
"""

from __future__ import annotations

from typing import Any

from vlclean.errors import ExportFormatError
from vlclean.vl_ingest.rows import Builder
from vlclean.vl_ingest.validate import (
    NAN, as_number, as_text, as_unit, check_export_path, dumps_extra, kind_of, parse_file_size, shorten,
)

# -- platform items (JSON, and parquet rows shaped like them) ---------------------------------------
MEDIA_HANDLED = frozenset({
    "media_id", "file_name", "file_path", "uniqueness_score", "cluster_id", "metadata_items", "media_type",
    "file_size", "height", "width", "media_status", "url", "insertion_time",
})  # fmt: skip
_ISSUE_HANDLED = frozenset({"issue_type", "confidence", "duplicate_group_id", "duplicate_threshold",
                            "issues_description", "description"})


class PlatformItems(Builder):
    """Turns platform ``media_items`` (dicts) into media and issue rows.

    Dropped on purpose: ``url`` (an expiring signed link) and ``insertion_time`` (platform bookkeeping);
    ``media_type`` / ``media_status`` only when they say the usual ``image`` / ``indexed``. Width,
    height and the file size in bytes go into ``extra`` (useful to verify a match).
    """

    def add(self, item: Any, where: str) -> None:
        if type(item) is not dict:
            raise ExportFormatError(f"{where}: expected a media item object, got {kind_of(item)} {shorten(item)}")
        name = item.get("file_name")
        if type(name) is not str or not name:
            if name is None or name == "":
                raise ExportFormatError(f"{where}.file_name: required field is missing or empty")
            raise ExportFormatError(f"{where}.file_name: expected a string, got {kind_of(name)} {shorten(name)}")
        name = check_export_path(name, f"{where}.file_name")
        path = item.get("file_path")
        if path is None or path == "":
            path = name
        elif type(path) is not str:
            raise ExportFormatError(f"{where}.file_path: expected a string, got {kind_of(path)} {shorten(path)}")
        else:
            path = check_export_path(path, f"{where}.file_path")
        key = item.get("media_id")
        if type(key) is not str or not key:
            key = path if key is None or key == "" else as_text(key, f"{where}.media_id")
        uniq = item.get("uniqueness_score")
        if type(uniq) is not float or not 0.0 <= uniq <= 1.0:
            uniq = as_unit(uniq, f"{where}.uniqueness_score")
        cluster = item.get("cluster_id")
        if type(cluster) is not str:
            cluster = as_text(cluster, f"{where}.cluster_id")

        extra: dict[str, Any] = {}
        for k in item:
            if k not in MEDIA_HANDLED:
                extra[k] = item[k]
        for k in ("width", "height"):
            if item.get(k) is not None:
                extra[k] = item[k]
        size = item.get("file_size")
        if size is not None:
            nbytes = parse_file_size(size)
            if nbytes is None:
                extra["file_size"] = size
            else:
                extra["file_size_bytes"] = nbytes
        if item.get("media_type") not in (None, "image"):
            extra["media_type"] = item["media_type"]
        if item.get("media_status") not in (None, "indexed"):
            extra["media_status"] = item["media_status"]

        label_name = label_source = tags = ""
        meta = item.get("metadata_items")
        if meta is not None:
            if type(meta) is not list:
                raise ExportFormatError(f"{where}.metadata_items: expected a list, got {kind_of(meta)} {shorten(meta)}")
            label_name, label_source, tags = self._metadata(key, meta, f"{where}.metadata_items", extra)
        self.media.append((key, name, path, label_name, label_source, uniq, cluster, tags, dumps_extra(extra)))

    def _metadata(self, key: str, meta: list, where: str, extra: dict[str, Any]) -> tuple[str, str, str]:
        labels: list[tuple[str, str, dict]] = []
        tags: list[str] = []
        for j, m in enumerate(meta):
            at = f"{where}[{j}]"
            if type(m) is not dict:
                raise ExportFormatError(f"{at}: expected an object, got {kind_of(m)} {shorten(m)}")
            mtype = m.get("type")
            props = m.get("properties")
            if props is None:
                props = {}
            elif type(props) is not dict:
                raise ExportFormatError(f"{at}.properties: expected an object, got {kind_of(props)} {shorten(props)}")
            if mtype == "issue":
                self.add_issue(key, props, f"{at}.properties")
            elif mtype == "image_label":
                labels.append((as_text(props.get("category_name"), f"{at}.properties.category_name"),
                               as_text(props.get("source"), f"{at}.properties.source"), props))
            elif mtype == "user_tag":
                tag = as_text(props.get("tag_name"), f"{at}.properties.tag_name")
                if tag:
                    tags.append(tag)
            elif mtype == "object_label":
                self._object(key, m, props, j, at, extra)
            elif mtype == "caption":
                text = props.get("text", props.get("caption"))
                extra.setdefault("captions", []).append({"text": text, "source": props.get("source")})
            elif mtype == "video_info":
                extra["video_info"] = props
            else:
                self.other_metadata[str(mtype)] += 1
                extra.setdefault("other_metadata_items", []).append(m)
        if not labels:
            return "", "", ";".join(tags)
        chosen = next((lab for lab in labels if lab[1].lower() == "user"), labels[0])
        original = chosen[2].get("original_id")
        if original is not None:
            extra["label_original_id"] = original
        rest = {k: v for k, v in chosen[2].items() if k not in ("category_name", "source", "original_id")}
        if rest:
            extra["label_properties"] = rest
        if len(labels) > 1:
            extra["other_labels"] = [lab[2] for lab in labels if lab is not chosen]
        return chosen[0], chosen[1], ";".join(tags)

    def _object(self, key: str, m: dict, props: dict, j: int, at: str, extra: dict[str, Any]) -> None:
        obj = {k: v for k, v in props.items() if k != "metadata_items"}
        obj["index"] = j
        extra.setdefault("object_labels", []).append(obj)
        nested = props.get("metadata_items", m.get("metadata_items"))
        if nested is None:
            return
        if type(nested) is not list:
            raise ExportFormatError(f"{at}.metadata_items: expected a list, got {kind_of(nested)} {shorten(nested)}")
        note = {"object": {"index": j, "bbox": props.get("bbox"), "category_name": props.get("category_name")}}
        for k, sub in enumerate(nested):
            sat = f"{at}.metadata_items[{k}]"
            if type(sub) is not dict:
                raise ExportFormatError(f"{sat}: expected an object, got {kind_of(sub)} {shorten(sub)}")
            sprops = sub.get("properties") or {}
            if type(sprops) is not dict:
                raise ExportFormatError(f"{sat}.properties: expected an object, got {kind_of(sprops)}")
            if sub.get("type") == "issue":
                self.add_issue(key, sprops, f"{sat}.properties", note)
            else:
                obj.setdefault("metadata_items", []).append(sub)

    def add_issue(self, key: str, props: dict, where: str, note: dict | None = None,
                  related: str = "", raw_value: float = NAN) -> None:
        raw = props.get("issue_type")
        norm = self.issue_type(raw, f"{where}.issue_type")
        if norm is None:
            return
        conf = props.get("confidence")
        if type(conf) is not float or not 0.0 <= conf <= 1.0:
            conf = as_unit(conf, f"{where}.confidence")
        gid = props.get("duplicate_group_id")
        if type(gid) is not str:
            gid = as_text(gid, f"{where}.duplicate_group_id")
        thr = props.get("duplicate_threshold")
        if type(thr) is not float:
            thr = as_number(thr, f"{where}.duplicate_threshold")
        desc = props.get("issues_description", props.get("description"))
        if type(desc) is not str:
            desc = as_text(desc, f"{where}.issues_description")
        extra = {k: v for k, v in props.items() if k not in _ISSUE_HANDLED}
        if note:
            extra.update(note)
        self.issues.append((key, norm, raw, conf, gid, thr, related, raw_value, desc, dumps_extra(extra)))


