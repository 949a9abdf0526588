"""The review page in a real headless Chromium (keyboard tagging, filters, export download) and the reviews CSV.

Browser tests skip only when /usr/bin/chromium or the playwright package is missing (CI installs both;
Playwright's own browser download is never used).
"""

from __future__ import annotations

import html
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, png_bytes, require_browser
from vlclean.errors import VLCleanError
from vlclean.storage import write_text
from vlclean.review import (
    REVIEW_COLUMNS,
    ReviewError,
    read_reviews_csv,
    render_review_page,
    thumbnail_data_uri,
    write_review_site,
)

XSS_LABEL = '<img src=x onerror="window.__xss=1">'
XSS_FILE = '"><script>window.__xss=2</script>.png'
XSS_CLASS = '<img src=x onerror="window.__xss=4">'
TAXONOMY = {
    "blurry": "Out of focus or motion blur",
    "wrong_label": "The label does not match the content",
    "duplicate": "Same picture as another image",
    "<i>odd</i>": "<script>window.__xss=5</script> tag names are untrusted too",
}
CLASSES = ["cat", "dog", "bird", XSS_CLASS]


def _items() -> pd.DataFrame:
    rows = [
        ("a1", "train/cat/cat_001.png", "train", "cat", "mislabel:0.93;blur:0.61", "wrong_label", "relabel",
         "mislabel >= 0.9", "dog", ""),
        ("a2", "train/dog/dog_002.png", "train", "dog", "blur:0.35", "blurry", "review", "blur in [0.3, 0.5)", "", ""),
        ("d1", "train/cat/dup_a.png", "train", "cat", "duplicate:0.99", "duplicate", "keep", "group prototype", "",
         "g1"),
        ("n1", "train/bird/missing.png", "train", "bird", "dark:0.8", "", "review", "no thumbnail", "", ""),
        ("d2", "train/cat/dup_b.png", "train", "cat", "duplicate:0.99", "duplicate", "drop", "duplicate of dup_a",
         "", "g1"),
        ("x1", XSS_FILE, "train", XSS_LABEL, "outlier:0.72", "<i>odd</i>", "review",
         '<img src=x onerror="window.__xss=3">', "", ""),
        ("d3", "test/cat/dup_c.png", "test", "cat", "duplicate:0.55", "duplicate", "drop", "leaks into test", "",
         "g1"),
    ]
    cols = ["image_id", "file_name", "split", "label", "issues", "tags", "action", "reasons", "new_label",
            "duplicate_group"]
    return pd.DataFrame(rows, columns=cols)


