"""train and evaluate on the built-in digits: learning, kill-and-resume equality, torchrun, metrics, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stages import evaluate, train
from tests.conftest import REPO, write_params
from vlclean.params import RuntimeParams, TrainParams, parse
from vlclean.datasets import RawDataset
from vlclean.errors import ParamsError
from vlclean.training.checkpoint import run_fingerprint
from vlclean.training.data import CachedImages, ShardImages, epoch_order, holdout, raw_train_labels, read_label_file
from vlclean.training.loop import CRASH_ENV, lr_factor
from vlclean.training.model import augment, build_model

# Small, fast runs: the ImageNet stem at 32 px trains at ~600 images/s on 2 CPU cores.
TINY = {"epochs": 3, "max_train_images": 300, "batch_size": 64, "lr": 0.05, "image_size": 32, "stem": "imagenet",
        "loader": "auto", "amp": False, "deterministic": True,
        "val_fraction": 0.0, "wandb": {"enabled": False}}  # val = the test file: compared with evaluate below
RT = {"runtime": {"train": {"device": "cpu", "workers": 0}}}  # speed knobs: pinned to the CPU for the tests


@pytest.fixture(scope="module")
def digits(builtin_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Label files of the built-in dataset: all valid train images; the valid test images with
    ``leaked`` from the planted truth (a leakage row names the train copy and its test image)."""
    root = tmp_path_factory.mktemp("train_eval")
    raw = RawDataset.open(builtin_raw / "raw")
    index, truth = raw.index(), raw.truth()
    valid = index[index["valid"]]
    valid[valid["split"] == "train"][["image_id", "label"]].to_csv(root / "train_labels.csv", index=False)
    test = valid[valid["split"] == "test"][["image_id", "label"]].copy()
    test["leaked"] = test["image_id"].isin(truth.loc[truth["issue"] == "leakage", "related_image_id"])
    assert 0 < test["leaked"].sum() < len(test)
    test.to_csv(root / "eval_labels.csv", index=False)
    (root / "raw").symlink_to(builtin_raw / "raw")
    return root


def train_args(root: Path, params: Path, out: str) -> list[str]:
    return ["--params", str(params), "--raw", str(root / "raw"), "--labels", str(root / "train_labels.csv"),
            "--val_labels", str(root / "eval_labels.csv"), "--model", str(root / out / "model.pt"),
            "--live", str(root / out / "live"), "--checkpoint_dir", str(root / out / "ckpt"),
            "--metrics", str(root / out / "train.json")]


