"""Decode once: analyze decodes each image exactly once; detect_leaks, noise and denoise read only
data/features (they run with the raw shards' image bytes gone and give the same outputs); the
encoding pass under torchrun (2 gloo processes, whole shards per rank) gives the same features as
one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vlclean.images
from stages import denoise, detect_leaks, noise
from tests.conftest import REPO, write_params
from vlclean.datasets import RawDataset
from vlclean.embeddings import build_embedder
from vlclean.encode import EncodeOptions, encode_dataset, load_label_features

OUTPUTS = ("leaks.csv", "by_test.csv", "leaks.json", "noisy.csv", "noise.json", "clean.csv", "denoise.json")


def _without_image_bytes(raw: Path, dst: Path) -> Path:
    """A copy of ``raw`` whose shards hold no image bytes (the ``image`` column emptied)."""
    shutil.copytree(raw, dst)
    for shard in sorted((dst / "shards").glob("*.parquet")):
        table = pq.read_table(shard)
        empty = pa.array([b""] * table.num_rows, type=pa.binary())
        pq.write_table(table.set_column(table.schema.get_field_index("image"), "image", empty), shard)
    return dst


def _run_feature_readers(raw: Path, features: Path, out: Path, params: Path) -> dict[str, bytes]:
    out.mkdir()
    index = RawDataset.open(raw, images=False).index()
    train = index[(index["split"] == "train") & index["valid"]]
    train[["image_id", "label"]].to_csv(out / "train_labels.csv", index=False)
    assert detect_leaks.main(["--params", str(params), "--raw", str(raw), "--features", str(features),
                              "--output", str(out / "leaks.csv"), "--by_test", str(out / "by_test.csv"),
                              "--metrics", str(out / "leaks.json")]) == 0
    assert noise.main(["--params", str(params), "--train_labels", str(out / "train_labels.csv"), "--raw", str(raw),
                       "--features", str(features), "--output", str(out / "noisy.csv"),
                       "--metrics", str(out / "noise.json"), "--plots", str(out / "plots_noise")]) == 0
    assert denoise.main(["--params", str(params), "--noisy", str(out / "noisy.csv"), "--raw", str(raw),
                         "--features", str(features), "--output", str(out / "clean.csv"),
                         "--metrics", str(out / "denoise.json")]) == 0
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def test_feature_readers_never_touch_image_bytes(builtin_analyzed: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_params(tmp_path / "params.yaml", {
        "noise": {"rate": 0.2, "kind": "intelligent", "features": "pixels"},
        "denoise": {"method": "cleanlab", "features": "pixels", "classifier": "knn"},
    })
    with_bytes = _run_feature_readers(builtin_analyzed / "raw", builtin_analyzed / "features", tmp_path / "a", params)
    calls: list[int] = []
    real = vlclean.images.decode
    monkeypatch.setattr(vlclean.images, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    bare = _without_image_bytes(builtin_analyzed / "raw", tmp_path / "raw_without_bytes")
    without = _run_feature_readers(bare, builtin_analyzed / "features", tmp_path / "b", params)
    assert calls == []
    for name in OUTPUTS:
        assert with_bytes[name] == without[name], name
    assert json.loads(with_bytes["noise.json"])["flipped"] > 0


def _encode(raw: Path, out: Path, **kw: object) -> pd.DataFrame | None:
    return encode_dataset(RawDataset.open(raw), out, work_dir=out.parent / f"work-{out.name}",
                          make_embedder=lambda: build_embedder("pixels"), embedder_key={"model": "pixels"},
                          options=EncodeOptions(workers=1, progress=False), **kw)


def test_analyze_encoding_decodes_each_image_once(builtin_raw: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = vlclean.images.decode
    monkeypatch.setattr(vlclean.images, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    features = _encode(builtin_raw / "raw", tmp_path / "features")
    assert features is not None
    assert len(calls) == len(features) == len(RawDataset.open(builtin_raw / "raw").index())  # each image once
    ids, x = load_label_features(tmp_path / "features", "pixels", side=8)
    assert len(calls) == len(features)  # label features come from the stored thumbnails
    assert x.shape == (features["valid"].sum(), 64) and len(ids) == len(x)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-3)


def test_torchrun_two_gloo_ranks_give_the_features_of_one_process(builtin_raw: Path, tmp_path: Path) -> None:
    raw = builtin_raw / "raw"
    assert len(RawDataset.open(raw).shards()) >= 2
    _encode(raw, tmp_path / "one")
    script = tmp_path / "encode_ranks.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\n"
        "from vlclean.datasets import RawDataset\nfrom vlclean.embeddings import build_embedder, torchrun_group\n"
        "from vlclean.encode import EncodeOptions, encode_dataset\n"
        "out = Path(sys.argv[2])\n"
        "with torchrun_group('cpu') as g:\n"
        "    encode_dataset(RawDataset.open(sys.argv[1]), out, work_dir=out.parent / 'work-two',\n"
        "                   make_embedder=lambda: build_embedder('pixels'), embedder_key={'model': 'pixels'},\n"
        "                   options=EncodeOptions(workers=1, progress=False), rank=g.rank,\n"
        "                   world_size=g.world_size, barrier=g.barrier)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(script), str(raw), str(tmp_path / "two")], check=True, env=env, cwd=REPO, timeout=300)
    one, two = tmp_path / "one", tmp_path / "two"
    work_files = sorted(p.name for p in (tmp_path / "work-two").rglob("*.parquet"))
    assert any(name.startswith("test-") for name in work_files) and any(name.startswith("train-") for name in work_files)
    for name in ("features.parquet", "crop_hashes.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(one / name), pd.read_parquet(two / name))
    for sub in ("embeddings", "thumbnails"):
        names = sorted(p.name for p in (one / sub).iterdir())
        assert names == sorted(p.name for p in (two / sub).iterdir()) and names
        for n in names:
            np.testing.assert_array_equal(np.load(one / sub / n), np.load(two / sub / n))
