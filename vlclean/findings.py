"""The findings: what label noise costs and what cleaning buys, from the experiments of a study.

Input: the rows of ``dvc.api.exp_show`` (one per baseline commit and experiment, params and metrics
flattened into columns named ``key`` or ``file:key`` where a key is ambiguous) and the params keys of
``params.yaml``. Output: the runs table, one cell per setting, and the headline answers.

Runs
----
Every experiment with ``metrics/eval.json`` accuracy is a run; a baseline commit's own committed
metrics are a run too; the ``workspace`` row is not (it is uncommitted state, usually the last run
again). A run listed under several revisions counts once, by its experiment id (baselines: by commit).
Rows without accuracy (failed or unfinished experiments) are listed in the report, never used.

Cells
-----
Runs are grouped by **every** param that differs among them (and by commit when several are read),
except the replicate seeds :data:`REPLICATE_SEEDS`; ``base.seed`` fixes the data (split, planted
issues, train subset) and so it separates cells. A cell is named by ``noise_kind``, ``noise_rate``,
``cleaning`` (``denoise.method``, plus any other ``denoise.*`` param that varies among that method's
runs, e.g. ``oracle (miss=hardest)``; ``none`` for no cleaning) and ``setting``: the other
varied params (leaks kept, raw labels, ...). The **reference setting** is the most common one; the
headline answers use it, and every other setting is compared with it cell by cell.

Answers (per noise kind, reference setting; see vlclean/statistics.py for the intervals)
-------
X      accuracy drop at 20 % noise, no cleaning: ``acc(0) - acc(0.2)``
Y      share of that loss an arm recovers: ``(acc(0.2, arm) - acc(0.2, none)) / X``
ratio  ``(acc(0) - acc(0.4)) / X``; 2 is what a linear effect gives
kind vs random: every non-random kind against ``random`` at each rate > 0, paired on seeds
sweep: accuracy loss against rate fitted by linear / quadratic / exponential models (AIC)
Pairs share replicate seeds: the clean run of seed s pairs with the noisy run of seed s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vlclean import statistics as st
from vlclean.errors import VLCleanError

# What the report knows about the pipeline's params; table-driven so renamed or added knobs need one edit.
KIND, RATE, METHOD = "noise.kind", "noise.rate", "denoise.method"
DATASET, DATA_SEED = "base.dataset", "base.seed"
REPLICATE_SEEDS: tuple[str, ...] = ("noise.seed", "train.seed", "denoise.seed")  # null: base.seed
CLEANING_PREFIX = "denoise."  # varying params under it qualify the cleaning arm's name
NO_CLEANING = "none"
RANDOM_KIND = "random"
X_RATE, DAMAGE_RATE = 0.2, 0.4
# report column -> (metrics file, key in it)
METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("metrics/eval.json", "accuracy"),
    "accuracy_leak_free": ("metrics/eval.json", "accuracy_leak_free"),
    "leak_inflation": ("metrics/eval.json", "leak_inflation"),
    "n_test": ("metrics/eval.json", "n_test"),
    "n_leak_free": ("metrics/eval.json", "n_leak_free"),
    "accuracy_leaked": ("metrics/eval.json", "accuracy_leaked"),
    "n_leaked": ("metrics/eval.json", "n_leaked"),
    "detection_precision": ("metrics/denoise.json", "detection.precision"),
    "detection_recall": ("metrics/denoise.json", "detection.recall"),
    "detection_f1": ("metrics/denoise.json", "detection.f1"),
    "train_images": ("metrics/denoise.json", "train_images_out"),
    "noise_actual_rate": ("metrics/noise.json", "actual_rate"),
}
META = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")
_HASH = re.compile(r"^[0-9a-f]{32}(\.dir)?$")

# A loader of one run's per-image predictions (schema.PREDICTIONS) by revision, or None where absent.
PredictionsLoader = Callable[[str], "pd.DataFrame | None"]


# -- runs ------------------------------------------------------------------------------------------
def _value(v: Any) -> Any:
    """exp_show stringifies None and booleans; numbers come back as floats (integral ones as ints here)."""
    if isinstance(v, str):
        return {"None": None, "True": True, "False": False}.get(v, v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def _column(row: Mapping[str, Any], file: str, key: str) -> Any:
    return row.get(f"{file}:{key}", row.get(key))


@dataclass
class Runs:
    """The runs table (one row per run: ``run``, ``commit``, params by dotted key, metrics) and what was not used."""

    frame: pd.DataFrame
    params: list[str]  # every params.yaml column
    metrics: list[str]  # every metric column (report names first, then the other metric columns)
    skipped: list[str] = field(default_factory=list)  # "name (rev): reason"


def runs_from_exp_show(
    rows: Iterable[Mapping[str, Any]], param_keys: Iterable[str], *, resolve: Callable[[str], str] = str,
) -> Runs:
    """The runs among ``dvc.api.exp_show`` rows (see module doc).

    ``param_keys``: the dotted keys of params.yaml (which columns are params); ``resolve`` maps a
    baseline's revision name (branch or short sha) to its commit id, so one commit listed under two
    names counts once.
    """
    keys = set(param_keys)
    records, skipped, seen = [], [], set()
    commit = None
    param_cols: set[str] = set()
    other_metric_cols: dict[str, None] = {}
    for row in rows:
        typ, rev = row.get("typ"), str(row.get("rev"))
        if rev == "workspace":
            continue
        if typ == "baseline":
            commit = resolve(rev)
            run_id, name = commit, rev
        else:
            if commit is None:
                raise VLCleanError(f"exp_show: experiment {row.get('Experiment')} ({rev}) comes before any baseline row")
            run_id, name = rev, str(row.get("Experiment") or rev)
        if run_id in seen:
            continue
        seen.add(run_id)
        acc = _value(_column(row, *METRICS["accuracy"]))
        if not isinstance(acc, (int, float)) or isinstance(acc, bool):
            skipped.append(f"{name} ({rev}): no {METRICS['accuracy'][0]} accuracy")
            continue
        rec: dict[str, Any] = {"run": name, "rev": rev, "commit": commit}
        for col, raw in row.items():
            if col in META:
                continue
            bare = col.split(":", 1)[1] if col.startswith("params.yaml:") else col
            if bare in keys and (col == bare or col.startswith("params.yaml:")):
                param_cols.add(bare)
                rec[bare] = _value(raw)
        for name_, (file, key) in METRICS.items():
            v = _value(_column(row, file, key))
            rec[name_] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
        used = {f"{f}:{k}" for f, k in METRICS.values()} | {k for _, k in METRICS.values()}
        for col, raw in row.items():
            bare = col.split(":", 1)[1] if col.startswith("params.yaml:") else col
            v = _value(raw)
            if col in META or col in used or bare in keys or (isinstance(v, str) and _HASH.match(v)):
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                other_metric_cols[col] = None
                rec[col] = float(v)
        records.append(rec)
    frame = pd.DataFrame(records)
    if frame.empty:
        raise VLCleanError("no experiment with metrics/eval.json accuracy among the experiments read"
                           + (f" ({len(skipped)} without it: {skipped[:3]})" if skipped else " (run the study first)"))
    frame[RATE] = frame[RATE].astype(float) if RATE in frame else np.nan
    return Runs(frame, sorted(param_cols), list(METRICS) + [c for c in other_metric_cols if c in frame], skipped)


def replicate_key(row: Mapping[str, Any]) -> tuple:
    """The replicate seeds actually used by a run (a null seed means ``base.seed``)."""
    return tuple(row.get(k) if row.get(k) is not None else row.get(DATA_SEED) for k in REPLICATE_SEEDS)


def varied_params(frame: pd.DataFrame, params: Iterable[str]) -> list[str]:
    """Params with more than one value among the runs (None counts as a value), replicate seeds excluded."""
    out = []
    for p in params:
        if p in REPLICATE_SEEDS or p not in frame:
            continue
        if frame[p].map(repr).nunique() > 1:
            out.append(p)
    return out


def _fmt_value(v: Any) -> str:
    return "null" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def cell_columns(runs: Runs) -> tuple[pd.DataFrame, list[str]]:
    """``runs.frame`` plus ``noise_kind, noise_rate, cleaning, setting, cell`` and the grouping params."""
    f = runs.frame.copy()
    varied = varied_params(f, runs.params)
    if f["commit"].nunique() > 1:
        varied = ["commit", *varied]
    f["noise_kind"] = f[KIND] if KIND in f else RANDOM_KIND
    f["noise_rate"] = f[RATE].fillna(0.0).astype(float) if RATE in f else 0.0
    methods = f[METHOD] if METHOD in f else pd.Series(NO_CLEANING, index=f.index)
    cleaning_params = [p for p in varied if p.startswith(CLEANING_PREFIX) and p != METHOD]
    labels = []
    for i, method in methods.items():
        same = f[methods == method]
        quals = [f"{p[len(CLEANING_PREFIX):]}={_fmt_value(f.at[i, p])}" for p in cleaning_params
                 if same[p].map(repr).nunique() > 1]
        labels.append(str(method) + (f" ({', '.join(quals)})" if quals else ""))
    f["cleaning"] = labels
    setting_params = [p for p in varied if p not in (KIND, RATE, METHOD) and p not in cleaning_params]
    f["setting"] = [", ".join(f"{p}={_fmt_value(f.at[i, p])}" for p in setting_params) for i in f.index]
    f["cell"] = [" | ".join(f"{p}={_fmt_value(f.at[i, p])}" for p in varied) or "all runs" for i in f.index]
    f["replicate"] = [replicate_key(r) for r in f.to_dict("records")]
    return f, varied


@dataclass(frozen=True)
class Cell:
    noise_kind: str
    noise_rate: float
    cleaning: str
    setting: str
    summary: st.Summary
    detection: dict | None
    leak_free: st.Summary
    runs: pd.DataFrame  # this cell's rows of the runs table

    def to_json(self) -> dict:
        s = self.summary
        out = {"noise_kind": self.noise_kind, "noise_rate": self.noise_rate, "cleaning": self.cleaning,
               "setting": self.setting, "n": s.n, "mean": _r(s.mean), "std": _r(s.std),
               "ci95": None if s.ci95 is None else [_r(s.ci95[0]), _r(s.ci95[1])],
               "accuracy_leak_free": {"n": self.leak_free.n, "mean": _r(self.leak_free.mean),
                                      "ci95": None if self.leak_free.ci95 is None else [_r(v) for v in self.leak_free.ci95]},
               "runs": self.runs["run"].tolist()}
        if self.detection is not None:
            out["detection"] = self.detection
        return out


def _r(v: float | None, nd: int = 6) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), nd)


def make_cells(frame: pd.DataFrame) -> list[Cell]:
    """One cell per value of ``cell`` (see :func:`cell_columns`), every run in exactly one."""
    cells = []
    for _, g in frame.groupby("cell", sort=False):
        first = g.iloc[0]
        det = None
        if first["cleaning"] != NO_CLEANING:
            p, r = g["detection_precision"].dropna(), g["detection_recall"].dropna()
            det = {"precision": _r(p.mean()) if len(p) else None, "recall": _r(r.mean()) if len(r) else None,
                   "n": int(min(len(p), len(r)))}
        lf = g["accuracy_leak_free"].dropna()
        cells.append(Cell(str(first["noise_kind"]), float(first["noise_rate"]), str(first["cleaning"]),
                          str(first["setting"]), st.summarise(g["accuracy"].to_numpy()), det, st.summarise(lf.to_numpy()),
                          g))
    return sorted(cells, key=lambda c: (c.setting, c.noise_kind, c.noise_rate, c.cleaning != NO_CLEANING, c.cleaning))


# -- answers ---------------------------------------------------------------------------------------
def _per_seed(cell: Cell, column: str = "accuracy") -> dict[tuple, float]:
    """Per-replicate value of a cell (runs repeated with the same seeds are averaged for pairing)."""
    return cell.runs.groupby("replicate")[column].mean().to_dict()


def _aligned(*cells: Cell) -> tuple[list[tuple], list[np.ndarray]]:
    per = [_per_seed(c) for c in cells]
    shared = sorted(set.intersection(*(set(p) for p in per)), key=repr)
    return shared, [np.array([p[s] for s in shared]) for p in per]


def _find(cells: list[Cell], kind: str, rate: float, cleaning: str, setting: str) -> Cell | None:
    for c in cells:
        if c.noise_kind == kind and math.isclose(c.noise_rate, rate) and c.cleaning == cleaning and c.setting == setting:
            return c
    return None


def _clean(cells: list[Cell], kind: str, setting: str) -> Cell | None:
    """The clean (rate 0, no cleaning) cell for ``kind``: its own or random's, whichever has more runs
    (rate 0 flips nothing, so both are clean runs; the kind's own wins a tie)."""
    own = _find(cells, kind, 0.0, NO_CLEANING, setting)
    rand = _find(cells, RANDOM_KIND, 0.0, NO_CLEANING, setting) if kind != RANDOM_KIND else None
    if own is not None or rand is not None:
        return max((c for c in (own, rand) if c is not None), key=lambda c: c.summary.n)
    zero = [c for c in cells if c.noise_rate == 0 and c.cleaning == NO_CLEANING and c.setting == setting]
    return zero[0] if zero else None


def _sig(p: float | None) -> float | None:
    """A p-value to 4 significant digits (rounding to decimals would turn small ones into 0)."""
    return None if p is None else float(f"{p:.4g}")


def _est(e: st.Estimate) -> dict:
    return {"value": _r(e.value), "ci95": None if e.ci95 is None else [_r(e.ci95[0]), _r(e.ci95[1])], "n": e.n}


def _mcnemar(a: Cell, b: Cell, load: PredictionsLoader | None) -> dict | None:
    """Per-image exact McNemar between two cells, pooled over the seed pairs both have predictions for."""
    if load is None:
        return None
    ra = a.runs.drop_duplicates("replicate").set_index("replicate")["rev"].to_dict()
    rb = b.runs.drop_duplicates("replicate").set_index("replicate")["rev"].to_dict()
    ca, cb, used = [], [], 0
    for seed in sorted(set(ra) & set(rb), key=repr):
        pa_, pb = load(ra[seed]), load(rb[seed])
        if pa_ is None or pb is None:
            continue
        m = pa_[["image_id", "correct"]].merge(pb[["image_id", "correct"]], on="image_id", how="outer",
                                               suffixes=("_a", "_b"), indicator=True)
        if (m["_merge"] != "both").any():
            raise VLCleanError(f"runs {ra[seed]} and {rb[seed]} were evaluated on different test images "
                               f"({int((m['_merge'] != 'both').sum())} not in both): not one fixed test set")
        ca.append(m["correct_a"].astype(bool).to_numpy())
        cb.append(m["correct_b"].astype(bool).to_numpy())
        used += 1
    if not used:
        return None
    t = st.mcnemar(np.concatenate(ca), np.concatenate(cb))
    return {"seed_pairs": used, "image_pairs": t.pairs, "only_first_right": t.b, "only_second_right": t.c, "p": _sig(t.p)}


def _difference(a: Cell, b: Cell, rng: np.random.Generator, load: PredictionsLoader | None) -> dict:
    """``a - b`` in accuracy, paired on seeds: bootstrap CI, paired t and Wilcoxon, McNemar per image."""
    shared, (va, vb) = _aligned(a, b)
    boot = st.paired_bootstrap({"a": va, "b": vb}, lambda m: m["a"] - m["b"], rng=rng)
    test = st.paired_test(va, vb)
    return {"difference": _est(boot), "paired_t_p": _sig(test.t_p), "wilcoxon_p": _sig(test.wilcoxon_p),
            "mcnemar": _mcnemar(a, b, load)}


def answers(cells: list[Cell], *, rng: np.random.Generator, load: PredictionsLoader | None = None) -> dict:
    """The headline answers on the reference setting and the comparisons of the other settings (see module doc)."""
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.setting] = counts.get(c.setting, 0) + c.summary.n
    ref = max(counts, key=lambda s: (counts[s], s == "")) if counts else ""
    mine = [c for c in cells if c.setting == ref]
    kinds = sorted({c.noise_kind for c in mine}, key=lambda k: (k != RANDOM_KIND, k))
    per_kind = {}
    for kind in kinds:
        clean = _clean(mine, kind, ref)
        a20 = _find(mine, kind, X_RATE, NO_CLEANING, ref)
        a40 = _find(mine, kind, DAMAGE_RATE, NO_CLEANING, ref)
        out: dict[str, Any] = {"clean": None if clean is None else clean.summary.mean}
        if clean is not None and a20 is not None:
            _, (v0, v20) = _aligned(clean, a20)
            out["X"] = _est(st.paired_bootstrap({"c": v0, "n": v20}, lambda m: m["c"] - m["n"], rng=rng))
            out["X_mcnemar"] = _mcnemar(clean, a20, load)
            arms = {}
            for arm in [c for c in mine if c.noise_kind == kind and math.isclose(c.noise_rate, X_RATE)
                        and c.cleaning != NO_CLEANING]:
                _, (v0, v20, va) = _aligned(clean, a20, arm)
                y = st.paired_bootstrap({"c": v0, "n": v20, "a": va},
                                        lambda m: (m["a"] - m["n"]) / (m["c"] - m["n"]), rng=rng)
                arms[arm.cleaning] = {"Y": _est(y), "accuracy": arm.summary.mean, "detection": arm.detection,
                                      "vs_no_cleaning": _difference(arm, a20, rng, load)}
            out["arms"] = arms
            if a40 is not None:
                _, (v0, v20, v40) = _aligned(clean, a20, a40)
                ratio = st.paired_bootstrap({"c": v0, "n": v20, "m": v40},
                                            lambda m: (m["c"] - m["m"]) / (m["c"] - m["n"]), rng=rng)
                out["ratio_40_20"] = _est(ratio)
                ci = ratio.ci95
                out["ratio_vs_linear"] = (None if ci is None else "above 2" if ci[0] > 2 else
                                          "below 2" if ci[1] < 2 else "includes 2")
        if clean is not None:
            out["sweep"] = _sweep(mine, kind, clean, ref)
        if kind != RANDOM_KIND:
            versus = {}
            for c in [c for c in mine if c.noise_kind == kind and c.cleaning == NO_CLEANING and c.noise_rate > 0]:
                r = _find(mine, RANDOM_KIND, c.noise_rate, NO_CLEANING, ref)
                if r is not None:
                    versus[f"{c.noise_rate:g}"] = _difference(c, r, rng, load)
            out["vs_random"] = versus
        per_kind[kind] = out
    settings = []
    for c in cells:
        if c.setting == ref:
            continue
        base = _find(mine, c.noise_kind, c.noise_rate, c.cleaning, ref)
        if base is None:
            continue
        d = _difference(c, base, rng, load)
        lf_c, lf_b = c.runs["leak_inflation"].dropna(), base.runs["leak_inflation"].dropna()
        settings.append({"setting": c.setting, "noise_kind": c.noise_kind, "noise_rate": c.noise_rate,
                         "cleaning": c.cleaning, "accuracy": c.summary.mean, "reference_accuracy": base.summary.mean,
                         **d, "leak_inflation": _r(lf_c.mean()) if len(lf_c) else None,
                         "reference_leak_inflation": _r(lf_b.mean()) if len(lf_b) else None})
    return {"reference_setting": ref, "kinds": per_kind, "settings": settings}


