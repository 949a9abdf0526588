"""Manual review: static HTML pages for doubtful images, and the reviews CSV people export from them.

The ``apply_tags`` stage decides an action per image from rules; the images it is unsure about are
shown to people in self-contained HTML pages: :func:`write_review_site` writes pages of at most
:data:`MAX_PAGE_ITEMS` images and :data:`MAX_PAGE_BYTES` bytes and an ``index.html`` (one page alone:
:func:`render_review_page`). The HTML, CSS and JavaScript are package files (``vlclean/templates/``)
rendered with Jinja2. Reviewers tag and decide with the keyboard and export their decisions as a
*reviews CSV*, which the stage reads back with :func:`read_reviews_csv`.

Reviews CSV (UTF-8, RFC 4180, CRLF line ends), one row per reviewed image, exactly these columns:

==========  ==========================================================================
file_name   the image's ``file_name`` as given to the page (unique per file)
tag         one tag name of the taxonomy, or empty when the reviewer only chose an action
action      keep | drop | relabel | review (``review``: still undecided)
new_label   a class name when ``action`` is ``relabel``, else empty
reviewer    the name typed in the page (never empty)
note        free text (may hold commas, quotes, newlines)
==========  ==========================================================================

A cell a spreadsheet would run as a formula gets a leading apostrophe (:mod:`vlclean.csvio`'s rule,
applied by the page's script); :func:`read_reviews_csv` takes it off again.

Security: everything in ``items``, the taxonomy and the class names is treated as untrusted. It is
HTML-escaped by the template (autoescape), embedded for the script as JSON with ``<``, ``>``, ``&`` and
U+2028/U+2029 escaped, and the script writes it only through ``textContent`` / ``value`` /
``setAttribute``; bidirectional control characters are shown as visible marks. A
Content-Security-Policy allows no network at all, and inline script and style only by their SHA-256
hashes (computed from the package files), so markup that slipped through could not run anyway.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import importlib.resources
import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2
import pandas as pd

from vlclean.csvio import unescape_formula
from vlclean.errors import VLCleanError
from vlclean.storage import atomic_dir

REVIEW_COLUMNS: tuple[str, ...] = ("file_name", "tag", "action", "new_label", "reviewer", "note")
REVIEW_ACTIONS: tuple[str, ...] = ("keep", "drop", "relabel", "review")
ITEM_COLUMNS: tuple[str, ...] = (
    "image_id", "file_name", "split", "label", "issues", "tags", "action", "reasons", "new_label",
    "duplicate_group",
)
TAG_KEYS = 9  # number keys 1..9 apply the first nine tags of the taxonomy
THUMBNAIL_MAX_BYTES = 200_000  # larger thumbnails are downscaled before embedding
THUMBNAIL_SIZE = 128  # px, longest side after downscaling


class ReviewError(VLCleanError):
    """The review page's inputs or a reviews CSV are malformed (names the file / row and the value)."""


@dataclass(frozen=True)
class _Item:
    index: int  # position in the page (display order)
    row: object  # index label in the caller's frame, for messages
    image_id: str
    file_name: str
    split: str
    label: str
    issues: tuple[tuple[str, float | None], ...]
    tags: tuple[str, ...]
    action: str
    reasons: str
    new_label: str
    group: str
    thumb_uri: str | None = None
    thumb_problem: str = ""


# --------------------------------------------------------------------------------------------- page


