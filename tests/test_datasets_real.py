"""Real-data sources: MNIST-format IDX files (Fashion-MNIST from Debian), CIFAR python archives, and the
Hub's CIFAR layout, each converted by the download stage and checked pixel for pixel."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.conftest import require_fashion_mnist, write_cifar, write_idx_quartet
from tests.test_download import run_download
from vlclean.datasets import RawDataset
from vlclean.datasets.idx import FASHION_MNIST_CLASSES, read_idx
from vlclean.errors import DatasetError


def stored_pixels(raw: Path) -> dict[str, np.ndarray]:
    ds = RawDataset.open(raw)
    return {iid: np.asarray(Image.open(io.BytesIO(data))) for iid, data in ds.read_images(ds.index()["image_id"]).items()}


# -- IDX ---------------------------------------------------------------------------------------
def test_idx_source_stores_the_exact_pixels_with_subset_and_cap(tmp_path: Path) -> None:
    arrays = write_idx_quartet(tmp_path / "idx", n_train=40, n_test=20, n_classes=4)
    rc, raw = run_download(tmp_path, {"download": {"source": "idx", "classes": ["c1", "c3"], "max_per_class": 3,
                                                   "idx": {"root": str(tmp_path / "idx"),
                                                           "class_names": ["c0", "c1", "c2", "c3"]}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    assert list(ds.classes()["class_name"]) == ["c1", "c3"]
    index = ds.index()
    assert index.groupby(["split", "label"]).size().to_dict() == {(s, l): 3 for s in ("test", "train") for l in (0, 1)}
    assert index["format"].eq("PNG").all() and index["valid"].all()
    pixels = stored_pixels(raw)
    for row in index.itertuples():
        images, labels = arrays[row.split]
        i = int(row.image_id.split("_")[1])
        assert np.array_equal(pixels[row.image_id], images[i])  # lossless
        assert {1: 0, 3: 1}[int(labels[i])] == row.label


def test_idx_missing_folder_names_the_package_and_the_hub_copy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc, _ = run_download(tmp_path, {"download": {"source": "idx", "idx": {"root": str(tmp_path / "nope")}}})
    assert rc == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and "zalando-datasets/fashion_mnist" in err


def test_idx_truncated_file_is_refused(tmp_path: Path) -> None:
    import gzip

    write_idx_quartet(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(DatasetError, match="5 bytes|bytes follow"):
        read_idx(path)


def test_fashion_mnist_from_the_debian_package(tmp_path: Path) -> None:
    root = require_fashion_mnist()
    rc, raw = run_download(tmp_path, {"download": {"source": "idx", "max_per_class": 2}})
    assert rc == 0
    ds = RawDataset.open(raw)
    assert list(ds.classes()["class_name"]) == list(FASHION_MNIST_CLASSES)
    assert ds.classes()["class_id"].iloc[0] == "t_shirt_top"
    index = ds.index()
    assert len(index) == 40 and set(index["width"]) == {28}
    images = read_idx(root / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    pixels = stored_pixels(raw)
    for row in index[index["split"] == "test"].itertuples():
        i = int(row.image_id.split("_")[1])
        assert np.array_equal(pixels[row.image_id], images[i]) and labels[i] == row.label


# -- CIFAR -------------------------------------------------------------------------------------
def _load_batches(folder: Path, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    data, labels = [], {}
    for n in names:
        d = pickle.loads((folder / n).read_bytes(), encoding="bytes")
        data.append(d[b"data"])
        for k in (b"labels", b"fine_labels", b"coarse_labels"):
            if k in d:
                labels.setdefault(k.decode(), []).extend(d[k])
    return np.concatenate(data), {k: np.asarray(v) for k, v in labels.items()}


def test_cifar10_archive_converts_pixel_exact_with_meta_names(tmp_path: Path) -> None:
    archive = write_cifar(tmp_path / "src", variant="cifar10", per_batch=4)
    folder = write_cifar(tmp_path / "ref", variant="cifar10", per_batch=4, packed=False)  # same seed: same data
    rc, raw = run_download(tmp_path, {"download": {"source": "cifar", "cifar": {"path": str(archive)}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    assert list(ds.classes()["class_name"])[:3] == ["airplane", "automobile", "bird"]
    index = ds.index()
    assert index.groupby("split").size().to_dict() == {"train": 20, "test": 4}
    data, labels = _load_batches(folder, [f"data_batch_{i}" for i in range(1, 6)])
    pixels = stored_pixels(raw)
    train = index[index["split"] == "train"]
    for row in train.itertuples():
        i = int(row.image_id.split("_")[1])
        expected = data[i].reshape(3, 32, 32).transpose(1, 2, 0)
        assert np.array_equal(pixels[row.image_id], expected) and labels["labels"][i] == row.label
    assert train["source"].str.startswith("data_batch_").all()
    assert json.loads((tmp_path / "m.json").read_text())["variant"] == "cifar10"


@pytest.mark.parametrize("label", ["fine", "coarse"])
def test_cifar100_folder_fine_or_coarse(tmp_path: Path, label: str) -> None:
    folder = write_cifar(tmp_path / "src", variant="cifar100", per_batch=6, packed=False)
    rc, raw = run_download(tmp_path, {"download": {"source": "cifar", "max_per_class": 2,
                                                   "cifar": {"path": str(folder.parent), "label": label}}})
    assert rc == 0
    ds = RawDataset.open(raw)
    names = list(ds.classes()["class_name"])
    assert names == (["beaver", "dolphin", "otter", "apple", "mushroom", "orange"] if label == "fine"
                     else ["aquatic_mammals", "fruit_and_vegetables"])
    _, labels = _load_batches(folder, ["train"])
    index = ds.index()
    assert (index.groupby(["split", "label"]).size() <= 2).all()
    for row in index[index["split"] == "train"].itertuples():
        assert labels[f"{label}_labels"][int(row.image_id.split("_")[1])] == row.label


def test_cifar10_coarse_and_tampered_pickle_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_cifar(tmp_path / "src", variant="cifar10", per_batch=2, packed=False)
    rc, _ = run_download(tmp_path, {"download": {"source": "cifar", "cifar": {"path": str(folder), "label": "coarse"}}})
    assert rc == 2 and "download.cifar.label" in capsys.readouterr().err

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    rc, _ = run_download(tmp_path, {"download": {"source": "cifar", "cifar": {"path": str(folder)}}})
    err = capsys.readouterr()
    assert rc == 2 and "refusing to load __builtin__.print" in err.err and "pwned" not in err.out


# -- Hub layout of uoft-cs/cifar100 (local parquet) ------------------------------------------------
def write_uoft_cifar100(root: Path, n: int = 12) -> Path:
    """A local parquet copy in the layout of the Hub's ``uoft-cs/cifar100``: ``img`` (PNG struct),
    ``fine_label``, ``coarse_label`` with ClassLabel names in the arrow metadata, train/test splits."""
    fine, coarse = ["beaver", "dolphin", "apple", "orange"], ["aquatic_mammals", "fruit_and_vegetables"]
    features = {"img": {"_type": "Image"}, "fine_label": {"names": fine, "_type": "ClassLabel"},
                "coarse_label": {"names": coarse, "_type": "ClassLabel"}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    sch = pa.schema([("img", img_t), ("fine_label", pa.int64()), ("coarse_label", pa.int64())], metadata=meta)
    (root / "cifar100").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        rows = []
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
            rows.append(({"bytes": buf.getvalue(), "path": None}, i % 4, (i % 4) // 2))
        table = pa.table({"img": [r[0] for r in rows], "fine_label": [r[1] for r in rows],
                          "coarse_label": [r[2] for r in rows]}, schema=sch)
        pq.write_table(table, root / "cifar100" / f"{split}-00000-of-00001.parquet")
    return root


def test_hf_source_reads_the_uoft_cifar100_layout(tmp_path: Path) -> None:
    hub = write_uoft_cifar100(tmp_path / "hub")
    for label, names in (("fine_label", ["beaver", "dolphin", "apple", "orange"]),
                         ("coarse_label", ["aquatic_mammals", "fruit_and_vegetables"])):
        out = tmp_path / label
        out.mkdir()
        rc, raw = run_download(out, {"download": {"source": "hf", "hf": {
            "repo_id": "uoft-cs/cifar100", "local_dir": str(hub), "image_column": "img", "label_column": label,
            "split_map": {"train": "train", "test": "test"}}}})
        assert rc == 0
        ds = RawDataset.open(raw)
        assert list(ds.classes()["class_name"]) == names
        assert ds.index().groupby("split").size().to_dict() == {"train": 12, "test": 12}
        assert ds.index()["valid"].all()


def test_params_default_class_names_are_fashion_mnists() -> None:
    from vlclean.params import DownloadParams, load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml").download
    assert params.idx.class_names == list(FASHION_MNIST_CLASSES) == DownloadParams().idx.class_names


# -- every later stage, through DVC ------------------------------------------------------------
@pytest.mark.slow
def test_cifar_archive_runs_the_whole_pipeline_with_noise_and_a_cleaning_arm(repo_copy: Path) -> None:
    """``dvc repro`` end to end on a CIFAR-10 archive in the distributed format (no planted truth), with
    border noise and the analyzer arm: every stage's declared outputs exist for a real-format source."""
    import os
    import subprocess
    import sys

    from tests.conftest import write_params

    archive = write_cifar(repo_copy.parent / "cifar", variant="cifar10", per_batch=24)
    write_params(repo_copy / "params.yaml", {
        "base": {"dataset": "cifar10"},
        "download": {"source": "cifar", "cifar": {"path": str(archive)}},
        "analyze": {"embedding": {"model": "pixels"}},
        "noise": {"rate": 0.2, "kind": "border"},
        "denoise": {"method": "analyzer", "action": "relabel"},
        "train": {"epochs": 1, "batch_size": 32},
    })
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo_copy, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = {name: json.loads((repo_copy / "metrics" / f"{name}.json").read_text())
               for name in ("download", "noise", "denoise", "eval")}
    assert metrics["download"]["images"] == 144 and metrics["download"]["variant"] == "cifar10"
    assert metrics["noise"]["flipped"] == int(0.2 * metrics["noise"]["train_images"])
    assert metrics["denoise"]["method"] == "analyzer" and "precision" in metrics["denoise"]["detection"]
    assert metrics["eval"]["n_test"] == 24
    assert (repo_copy / "plots" / "noise" / "transition.png").is_file()
