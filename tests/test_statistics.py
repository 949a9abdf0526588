"""The statistics of the findings on synthetic data with known effects (vlclean/statistics.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from vlclean import statistics as st


def test_t_interval_covers_the_true_mean_95_percent_of_the_time_at_three_seeds() -> None:
    rng = np.random.default_rng(1)
    draws = 4000
    hits = 0
    for _ in range(draws):
        s = st.summarise(rng.normal(0.9, 0.01, size=3))
        hits += s.ci95[0] <= 0.9 <= s.ci95[1]
    # binomial sd of the coverage at 4000 draws is 0.0034: +- 0.015 is > 4 sd
    assert abs(hits / draws - 0.95) < 0.015


def test_one_run_has_no_std_and_no_interval() -> None:
    s = st.summarise([0.91])
    assert (s.n, s.mean, s.std, s.ci95) == (1, 0.91, None, None)
    assert st.summarise([]).n == 0
    with pytest.raises(ValueError, match="NaN"):
        st.summarise([0.9, float("nan")])


def test_paired_bootstrap_covers_a_known_difference() -> None:
    """X = mean(clean) - mean(noisy) over 20 seed pairs sharing a large seed effect: coverage ~ 95 %."""
    rng = np.random.default_rng(2)
    draws, hits = 600, 0
    for _ in range(draws):
        seed_effect = rng.normal(0, 0.02, size=20)
        clean = 0.90 + seed_effect + rng.normal(0, 0.004, 20)
        noisy = 0.85 + seed_effect + rng.normal(0, 0.004, 20)
        e = st.paired_bootstrap({"c": clean, "n": noisy}, lambda m: m["c"] - m["n"], rng=rng, n_boot=2000)
        hits += e.ci95[0] <= 0.05 <= e.ci95[1]
    assert 0.90 <= hits / draws <= 0.98  # percentile bootstrap at n = 20 is close to nominal, a bit under


def test_paired_bootstrap_resamples_seeds_jointly() -> None:
    """A seed effect shared by both cells cancels: the paired interval is as narrow as the within-pair noise."""
    rng = np.random.default_rng(3)
    seed_effect = np.array([-0.05, 0.0, 0.04, 0.08, -0.03])
    clean, noisy = 0.9 + seed_effect, 0.8 + seed_effect  # exactly 0.1 apart for every seed
    e = st.paired_bootstrap({"c": clean, "n": noisy}, lambda m: m["c"] - m["n"], rng=rng)
    assert e.value == pytest.approx(0.1) and e.n == 5
    assert e.ci95 == pytest.approx((0.1, 0.1))
    # shuffled (unpaired) the same values give a wide interval
    u = st.paired_bootstrap({"c": clean, "n": noisy[[3, 1, 4, 0, 2]]},
                            lambda m: m["c"] - m["n"], rng=rng)
    assert u.ci95[1] - u.ci95[0] > 0.02


def test_paired_bootstrap_ratio_and_its_undefined_cases() -> None:
    rng = np.random.default_rng(4)
    c, n20, n40 = np.array([0.90, 0.91, 0.89]), np.array([0.85, 0.86, 0.84]), np.array([0.75, 0.76, 0.74])
    r = st.paired_bootstrap({"c": c, "a": n20, "b": n40}, lambda m: (m["c"] - m["b"]) / (m["c"] - m["a"]), rng=rng)
    assert r.value == pytest.approx(3.0) and r.ci95 == pytest.approx((3.0, 3.0))
    flat = st.paired_bootstrap({"c": c, "a": c}, lambda m: (m["c"] - m["a"]) / (m["c"] - m["a"]), rng=rng)
    assert flat.value is None and flat.ci95 is None  # 0 / 0 is not a number, never a made-up one
    one = st.paired_bootstrap({"c": c[:1], "a": n20[:1]}, lambda m: m["c"] - m["a"], rng=rng)
    assert one.value == pytest.approx(0.05) and one.ci95 is None and one.n == 1
    with pytest.raises(ValueError, match="aligned"):
        st.paired_bootstrap({"c": c, "a": n20[:2]}, lambda m: m["c"] - m["a"], rng=rng)


def test_paired_tests() -> None:
    a, b = np.array([0.90, 0.91, 0.92, 0.93]), np.array([0.88, 0.90, 0.89, 0.92])
    t = st.paired_test(a, b)
    assert t.n == 4 and t.mean_difference == pytest.approx(0.0175)
    assert t.t_p == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert t.wilcoxon_p == pytest.approx(0.125)  # exact: all 4 differences positive, 2 / 2^4
    assert st.paired_test([0.9], [0.8]).t_p is None


def test_mcnemar_exact() -> None:
    a = np.array([True] * 10 + [False] * 5 + [True] * 85)
    b = np.array([False] * 10 + [False] * 5 + [True] * 85)
    m = st.mcnemar(a, b)
    assert (m.pairs, m.b, m.c) == (100, 10, 0)
    assert m.p == pytest.approx(2 * 0.5**10)
    assert st.mcnemar(a, a).p == 1.0


def test_loss_model_comparison_picks_the_generating_shape() -> None:
    rng = np.random.default_rng(5)
    rates = np.repeat([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 3)
    convex = 0.02 * np.expm1(5 * rates) + rng.normal(0, 0.004, len(rates))
    fits = st.fit_loss_models(rates, convex)
    assert fits[0].name in ("exponential", "quadratic")
    assert next(f for f in fits if f.name == "linear").aic - fits[0].aic > 10
    assert sum(f.weight for f in fits) == pytest.approx(1.0)
    linear = 0.3 * rates + rng.normal(0, 0.004, len(rates))
    fits = st.fit_loss_models(rates, linear)
    # nested models: the extra parameter cannot raise the fit's likelihood much on linear data
    assert next(f for f in fits if f.name == "linear").aic - fits[0].aic < 4
    assert st.fit_loss_models([0.0, 0.2], [0.0, 0.1]) == []