def _sweep(cells: list[Cell], kind: str, clean: Cell, setting: str) -> dict | None:
    """Loss-vs-rate model comparison over every no-cleaning rate of ``kind`` (per seed, paired with clean)."""
    noisy = [c for c in cells if c.noise_kind == kind and c.cleaning == NO_CLEANING and c.noise_rate > 0
             and c.setting == setting]
    if len({c.noise_rate for c in noisy}) < 3:
        return None
    base = _per_seed(clean)
    rates, losses = [0.0] * len(base), [0.0] * len(base)  # every clean run is a zero-loss point at rate 0
    for c in noisy:
        for seed, acc in _per_seed(c).items():
            if seed in base:
                rates.append(c.noise_rate)
                losses.append(base[seed] - acc)
    fits = st.fit_loss_models(rates, losses)
    if not fits:
        return None
    return {"rates": sorted({c.noise_rate for c in noisy}), "points": len(rates),
            "fits": [{"model": f.name, "params": [_r(p) for p in f.params], "aic": _r(f.aic, 3),
                      "delta_aic": _r(f.aic - fits[0].aic, 3), "weight": _r(f.weight, 4)} for f in fits]}


# -- presentation ----------------------------------------------------------------------------------
def fmt_pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def fmt_ci(ci, pct: bool = True, nd: int = 1) -> str:
    if ci is None:
        return "n/a"
    f = (lambda v: f"{100 * v:.{nd}f}") if pct else (lambda v: f"{v:.2f}")
    return f"[{f(ci[0])}, {f(ci[1])}]" + (" %" if pct else "")