def run_train(root: Path, params: Path, out: str, *, env: dict | None = None, torchrun: int = 0,
              check: bool = True) -> subprocess.CompletedProcess:
    """``python -m stages.train`` in a subprocess (as DVC runs it), optionally under torchrun."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] if torchrun else []
    cmd = [sys.executable, *launcher, "-m", "stages.train", *train_args(root, params, out)]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run(cmd, cwd=root, env=full_env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def deterministic_part(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "throughput"}


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load_state(a), load_state(b)
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def live_rows(live: Path) -> dict[str, list]:
    """The per-epoch DVCLive histories (timing metrics left out: they vary between runs)."""
    out = {}
    for tsv in sorted((live / "plots" / "metrics").rglob("*.tsv")):
        name = str(tsv.relative_to(live / "plots" / "metrics"))
        if name.startswith(("images_per_s", "epoch_seconds")):
            continue
        out[name] = pd.read_csv(tsv, sep="\t")[["step", tsv.stem]].values.tolist()
    return out


# -- fast unit checks ----------------------------------------------------------------------------
def test_params_validation_names_the_key() -> None:
    cases = [({"epochs": 0}, "train.epochs"), ({"lrr": 0.1}, "train.lrr"), ({"schedule": "linear"}, "train.schedule"),
             ({"crop_padding": 40}, "train.crop_padding"), ({"batch_size": "big"}, "train.batch_size"),
             ({"wandb": {"enabled": "yes"}}, "train.wandb.enabled"), ({"loader": "disk"}, "train.loader"),
             ({"step_milestones": [0.5, 1.5]}, "train.step_milestones[1]"), ({"lr": 0.0}, "train.lr")]
    for section, key in cases:
        with pytest.raises(ParamsError, match=key.replace("[", r"\[").replace("]", r"\]")):
            parse(TrainParams, section, "train")
    with pytest.raises(ParamsError, match="runtime.evaluate.batch_size"):
        parse(RuntimeParams, {"evaluate": {"batch_size": 0}}, "runtime")
    with pytest.raises(ParamsError, match="runtime.train.device"):
        parse(RuntimeParams, {"train": {"device": "tpu"}}, "runtime")
    assert parse(TrainParams, None, "train") == TrainParams()


def test_stage_rejects_bad_params_before_any_work(digits: Path, tmp_path: Path, capsys) -> None:
    params = write_params(tmp_path / "params.yaml", {**RT, "train": {**TINY, "momentum": 1.5}})
    assert train.main(train_args(digits, params, str(tmp_path / "out"))) == 2
    assert "train.momentum" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_wandb_enabled_without_the_package_fails_clearly(digits: Path, tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` meets where the extra is not installed
    params = write_params(tmp_path / "params.yaml", {**RT, "train": {**TINY, "wandb": {"enabled": True}}})
    assert train.main(train_args(digits, params, str(tmp_path / "out"))) == 2
    err = capsys.readouterr().err
    assert "train.wandb.enabled" in err and "pip install -e .[wandb]" in err
    assert not (tmp_path / "out").exists()


def wandb_records(run_file: Path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``): W&B's 7-byte header, then LevelDB-log framing
    (32 KiB blocks of ``crc32, length, type`` + data) around protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_logs_training_test_metrics_and_cleaning_summary_offline(
    digits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ``wandb`` package in offline mode: one run holds the params, every epoch's train and
    validation metrics, then (from evaluate) the test metrics and the cleaning summary."""
    pytest.importorskip("wandb", reason="the optional W&B extra is not installed: pip install -e .[wandb]")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    params = write_params(tmp_path / "params.yaml", {
        "train": {**TINY, "epochs": 2, "max_train_images": 128, "wandb": {"enabled": True, "project": "p",
                                                                           "mode": "offline"}},
        "runtime": {"evaluate": {"batch_size": 100, "device": "cpu"}}})
    out = tmp_path / "out"
    assert train.main(train_args(digits, params, str(out))) == 0
    run = torch.load(out / "model.pt", map_location="cpu", weights_only=True)["wandb_run"]
    assert run["project"] == "p" and run["mode"] == "offline"
    cleaning = {"images": 1841, "removed": {"duplicate": 6, "leakage": 47}}
    (tmp_path / "build_manifest.json").write_text(json.dumps(cleaning))
    assert evaluate.main(["--params", str(params), "--raw", str(digits / "raw"), "--model", str(out / "model.pt"),
                          "--labels", str(digits / "eval_labels.csv"), "--metrics", str(tmp_path / "eval.json"),
                          "--plots", str(tmp_path / "plots"), "--predictions", str(tmp_path / "predictions.csv"),
                          "--cleaning_metrics", str(tmp_path / "build_manifest.json")]) == 0

    run_files = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert [f.name for f in run_files] == [f"run-{run['id']}.wandb"] * 2  # train, then evaluate, one run
    deadline = time.monotonic() + 60  # wandb's service may still be flushing a finished run's file
    while not all([r.WhichOneof("record_type") for r in wandb_records(f)][-1:] == ["exit"] for f in run_files):
        assert time.monotonic() < deadline, "a W&B run file never got its exit record"
        time.sleep(0.5)
    records = [r for f in run_files for r in wandb_records(f)]

    def items(kind: str, field: str) -> dict:
        out: dict = {}
        for r in records:
            if r.WhichOneof("record_type") == kind:
                for item in getattr(getattr(r, kind), field):
                    out["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
        return out

    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "run"
              for i in r.run.config.update}
    assert config["epochs"] == 2 and config["n_train"] == 128 and config["wandb"]["project"] == "p"
    steps = [r.history.step.num for r in records if r.WhichOneof("record_type") == "history"]
    assert steps == [1, 2]
    history = items("history", "item")
    assert {"train/loss", "train/accuracy", "val/accuracy", "val/accuracy_leak_free", "lr"} <= set(history)
    summary = items("summary", "update")
    test = json.loads((tmp_path / "eval.json").read_text())
    assert summary["test/accuracy"] == test["accuracy"] and summary["test/leak_inflation"] == test["leak_inflation"]
    name, accuracy = next((k, v) for k, v in test["per_class_accuracy"].items() if v is not None)
    assert summary[f"test/per_class_accuracy/{name}"] == accuracy
    assert summary["cleaning/images"] == 1841 and summary["cleaning/removed/leakage"] == 47