@pytest.fixture
def review_page(tmp_path: Path) -> Path:
    """A review page for seven flagged images: a group of three duplicates, one without thumbnail, one XSS."""
    items = _items()
    thumbs = {image_id: png_bytes(seed, size=48) for seed, image_id in enumerate(items["image_id"]) if image_id != "n1"}
    thumbs["n1"] = None
    html_text = render_review_page(items, thumbnails=thumbs, taxonomy=TAXONOMY, class_names=CLASSES,
                                   title="Review <ImageNet> & friends")
    path = tmp_path / "site" / "review.html"
    write_text(path, html_text)
    return path


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, review_page: Path):
    """The page opened from file://, recording console errors, page errors and every request."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors, pg.requests = [], []
    pg.on("console", lambda m: pg.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.goto(review_page.as_uri())
    pg.wait_for_selector("#counter:has-text('shown')")
    yield pg
    context.close()


def _shown(pg) -> list[str]:
    """File names of the cards the filters leave visible and not dimmed, in page order."""
    return pg.eval_on_selector_all(
        ".card",
        "cs => cs.filter(c => !c.hidden && !c.classList.contains('dim')).map(c => c.getAttribute('aria-label'))")


def _set_confidence(pg, value: float) -> None:
    pg.eval_on_selector("#f-conf", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", str(value))


# ------------------------------------------------------------------------------------- browser


def test_page_is_self_contained_and_untrusted_text_stays_text(page, review_page: Path):
    assert page.requests == [review_page.as_uri()]  # thumbnails are data: URIs, nothing else is fetched
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.errors == []
    xss_card = page.locator(".card", has_text="window.__xss=2")
    assert xss_card.locator(".label").text_content() == XSS_LABEL
    assert xss_card.locator(".fname").text_content() == XSS_FILE
    assert page.locator("img[src='x']").count() == 0
    assert page.title() == "Review <ImageNet> & friends"
    assert page.locator("#new-label option", has_text="onerror").text_content() == XSS_CLASS
    # the duplicate group sits together in one row, in the order given, and the missing thumbnail is a placeholder
    group = page.locator(".group[data-group='g1'] .card")
    assert group.evaluate_all("cs => cs.map(c => c.getAttribute('aria-label'))") == [
        "train/cat/dup_a.png", "train/cat/dup_b.png", "test/cat/dup_c.png"]
    tops = group.evaluate_all("cs => cs.map(c => Math.round(c.getBoundingClientRect().top))")
    assert len(set(tops)) == 1
    assert page.locator(".card", has_text="missing.png").locator(".placeholder").text_content() == "no thumbnail"
    assert page.locator(".card img").count() == 6
    assert page.locator("#counter").text_content().startswith("7 of 7 shown · 0 reviewed")


def test_keyboard_tagging_and_export_download(page, tmp_path: Path):
    assert page.get_attribute("#export", "href") is None  # no reviewer yet: export is disabled
    page.keyboard.press("j")  # focuses the first card
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "train/cat/cat_001.png"
    page.keyboard.press("2")  # second tag of the taxonomy: wrong_label
    page.keyboard.press("r")  # relabel; focus goes to the class select, preset to the rule's "dog"
    assert page.evaluate("document.activeElement.id") == "new-label"
    assert page.input_value("#new-label") == "dog"
    page.keyboard.type("bird")  # type-ahead in the select
    page.keyboard.press("Enter")  # back to the card
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "train/cat/cat_001.png"

    page.keyboard.press("ArrowRight")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "train/dog/dog_002.png"
    page.keyboard.press("End")  # last card: the XSS one
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == XSS_FILE
    page.keyboard.press("3")  # duplicate
    page.keyboard.press("3")  # a second press of the same tag removes it
    page.keyboard.press("1")  # blurry
    page.keyboard.press("d")  # drop
    page.keyboard.press("n")
    page.keyboard.type('looks odd, "very"')
    page.keyboard.press("Enter")
    assert page.locator(".card.current .decision").text_content() == 'you: drop · #blurry · note: looks odd, "very"'

    page.fill("#reviewer", "Ada Lovelace")
    assert page.locator("#counter").text_content().endswith("2 reviewed (0 keep, 1 drop, 1 relabel, 0 review)")
    with page.expect_download() as info:
        page.click("#export")
    download = info.value
    assert download.suggested_filename == "reviews.csv"
    saved = tmp_path / "reviews.csv"
    download.save_as(saved)
    expected = (
        "file_name,tag,action,new_label,reviewer,note\r\n"
        "train/cat/cat_001.png,wrong_label,relabel,bird,Ada Lovelace,\r\n"
        '"""><script>window.__xss=2</script>.png",blurry,drop,,Ada Lovelace,"looks odd, ""very"""\r\n'
    )
    assert saved.read_bytes().decode("utf-8") == expected
    assert page.evaluate("window.vlReviewsCsv()") == expected
    assert page.text_content("#reviews-csv") == expected
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.errors == []

    frame = read_reviews_csv(saved, taxonomy=TAXONOMY, class_names=CLASSES, file_names=_items()["file_name"])
    assert list(frame.columns) == list(REVIEW_COLUMNS)
    assert frame.to_dict("records") == [
        {"file_name": "train/cat/cat_001.png", "tag": "wrong_label", "action": "relabel", "new_label": "bird",
         "reviewer": "Ada Lovelace", "note": ""},
        {"file_name": XSS_FILE, "tag": "blurry", "action": "drop", "new_label": "", "reviewer": "Ada Lovelace",
         "note": 'looks odd, "very"'},
    ]

    # Backspace clears a decision; a relabel without a class blocks the export until one is chosen
    page.keyboard.press("Backspace")
    page.keyboard.press("Home")
    page.keyboard.press("j")  # dog_002: the rule suggests no class
    page.keyboard.press("r")
    page.keyboard.press("Escape")
    assert page.get_attribute("#export", "href") is None
    assert "1 relabel needs a new label" in page.locator("#export-status").text_content()
    page.keyboard.press("a")  # accept the rule's decision instead: review
    assert page.evaluate("window.vlReviewsCsv()").splitlines()[1:] == [
        "train/cat/cat_001.png,wrong_label,relabel,bird,Ada Lovelace,",
        "train/dog/dog_002.png,,review,,Ada Lovelace,",
    ]
    assert page.get_attribute("#export", "href").startswith("data:text/csv;charset=utf-8,file_name%2Ctag")


def test_filters_hide_cards_and_navigation_skips_them(page):
    everything = _shown(page)
    assert len(everything) == 7
    _set_confidence(page, 0.7)
    assert page.locator("#f-conf-value").text_content() == "0.70"
    shown = _shown(page)
    assert "train/dog/dog_002.png" not in shown  # blur 0.35
    assert "test/cat/dup_c.png" not in shown  # 0.55: dimmed, its group stays whole
    dup_c = page.locator(".card[aria-label='test/cat/dup_c.png']")
    assert dup_c.evaluate("c => !c.hidden && c.classList.contains('dim')")
    assert page.locator("#counter").text_content().startswith("5 of 7 shown")
    page.keyboard.press("j")
    page.keyboard.press("j")  # skips the hidden dog_002
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "train/cat/dup_a.png"

    page.select_option("#f-issue", "blur")
    assert _shown(page) == []  # mislabel 0.93 does not count for the blur filter; blur 0.61 < 0.7
    _set_confidence(page, 0.5)
    assert _shown(page) == ["train/cat/cat_001.png"]
    page.select_option("#f-issue", "")
    _set_confidence(page, 0)
    page.select_option("#f-split", "test")
    assert _shown(page) == ["test/cat/dup_c.png"]
    page.select_option("#f-split", "")
    page.select_option("#f-tag", "<i>odd</i>")
    assert _shown(page) == [XSS_FILE]
    page.select_option("#f-tag", "")
    page.select_option("#f-status", "open")
    page.keyboard.press("Home")
    page.keyboard.press("g")  # reviewed, but stays until focus moves on
    assert len(_shown(page)) == 7
    page.keyboard.press("j")
    assert "train/cat/cat_001.png" not in _shown(page) and len(_shown(page)) == 6
    assert page.errors == []


# ------------------------------------------------------------------------------------- no browser


def test_rendered_html_escapes_untrusted_text_and_allows_no_network(review_page: Path):
    text = review_page.read_text(encoding="utf-8")
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text).group(1))
    assert csp.startswith("default-src 'none'; img-src data:;") and "unsafe-inline" not in csp
    for raw in (XSS_LABEL, XSS_FILE, XSS_CLASS, "<script>window.__xss=5", "<i>odd</i>"):
        assert raw not in text
    assert text.count("<script") == 2  # the JSON data block and the page's own script
    assert "http://" not in text and "https://" not in text
    assert "\\u003cimg src=x onerror" in text  # the JSON copy of the label is escaped too


def test_render_rejects_bad_items_naming_the_row():
    items = _items()
    with pytest.raises(ReviewError, match=r"lack column\(s\) \['reasons'\]"):
        render_review_page(items.drop(columns="reasons"), thumbnails={}, taxonomy=TAXONOMY, class_names=CLASSES,
                           title="t")
    dup = items.copy()
    dup.loc[3, "file_name"] = "train/cat/cat_001.png"
    with pytest.raises(ReviewError, match=r"row 3: file_name 'train/cat/cat_001.png' also appears in row 0"):
        render_review_page(dup, thumbnails={}, taxonomy=TAXONOMY, class_names=CLASSES, title="t")
    bad = items.copy()
    bad.loc[1, "issues"] = "blur:high"
    with pytest.raises(ReviewError, match=r"row 1 \(file 'train/dog/dog_002.png'\): bad issues 'blur:high'"):
        render_review_page(bad, thumbnails={}, taxonomy=TAXONOMY, class_names=CLASSES, title="t")
    bad = items.copy()
    bad.loc[2, "action"] = "delete"
    with pytest.raises(ReviewError, match=r"unknown action 'delete'"):
        render_review_page(bad, thumbnails={}, taxonomy=TAXONOMY, class_names=CLASSES, title="t")
    with pytest.raises(ReviewError, match=r"new_label 'dog' is not in class_names"):
        render_review_page(items, thumbnails={}, taxonomy=TAXONOMY, class_names=["cat"], title="t")
    with pytest.raises(ReviewError, match="plain file name"):
        render_review_page(items, thumbnails={}, taxonomy=TAXONOMY, class_names=CLASSES, title="t",
                           reviews_file_name="../x.csv")


def test_thumbnails_are_sniffed_downscaled_or_replaced():
    uri, problem = thumbnail_data_uri(png_bytes(1))
    assert uri.startswith("data:image/png;base64,") and problem == ""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="JPEG")
    assert thumbnail_data_uri(buf.getvalue())[0].startswith("data:image/jpeg;base64,")
    noise = np.random.default_rng(0).integers(0, 256, size=(400, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 200_000
    uri, _ = thumbnail_data_uri(buf.getvalue())
    assert uri.startswith("data:image/jpeg;base64,") and len(uri) < 40_000
    uri, problem = thumbnail_data_uri(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>")
    assert uri is None and problem.startswith("unreadable thumbnail")  # SVG is never embedded
    assert thumbnail_data_uri(b"not an image")[1].startswith("unreadable thumbnail")
    assert thumbnail_data_uri(None) == (None, "no thumbnail")


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def test_read_reviews_csv_rejects_bad_files_naming_file_and_row(tmp_path: Path):
    header = "file_name,tag,action,new_label,reviewer,note\r\n"
    good = _write(tmp_path / "good.csv",
                  header + 'a.png,blurry,keep,,Ada,"multi\nline, note"\r\nb.png,,relabel,dog,Ada,\r\n')
    frame = read_reviews_csv(good, taxonomy=TAXONOMY, class_names=CLASSES)
    assert frame["note"].tolist() == ["multi\nline, note", ""]
    assert read_reviews_csv(good, with_source=True)["source"].tolist() == [f"{good}:1", f"{good}:2"]

    bad = _write(tmp_path / "bad.csv", header + "a.png,,keep,,Ada,\r\nb.png,,delete,,Ada,\r\n")
    with pytest.raises(ReviewError,
                       match=r"bad\.csv: 1 invalid review row\(s\):\n  row 2 \(line 3\): unknown action 'delete'"):
        read_reviews_csv(bad)
    missing = _write(tmp_path / "missing.csv", "file_name,tag,action,new_label,note\r\n")
    with pytest.raises(ReviewError, match=r"missing\.csv: header must be exactly .*missing column\(s\) \['reviewer'\]"):
        read_reviews_csv(missing)
    several = _write(tmp_path / "several.csv", header + "a.png,nope,relabel,,,\r\na.png,,keep,cat,Ada,\r\nc.png,x\r\n")
    with pytest.raises(ReviewError) as info:
        read_reviews_csv(several, taxonomy=TAXONOMY)
    message = str(info.value)
    for part in ("row 1 (line 2): action 'relabel' needs a new_label", "row 1 (line 2): unknown tag 'nope'",
                 "row 1 (line 2): reviewer is empty", "row 2 (line 3): file_name 'a.png' was already reviewed in row 1",
                 "row 2 (line 3): new_label 'cat' given but action is 'keep'", "row 3 (line 4): has 2 fields"):
        assert part in message
    assert isinstance(info.value, VLCleanError)
    with pytest.raises(ReviewError, match=r"not in the dataset"):
        read_reviews_csv(good, file_names=["a.png"])
    with pytest.raises(ReviewError, match=r"new_label 'dog' is not a known class"):
        read_reviews_csv(good, class_names=["cat"])
    with pytest.raises(ReviewError, match=r"nothere\.csv: reviews file not found"):
        read_reviews_csv(tmp_path / "nothere.csv")
    empty = read_reviews_csv(_write(tmp_path / "empty.csv", header))
    assert list(empty.columns) == list(REVIEW_COLUMNS) and len(empty) == 0


# ------------------------------------------------------------------------------------- paginated site


def _many_items(n: int, group_every: int = 0) -> pd.DataFrame:
    rows = []
    for i in range(n):
        group = f"g{i // 5}" if group_every and (i // 5) % group_every == 0 else ""
        rows.append((f"id{i}", f"train/c{i % 7}/img_{i:05d}.png", "train", f"c{i % 7}", "blur:0.50", "blurry",
                     "review", "blur", "", group))
    return pd.DataFrame(rows, columns=["image_id", "file_name", "split", "label", "issues", "tags", "action",
                                       "reasons", "new_label", "duplicate_group"])


def test_site_pages_stay_under_their_bounds_keep_groups_whole_and_are_indexed(tmp_path: Path):
    items = _many_items(230, group_every=3)
    thumbs = {i: png_bytes(k, size=64) for k, i in enumerate(items["image_id"])}  # ~12 kB each
    asked: list[int] = []

    def provider(ids: list[str]) -> dict:
        asked.append(len(ids))
        return {i: thumbs[i] for i in ids}

    site = tmp_path / "site"
    pages = write_review_site(site, items, thumbnails=provider, taxonomy=TAXONOMY, class_names=CLASSES, title="T",
                              max_page_bytes=1_000_000, max_page_items=50)
    files = sorted(p.name for p in site.iterdir())
    assert files == ["index.html"] + [f"page-{n:04d}.html" for n in range(1, len(pages) + 1)]
    assert len(pages) > 4 and max(asked) <= 50  # thumbnails are asked for a page (or less) at a time
    seen: list[str] = []
    for page in pages:
        text = (site / page.file).read_text(encoding="utf-8")
        assert page.bytes == len(text.encode("utf-8")) <= 1_000_000 and page.images <= 50
        ids = re.findall(r'aria-label="(train/c\d/img_\d+\.png)"', text)
        assert len(ids) == page.images
        seen += ids
        for group in set(re.findall(r'data-group="(g\d+)"', text)):  # a duplicate group never straddles pages
            assert text.count(f'data-group="{group}"') == 1
            assert re.search(rf'data-group="{group}"><h2>Duplicate group <span class="gname">{group}</span> '
                             r'· 5 images</h2>', text)
        assert f'download="reviews-page-{page.number:04d}.csv"' in text
    assert sorted(seen) == sorted(items["file_name"])  # every image exactly once
    index = (site / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{p.file}"' in index for p in pages) and "230 images on" in index
    assert "<script" not in index and "unsafe-inline" not in index


def test_site_of_nothing_has_one_empty_page(tmp_path: Path):
    pages = write_review_site(tmp_path / "s", _many_items(0), thumbnails=lambda ids: {}, taxonomy=TAXONOMY,
                              class_names=CLASSES, title="T")
    assert [p.images for p in pages] == [0]
    assert "No images were flagged" in (tmp_path / "s" / "page-0001.html").read_text()


def test_bidi_controls_show_as_marks_and_export_round_trips_with_formulas_neutralised(browser, tmp_path: Path):
    """A right-to-left override in a file name is displayed visibly; the exported CSV keeps the real name, and
    a note a spreadsheet would run as a formula is exported with a leading apostrophe that the reader removes."""
    items = _many_items(3)
    rlo_name = "train/c0/evil\u202egnp.exe"
    items.loc[0, "file_name"] = rlo_name
    site = tmp_path / "site"
    write_review_site(site, items, thumbnails=lambda ids: {}, taxonomy=TAXONOMY, class_names=CLASSES, title="T",
                      max_page_items=2)
    context = browser.new_context(accept_downloads=True)
    pg = context.new_page()
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto((site / "index.html").as_uri())
    pg.click("a[href='page-0001.html']")
    pg.wait_for_selector("#counter:has-text('shown')")
    shown = pg.locator(".card .fname").first.text_content()
    assert shown == "train/c0/evil⟨U+202E⟩gnp.exe" and "\u202e" not in shown
    pg.keyboard.press("j")
    pg.keyboard.press("g")
    pg.keyboard.press("n")
    pg.keyboard.type("=HYPERLINK(\"http://x\")")
    pg.keyboard.press("Escape")
    assert pg.locator("#p-file").text_content() == "train/c0/evil⟨U+202E⟩gnp.exe"
    pg.fill("#reviewer", "@reviewer")
    csv_text = pg.evaluate("window.vlReviewsCsv()")
    assert "'=HYPERLINK" in csv_text and "'@reviewer" in csv_text
    pg.click("a[href='page-0002.html']")
    assert pg.url.endswith("page-0002.html")
    assert all(r.startswith("file://") for r in requests)
    context.close()
    path = tmp_path / "r.csv"
    path.write_bytes(csv_text.encode("utf-8"))
    back = read_reviews_csv(path)
    assert back.loc[0, "file_name"] == rlo_name and back.loc[0, "note"] == '=HYPERLINK("http://x")'
    assert back.loc[0, "reviewer"] == "@reviewer"


def test_review_templates_ship_in_the_wheel(tmp_path: Path):
    """The page's template, stylesheet and script are package data: a built wheel holds them."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    build = tmp_path / "src"
    shutil.copytree(root, build, ignore=shutil.ignore_patterns(".venv", "data", ".git", ".dvc", "models", "dvclive",
                                                              "__pycache__", ".hypothesis", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "w"), str(build)], check=True, capture_output=True, timeout=300)
    names = zipfile.ZipFile(next((tmp_path / "w").glob("*.whl"))).namelist()
    for name in ("review_page.html.j2", "review_index.html.j2", "review.css", "review.js"):
        assert f"vlclean/templates/{name}" in names
    assert "vlclean/vl_ingest/registry.py" in names


def test_no_python_file_carries_more_than_50_lines_of_another_language():
    """HTML, CSS and JavaScript live in their own files: no string constant (other than a docstring) in the
    project's Python spans more than 50 lines."""
    import ast

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*root.glob("vlclean/**/*.py"), *root.glob("stages/*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and node.value.count("\n") > 50):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
