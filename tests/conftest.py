"""Shared fixtures: real data built per test (or per session when expensive) in temporary folders."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may reach the Hub in tests


def write_params(path: Path, overrides: dict | None = None) -> Path:
    """Copy the repo's params.yaml to ``path`` with nested ``overrides`` applied."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(params, overrides or {})
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def png_bytes(seed: int, size: int = 24, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def builtin_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in dataset downloaded once per session (read-only for tests)."""
    from stages import download

    root = tmp_path_factory.mktemp("builtin")
    params = write_params(root / "params.yaml")
    rc = download.main(["--params", str(params), "--out", str(root / "raw"), "--metrics", str(root / "m.json"),
                        "--plots", str(root / "plots"), "--work_dir", str(root / "work")])
    assert rc == 0
    return root


@pytest.fixture(scope="session")
def builtin_analyzed(builtin_raw: Path) -> Path:
    """The built-in dataset after the analyze stage (features, embeddings, VL-format export)."""
    from stages import analyze

    root = builtin_raw
    params = write_params(root / "params.yaml")
    rc = analyze.main(["--params", str(params), "--raw", str(root / "raw"), "--features", str(root / "features"),
                       "--export", str(root / "vl" / "digits_vl_export.json"), "--metrics", str(root / "analyze.json"),
                       "--plots", str(root / "plots_analyze"), "--work_dir", str(root / "work_analyze")])
    assert rc == 0
    return root


@pytest.fixture(scope="session")
def builtin_leaks(builtin_analyzed: Path) -> Path:
    root = builtin_analyzed
    from stages import detect_leaks

    rc = detect_leaks.main(["--params", str(root / "params.yaml"), "--raw", str(root / "raw"),
                            "--features", str(root / "features"), "--output", str(root / "leaks.csv"),
                            "--by_test", str(root / "by_test.csv"), "--metrics", str(root / "leaks.json"),
                            "--plots", str(root / "plots_leaks")])
    assert rc == 0
    return root


@pytest.fixture(scope="session")
def builtin_tagged(builtin_analyzed: Path) -> Path:
    """The built-in dataset after ingest_vl and apply_tags (no reviews): ``ingested/``, ``tags/``."""
    from stages import apply_tags, ingest_vl

    root = builtin_analyzed
    assert ingest_vl.main(["--params", str(root / "params.yaml"), "--raw", str(root / "raw"), "--out",
                           str(root / "ingested"), "--metrics", str(root / "ingested.json"), "--export",
                           str(root / "vl" / "digits_vl_export.json")]) == 0
    (root / "reviews").mkdir()
    out = root / "tags"
    assert apply_tags.main(["--params", str(root / "params.yaml"), "--raw", str(root / "raw"), "--ingested",
                            str(root / "ingested"), "--reviews", str(root / "reviews"), "--output",
                            str(out / "tagged.csv"), "--html", str(out / "review.html"), "--conflicts",
                            str(out / "conflicts.csv"), "--metrics", str(out / "m.json"), "--plots",
                            str(out / "plots")]) == 0
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """An ImageFolder tree with nested files, odd names and bad files."""
    root = tmp_path / "tree"
    files = {
        "train/cat/a.png": png_bytes(1),
        "train/cat/sub/deeper/b.jpg": jpeg_bytes(2),
        "train/dog/c.png": png_bytes(3),
        "train/dog/noext": png_bytes(4),
        "train/dog/zero.JPEG": b"",
        "train/dog/text.JPEG": b"hello, not an image",
        "train/dog/trunc.png": png_bytes(5)[:60],
        "val/cat/d.png": png_bytes(6),
        "val/dog/e.png": png_bytes(7),
        "val/dog/a.png": png_bytes(8),  # stem 'a' collides with train/cat/a.png
        "train/.DS_Store": b"junk",
        "README.txt": b"a readme at the root",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(9))
    (root / "train/cat/escape.png").symlink_to(outside)
    return root


def write_hub_shards(root: Path, splits: dict[str, int], *, names: list[str], shards_per_split: int = 2,
                     with_paths: bool = True, seed: int = 0) -> Path:
    """Parquet shards in the Hub's layout and schema: data/<split>-NNNNN-of-MMMMM-<hash>.parquet."""
    rng = np.random.default_rng(seed)
    features = {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    sch = pa.schema([("image", image_type), ("label", pa.int64())], metadata=meta)
    (root / "data").mkdir(parents=True, exist_ok=True)
    counter = 0
    for split, n in splits.items():
        per = int(np.ceil(n / shards_per_split))
        for s in range(shards_per_split):
            rows = []
            for _ in range(min(per, n - s * per)):
                label = -1 if split == "test" else int(rng.integers(0, len(names)))
                path = f"{split}_{counter:06d}.JPEG" if with_paths else None
                rows.append(({"bytes": jpeg_bytes(counter, 32), "path": path}, label))
                counter += 1
            table = pa.table({"image": [r[0] for r in rows], "label": [r[1] for r in rows]}, schema=sch)
            pq.write_table(table, root / "data" / f"{split}-{s:05d}-of-{shards_per_split:05d}-abc{s}.parquet")
    return root


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A git repository holding the project's tracked and untracked-not-ignored files (no data)."""
    dst = tmp_path / "repo"
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO, check=True,
        capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listing):
        src = REPO / rel
        if not src.is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "snapshot"]):
        subprocess.run(cmd, cwd=dst, check=True, env=env, capture_output=True)
    return dst


