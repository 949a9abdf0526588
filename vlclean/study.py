"""A study: the experiments that answer the research questions on one dataset, as a table, and their cost.

A study file (``studies/<dataset>.yaml``) names, in params.yaml's dotted keys:

``preset``        overrides applied to every experiment: the dataset and its training budget.
``seeds``         replicate seeds; each experiment runs once per seed with every ``seed_params`` key
                  (``noise.seed``, ``train.seed``, ``denoise.seed``) set to it. ``base.seed`` is not
                  among them: it fixes the data, so every replicate sees the same train and test set.
``groups``        named blocks, each a ``grid`` (key -> list of values, crossed) times optional ``arms``
                  (a list of override mappings, e.g. one per cleaning arm). Experiments named by
                  several groups (the 20 % random run of the noise table and of the rate sweep) run once.
``cost``          what one experiment costs, for the duration printed before anything runs.
``jobs``,         experiments at a time, and torch/OpenMP threads each (speed only: no experiment's
``threads_per_job`` params change, so DVC reruns nothing when they do).

Nothing here knows a particular knob: renamed or new params need an edit of the study file only.
:func:`missing_keys` lists the keys a study names that this checkout's params.yaml lacks (knobs
still to land), so a run can refuse them before queueing anything.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlclean.errors import ParamsError

Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Group(_Strict):
    grid: dict[str, list[Scalar]] = Field(default_factory=dict)
    arms: list[dict[str, Scalar]] = Field(default_factory=lambda: [{}])


class Cost(_Strict):
    """Seconds per experiment = overhead + train images x epochs / train rate + test images / eval rate."""

    train_images: int = Field(ge=1)
    epochs: int = Field(ge=1)
    train_images_per_s: float = Field(gt=0)
    test_images: int = Field(ge=1)
    eval_images_per_s: float = Field(gt=0)
    overhead_s: float = Field(ge=0)  # dvc, noise, denoise (cleanlab/analyzer fit their classifier here)
    setup_s: float = Field(ge=0)  # once: download, analyze, detect_leaks, ... of the dataset


class Study(_Strict):
    dataset: str
    preset: dict[str, Scalar] = Field(default_factory=dict)
    seeds: list[int] = Field(min_length=1)
    seed_params: list[str] = Field(default_factory=lambda: ["noise.seed", "train.seed", "denoise.seed"])
    groups: dict[str, Group]
    cost: Cost
    jobs: int = Field(default=1, ge=1)  # experiments at a time
    # torch/OpenMP threads per experiment (OMP_NUM_THREADS of the queue workers); null: torch's default
    # (every core). On 2 CPU cores, 2 jobs x 1 thread trains ~2x faster than 1 job x 2 threads, and a
    # single-threaded run keeps its speed when other processes share the cores (OpenMP's 2-thread
    # barriers lose ~5x then: 61 vs 315 ResNet-18 images/s measured on this project's 2-core machine).
    threads_per_job: int | None = Field(default=None, ge=1)
    # Stages run once with the preset and committed before anything is queued (the study's baseline
    # commit): DVC's run cache skips no stage with uncached outputs (plots, metrics), so without it
    # every experiment would redo download and analyze.
    setup_stages: list[str] = Field(default_factory=lambda: ["build_manifest"])


def load_study(path: str | Path) -> Study:
    """Read and check a study file; a bad one raises ParamsError naming the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ParamsError(f"study file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"study file {path} is not valid YAML: {err}") from err
    try:
        return Study.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        raise ParamsError(f"study file {path}: key '{'.'.join(str(x) for x in e['loc'])}': {e['msg']}") from err


def experiments(study: Study) -> list[dict[str, Scalar]]:
    """Every distinct experiment of the study (without the seeds), preset applied, in group order."""
    out: list[dict[str, Scalar]] = []
    seen: set[tuple] = set()
    for group in study.groups.values():
        keys = list(group.grid)
        for values in itertools.product(*(group.grid[k] for k in keys)):
            for arm in group.arms:
                exp = {**study.preset, **dict(zip(keys, values)), **arm}
                key = training_key(exp)  # at rate 0 the kind flips nothing: the first listed (random) runs
                if key not in seen:
                    seen.add(key)
                    out.append(exp)
    return out


def runs(study: Study) -> list[dict[str, Scalar]]:
    """Every experiment once per seed, with the seed params set: each experiment's seeds together, in
    group order, so that a study stopped early has whole cells (n = every seed) rather than n = 1 cells."""
    return [{**exp, **{p: seed for p in study.seed_params}} for exp in experiments(study) for seed in study.seeds]


def training_key(exp: dict[str, Scalar]) -> tuple:
    """What decides a training run: at rate 0 the noise kind flips nothing, so the kind does not count."""
    items = dict(exp)
    if not items.get("noise.rate"):
        items.pop("noise.kind", None)
    return tuple(sorted((k, repr(v)) for k, v in items.items()))


def expected_seconds(study: Study) -> dict[str, float]:
    """The duration estimate printed before a study runs (see :class:`Cost`)."""
    all_runs = runs(study)
    trainings = len({training_key(r) for r in all_runs})
    c = study.cost
    per_train = c.train_images * c.epochs / c.train_images_per_s + c.test_images / c.eval_images_per_s
    total = c.setup_s + len(all_runs) * c.overhead_s + trainings * per_train
    return {"experiments": len(all_runs), "trainings": trainings, "seconds_per_training": per_train,
            "seconds": total / study.jobs}


def preset_applied(study: Study, params: dict[str, Any]) -> bool:
    """Whether params.yaml (``params``, parsed) already holds every preset value."""
    for key, want in study.preset.items():
        node: Any = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        if node != want:
            return False
    return True


def flat_keys(d: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        out |= flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}"}
    return out


def missing_keys(study: Study, params: dict[str, Any]) -> list[str]:
    """Keys the study sets that params.yaml (``params``, parsed) does not have."""
    known = flat_keys(params)
    named = set(study.seed_params) | {k for r in experiments(study) for k in r}
    return sorted(named - known)


def set_args(run: dict[str, Scalar]) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run`` (YAML scalars: null, true/false, numbers, strings)."""
    args = []
    for k, v in run.items():
        text = "null" if v is None else ("true" if v is True else "false" if v is False else str(v))
        args += ["-S", f"{k}={text}"]
    return args