def safe_thumbnail(data: bytes | None, *, size: int = THUMBNAIL_SIZE) -> bytes | None:
    """A small PNG of ``data`` decoded with the project's safe decoder (decompression-bomb limit, EXIF
    orientation, odd modes converted), or None when it cannot be decoded. Only such re-encoded
    thumbnails go into a review page: the reviewer's browser never decodes the original bytes."""
    from vlclean.images import ImageDecodeError, load_rgb

    if not data:
        return None
    try:
        img = load_rgb(data, draft_size=(size, size))
    except ImageDecodeError:
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def render_review_page(
    items: pd.DataFrame,
    *,
    thumbnails: Mapping[str, bytes | None],
    taxonomy: Mapping[str, str],
    class_names: Sequence[str],
    title: str,
    reviews_file_name: str = "reviews.csv",
) -> str:
    """Build one self-contained HTML review page (no server, no network, works from ``file://``).

    Parameters
    ----------
    items:
        One row per flagged image with columns ``image_id, file_name, split, label, issues, tags,
        action, reasons, new_label, duplicate_group`` (extra columns are ignored). ``issues`` is
        ``';'``-joined ``type:confidence`` (confidence in 0..1, may be omitted: ``"blur"``); ``tags``
        is ``';'``-joined; ``action`` is the rule's decision, one of keep | drop | relabel | review;
        ``new_label`` the rule's suggested class (or empty); images sharing a non-empty
        ``duplicate_group`` are shown side by side. ``file_name`` and ``image_id`` must be unique.
    thumbnails:
        ``image_id -> encoded image bytes`` (PNG, JPEG, GIF, WebP, BMP, AVIF or anything Pillow reads)
        or ``None``, keyed by the image id as a string; missing ids, ``None`` and unreadable bytes get a
        placeholder saying why. Thumbnails over
        :data:`THUMBNAIL_MAX_BYTES` are downscaled to :data:`THUMBNAIL_SIZE` px.
    taxonomy:
        ``tag name -> description``, in key order; number keys 1..9 apply the first nine tags.
    class_names:
        The classes a reviewer may relabel to.
    title:
        Page title.
    reviews_file_name:
        File name the export offers (a plain name, no folders).

    Returns the HTML document as a string. Raises :class:`ReviewError` naming the bad row/value.
    """
    tags = _validate_taxonomy(taxonomy)
    classes = _validate_class_names(class_names)
    if not isinstance(title, str):
        raise ReviewError(f"title must be a string, got {type(title).__name__}")
    _validate_file_name_option(reviews_file_name)
    if not isinstance(thumbnails, Mapping):
        raise ReviewError(f"thumbnails must map image_id -> bytes or None, got {type(thumbnails).__name__}")
    parsed = _validate_items(items, set(classes))
    ordered = _display_order(parsed)
    with_thumbs = [_with_thumbnail(it, thumbnails) for it in ordered]
    return _render(with_thumbs, tags=tags, classes=classes, title=title, reviews_file_name=reviews_file_name)


def thumbnail_data_uri(data: bytes | None) -> tuple[str | None, str]:
    """``(data URI, "")`` for encoded image bytes, or ``(None, reason)`` when there is nothing to show.

    The MIME type is sniffed from the bytes; files over :data:`THUMBNAIL_MAX_BYTES` or in a format
    browsers may not show are re-encoded with Pillow (downscaled to :data:`THUMBNAIL_SIZE` px).
    """
    if data is None:
        return None, "no thumbnail"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ReviewError(f"a thumbnail must be bytes or None, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        return None, "empty thumbnail"
    mime = _sniff_image_mime(data)
    if mime is not None and len(data) <= THUMBNAIL_MAX_BYTES:
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", ""
    try:
        mime, data = _downscale(data)
    except ReviewError as err:
        return None, str(err)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", ""


def _sniff_image_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM" and len(data) > 26:
        return "image/bmp"
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "image/avif"
    return None  # SVG and unknown formats are never embedded as they are


def _downscale(data: bytes) -> tuple[str, bytes]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (THUMBNAIL_SIZE * 2, THUMBNAIL_SIZE * 2))  # fast JPEG decode at reduced size
            img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            img = img.convert("RGBA" if has_alpha else "RGB")
            buf = io.BytesIO()
            if has_alpha:
                img.save(buf, format="PNG", optimize=True)
                return "image/png", buf.getvalue()
            img.save(buf, format="JPEG", quality=85)
            return "image/jpeg", buf.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ReviewError(f"unreadable thumbnail ({type(err).__name__}: {err})") from err


# ------------------------------------------------------------------------------------- validation


