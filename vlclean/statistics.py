"""The statistics behind the findings: intervals over seeds, paired comparisons, loss-curve models.

Every function is pure (arrays in, numbers out; randomness passed in as ``rng``).

Per cell (one setting, ``n`` seeds): mean, sample std and a 95 % **t-interval**
``mean +- t(0.975, n-1) * std / sqrt(n)``, exact for normally distributed run-to-run variation
(training noise is close to that) and nominal at any ``n >= 2``; ``n = 1`` has no std and no interval
(``None``, printed "n/a"), never a zero.

Derived quantities (X, Y, the damage ratio) combine several cells. Their CIs come from a **paired
bootstrap over seeds**: the cells are aligned on the replicate seeds they share, seed indices are
resampled with replacement (the same indices in every cell, so a seed's runs move together), the
statistic is recomputed on the resampled cell means, and the 2.5 / 97.5 percentiles are the
interval. Percentile intervals undercover at very few seeds (with 3 seeds there are only 10 distinct
resamples): they are a floor on the uncertainty there, and the report prints ``n`` beside each.

Two settings compared on the same seeds get a paired t-test and a Wilcoxon signed-rank test on the
per-seed differences, and, given the per-image test predictions, an exact **McNemar** test: the
test images one run got right and the other wrong (``b``) against the reverse (``c``), pooled over
seed pairs; ``p = P(Binomial(b + c, 1/2) as extreme)``. Per-image pairing uses thousands of test
images where a per-seed test has a handful of seeds.

"More than linearly damaging": accuracy loss against noise rate (per seed, paired with the seed's
clean run) is fitted by ``linear a r``, ``quadratic a r + b r^2`` and ``exponential
c (exp(k r) - 1)`` (all zero at ``r = 0``) by least squares, compared by Gaussian AIC
``n ln(RSS / n) + 2 (params + 1)`` and Akaike weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
N_BOOT = 10_000


@dataclass(frozen=True)
class Summary:
    """``n`` values: mean, sample std and 95 % t-interval (``None`` for n < 2)."""

    n: int
    mean: float | None
    std: float | None
    ci95: tuple[float, float] | None


def summarise(values: Sequence[float] | np.ndarray, *, confidence: float = CONFIDENCE) -> Summary:
    """Mean, std and t-interval of ``values`` (NaN values are an error, not skipped)."""
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        raise ValueError(f"summarise: {int(np.isnan(x).sum())} of {len(x)} values are NaN")
    n = len(x)
    if n == 0:
        return Summary(0, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, None, None)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, (mean - half, mean + half))


@dataclass(frozen=True)
class Estimate:
    """A derived quantity: its value on all seeds, a paired-bootstrap interval, the seeds it rests on."""

    value: float | None
    ci95: tuple[float, float] | None
    n: int


def paired_bootstrap(
    cells: Mapping[str, np.ndarray], statistic: Callable[[Mapping[str, np.ndarray]], np.ndarray], *,
    rng: np.random.Generator, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
) -> Estimate:
    """Percentile CI of ``statistic(cell means)``, resampling the shared seeds jointly (see module doc).

    ``cells`` maps a name to an ``(n,)`` array of per-seed values, aligned: position ``i`` of every
    array is the same replicate seed. ``statistic`` gets the cell means as numpy arrays (shape ``()``
    for the point estimate, ``(n_boot,)`` for the resamples) and must be written with numpy operations;
    where it is undefined it returns NaN or inf (e.g. a ratio over a zero loss), and such resamples
    are left out of the interval (no interval at all when they are the majority).
    """
    arrays = {k: np.asarray(v, dtype=float) for k, v in cells.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"paired_bootstrap: cells are not aligned on seeds: {({k: len(v) for k, v in arrays.items()})}")
    (n,) = lengths
    if n == 0:
        return Estimate(None, None, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statistic({k: np.asarray(v.mean()) for k, v in arrays.items()}))
        if not np.isfinite(value):
            return Estimate(None, None, n)
        if n < 2:
            return Estimate(value, None, n)
        idx = rng.integers(0, n, size=(n_boot, n))
        boot = np.asarray(statistic({k: v[idx].mean(axis=1) for k, v in arrays.items()}), dtype=float)
    boot = boot[np.isfinite(boot)]
    if len(boot) < n_boot / 2:
        return Estimate(value, None, n)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return Estimate(value, (float(lo), float(hi)), n)


@dataclass(frozen=True)
class PairedTest:
    """Per-seed paired tests of ``a - b``: mean difference, paired t and Wilcoxon p-values."""

    n: int
    mean_difference: float | None
    t_p: float | None
    wilcoxon_p: float | None


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """Paired t-test and exact Wilcoxon signed-rank test of ``a`` vs ``b`` (aligned on seeds)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_test: {a.shape} and {b.shape} values are not pairs")
    n = len(a)
    if n == 0:
        return PairedTest(0, None, None, None)
    d = a - b
    if n < 2:
        return PairedTest(n, float(d.mean()), None, None)
    if np.allclose(d, d[0]):  # no spread: the t statistic is undefined
        t_p = 1.0 if d[0] == 0 else 0.0
    else:
        t_p = float(stats.ttest_rel(a, b).pvalue)
    w_p = None if np.all(d == 0) else float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return PairedTest(n, float(d.mean()), t_p, w_p)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test on per-image outcomes: ``b`` right only in A, ``c`` right only in B."""

    pairs: int  # image pairs compared (images x seed pairs)
    b: int
    c: int
    p: float


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact two-sided McNemar test of two aligned boolean arrays (same images, same order)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar: {a.shape} and {b.shape} outcomes are not pairs")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return McNemar(len(a), only_a, only_b, p)


@dataclass(frozen=True)
class ModelFit:
    name: str
    params: tuple[float, ...]
    rss: float
    aic: float
    weight: float  # Akaike weight among the models compared


LOSS_MODELS: dict[str, tuple[Callable[..., np.ndarray], tuple[float, ...]]] = {
    "linear": (lambda r, a: a * r, (0.1,)),
    "quadratic": (lambda r, a, b: a * r + b * r**2, (0.1, 0.1)),
    "exponential": (lambda r, c, k: c * np.expm1(k * r), (0.1, 1.0)),
}


def fit_loss_models(rates: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray) -> list[ModelFit]:
    """Least-squares fits of :data:`LOSS_MODELS` to (rate, loss) points, best AIC first.

    Needs more points than the largest model has parameters + 1; returns [] otherwise.
    """
    r, y = np.asarray(rates, dtype=float), np.asarray(losses, dtype=float)
    n = len(r)
    if n < 4 or len(np.unique(r[r > 0])) < 2:
        return []
    fits = []
    for name, (f, p0) in LOSS_MODELS.items():
        try:
            popt, _ = optimize.curve_fit(f, r, y, p0=p0, maxfev=20_000)
        except (RuntimeError, optimize.OptimizeWarning):
            continue
        rss = float(((f(r, *popt) - y) ** 2).sum())
        aic = n * math.log(max(rss, 1e-300) / n) + 2 * (len(popt) + 1)
        fits.append((name, tuple(float(p) for p in popt), rss, aic))
    if not fits:
        return []
    best = min(a for *_, a in fits)
    w = np.array([math.exp(-(a - best) / 2) for *_, a in fits])
    w /= w.sum()
    out = [ModelFit(name, p, rss, aic, float(wi)) for (name, p, rss, aic), wi in zip(fits, w)]
    return sorted(out, key=lambda m: m.aic)