def test_label_file_naming_an_unknown_or_invalid_image_fails_clearly(digits: Path, tmp_path: Path, capsys) -> None:
    params = write_params(tmp_path / "params.yaml", {**RT, "train": TINY})
    labels = pd.read_csv(digits / "train_labels.csv")
    raw = RawDataset.open(digits / "raw")
    invalid = raw.index().query("~valid")["image_id"].iloc[0]
    for bad_id, expected in (("digits_99999", "not in the raw dataset"), (invalid, "is invalid")):
        bad = pd.concat([labels, pd.DataFrame({"image_id": [bad_id], "label": [3]})])
        bad.to_csv(tmp_path / "train_labels.csv", index=False)
        args = train_args(digits, params, "unused")
        args[args.index("--labels") + 1] = str(tmp_path / "train_labels.csv")
        assert train.main(args) == 2
        err = capsys.readouterr().err
        assert bad_id in err and expected in err and "train_labels.csv" in err
    labels.drop(columns="label").to_csv(tmp_path / "no_label.csv", index=False)
    with pytest.raises(Exception, match=r"lacks column\(s\) \['label'\]"):
        read_label_file(tmp_path / "no_label.csv", raw, with_leaked=False)


def test_schedule_augmentation_and_small_stem() -> None:
    kw = dict(total_steps=100, warmup_steps=10, milestones=[0.5, 0.75], gamma=0.1)
    assert lr_factor(0, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_factor(10, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(99, schedule="cosine", **kw) < 0.01
    assert [lr_factor(s, schedule="step", **kw) for s in (20, 50, 80)] == pytest.approx([1.0, 0.1, 0.01])
    assert lr_factor(99, schedule="constant", **kw) == 1.0
    x = torch.randn(8, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, g, padding=0, hflip=False), x)
    y = augment(x, g, padding=2, hflip=True)
    assert y.shape == x.shape and not torch.equal(y, x)
    model = build_model(10, small=True)
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_checkpoint_key_changes_with_results_not_with_speed(digits: Path) -> None:
    files = [digits / "train_labels.csv", digits / "eval_labels.csv"]
    p = parse(TrainParams, TINY, "train")

    def fp(params: TrainParams = p, **kw) -> str:
        return run_fingerprint(params, **{"seed": 1, "files": files, "world_size": 1, "device_type": "cpu", **kw})

    assert fp() != fp(parse(TrainParams, {**TINY, "loader": "stream"}, "train"))  # another epoch order
    assert fp() != fp(parse(TrainParams, {**TINY, "lr": 0.2}, "train"))
    assert fp() != fp(seed=2) and fp() != fp(world_size=2)
    assert fp() != fp(files=[digits / "eval_labels.csv", digits / "eval_labels.csv"])


def test_stream_loader_matches_the_memory_cache_and_covers_each_epoch(digits: Path) -> None:
    raw = RawDataset.open(digits / "raw")
    images = read_label_file(digits / "train_labels.csv", raw, with_leaked=False)
    stream = ShardImages(digits / "raw", images, 32, lru_blocks=2)
    cached = CachedImages(stream, workers=2)
    pick = [5, 1400, 3, 700, 1200]
    xs, ys, ps = stream.__getitems__(pick)
    xc, yc, pc = cached.__getitems__(pick)
    assert torch.equal(xs, xc) and torch.equal(ys, yc) and torch.equal(ps, pc)
    assert len(stream._lru) <= 2
    n = len(images)
    for blocks in (None, stream.block):
        first = epoch_order(n, seed=1, epoch=1, blocks=blocks, window_blocks=1)
        assert sorted(first) == list(range(n))
        assert first == epoch_order(n, seed=1, epoch=1, blocks=blocks, window_blocks=1)
        assert first != epoch_order(n, seed=1, epoch=2, blocks=blocks, window_blocks=1)
        halves = [epoch_order(n, seed=1, epoch=1, rank=r, world_size=2, blocks=blocks) for r in (0, 1)]
        assert len(halves[0]) == len(halves[1]) and set(halves[0]) | set(halves[1]) == set(range(n))
    if len(np.unique(stream.block)) > 1:  # window of one row group: each row group's images stay together
        runs = np.flatnonzero(np.diff(stream.block[epoch_order(n, seed=1, epoch=1, blocks=stream.block,
                                                               window_blocks=1)]))
        assert len(runs) == len(np.unique(stream.block)) - 1


# -- real training runs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def learned(digits: Path) -> Path:
    """1,000 train images, 5 epochs (~10 s on 2 idle cores): the model the learning and evaluation tests use."""
    params = write_params(digits / "learn.yaml", {**RT, "train": {**TINY, "epochs": 5, "max_train_images": 1000,
                                                            "batch_size": 128}})
    assert train.main(train_args(digits, params, "learn")) == 0
    return digits


def test_training_learns_and_logs_every_epoch(learned: Path) -> None:
    m = json.loads((learned / "learn" / "train.json").read_text())
    assert m["n_train"] == 1000
    assert m["val_accuracy"] >= 0.85, m  # chance is 0.1; measured 0.93 after 5 epochs (0.99 with the defaults)
    assert m["val_accuracy_leak_free"] >= 0.8 and m["train_accuracy"] >= 0.7
    assert m["throughput"]["images_per_s"] > 0
    live = live_rows(learned / "learn" / "live")
    assert {"train/loss.tsv", "train/accuracy.tsv", "val/loss.tsv", "val/accuracy.tsv",
            "val/accuracy_leak_free.tsv", "lr.tsv"} <= set(live)
    assert all([r[0] for r in rows] == [1, 2, 3, 4, 5] for rows in live.values())
    assert (learned / "learn" / "live" / "plots" / "metrics" / "images_per_s.tsv").exists()
    assert not any((learned / "learn" / "ckpt").rglob("*.pt"))  # finished runs leave no checkpoint behind


@pytest.fixture(scope="module")
def reference(digits: Path) -> Path:
    """The uninterrupted run, in this process (the interrupted ones run as subprocesses, as DVC runs them)."""
    params = write_params(digits / "tiny.yaml", {**RT, "train": TINY})
    assert train.main(train_args(digits, params, "reference")) == 0
    return digits / "reference"


def assert_same_run(a: Path, b: Path) -> None:
    ma, mb = (json.loads((d / "train.json").read_text()) for d in (a, b))
    assert deterministic_part(ma) == deterministic_part(mb)
    assert_same_weights(a / "model.pt", b / "model.pt")
    assert live_rows(a / "live") == live_rows(b / "live")


def test_a_run_killed_after_a_checkpoint_resumes_to_identical_results(
    digits: Path, reference: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed right after epoch 1's checkpoint; a run with another config in between neither resumes
    that checkpoint nor disturbs it; the rerun resumes and ends identical to the uninterrupted run."""
    params = digits / "tiny.yaml"
    crashed = run_train(digits, params, "crashed", env={CRASH_ENV: "1"}, check=False)
    assert crashed.returncode == 137, crashed.stderr
    assert not (digits / "crashed" / "model.pt").exists()
    assert len(list((digits / "crashed" / "ckpt").rglob("last.pt"))) == 1
    other = write_params(digits / "other.yaml", {**RT, "train": {**TINY, "epochs": 1, "lr": 0.02}})
    with caplog.at_level("INFO", logger="vlclean"):
        assert train.main(train_args(digits, other, "crashed")) == 0
    assert "resuming" not in caplog.text
    assert json.loads((digits / "crashed" / "train.json").read_text())["epochs"] == 1
    resumed = run_train(digits, params, "crashed")
    assert "resuming run" in resumed.stderr and "after epoch 1 of 3" in resumed.stderr
    assert_same_run(reference, digits / "crashed")
    assert not any((digits / "crashed" / "ckpt").rglob("*.pt"))


def test_a_run_sigkilled_mid_epoch_resumes_to_identical_results(digits: Path, reference: Path) -> None:
    params = digits / "tiny.yaml"
    out = digits / "killed"
    cmd = [sys.executable, "-m", "stages.train", *train_args(digits, params, "killed")]
    proc = subprocess.Popen(cmd, cwd=digits, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((out / "ckpt").rglob("last.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    (ckpt,) = list((out / "ckpt").rglob("last.pt"))
    assert 1 <= torch.load(ckpt, weights_only=True)["epoch"] < 3
    resumed = run_train(digits, params, "killed")
    assert "resuming run" in resumed.stderr
    assert_same_run(reference, out)


def test_torchrun_two_processes_on_cpu(digits: Path) -> None:
    params = write_params(digits / "ddp.yaml", {**RT, "train": {**TINY, "epochs": 2, "max_train_images": 256,
                                                          "batch_size": 32}})
    run_train(digits, params, "ddp", torchrun=2, env={"OMP_NUM_THREADS": "1"})
    m = json.loads((digits / "ddp" / "train.json").read_text())
    assert m["world_size"] == 2 and m["epochs"] == 2 and m["n_train"] == 256
    assert load_state(digits / "ddp" / "model.pt")["fc.weight"].shape == (10, 512)
    assert [r[0] for r in live_rows(digits / "ddp" / "live")["val/accuracy.tsv"]] == [1, 2]


def test_stream_loader_with_workers_trains(digits: Path) -> None:
    params = write_params(digits / "stream.yaml", {"train": {**TINY, "epochs": 1, "max_train_images": 200,
                                                             "loader": "stream"},
                                                    "runtime": {"train": {"device": "cpu", "workers": 2}}})
    assert train.main(train_args(digits, params, "stream")) == 0
    m = json.loads((digits / "stream" / "train.json").read_text())
    assert m["n_train"] == 200 and m["val_accuracy"] is not None


def test_evaluate_metrics_are_consistent(learned: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"runtime": {"evaluate": {"batch_size": 100, "device": "cpu"}}})
    plots = tmp_path / "plots"
    assert evaluate.main(["--params", str(params), "--raw", str(learned / "raw"),
                          "--model", str(learned / "learn" / "model.pt"), "--labels", str(learned / "eval_labels.csv"),
                          "--metrics", str(tmp_path / "eval.json"), "--plots", str(plots),
                          "--predictions", str(tmp_path / "predictions.csv")]) == 0
    m = json.loads((tmp_path / "eval.json").read_text())
    labels = pd.read_csv(learned / "eval_labels.csv")
    confusion = pd.read_csv(plots / "confusion.csv")
    assert len(confusion) == m["n_test"] == len(labels)
    assert {"actual", "predicted"} <= set(confusion.columns)
    names = RawDataset.open(learned / "raw").classes()["class_name"].tolist()
    assert set(confusion["actual"]) <= set(names) and set(confusion["predicted"]) <= set(names)
    joined = confusion.merge(labels[["image_id", "leaked"]], on="image_id", suffixes=("", "_label"))
    assert (joined["leaked"] == joined["leaked_label"]).all()
    correct = joined["actual"] == joined["predicted"]
    clean = ~joined["leaked_label"]
    assert m["n_leak_free"] == int(clean.sum()) and m["n_leaked"] == int((~clean).sum())
    assert m["accuracy"] == pytest.approx(correct.mean(), abs=1e-6)
    assert m["accuracy_leak_free"] == pytest.approx(correct[clean].mean(), abs=1e-6)
    assert m["leak_inflation"] == pytest.approx(m["accuracy"] - m["accuracy_leak_free"], abs=2e-6)
    per_class = pd.read_csv(plots / "per_class_accuracy.csv")
    assert per_class["class_name"].tolist() == names
    zero = names[0]
    assert m["per_class_accuracy"][zero] == pytest.approx(correct[joined["actual"] == zero].mean(), abs=1e-6)
    trained = json.loads((learned / "learn" / "train.json").read_text())
    assert m["accuracy"] == pytest.approx(trained["val_accuracy"], abs=1e-6)  # same model, same images
    for png in ("per_class_accuracy.png", "confusion.png"):
        assert (plots / png).read_bytes()[:4] == b"\x89PNG"
    # per-image predictions, sorted by image id (two experiments' files pair row by row)
    pred = pd.read_csv(tmp_path / "predictions.csv", dtype={"image_id": str})
    assert list(pred.columns) == ["image_id", "label", "predicted", "correct"]
    assert pred["image_id"].tolist() == sorted(labels["image_id"].astype(str))
    assert pred["correct"].mean() == pytest.approx(m["accuracy"], abs=1e-6)
    by_id = pred.set_index("image_id")
    assert [names[i] for i in by_id.loc[confusion["image_id"].astype(str), "predicted"]] == confusion["predicted"].tolist()


def test_holdout_is_per_class_seeded_and_disjoint(digits: Path) -> None:
    raw = RawDataset.open(digits / "raw")
    images = read_label_file(digits / "train_labels.csv", raw, with_leaked=False)
    train_part, val_part = holdout(images, 0.1, seed=3)
    assert len(train_part) + len(val_part) == len(images)
    assert not set(train_part.frame["image_id"]) & set(val_part.frame["image_id"])
    per_class = val_part.frame["label"].value_counts() / images.frame["label"].value_counts()
    assert per_class.between(0.07, 0.13).all() and len(per_class) == 10
    again = holdout(images, 0.1, seed=3)[1]
    assert list(again.frame["image_id"]) == list(val_part.frame["image_id"])
    assert list(holdout(images, 0.1, seed=4)[1].frame["image_id"]) != list(val_part.frame["image_id"])


def test_val_fraction_curves_come_from_train_and_raw_labels_ignore_the_label_file(digits: Path, tmp_path: Path) -> None:
    raw = RawDataset.open(digits / "raw")
    given = raw_train_labels(raw)
    assert len(given) == int(((raw.index()["split"] == "train") & raw.index()["valid"]).sum())
    (tmp_path / "few.csv").write_text("image_id,label\n" + "\n".join(
        f"{i},{l}" for i, l in zip(given["image_id"][:40], given["label"][:40])) + "\n")
    params = write_params(tmp_path / "params.yaml", {**RT, "train": {**TINY, "epochs": 1, "max_train_images": 0,
                                                               "val_fraction": 0.2, "labels": "raw"}})
    args = train_args(digits, params, "rawval")
    args[args.index("--labels") + 1] = str(tmp_path / "few.csv")  # ignored: labels come from the raw dataset
    assert train.main(args) == 0
    m = json.loads((digits / "rawval" / "train.json").read_text())
    assert m["n_train"] + m["n_val"] == len(given) and m["n_val"] == pytest.approx(0.2 * len(given), abs=10)
    test_n = len(pd.read_csv(digits / "eval_labels.csv"))
    assert m["n_val"] != test_n and m["n_val_leak_free"] == m["n_val"]  # held-out train images, not the test split