def _text(value: object) -> str:
    """A cell as text: missing values (None, NaN, pd.NA) become ""."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _validate_taxonomy(taxonomy: Mapping[str, str]) -> list[tuple[str, str]]:
    if not isinstance(taxonomy, Mapping):
        raise ReviewError(f"taxonomy must map tag name -> description, got {type(taxonomy).__name__}")
    tags = []
    for name, description in taxonomy.items():
        if not isinstance(name, str) or not name.strip():
            raise ReviewError(f"taxonomy: tag names must be non-empty strings, got {name!r}")
        if any(ch in name for ch in ";\r\n"):
            raise ReviewError(f"taxonomy: tag name {name!r} holds ';' or a line break")
        tags.append((name, _text(description)))
    return tags


def _validate_class_names(class_names: Sequence[str]) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Iterable):
        raise ReviewError(f"class_names must be a sequence of names, got {type(class_names).__name__}")
    names = list(class_names)
    seen: set[str] = set()
    for pos, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ReviewError(f"class_names[{pos}] must be a non-empty string, got {name!r}")
        if name in seen:
            raise ReviewError(f"class_names: {name!r} appears more than once")
        seen.add(name)
    return names


def _validate_file_name_option(name: str) -> None:
    if (not isinstance(name, str) or not name or name in (".", "..")
            or any(ch in name for ch in "/\\") or any(ord(ch) < 32 for ch in name)):
        raise ReviewError(f"reviews_file_name must be a plain file name, got {name!r}")


def parse_issues(text: str) -> tuple[tuple[str, float | None], ...]:
    """``"mislabel:0.93;blur"`` -> ``(("mislabel", 0.93), ("blur", None))``; raises ValueError on bad input."""
    out = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        kind, sep, conf_text = part.rpartition(":") if ":" in part else (part, "", "")
        kind = kind.strip()
        if not kind:
            raise ValueError(f"issue {part!r} has no type")
        conf = None
        if sep and conf_text.strip():
            conf = float(conf_text)
            if not 0.0 <= conf <= 1.0:
                raise ValueError(f"confidence {conf_text!r} of issue {kind!r} is outside 0..1")
        out.append((kind, conf))
    return tuple(out)


def _validate_items(items: pd.DataFrame, classes: set[str]) -> list[_Item]:
    if not isinstance(items, pd.DataFrame):
        raise ReviewError(f"items must be a pandas DataFrame, got {type(items).__name__}")
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ReviewError(f"review items lack column(s) {missing}; have {list(items.columns)}")
    parsed: list[_Item] = []
    ids: dict[str, object] = {}
    files: dict[str, object] = {}
    for pos, (row_label, row) in enumerate(items[list(ITEM_COLUMNS)].iterrows()):
        where = f"review items row {row_label!r}"
        image_id, file_name = _text(row["image_id"]), _text(row["file_name"])
        if not image_id:
            raise ReviewError(f"{where}: image_id is empty")
        if not file_name:
            raise ReviewError(f"{where} (image_id {image_id!r}): file_name is empty")
        if image_id in ids:
            raise ReviewError(f"{where}: image_id {image_id!r} also appears in row {ids[image_id]!r}")
        if file_name in files:
            raise ReviewError(f"{where}: file_name {file_name!r} also appears in row {files[file_name]!r} "
                              "(the reviews CSV is keyed by file_name)")
        ids[image_id], files[file_name] = row_label, row_label
        action = _text(row["action"])
        if action not in REVIEW_ACTIONS:
            raise ReviewError(f"{where} (file {file_name!r}): unknown action {action!r}; "
                              f"allowed: {', '.join(REVIEW_ACTIONS)}")
        new_label = _text(row["new_label"])
        if new_label and new_label not in classes:
            raise ReviewError(f"{where} (file {file_name!r}): new_label {new_label!r} is not in class_names")
        try:
            issues = parse_issues(_text(row["issues"]))
        except ValueError as err:
            raise ReviewError(f"{where} (file {file_name!r}): bad issues {_text(row['issues'])!r}: {err}") from err
        tags = tuple(t.strip() for t in _text(row["tags"]).split(";") if t.strip())
        parsed.append(_Item(
            index=pos, row=row_label, image_id=image_id, file_name=file_name, split=_text(row["split"]),
            label=_text(row["label"]), issues=issues, tags=tags, action=action, reasons=_text(row["reasons"]),
            new_label=new_label, group=_text(row["duplicate_group"]),
        ))
    return parsed


def _display_order(items: list[_Item]) -> list[_Item]:
    """Keep the caller's order, but pull every duplicate group together at its first member."""
    members: dict[str, list[_Item]] = {}
    for it in items:
        if it.group:
            members.setdefault(it.group, []).append(it)
    out: list[_Item] = []
    done: set[str] = set()
    for it in items:
        if not it.group:
            out.append(it)
        elif it.group not in done:
            done.add(it.group)
            out.extend(members[it.group])
    return [replace(it, index=i) for i, it in enumerate(out)]