def _pts(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} points"


def _p(v: float | None) -> str:
    """``p = 0.03`` / ``p < 0.0001`` / ``p n/a``."""
    return "p n/a" if v is None else (f"p = {v:.2g}" if v >= 1e-4 else "p < 0.0001")


def _pts_ci(ci) -> str:
    return "n/a" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] points"


def _mc_text(m: dict | None) -> str:
    if not m:
        return "no per-image predictions"
    return (f"McNemar over {m['image_pairs']:,} image pairs ({m['seed_pairs']} seed pairs): "
            f"{m['only_first_right']} vs {m['only_second_right']} discordant, {_p(m['p'])}")


def cell_row(c: Cell) -> str:
    s = c.summary
    std = "n/a" if s.std is None else f"{s.std:.4f}"
    ci = "n/a" if s.ci95 is None else f"[{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]"
    det = "" if c.detection is None else f"{_fmt_or_na(c.detection['precision'])} / {_fmt_or_na(c.detection['recall'])}"
    return (f"| {c.noise_kind} | {c.noise_rate:g} | {c.cleaning} | {c.setting or 'reference'} | {s.n} | "
            f"{s.mean:.4f} | {std} | {ci} | {det} |")


def _fmt_or_na(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def markdown(*, dataset: str, cells: list[Cell], result: dict, runs: Runs, varied: list[str], commits: list[str],
             smoke_test: bool = False) -> str:
    """findings.md: the answers as quotable sentences (CI and n each), the cells, and the limits."""
    n_runs = sum(c.summary.n for c in cells)
    lines = [f"# Findings on {dataset}" + (" (smoke test)" if smoke_test else ""), ""]
    if smoke_test:
        lines += ["**Smoke test.** The built-in digits are near-saturated and tiny; these numbers check the "
                  "machinery, they are not findings.", ""]
    lines += [f"{n_runs} runs (ResNet-18 test accuracy) from commit(s) {', '.join(c[:10] for c in commits)}, in "
              f"{len(cells)} cells grouped by every param that differs ({', '.join(varied) or 'none'}); replicates vary "
              f"{', '.join(REPLICATE_SEEDS)} on one dataset and test set fixed by `{DATA_SEED}`. 95 % intervals: "
              "t-intervals per cell; paired bootstrap over seeds for X, Y and the ratio.", ""]
    if result["reference_setting"]:
        lines += [f"Reference setting (the answers below): {result['reference_setting']}.", ""]
    lines += ["## Answers", ""]
    for kind, k in result["kinds"].items():
        if "X" in k:
            x = k["X"]
            lines.append(f"- **X ({kind}):** {int(X_RATE * 100)} % {kind} label noise costs {_pts(x['value'])} of test "
                         f"accuracy (from {fmt_pct(k['clean'])}; 95 % CI {_pts_ci(x['ci95'])}, n = {x['n']} seed pairs; "
                         f"{_mc_text(k.get('X_mcnemar'))}).")
            for arm, a in k.get("arms", {}).items():
                det = a["detection"] or {}
                lines.append(f"- **Y ({kind}, {arm}):** at {int(X_RATE * 100)} % {kind} noise, cleaning with {arm} recovers "
                             f"{fmt_pct(a['Y']['value'])} of the lost accuracy (95 % CI {fmt_ci(a['Y']['ci95'])}, "
                             f"n = {a['Y']['n']}); it flagged the flipped labels with precision "
                             f"{_fmt_or_na(det.get('precision'))} and recall {_fmt_or_na(det.get('recall'))} "
                             f"(against no cleaning: {_mc_text(a['vs_no_cleaning']['mcnemar'])}).")
            if "ratio_40_20" in k:
                r = k["ratio_40_20"]
                verdict = {"above 2": "more than the 2x a linear effect gives",
                           "below 2": "less than the 2x a linear effect gives",
                           "includes 2": "not distinguishable from the 2x of a linear effect",
                           None: "too few seeds for an interval"}[k["ratio_vs_linear"]]
                val = "n/a" if r["value"] is None else f"{r['value']:.2f}x"
                lines.append(f"- **40 % vs 20 % ({kind}):** 40 % noise does {val} the damage of 20 % "
                             f"(95 % CI {fmt_ci(r['ci95'], pct=False)}, n = {r['n']}): {verdict}.")
        sw = k.get("sweep")
        if sw:
            best, lin = sw["fits"][0], next((f for f in sw["fits"] if f["model"] == "linear"), None)
            lines.append(f"- **Loss vs rate ({kind}, rates {', '.join(f'{r:g}' for r in sw['rates'])}; {sw['points']} points):** "
                         f"the best model by AIC is {best['model']} (Akaike weight {best['weight']:.2f})"
                         + ("" if lin is None or best["model"] == "linear" else f"; linear is {lin['delta_aic']:.1f} AIC worse")
                         + ".")
        for rate, d in k.get("vs_random", {}).items():
            diff = d["difference"]
            lines.append(f"- **{kind} vs random at {float(rate) * 100:g} %:** {kind} noise leaves accuracy "
                         f"{_pts(None if diff['value'] is None else abs(diff['value']))} "
                         f"{'lower' if (diff['value'] or 0) < 0 else 'higher'} than random noise (difference 95 % CI "
                         f"{_pts_ci(diff['ci95'])}, n = {diff['n']} seed pairs; paired t {_p(d['paired_t_p'])}, "
                         f"Wilcoxon {_p(d['wilcoxon_p'])}; {_mc_text(d['mcnemar'])}).")
    for s in result["settings"]:
        diff = s["difference"]
        lines.append(f"- **{s['setting']}** ({s['noise_kind']} {s['noise_rate']:g}, {s['cleaning']}): accuracy "
                     f"{fmt_pct(s['accuracy'])} vs {fmt_pct(s['reference_accuracy'])} in the reference setting, a "
                     f"difference of {_pts(diff['value'])} (95 % CI {_pts_ci(diff['ci95'])}, n = {diff['n']}; "
                     f"{_mc_text(s['mcnemar'])}); leak inflation {fmt_pct(s['leak_inflation'])} vs "
                     f"{fmt_pct(s['reference_leak_inflation'])}.")
    lines += ["", "## Cells", "",
              "| noise kind | rate | cleaning | setting | n | accuracy | std | 95 % CI | detection P / R |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [cell_row(c) for c in cells]
    lines += ["", "## What these results do NOT show", "",
              "- Variation across datasets, train/test splits or architectures: every run shares one dataset, one "
              "test set and one model (ResNet-18 at a fixed training budget); the intervals cover seeds only.",
              "- Real annotator noise: the noise is synthetic (random, and the intelligent kinds' models of confusion).",
              "- Visual Layer itself: `oracle` simulates a detector of the stated recall and false-positive rate; only "
              "the measured arms (cleanlab, analyzer) detect on their own.",
              "- Certainty at few seeds: with 3 seeds a percentile bootstrap has only 10 distinct resamples and "
              "understates the uncertainty; per-image McNemar tests use the test images, not more seeds.",
              "- Anything beyond the rates measured: the model comparison of the loss curve holds on the sweep's range.",
              ""]
    if runs.skipped:
        lines += ["## Experiments not used", ""] + [f"- {s}" for s in runs.skipped] + [""]
    lines += ["## Definitions", "",
              f"X = acc(0) - acc({X_RATE:g}), no cleaning. Y = (acc({X_RATE:g}, arm) - acc({X_RATE:g}, none)) / X. "
              f"Ratio = (acc(0) - acc({DAMAGE_RATE:g})) / X. Pairs share replicate seeds. "
              "See vlclean/findings.py and vlclean/statistics.py.", ""]
    return "\n".join(lines)


def cells_json(cells: list[Cell]) -> list[dict]:
    return [c.to_json() for c in cells]


def runs_table(frame: pd.DataFrame, varied: list[str], metrics: list[str]) -> pd.DataFrame:
    """runs.csv: one row per run used: id, cell names, every varied param, the seeds, every metric."""
    seeds = [s for s in REPLICATE_SEEDS if s in frame]
    cols = ["run", "rev", "commit", "noise_kind", "noise_rate", "cleaning", "setting",
            *[v for v in varied if v not in ("commit",)], *seeds, DATA_SEED, *metrics]
    seen, out = set(), []
    for c in cols:
        if c in frame and c not in seen:
            seen.add(c)
            out.append(c)
    return frame[out].sort_values(["setting", "noise_kind", "noise_rate", "cleaning", "run"], kind="stable")


def findings_plot(cells: list[Cell], answers: dict, *, png_path: str | Path) -> None:
    """Three panels: accuracy vs noise rate with 95 % CI bands per kind (no cleaning, reference setting);
    Y (share of the 20 % loss recovered) per cleaning arm with its CI; detection precision / recall per arm.

    ``answers``: :func:`answers`.
    """
    from vlclean.reporting import _pyplot, save_figure

    plt = _pyplot()
    ref = answers["reference_setting"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    kinds = sorted({c.noise_kind for c in cells if c.setting == ref})
    for kind in kinds:
        mine = sorted((c for c in cells if c.setting == ref and c.noise_kind == kind and c.cleaning == "none"),
                      key=lambda c: c.noise_rate)
        if not mine:
            continue
        x = np.array([c.noise_rate * 100 for c in mine])
        y = np.array([c.summary.mean for c in mine])
        line = ax.plot(x, y, marker="o", label=f"{kind} (n per point: {min(c.summary.n for c in mine)}"
                       f"-{max(c.summary.n for c in mine)})")[0]
        lo = np.array([c.summary.ci95[0] if c.summary.ci95 else np.nan for c in mine])
        hi = np.array([c.summary.ci95[1] if c.summary.ci95 else np.nan for c in mine])
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("train labels flipped (%)")
    ax.set_ylabel("test accuracy (mean, 95 % CI band)")
    ax.set_title("What label noise costs (no cleaning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    bars = [(kind, arm, a) for kind, k in answers["kinds"].items() for arm, a in k.get("arms", {}).items()]
    ax = axes[1]
    if bars:
        ys = [100 * (a["Y"]["value"] if a["Y"]["value"] is not None else np.nan) for *_, a in bars]
        err = np.array([[ys[i] - 100 * a["Y"]["ci95"][0], 100 * a["Y"]["ci95"][1] - ys[i]] if a["Y"]["ci95"] else [0, 0]
                        for i, (*_, a) in enumerate(bars)]).T
        pos = np.arange(len(bars))
        ax.bar(pos, ys, yerr=err, capsize=3, color="tab:green", alpha=0.8)
        ax.set_xticks(pos, [f"{kind}\n{arm}" for kind, arm, _ in bars], rotation=60, ha="right", fontsize=7)
        ax.axhline(100, color="grey", lw=0.8, ls="--")
        ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("Y: share of the 20 % loss recovered (%), 95 % CI")
    ax.set_title("What cleaning buys")
    ax.grid(alpha=0.3, axis="y")
    ax = axes[2]
    det = [(kind, arm, a["detection"]) for kind, arm, a in bars if a["detection"]]
    if det:
        pos = np.arange(len(det))
        ax.bar(pos - 0.2, [d["precision"] or 0 for *_, d in det], width=0.4, label="precision")
        ax.bar(pos + 0.2, [d["recall"] or 0 for *_, d in det], width=0.4, label="recall")
        ax.set_xticks(pos, [f"{kind}\n{arm}" for kind, arm, _ in det], rotation=60, ha="right", fontsize=7)
        ax.legend(fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("detection of the flipped labels (mean over seeds)")
    ax.set_title("How well each arm finds the flips")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, png_path)
