"""Shared fixtures: real data built per test (or per session when expensive) in temporary folders."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
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
                            str(out / "tagged.csv"), "--html", str(out / "review"), "--conflicts",
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

    def box(photo: Image.Image, cx: float, cy: float, side: int) -> tuple[int, int, int, int]:
        left = int(np.clip(cx - side / 2, 0, photo.width - side))
        top = int(np.clip(cy - side / 2, 0, photo.height - side))
        return left, top, left + side, top + side

    def crop(photo: Image.Image, cx: float, cy: float, side: int) -> Image.Image:
        return photo.crop(box(photo, cx, cy, side)).resize((256, 256), Image.LANCZOS)

    def inside(inner: tuple, outer: tuple) -> float:
        w = max(0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
        h = max(0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
        return w * h / ((inner[2] - inner[0]) * (inner[3] - inner[1]))

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
            args = (photo, cx + dx * side, cy + dy * side, min(int(side * zoom), min(photo.size)))
            dst = train_dir / f"class{i % 4}" / f"other_{i:03d}_{j}.jpg"
            crop(*args).save(dst, "JPEG", quality=90)
            # test crops overlap one another: a negative that lies inside another test crop (>= 90 % of
            # it) is a re-crop of that test image (of any size): finding it is no false pair, missing it
            # no miss (truth "recrop_of_test")
            for t, (other, ocx, ocy, oside, _) in enumerate(tests):
                if other is photo and t != i and inside(box(*args), box(other, ocx, ocy, oside)) >= 0.9:
                    truth[(str(test_dir / f"class{t % 4}" / f"test_{t:03d}.jpg"), str(dst))] = "recrop_of_test"
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


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def require_fashion_mnist() -> Path:
    """Fashion-MNIST from Debian's package; skipped where it is missing, except where the run demands it
    (``.ci/run`` sets VLCLEAN_REQUIRE_FASHION_MNIST=1 after installing it): then fail."""
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        message = f"needs Fashion-MNIST at {FASHION_MNIST} (apt-get install dataset-fashion-mnist)"
        if os.environ.get("VLCLEAN_REQUIRE_FASHION_MNIST") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return FASHION_MNIST


def write_idx(path: Path, array: np.ndarray) -> Path:
    """One gzipped IDX file (unsigned bytes) exactly as MNIST distributes them."""
    import gzip
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


def write_idx_quartet(root: Path, *, n_train: int = 40, n_test: int = 20, n_classes: int = 4, side: int = 12,
                      seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The MNIST-format quartet (random pixels, cycling labels) in ``root``; returns the arrays per split."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        labels = (np.arange(n) % n_classes).astype(np.uint8)
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", labels)
        out[split] = (images, labels)
    return out


def write_cifar(root: Path, *, variant: str = "cifar10", per_batch: int = 6, packed: bool = True, seed: int = 0) -> Path:
    """A small CIFAR "python version" distribution in the real format (pickled dicts with byte keys,
    (N, 3072) uint8 planes): ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, or the folder it
    extracts to when ``packed`` is false. CIFAR-100 gets 6 fine classes in 2 superclasses."""
    import pickle
    import tarfile

    rng = np.random.default_rng(seed)
    if variant == "cifar10":
        folder = root / "cifar-10-batches-py"
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        meta_name, meta = "batches.meta", {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": per_batch}
        batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    else:
        folder = root / "cifar-100-python"
        fine = ["beaver", "dolphin", "otter", "apple", "mushroom", "orange"]
        meta_name, meta = "meta", {b"fine_label_names": [n.encode() for n in fine],
                                   b"coarse_label_names": [b"aquatic_mammals", b"fruit_and_vegetables"]}
        batches = ["train", "test"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / meta_name).write_bytes(pickle.dumps(meta, protocol=2))
    for b in batches:
        n = per_batch * (3 if variant == "cifar100" and b == "train" else 1)
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        d = {b"batch_label": b.encode(), b"data": data, b"filenames": [f"{b}_{i}.png".encode() for i in range(n)]}
        if variant == "cifar10":
            d[b"labels"] = [int(x) for x in rng.integers(0, 10, n)]
        else:
            fine_labels = rng.integers(0, 6, n)
            d[b"fine_labels"] = [int(x) for x in fine_labels]
            d[b"coarse_labels"] = [int(x) // 3 for x in fine_labels]
        (folder / b).write_bytes(pickle.dumps(d, protocol=2))
    if not packed:
        return folder
    archive = root / f"{'cifar-10' if variant == 'cifar10' else 'cifar-100'}-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    shutil.rmtree(folder)
    return archive


@dataclass(frozen=True)
class PolicyExport:
    """A Visual Layer platform export of many classes (see :func:`write_policy_export`)."""

    path: Path
    classes: list[str]
    redundant_classes: list[str]  # classes with many near-duplicates (low uniqueness): policies over-prune them
    images: int


def write_policy_export(path: Path, *, n_classes: int = 120, per_class: int = 20, seed: int = 0) -> PolicyExport:
    """``metadata.json`` of ``n_classes`` x ``per_class`` images with ImageNet-like VL signals.

    Uniqueness ~ Beta(3, 4) scaled per class (x0.8-1.4; every 12th class x0.6, a "redundant"
    class like ImageNet's garden spider), so about a fifth of images score below 0.2; VL clusters of 1-4
    low-uniqueness images within a class (the rest singletons); issues: mislabels (3 %, confidence Beta(5, 2), with a suggested label),
    label outliers (2 %), outliers (1 %), dark / blur / bright (1 % each, confidence U(0.5, 1)), nested
    duplicate groups (pairs, 3 %), and user tags (0.5 %: delete, poor_quality, verified).
    """
    from tests.vl_fixtures import DUP_LEVELS, platform_item, write_platform_json

    rng = np.random.default_rng(seed)
    classes = [f"class_{i:03d}" for i in range(n_classes)]
    redundant = classes[::12]
    items = []
    for ci, cls in enumerate(classes):
        scale = 0.6 if cls in redundant else rng.uniform(0.8, 1.4)
        scores = np.clip(rng.beta(3.0, 4.0, size=per_class) * scale, 0.0, 1.0)
        cluster_of = [f"{cls}-cluster-{j}" for j in range(per_class)]
        low = [j for j in np.argsort(scores) if scores[j] < 0.25]  # look-alikes share a cluster of 2-4
        while len(low) >= 2:
            size = min(len(low), int(rng.integers(2, 5)))
            for j in low[:size]:
                cluster_of[j] = f"{cls}-cluster-{low[0]}"
            low = low[size:]
        for j in range(per_class):
            name = f"{cls}_{j:03d}.JPEG"
            u = float(scores[j])
            issues: list = []
            if rng.random() < 0.03:
                other = classes[(ci + 1 + int(rng.integers(0, n_classes - 1))) % n_classes]
                issues.append({"issue_type": "mislabels", "confidence": round(float(rng.beta(5, 2)), 3),
                               "suggested_label": other})
            if rng.random() < 0.02:
                issues.append(("label_outlier", round(float(rng.beta(4, 2)), 3)))
            if rng.random() < 0.01:
                issues.append(("outliers", round(float(rng.beta(4, 2)), 3)))
            for kind in ("dark", "blurry", "bright"):
                if rng.random() < 0.01:
                    issues.append((kind, round(float(rng.uniform(0.5, 1.0)), 3)))
            dups = []
            if j % 2 == 1 and rng.random() < 0.06:
                gid = f"{cls}-dup-{j}"
                dups = [(DUP_LEVELS[-1], gid)]
                items[-1]["metadata_items"].append({"type": "issue", "properties": {
                    "issue_type": "duplicates", "confidence": 0.9, "duplicate_group_id": gid,
                    "duplicate_threshold": DUP_LEVELS[-1]}})
            tags = [str(rng.choice(["delete", "poor_quality", "verified"]))] if rng.random() < 0.005 else []
            items.append(platform_item(name, issues=issues, label=cls, dup_levels=dups, tags=tags, uniqueness=round(u, 4),
                                       cluster_id=cluster_of[j], dataset="policyset"))
    write_platform_json(path, items)
    return PolicyExport(path=path, classes=classes, redundant_classes=redundant, images=len(items))


@pytest.fixture
def policy_export(tmp_path: Path) -> PolicyExport:
    """A 120-class VL export with realistic uniqueness and issue distributions (2,400 images)."""
    return write_policy_export(tmp_path / "policyset" / "metadata.json")


# -- the checkout's pipeline outputs are not the tests' to write ---------------------------------------
_OUTPUT_DIRS = ("data", "models", "metrics", "plots", "dvclive", "reports")


def _outputs_snapshot() -> dict[str, tuple[int, int]]:
    out = {}
    for d in _OUTPUT_DIRS:
        for path in (REPO / d).rglob("*"):
            if path.is_file():
                st = path.stat()
                out[str(path.relative_to(REPO))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="session", autouse=True)
def _working_tree_left_alone():
    """Tests write under their temporary folders only. A stage called without one of its output flags
    writes to its default path, the checkout's own pipeline output (a test once rewrote
    data/evaluate/predictions.csv, and `dvc status` then showed evaluate as changed)."""
    before = _outputs_snapshot()
    yield
    after = _outputs_snapshot()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the tests wrote into the checkout: {changed[:20]}"


# -- hostile-input cases: time and peak memory per case (tests/hostile.py) ------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.hostile_report = report  # read by tests.hostile.hostile_case at teardown
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    from tests import hostile

    hostile.summary(terminalreporter)