def _with_thumbnail(item: _Item, thumbnails: Mapping[str, bytes | None]) -> _Item:
    try:
        uri, problem = thumbnail_data_uri(thumbnails.get(item.image_id))
    except ReviewError as err:
        raise ReviewError(f"thumbnail of image_id {item.image_id!r}: {err}") from err
    return replace(item, thumb_uri=uri, thumb_problem=problem)


# ---------------------------------------------------------------------------------------- render
# The page's HTML, CSS and JavaScript are package files (vlclean/templates/), rendered with Jinja2 and
# autoescaping; the CSS and JS are inlined (the page stays one self-contained file) and allowed by hash.

_TEMPLATES = "templates"
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def show_bidi(value: object) -> str:
    """``value`` as text with bidirectional control characters made visible (``U+202E`` -> ``⟨U+202E⟩``),
    so a right-to-left override cannot display a name reversed on the page."""
    return _BIDI.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", str(value))


def _resource(name: str) -> str:
    return (importlib.resources.files("vlclean") / _TEMPLATES / name).read_text(encoding="utf-8")


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FunctionLoader(_resource), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["visible"] = show_bidi
    return env


@functools.cache
def _assets() -> tuple[str, str]:
    """The page's stylesheet and script, checked to be safe to inline (they cannot close their element)."""
    style, script = _resource("review.css"), _resource("review.js")
    if "</style" in style.lower() or "</script" in script.lower():
        raise ReviewError("vlclean/templates: review.css / review.js must not contain a closing </style> / </script>")
    return style, script


def _script_json(obj: object) -> str:
    """JSON safe to place inside <script type="application/json"> (cannot close the element)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _csp(style: str, script: str | None) -> str:
    scripts = f"script-src {_csp_hash(script)}; " if script is not None else ""
    return (f"default-src 'none'; img-src data:; style-src {_csp_hash(style)}; {scripts}"
            "base-uri 'none'; form-action 'none'")


def _blocks(items: list[_Item], group_sizes: Mapping[str, int]) -> list[dict]:
    """Consecutive members of a duplicate group form one block (shown side by side); other items one each."""
    blocks: list[dict] = []
    for it in items:
        grouped = bool(it.group) and group_sizes[it.group] > 1
        if grouped and blocks and blocks[-1]["group"] == it.group:
            blocks[-1]["members"].append(it)
        else:
            blocks.append({"group": it.group if grouped else "", "size": group_sizes.get(it.group, 1),
                           "single": bool(it.group) and not grouped, "members": [it]})
    return blocks


def _render(items: list[_Item], *, tags: list[tuple[str, str]], classes: list[str], title: str,
            reviews_file_name: str, group_sizes: Mapping[str, int] | None = None, nav: dict | None = None) -> str:
    tag_names = [name for name, _ in tags]
    if group_sizes is None:
        group_sizes = Counter(it.group for it in items if it.group)
    data = {
        "fileName": reviews_file_name,
        "columns": list(REVIEW_COLUMNS),
        "actions": list(REVIEW_ACTIONS),
        "tags": tag_names,
        "storageKey": "vlclean-review:" + hashlib.sha256(
            json.dumps([title, [it.file_name for it in items]]).encode("utf-8")).hexdigest()[:24],
        "items": [{
            "id": it.image_id, "file": it.file_name, "split": it.split, "label": it.label,
            "issues": [[kind, conf] for kind, conf in it.issues], "tags": list(it.tags),
            "action": it.action, "newLabel": it.new_label, "group": it.group,
        } for it in items],
    }
    style, script = _assets()
    return _environment().get_template("review_page.html.j2").render(
        csp=_csp(style, script), style=style, script=script, data_json=_script_json(data), title=title,
        reviews_file_name=reviews_file_name, nav=nav, tags=tags, tag_keys=TAG_KEYS, tag_names=tag_names,
        issue_types=sorted({kind for it in items for kind, _ in it.issues}),
        filter_tags=tag_names + sorted({t for it in items for t in it.tags} - set(tag_names)),
        splits=sorted({it.split for it in items if it.split}), classes=classes,
        blocks=_blocks(items, group_sizes), action_keys=list(zip(REVIEW_ACTIONS, ("g", "d", "r", "v"))),
    )


# ------------------------------------------------------------------------------ pages and index
MAX_PAGE_BYTES = 16 * 2**20  # a page is cut before it would pass this size (the bound is 20 MB)
MAX_PAGE_ITEMS = 1_000  # and after this many images (a page stays quick to scroll and tag)
PAGE_FILE = "page-{:04d}.html"
INDEX_FILE = "index.html"


@dataclass(frozen=True)
class ReviewPage:
    """One written page of a review site (what the index lists)."""

    number: int
    file: str
    images: int
    bytes: int


class ThumbnailSpool:
    """Thumbnails spilled to one temporary file (offset and length per image id kept in memory), so a review
    site for any number of images holds only one page's thumbnails in memory."""

    def __init__(self, folder: str | Path) -> None:
        self._path = Path(folder) / "thumbnails.bin"
        self._fh = self._path.open("w+b")
        self._where: dict[str, tuple[int, int]] = {}

    def add(self, image_id: str, data: bytes | None) -> None:
        if data is None:
            return
        self._fh.seek(0, 2)
        self._where[image_id] = (self._fh.tell(), len(data))
        self._fh.write(data)

    def get(self, image_ids: Iterable[str]) -> dict[str, bytes]:
        out = {}
        for image_id in image_ids:
            if image_id in self._where:
                offset, size = self._where[image_id]
                self._fh.seek(offset)
                out[image_id] = self._fh.read(size)
        return out

    def close(self) -> None:
        self._fh.close()
        self._path.unlink(missing_ok=True)


