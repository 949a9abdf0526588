"""Manual review: a static HTML page for doubtful images, and the reviews CSV people export from it.

The ``apply_tags`` stage decides an action per image from rules; the images it is unsure about are
shown to people in one self-contained HTML page (:func:`render_review_page`, written with
:func:`write_review_page`). Reviewers tag and decide with the keyboard and export their decisions as a
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

Security: everything in ``items``, the taxonomy and the class names is treated as untrusted. It is
HTML-escaped where Python writes it, embedded for the script as JSON with ``<``, ``>``, ``&`` and
U+2028/U+2029 escaped, and the script writes it only through ``textContent`` / ``value`` /
``setAttribute``. A Content-Security-Policy allows no network at all, and inline script and style
only by their SHA-256 hashes, so markup that slipped through could not run anyway.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from vlclean.errors import VLCleanError
from vlclean.storage import atomic_path

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


def write_review_page(path: str | Path, html_text: str) -> None:
    """Write the page atomically (a temp sibling renamed into place), UTF-8."""
    with atomic_path(path) as tmp:
        tmp.write_text(html_text, encoding="utf-8")


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


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _script_json(obj: object) -> str:
    """JSON safe to place inside <script type="application/json"> (cannot close the element)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _render(items: list[_Item], *, tags: list[tuple[str, str]], classes: list[str], title: str,
            reviews_file_name: str) -> str:
    tag_names = [name for name, _ in tags]
    issue_types = sorted({kind for it in items for kind, _ in it.issues})
    extra_tags = sorted({t for it in items for t in it.tags} - set(tag_names))
    splits = sorted({it.split for it in items if it.split})
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
    script, style = _SCRIPT, _STYLE
    csp = ("default-src 'none'; img-src data:; "
           f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
           "base-uri 'none'; form-action 'none'")
    tag_help = " · ".join(f"{n} {_e(name)}" for n, (name, _) in enumerate(tags[:TAG_KEYS], start=1))
    legend = "".join(f"<dt>{_e(name)}{f' <kbd>{n}</kbd>' if n <= TAG_KEYS else ''}</dt><dd>{_e(desc)}</dd>"
                     for n, (name, desc) in enumerate(tags, start=1))

    def options(values: Iterable[str], *, first: str, numbered: bool = False) -> str:
        out = [f'<option value="">{_e(first)}</option>']
        for n, value in enumerate(values, start=1):
            text = f"{n} · {value}" if numbered and n <= TAG_KEYS else value
            out.append(f'<option value="{_e(value)}">{_e(text)}</option>')
        return "".join(out)

    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">\n',
        '<meta name="referrer" content="no-referrer">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{_e(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n",
        '<header>\n<div class="top">',
        f'<h1>{_e(title)}</h1>',
        '<label class="reviewer">Reviewer <input id="reviewer" type="text" autocomplete="name" '
        'placeholder="your name" spellcheck="false"></label>',
        '<span id="counter" class="counter" aria-live="polite"></span>',
        f'<a id="export" class="button" download="{_e(reviews_file_name)}" aria-disabled="true">Export reviews</a>',
        '<span id="export-status" class="status" aria-live="polite"></span>',
        "</div>\n",
        '<div class="filters" role="group" aria-label="Filters">',
        f'<label>Issue <select id="f-issue">{options(issue_types, first="any issue")}</select></label>',
        f'<label>Tag <select id="f-tag">{options(tag_names + extra_tags, first="any tag")}</select></label>',
        f'<label>Split <select id="f-split">{options(splits, first="any split")}</select></label>',
        '<label>Min confidence <input id="f-conf" type="range" min="0" max="1" step="0.05" value="0">'
        '<output id="f-conf-value" for="f-conf">0.00</output></label>',
        '<label>Show <select id="f-status"><option value="">all</option>'
        '<option value="open">not reviewed</option><option value="done">reviewed</option></select></label>',
        "</div>\n",
        '<p id="help" class="help"><b>Keys</b>: <kbd>←</kbd><kbd>→</kbd> or <kbd>j</kbd><kbd>k</kbd> next/previous'
        ' · <kbd>↑</kbd><kbd>↓</kbd> row · <kbd>1</kbd>–<kbd>9</kbd> tag (again or <kbd>0</kbd> clears)'
        ' · <kbd>g</kbd> keep · <kbd>d</kbd> drop · <kbd>r</kbd> relabel (pick label, <kbd>Enter</kbd>)'
        ' · <kbd>v</kbd> review later · <kbd>a</kbd> accept rule · <kbd>n</kbd> note · <kbd>t</kbd> tag list'
        ' · <kbd>Backspace</kbd> clear · <kbd>Esc</kbd> back to cards · <kbd>?</kbd> tag legend'
        f'<br><span class="tagkeys">{tag_help}</span></p>\n',
        f'<details id="legend" class="legend"><summary>Tags</summary><dl>{legend}</dl></details>\n',
        "</header>\n<main id=\"grid\" class=\"grid\">\n",
    ]
    if not items:
        parts.append('<p class="empty">No images were flagged for review.</p>\n')
    group_sizes: dict[str, int] = {}
    for it in items:
        if it.group:
            group_sizes[it.group] = group_sizes.get(it.group, 0) + 1
    open_group = ""
    for it in items:
        grouped = bool(it.group) and group_sizes[it.group] > 1
        if open_group and (not grouped or it.group != open_group):
            parts.append("</div></section>\n")
            open_group = ""
        if grouped and it.group != open_group:
            parts.append(f'<section class="group" data-group="{_e(it.group)}"><h2>Duplicate group '
                         f'<span class="gname">{_e(it.group)}</span> · {group_sizes[it.group]} images</h2>'
                         '<div class="members">')
            open_group = it.group
        parts.append(_render_card(it, single_group=bool(it.group) and not grouped))
    if open_group:
        parts.append("</div></section>\n")
    parts += [
        "</main>\n",
        '<aside id="panel" class="panel" aria-label="Decision for the current image">',
        '<span class="pfile">Current: <b id="p-file">—</b></span>',
        '<span class="actions" role="group" aria-label="Action">',
        *(f'<button type="button" data-action="{a}" class="act-{a}">{a.capitalize()} <kbd>{k}</kbd></button>'
          for a, k in zip(REVIEW_ACTIONS, ("g", "d", "r", "v"))),
        "</span>",
        f'<label>Tag <select id="p-tag">{options(tag_names, first="(no tag)", numbered=True)}</select></label>',
        f'<label>New label <select id="new-label">{options(classes, first="(choose a class)")}</select></label>',
        '<label class="note">Note <input id="note" type="text" spellcheck="true" placeholder="optional"></label>',
        '<button type="button" id="clear">Clear <kbd>⌫</kbd></button>',
        "</aside>\n",
        '<textarea id="reviews-csv" hidden readonly aria-hidden="true"></textarea>\n',
        f'<script type="application/json" id="data">{_script_json(data)}</script>\n',
        f"<script>{script}</script>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _render_card(it: _Item, *, single_group: bool) -> str:
    if it.thumb_uri:
        thumb = f'<div class="thumb"><img src="{_e(it.thumb_uri)}" alt="{_e(it.file_name)}"></div>'
    else:
        thumb = f'<div class="thumb placeholder" role="img" aria-label="{_e(it.thumb_problem)}"><span>' \
                f'{_e(it.thumb_problem)}</span></div>'
    issues = "".join(
        f'<li class="issue" data-type="{_e(kind)}">{_e(kind)}'
        f'{f" <b>{conf:.2f}</b>" if conf is not None else ""}</li>' for kind, conf in it.issues)
    rule_tags = "".join(f'<li class="chip">{_e(t)}</li>' for t in it.tags)
    if single_group:
        rule_tags += f'<li class="chip dup">dup {_e(it.group)}</li>'
    arrow = f' → <span class="nl">{_e(it.new_label)}</span>' if it.new_label else ""
    reasons = f' <span class="reasons">{_e(it.reasons)}</span>' if it.reasons else ""
    return (
        f'<article class="card" tabindex="-1" data-i="{it.index}" aria-label="{_e(it.file_name)}">{thumb}'
        f'<div class="body"><div class="fname" title="{_e(it.file_name)}">{_e(it.file_name)}</div>'
        f'<div class="meta"><span class="split">{_e(it.split)}</span> <span class="label" title="label">'
        f'{_e(it.label)}</span></div>'
        f'<ul class="issues">{issues}</ul>'
        f'<div class="rule">rule: <span class="ract act-{_e(it.action)}">{_e(it.action)}</span>{arrow}{reasons}</div>'
        f'<ul class="chips">{rule_tags}</ul>'
        '<div class="decision"></div></div></article>\n'
    )


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
                    if fields:  # blank lines carry no record
                        records.append((start, fields))
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


# ----------------------------------------------------------------------------- page style/script

_STYLE = """
:root{--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--muted:#5f6b7a;--line:#d9dde3;--focus:#2563eb;
--keep:#15803d;--drop:#b91c1c;--relabel:#1d4ed8;--review:#b45309}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line);padding:8px 16px 4px}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:12px}
h1{font-size:18px;margin:0 12px 0 0;overflow-wrap:anywhere}
.counter{color:var(--muted)}
.button,button{font:inherit;border:1px solid var(--line);background:#fff;border-radius:6px;padding:4px 10px;
cursor:pointer;color:var(--ink);text-decoration:none}
#export{background:var(--focus);color:#fff;border-color:var(--focus);font-weight:600}
#export[aria-disabled=true]{background:#cbd5e1;border-color:#cbd5e1;color:#475569;cursor:not-allowed}
.status{color:var(--muted);font-size:12px}
.filters{display:flex;flex-wrap:wrap;gap:14px;margin:6px 0 2px;align-items:center}
.filters label,.panel label{display:inline-flex;gap:6px;align-items:center;color:var(--muted)}
select,input[type=text]{font:inherit;padding:2px 4px;border:1px solid var(--line);border-radius:4px;max-width:16em}
output{min-width:2.5em;font-variant-numeric:tabular-nums}
.help{margin:4px 0;color:var(--muted);font-size:12px}
kbd{font:11px ui-monospace,monospace;border:1px solid var(--line);border-bottom-width:2px;border-radius:3px;
padding:0 3px;background:#f8fafc;color:var(--ink)}
.legend{font-size:12px;color:var(--muted);margin-bottom:4px}
.legend dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:4px 0}
.legend dt{font-weight:600;color:var(--ink)}.legend dd{margin:0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px;padding:12px 16px 120px;
align-items:start}
.empty{color:var(--muted)}
.group{grid-column:1/-1;background:#e8edf5;border:1px dashed #94a3b8;border-radius:10px;padding:6px 8px 8px}
.group h2{font-size:12px;font-weight:600;color:var(--muted);margin:0 0 6px}
.members{display:flex;gap:12px;overflow-x:auto;align-items:flex-start}
.members .card{flex:0 0 190px}
.card{background:var(--card);border:2px solid transparent;border-radius:10px;box-shadow:0 1px 2px rgba(0,0,0,.12);
overflow:hidden;cursor:pointer;outline:none;position:relative}
.card.current{border-color:#93c5fd}
.card:focus{border-color:var(--focus);box-shadow:0 0 0 3px rgba(37,99,235,.35)}
.card.dim{opacity:.45}
.card[data-decision=keep]{border-left:6px solid var(--keep)}
.card[data-decision=drop]{border-left:6px solid var(--drop)}
.card[data-decision=relabel]{border-left:6px solid var(--relabel)}
.card[data-decision=review]{border-left:6px solid var(--review)}
.thumb{height:140px;display:flex;align-items:center;justify-content:center;background:#e5e7eb}
.thumb img{max-width:100%;max-height:140px;min-width:96px;object-fit:contain;image-rendering:auto}
.placeholder{background:repeating-linear-gradient(45deg,#e5e7eb 0 10px,#f3f4f6 10px 20px);color:var(--muted);
font-size:12px}
.placeholder span{background:#fff;padding:2px 6px;border-radius:4px}
.body{padding:6px 8px 8px}
.fname{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.meta{color:var(--muted);font-size:12px;overflow-wrap:anywhere}
.meta .split{text-transform:uppercase;font-size:10px;letter-spacing:.04em;background:#eef2f7;border-radius:3px;
padding:0 4px}
.meta .label{color:var(--ink)}
ul{list-style:none;margin:4px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px}
.issue{font-size:11px;background:#fee2e2;color:#7f1d1d;border-radius:10px;padding:0 6px}
.chip{font-size:11px;background:#e0e7ff;color:#312e81;border-radius:10px;padding:0 6px}
.chip.dup{background:#e2e8f0;color:#334155}
.rule{font-size:12px;color:var(--muted);margin-top:4px;overflow-wrap:anywhere}
.ract{font-weight:600}
.act-keep{color:var(--keep)}.act-drop{color:var(--drop)}.act-relabel{color:var(--relabel)}
.act-review{color:var(--review)}
.reasons{display:block;font-size:11px}
.decision{font-size:12px;font-weight:600;margin-top:4px;min-height:1em;overflow-wrap:anywhere}
.panel{position:fixed;left:0;right:0;bottom:0;z-index:3;background:#fff;border-top:1px solid var(--line);
padding:8px 16px;display:flex;flex-wrap:wrap;gap:12px;align-items:center;box-shadow:0 -2px 6px rgba(0,0,0,.06)}
.pfile b{display:inline-block;max-width:24em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
vertical-align:bottom}
.actions{display:inline-flex;gap:4px}
.actions button[aria-pressed=true]{color:#fff}
.actions .act-keep[aria-pressed=true]{background:var(--keep)}
.actions .act-drop[aria-pressed=true]{background:var(--drop)}
.actions .act-relabel[aria-pressed=true]{background:var(--relabel)}
.actions .act-review[aria-pressed=true]{background:var(--review)}
.panel select{max-width:12em}.note input{width:14em}
.needs{outline:2px solid var(--relabel)}
"""

_SCRIPT = r"""
(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('data').textContent);
  var ITEMS = DATA.items, TAGS = DATA.tags, ACTIONS = DATA.actions, COLUMNS = DATA.columns;
  var ACTION_KEYS = {g: 'keep', d: 'drop', r: 'relabel', v: 'review'};
  var $ = function (id) { return document.getElementById(id); };
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  var groups = Array.prototype.slice.call(document.querySelectorAll('.group'));
  var reviewer = $('reviewer'), exportLink = $('export'), exportStatus = $('export-status');
  var counter = $('counter'), csvBox = $('reviews-csv');
  var fIssue = $('f-issue'), fTag = $('f-tag'), fSplit = $('f-split'), fConf = $('f-conf'),
      fConfValue = $('f-conf-value'), fStatus = $('f-status');
  var pFile = $('p-file'), pTag = $('p-tag'), newLabel = $('new-label'), note = $('note');
  var actionButtons = Array.prototype.slice.call(document.querySelectorAll('#panel button[data-action]'));
  var decisions = new Map();  // item index -> {tag, action, newLabel, note}
  var current = cards.length ? 0 : -1;
  var restored = '';

  function decision(i) {
    var d = decisions.get(i);
    if (!d) {
      var it = ITEMS[i];
      d = {tag: '', action: '', newLabel: it.action === 'relabel' ? it.newLabel : '', note: ''};
      decisions.set(i, d);
    }
    return d;
  }
  function touched(d) { return !!(d && (d.tag || d.action || d.note)); }
  // The row this image contributes to the reviews CSV, or null when the reviewer has not touched it.
  function rowFor(i) {
    var d = decisions.get(i);
    if (!touched(d)) return null;
    var action = d.action || ITEMS[i].action;
    return {file_name: ITEMS[i].file, tag: d.tag, action: action,
            new_label: action === 'relabel' ? d.newLabel : '', reviewer: reviewer.value.trim(), note: d.note};
  }
  function csvField(value) {
    var s = String(value);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function buildCsv() {
    var lines = [COLUMNS.map(csvField).join(',')];
    for (var i = 0; i < ITEMS.length; i++) {
      var row = rowFor(i);
      if (row) lines.push(COLUMNS.map(function (c) { return csvField(row[c]); }).join(','));
    }
    return lines.join('\r\n') + '\r\n';
  }
  window.vlReviewsCsv = buildCsv;

  // ---------------------------------------------------------------- rendering state
  function renderCard(i) {
    var card = cards[i], row = rowFor(i), box = card.querySelector('.decision');
    if (!row) { card.removeAttribute('data-decision'); box.textContent = ''; card.classList.remove('needs'); return; }
    card.setAttribute('data-decision', row.action);
    var text = 'you: ' + row.action;
    if (row.action === 'relabel') text += ' → ' + (row.new_label || '(choose a label)');
    if (row.tag) text += ' · #' + row.tag;
    if (row.note) text += ' · note: ' + row.note;
    box.textContent = text;
    card.classList.toggle('needs', row.action === 'relabel' && !row.new_label);
  }
  function renderPanel() {
    if (current < 0) return;
    var it = ITEMS[current], d = decisions.get(current), row = rowFor(current);
    pFile.textContent = it.file;
    pFile.setAttribute('title', it.file);
    pTag.value = d ? d.tag : '';
    newLabel.value = row && row.action === 'relabel' ? row.new_label : '';
    if (document.activeElement !== note) note.value = d ? d.note : '';
    actionButtons.forEach(function (b) {
      b.setAttribute('aria-pressed', String(!!(d && d.action === b.getAttribute('data-action'))));
    });
  }
  function refreshExport() {
    var csv = buildCsv(), rows = 0, missing = 0, counts = {keep: 0, drop: 0, relabel: 0, review: 0};
    csvBox.textContent = csv;  // .value would turn CRLF into LF; textContent keeps the exact bytes
    for (var i = 0; i < ITEMS.length; i++) {
      var row = rowFor(i);
      if (!row) continue;
      rows += 1; counts[row.action] += 1;
      if (row.action === 'relabel' && !row.new_label) missing += 1;
    }
    var problems = [];
    if (!reviewer.value.trim()) problems.push('type your name to enable export');
    if (missing) problems.push(missing + ' relabel' + (missing > 1 ? 's need' : ' needs') + ' a new label');
    if (problems.length) {
      exportLink.removeAttribute('href');
      exportLink.setAttribute('aria-disabled', 'true');
      exportStatus.textContent = problems.join('; ');
    } else {
      exportLink.setAttribute('href', 'data:text/csv;charset=utf-8,' + encodeURIComponent(csv));
      exportLink.setAttribute('aria-disabled', 'false');
      exportStatus.textContent = rows + ' row' + (rows === 1 ? '' : 's') + ' ready' + restored;
    }
    return {rows: rows, counts: counts};
  }
  function refreshCounter(stats) {
    var shown = 0;
    cards.forEach(function (c) { if (!c.hidden && !c.classList.contains('dim')) shown += 1; });
    counter.textContent = shown + ' of ' + ITEMS.length + ' shown · ' + stats.rows + ' reviewed (' +
      ACTIONS.map(function (a) { return stats.counts[a] + ' ' + a; }).join(', ') + ')';
  }
  function save() {
    try {
      var out = {reviewer: reviewer.value, decisions: {}};
      decisions.forEach(function (d, i) { if (touched(d)) out.decisions[ITEMS[i].file] = d; });
      window.localStorage.setItem(DATA.storageKey, JSON.stringify(out));
    } catch (e) { /* storage unavailable (private mode, quota): decisions live in the page only */ }
  }
  function changed(i) {
    if (i >= 0) renderCard(i);
    renderPanel();
    if (decisionFilters()) applyFilters(true); else refreshCounter(refreshExport());
    save();
  }

  // ---------------------------------------------------------------- filters
  function passes(i) {
    var it = ITEMS[i], d = decisions.get(i);
    if (fSplit.value && it.split !== fSplit.value) return false;
    if (fTag.value && it.tags.indexOf(fTag.value) < 0 && !(d && d.tag === fTag.value)) return false;
    if (fStatus.value === 'open' && touched(d)) return false;
    if (fStatus.value === 'done' && !touched(d)) return false;
    var issues = it.issues;
    if (fIssue.value) {
      issues = issues.filter(function (x) { return x[0] === fIssue.value; });
      if (!issues.length) return false;
    }
    var min = parseFloat(fConf.value) || 0;
    if (min > 0) {  // an issue without a confidence is never hidden by the slider
      return issues.some(function (x) { return x[1] === null || x[1] >= min - 1e-9; });
    }
    return true;
  }
  // Filters that depend on the reviewer's decisions ("not reviewed", a tag).
  function decisionFilters() { return !!(fStatus.value || fTag.value); }
  // keepCurrent: the current card stays visible even if a decision just made it fail the filters,
  // so it does not vanish under the reviewer's hands; it goes when they move on.
  function applyFilters(keepCurrent) {
    fConfValue.textContent = (parseFloat(fConf.value) || 0).toFixed(2);
    cards.forEach(function (card, i) {
      var ok = passes(i) || (keepCurrent === true && i === current && !card.hidden);
      card.hidden = !ok;
      card.classList.remove('dim');
    });
    // A duplicate group is shown whole when any member passes (the others dimmed), else hidden.
    groups.forEach(function (g) {
      var members = Array.prototype.slice.call(g.querySelectorAll('.card'));
      var any = members.some(function (c) { return !c.hidden; });
      g.hidden = !any;
      members.forEach(function (c) {
        if (any && c.hidden) { c.hidden = false; c.classList.add('dim'); }
      });
    });
    refreshCounter(refreshExport());
    if (current >= 0 && cards[current].hidden) {
      var wasFocused = document.activeElement === cards[current];
      var next = nearestVisible(current);
      if (next >= 0) setCurrent(next, wasFocused);
    }
  }
  [fIssue, fTag, fSplit, fStatus].forEach(function (el) { el.addEventListener('change', applyFilters); });
  fConf.addEventListener('input', applyFilters);

  // ---------------------------------------------------------------- focus and navigation
  function visible() {
    var out = [];
    cards.forEach(function (c, i) { if (!c.hidden) out.push(i); });
    return out;
  }
  function nearestVisible(i) {
    var vis = visible();
    if (!vis.length) return -1;
    for (var k = 0; k < vis.length; k++) if (vis[k] >= i) return vis[k];
    return vis[vis.length - 1];
  }
  function setCurrent(i, focus) {
    if (i < 0 || i >= cards.length) return;
    var moved = i !== current;
    if (current >= 0) { cards[current].classList.remove('current'); cards[current].tabIndex = -1; }
    current = i;
    if (moved && decisionFilters()) applyFilters(true);
    cards[i].classList.add('current');
    cards[i].tabIndex = 0;  // roving tabindex: Tab enters the grid at the current card
    if (focus) { cards[i].focus(); cards[i].scrollIntoView({block: 'nearest', inline: 'nearest'}); }
    renderPanel();
  }
  function focusCurrent() {
    if (current < 0) return;
    if (cards[current].hidden) { var n = nearestVisible(current); if (n < 0) return; current = n; }
    setCurrent(current, true);
  }
  function step(delta) {
    var vis = visible();
    if (!vis.length) return;
    var pos = vis.indexOf(current);
    if (pos < 0 || document.activeElement !== cards[current]) { setCurrent(pos < 0 ? vis[0] : current, true); return; }
    setCurrent(vis[Math.max(0, Math.min(vis.length - 1, pos + delta))], true);
  }
  function stepRow(dir) {
    var vis = visible();
    if (!vis.length) return;
    if (vis.indexOf(current) < 0) { setCurrent(vis[0], true); return; }
    var cur = cards[current].getBoundingClientRect(), cx = cur.left + cur.width / 2;
    var best = -1, bestRow = Infinity, bestDx = Infinity;
    vis.forEach(function (i) {
      if (i === current) return;
      var r = cards[i].getBoundingClientRect();
      var rowDist = dir > 0 ? r.top - cur.top : cur.top - r.top;
      if (rowDist < 4) return;  // same row or the wrong direction
      var dx = Math.abs(r.left + r.width / 2 - cx);
      if (rowDist < bestRow - 4 || (Math.abs(rowDist - bestRow) <= 4 && dx < bestDx)) {
        best = i; bestRow = rowDist; bestDx = dx;
      }
    });
    setCurrent(best >= 0 ? best : current, true);
  }
  cards.forEach(function (card, i) {
    card.addEventListener('focus', function () { if (current !== i) setCurrent(i, false); });
    card.addEventListener('click', function () { setCurrent(i, true); });
  });
  document.querySelectorAll('.thumb img').forEach(function (img) {
    img.addEventListener('error', function () {  // undecodable bytes: show the placeholder instead
      var box = img.parentNode, span = document.createElement('span');
      box.classList.add('placeholder');
      span.textContent = 'unreadable thumbnail';
      box.replaceChild(span, img);
    });
  });

  // ---------------------------------------------------------------- decisions
  function setTag(i, tag) {
    var d = decision(i);
    d.tag = d.tag === tag ? '' : tag;  // pressing the same tag again removes it
    changed(i);
  }
  function setAction(i, action) {
    var d = decision(i), it = ITEMS[i];
    d.action = action;
    if (action === 'relabel') {
      if (!d.newLabel) d.newLabel = it.newLabel;
    } else {
      d.newLabel = '';
    }
    changed(i);
  }
  function acceptRule(i) {
    var d = decision(i), it = ITEMS[i];
    d.action = it.action;
    d.newLabel = it.action === 'relabel' ? it.newLabel : '';
    changed(i);
  }
  function clearDecision(i) {
    decisions.delete(i);
    changed(i);
  }
  function isField(el) {
    return !!el && (el.tagName === 'INPUT' || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA' ||
                    el.isContentEditable);
  }
  document.addEventListener('keydown', function (ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    var t = ev.target, key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (isField(t)) {
      if (key === 'Escape' || (key === 'Enter' && (t === newLabel || t === note || t === pTag))) {
        ev.preventDefault();
        focusCurrent();
      }
      return;
    }
    if (key === '?') { ev.preventDefault(); $('legend').open = !$('legend').open; return; }
    if (current < 0) return;
    var handled = true;
    if (key === 'ArrowRight' || key === 'j') step(1);
    else if (key === 'ArrowLeft' || key === 'k') step(-1);
    else if (key === 'ArrowDown') stepRow(1);
    else if (key === 'ArrowUp') stepRow(-1);
    else if (key === 'Home') { var v = visible(); if (v.length) setCurrent(v[0], true); }
    else if (key === 'End') { var w = visible(); if (w.length) setCurrent(w[w.length - 1], true); }
    else if (key === 'Escape') focusCurrent();
    else if (cards[current].hidden) handled = false;  // never decide for an image the filters hide
    else if (Object.prototype.hasOwnProperty.call(ACTION_KEYS, key)) {
      setAction(current, ACTION_KEYS[key]);
      if (key === 'r') newLabel.focus();
    }
    else if (key === 'a') acceptRule(current);
    else if (key === '0') { var d0 = decisions.get(current); if (d0 && d0.tag) setTag(current, d0.tag); }
    else if (/^[1-9]$/.test(key)) { var n = Number(key) - 1; if (n < TAGS.length) setTag(current, TAGS[n]); }
    else if (key === 'n') note.focus();
    else if (key === 't') pTag.focus();
    else if (key === 'Backspace' || key === 'Delete') clearDecision(current);
    else handled = false;
    if (handled) ev.preventDefault();
  });

  // ---------------------------------------------------------------- panel controls
  actionButtons.forEach(function (b) {
    b.addEventListener('click', function () {
      if (current < 0) return;
      setAction(current, b.getAttribute('data-action'));
      if (b.getAttribute('data-action') === 'relabel') newLabel.focus();
    });
  });
  $('clear').addEventListener('click', function () { if (current >= 0) clearDecision(current); });
  pTag.addEventListener('change', function () {
    if (current < 0) return;
    decision(current).tag = pTag.value;
    changed(current);
  });
  newLabel.addEventListener('change', function () {
    if (current < 0) return;
    var d = decision(current);
    d.newLabel = newLabel.value;
    if (newLabel.value) d.action = 'relabel';  // choosing a class means relabelling
    changed(current);
  });
  note.addEventListener('input', function () {
    if (current < 0) return;
    decision(current).note = note.value;
    changed(current);
  });
  reviewer.addEventListener('input', function () { restored = ''; refreshCounter(refreshExport()); save(); });

  // ---------------------------------------------------------------- restore and start
  (function restore() {
    var saved;
    try { saved = JSON.parse(window.localStorage.getItem(DATA.storageKey) || 'null'); } catch (e) { saved = null; }
    if (!saved || typeof saved !== 'object') return;
    if (typeof saved.reviewer === 'string') reviewer.value = saved.reviewer;
    var byFile = {}, n = 0;
    ITEMS.forEach(function (it, i) { byFile[it.file] = i; });
    var src = saved.decisions && typeof saved.decisions === 'object' ? saved.decisions : {};
    Object.keys(src).forEach(function (file) {
      var d = src[file], i = byFile[file];
      if (i === undefined || !d || typeof d !== 'object') return;
      var str = function (v) { return typeof v === 'string' ? v : ''; };
      var clean = {tag: TAGS.indexOf(d.tag) >= 0 ? d.tag : '', action: ACTIONS.indexOf(d.action) >= 0 ? d.action : '',
                   newLabel: str(d.newLabel), note: str(d.note)};
      if (touched(clean)) { decisions.set(i, clean); n += 1; }
    });
    if (n) restored = ' (' + n + ' restored from this browser)';
  })();
  cards.forEach(function (c, i) { renderCard(i); });
  if (current >= 0) setCurrent(0, false);
  applyFilters();
})();
"""