def write_photo_leak_folders(root: Path, *, n_test: int = 36, per_transform: int = 2, seed: int = 0):
    """Two ImageFolder trees of real photographs with planted leaks and hard negatives.

    Test images are distinct crops of the sample photos that scikit-learn and matplotlib ship
    (256 px, JPEG q90). Train holds ``per_transform`` copies of test images under every leak transform,
    plus hard negatives: other, partly overlapping crops of the same photographs. Returns
    ``(train_dir, test_dir, {(test_path, train_path): transform})``.
    """
    from vlclean.datasets.builtin import LEAK_TRANSFORMS, _sample_photos, _transform

    rng = np.random.default_rng(seed)
    photos = _sample_photos()
    train_dir, test_dir = root / "train", root / "val"

    def crop(photo: Image.Image, cx: float, cy: float, side: int) -> Image.Image:
        left = int(np.clip(cx - side / 2, 0, photo.width - side))
        top = int(np.clip(cy - side / 2, 0, photo.height - side))
        return photo.crop((left, top, left + side, top + side)).resize((256, 256), Image.LANCZOS)

    tests = []
    for i in range(n_test):
        photo = photos[i % len(photos)]
        side = int(min(photo.size) * rng.uniform(0.25, 0.45))
        cx, cy = rng.uniform(side / 2, photo.width - side / 2), rng.uniform(side / 2, photo.height - side / 2)
        tests.append((photo, cx, cy, side, crop(photo, cx, cy, side)))
    truth = {}
    for i, (_, _, _, _, img) in enumerate(tests):
        path = test_dir / f"class{i % 4}" / f"test_{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, "JPEG", quality=90)
    k = 0
    for t, name in enumerate(LEAK_TRANSFORMS):
        for j in range(per_transform):
            i = (t * per_transform + j) % n_test
            src = test_dir / f"class{i % 4}" / f"test_{i:03d}.jpg"
            data, ext = (src.read_bytes(), "jpg") if name == "exact" else _transform(name)(tests[i][4])
            dst = train_dir / f"class{i % 4}" / f"copy_{k:03d}.{ext}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            truth[(str(src), str(dst))] = name
            k += 1
    for i, (photo, cx, cy, side, _) in enumerate(tests):  # hard negatives: shifted / zoomed crops of the same photo
        for j, (dx, dy, zoom) in enumerate(((0.35, 0.0, 1.0), (0.0, -0.35, 1.0), (0.0, 0.0, 1.6))):
            # shift away from the photo's edge so the negative never collapses onto the test crop
            dx = dx if cx + side * (0.5 + dx) <= photo.width else -dx
            dy = dy if cy - side * (0.5 - dy) >= 0 else -dy
            img = crop(photo, cx + dx * side, cy + dy * side, min(int(side * zoom), min(photo.size)))
            dst = train_dir / f"class{i % 4}" / f"other_{i:03d}_{j}.jpg"
            img.save(dst, "JPEG", quality=90)
    return train_dir, test_dir, truth


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_browser() -> None:
    """Skip a browser test when Debian's chromium or playwright is missing, except where the run
    demands them (``.ci/run`` sets VLCLEAN_REQUIRE_BROWSER=1 after installing both): then fail."""
    import importlib.util

    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright (pip install -r requirements.txt)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("VLCLEAN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