def write_review_site(
    folder: str | Path,
    items: pd.DataFrame,
    *,
    thumbnails: Callable[[list[str]], Mapping[str, bytes | None]],
    taxonomy: Mapping[str, str],
    class_names: Sequence[str],
    title: str,
    reviews_file_prefix: str = "reviews",
    max_page_bytes: int = MAX_PAGE_BYTES,
    max_page_items: int = MAX_PAGE_ITEMS,
) -> list[ReviewPage]:
    """Write the review as pages ``page-0001.html``, ... of at most ``max_page_items`` images and
    ``max_page_bytes`` bytes each, and ``index.html`` listing them, into ``folder`` (replaced atomically).

    ``items``, ``taxonomy`` and ``class_names`` are as for :func:`render_review_page`; ``thumbnails`` is
    called with the image ids of one page at a time and returns their encoded bytes (or None), so memory
    holds one page. A duplicate group stays on one page unless it alone is larger than a page. Each page
    exports its own reviews CSV (``<reviews_file_prefix>-page-0001.csv``, ...). Returns the pages written.
    """
    tags = _validate_taxonomy(taxonomy)
    classes = _validate_class_names(class_names)
    if not isinstance(title, str):
        raise ReviewError(f"title must be a string, got {type(title).__name__}")
    _validate_file_name_option(f"{reviews_file_prefix}-page-0001.csv")
    if max_page_items < 1 or max_page_bytes < 1_000_000:
        raise ReviewError(f"pages need max_page_items >= 1 and max_page_bytes >= 1 MB, got {max_page_items}, "
                          f"{max_page_bytes}")
    ordered = _display_order(_validate_items(items, set(classes)))
    group_sizes = Counter(it.group for it in ordered if it.group)
    pages: list[ReviewPage] = []
    summaries: list[dict] = []
    with atomic_dir(folder) as tmp:
        pending: tuple[list[_Item], int] | None = None  # a page is written once we know whether one follows

        def flush(last: bool) -> None:
            page_items, number = pending
            nav = {"index": INDEX_FILE, "number": number, "count": number if last else "…",
                   "prev": PAGE_FILE.format(number - 1) if number > 1 else "",
                   "next": "" if last else PAGE_FILE.format(number + 1)}
            text = _render(page_items, tags=tags, classes=classes, title=f"{title} · page {number}",
                           reviews_file_name=f"{reviews_file_prefix}-page-{number:04d}.csv",
                           group_sizes=group_sizes, nav=nav)
            data = text.encode("utf-8")
            (tmp / PAGE_FILE.format(number)).write_bytes(data)
            pages.append(ReviewPage(number, PAGE_FILE.format(number), len(page_items), len(data)))
            summaries.append(_page_summary(pages[-1], page_items))

        for page_items in _paginate(ordered, thumbnails, max_page_bytes, max_page_items):
            if pending is not None:
                flush(last=False)
            pending = (page_items, len(pages) + 1)
        if pending is None:
            pending = ([], 1)
        flush(last=True)
        style, _ = _assets()
        index = _environment().get_template("review_index.html.j2").render(
            csp=_csp(style, None), style=style, title=title, total=len(ordered), pages=summaries)
        (tmp / INDEX_FILE).write_text(index, encoding="utf-8")
    return pages


def _paginate(ordered: list[_Item], thumbnails: Callable[[list[str]], Mapping[str, bytes | None]],
              max_bytes: int, max_items: int) -> Iterator[list[_Item]]:
    """Pages of items with their thumbnails, cut by size (estimated generously) and count; groups kept whole."""
    units: list[list[_Item]] = []
    for it in ordered:
        if units and it.group and units[-1][0].group == it.group:
            units[-1].append(it)
        else:
            units.append([it])
    page: list[_Item] = []
    size = _PAGE_BASE_BYTES
    for unit in units:
        for start in range(0, len(unit), max_items):  # only a group larger than a page is split
            part = unit[start:start + max_items]
            thumbs = thumbnails([it.image_id for it in part])
            part = [_with_thumbnail(it, thumbs) for it in part]
            part_size = sum(_item_bytes(it) for it in part)
            if page and (len(page) + len(part) > max_items or size + part_size > max_bytes):
                yield page
                page, size = [], _PAGE_BASE_BYTES
            for it in part:  # a unit larger than a page's bytes is cut by size too
                if page and size + _item_bytes(it) > max_bytes:
                    yield page
                    page, size = [], _PAGE_BASE_BYTES
                page.append(it)
                size += _item_bytes(it)
    if page:
        yield page


_PAGE_BASE_BYTES = 64_000  # the page without items: header, style, script


def _item_bytes(it: _Item) -> int:
    """An upper bound on an item's share of a page: its thumbnail once, its texts escaped twice (HTML and
    JSON, up to 6 bytes a character in the worst case), the fixed markup."""
    texts = (it.image_id, it.file_name, it.split, it.label, it.reasons, it.new_label, it.group, *it.tags,
             *(kind for kind, _ in it.issues))
    return len(it.thumb_uri or "") + 2_000 + 6 * 4 * sum(len(t) for t in texts)


def _page_summary(page: ReviewPage, items: list[_Item]) -> dict:
    issues = Counter(kind for it in items for kind, _ in it.issues)
    return {
        "number": page.number, "href": page.file, "images": page.images, "size": f"{page.bytes / 2**20:.1f} MB",
        "issues": sorted(issues.items()), "actions": sorted(Counter(it.action for it in items).items()),
        "splits": sorted(Counter(it.split for it in items if it.split).items()),
        "first": items[0].file_name if items else "", "last": items[-1].file_name if items else "",
    }


# ----------------------------------------------------------------------------------- reviews CSV


def read_reviews_csv(
    path: str | Path,
    *,
    taxonomy: Iterable[str] | None = None,
    class_names: Iterable[str] | None = None,
    file_names: Iterable[str] | None = None,
    with_source: bool = False,
) -> pd.DataFrame:
    """Read and validate a reviews CSV exported by the review page.

    Checks the header is exactly :data:`REVIEW_COLUMNS` (in order), and per row: a non-empty,
    unique ``file_name`` (in ``file_names`` when given); ``action`` in :data:`REVIEW_ACTIONS`;
    ``new_label`` non-empty exactly when ``action`` is ``relabel`` (and in ``class_names`` when
    given); ``tag`` empty or in ``taxonomy`` when given (or a tag name without ``;``); a non-empty
    ``reviewer``. Every problem found is reported in one :class:`ReviewError` naming the file, the
    row (1 = first row after the header) and its line.

    Returns a frame with exactly the review columns, all strings ("" for empty cells); with
    ``with_source`` a last column ``source`` = ``"<path>:<row>"`` says where each review came from.
    """
    path = Path(path)
    tags = None if taxonomy is None else set(taxonomy)
    classes = None if class_names is None else set(class_names)
    known_files = None if file_names is None else set(file_names)
    records: list[tuple[int, list[str]]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            start = 1
            try:
                for fields in reader:
                    if fields:  # blank lines carry no record; the page escaped formula-like cells
                        records.append((start, [unescape_formula(f) for f in fields]))
                    start = reader.line_num + 1
            except csv.Error as err:
                raise ReviewError(f"{path}, line {start}: malformed CSV ({err})") from err
    except FileNotFoundError as err:
        raise ReviewError(f"{path}: reviews file not found") from err
    except UnicodeDecodeError as err:
        raise ReviewError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise ReviewError(f"{path}: cannot read reviews file ({err})") from err
    if not records:
        raise ReviewError(f"{path}: empty file; expected the header {','.join(REVIEW_COLUMNS)}")
    header = records[0][1]
    if header != list(REVIEW_COLUMNS):
        missing = [c for c in REVIEW_COLUMNS if c not in header]
        extra = [c for c in header if c not in REVIEW_COLUMNS]
        detail = []
        if missing:
            detail.append(f"missing column(s) {missing}")
        if extra:
            detail.append(f"unexpected column(s) {extra}")
        if not detail:
            detail.append(f"columns out of order or repeated: {header}")
        raise ReviewError(f"{path}: header must be exactly {','.join(REVIEW_COLUMNS)}; " + "; ".join(detail))
    problems: list[str] = []
    rows: list[list[str]] = []
    seen: dict[str, int] = {}
    for n, (line, fields) in enumerate(records[1:], start=1):
        where = f"row {n} (line {line})"
        if len(fields) != len(REVIEW_COLUMNS):
            problems.append(f"{where}: has {len(fields)} fields, expected {len(REVIEW_COLUMNS)}")
            continue
        rec = dict(zip(REVIEW_COLUMNS, fields))
        file_name, tag, action, new_label = rec["file_name"], rec["tag"], rec["action"], rec["new_label"]
        if not file_name:
            problems.append(f"{where}: file_name is empty")
        elif file_name in seen:
            problems.append(f"{where}: file_name {file_name!r} was already reviewed in row {seen[file_name]}")
        else:
            seen[file_name] = n
            if known_files is not None and file_name not in known_files:
                problems.append(f"{where}: file_name {file_name!r} is not in the dataset")
        if action not in REVIEW_ACTIONS:
            problems.append(f"{where}: unknown action {action!r} (allowed: {', '.join(REVIEW_ACTIONS)})")
        if action == "relabel" and not new_label:
            problems.append(f"{where}: action 'relabel' needs a new_label")
        elif action in REVIEW_ACTIONS and action != "relabel" and new_label:
            problems.append(f"{where}: new_label {new_label!r} given but action is {action!r}, not 'relabel'")
        if new_label and classes is not None and new_label not in classes:
            problems.append(f"{where}: new_label {new_label!r} is not a known class")
        if tag and (";" in tag or (tags is not None and tag not in tags)):
            problems.append(f"{where}: unknown tag {tag!r}" + (f" (taxonomy: {sorted(tags)})" if tags else ""))
        if not rec["reviewer"].strip():
            problems.append(f"{where}: reviewer is empty")
        rows.append(fields + [f"{path}:{n}"])
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ReviewError(f"{path}: {len(problems)} invalid review row(s):\n  " + "\n  ".join(shown) + more)
    frame = pd.DataFrame(rows, columns=[*REVIEW_COLUMNS, "source"], dtype="str")
    return frame if with_source else frame.drop(columns="source")
