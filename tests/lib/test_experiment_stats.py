"""The experiment statistics against references no one here wrote (scipy, statsmodels), and
the methods' promises on simulated experiments with a known effect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from analytics_assets.lib import experiment_stats as es
from analytics_assets.testing import experiment_sim as sim

TOL = {"rel": 1e-9, "abs": 1e-12}


def moments(a: np.ndarray) -> tuple[float, float, int]:
    return float(a.mean()), float(a.var(ddof=1)), a.size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.lognormal(3, 1, 900) * (rng.random(900) < 0.3)
    c = rng.lognormal(3, 1.2, 1_300) * (rng.random(1_300) < 0.25)
    interval, df = es.welch(*moments(t), *moments(c))
    ref = stats.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert interval.estimate == pytest.approx(t.mean() - c.mean(), **TOL)
    assert interval.p_value == pytest.approx(ref.pvalue, **TOL)
    assert df == pytest.approx(ref.df, **TOL)
    assert (interval.low, interval.high) == (
        pytest.approx(ci.low, **TOL),
        pytest.approx(ci.high, **TOL),
    )


@pytest.mark.parametrize(("x_t", "n_t", "x_c", "n_c"), [(130, 1_000, 100, 1_000), (7, 53, 19, 61)])
def test_two_proportions_equal_statsmodels(x_t: int, n_t: int, x_c: int, n_c: int) -> None:
    interval = es.two_proportions(x_t, n_t, x_c, n_c)
    _, p = proportions_ztest([x_t, x_c], [n_t, n_c])
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff")
    assert interval.p_value == pytest.approx(p, **TOL)
    assert interval.low == pytest.approx(low, **TOL)
    assert interval.high == pytest.approx(high, **TOL)


def test_sample_ratio_equals_scipy_chisquare() -> None:
    observed, weights = [5_210, 4_790, 2_400], [0.4, 0.4, 0.2]
    statistic, p = es.sample_ratio(observed, weights)
    ref = stats.chisquare(observed, np.sum(observed) * np.array(weights))
    assert statistic == pytest.approx(ref.statistic, **TOL)
    assert p == pytest.approx(ref.pvalue, **TOL)
    assert es.sample_ratio([0, 0], [1, 1]) == (0.0, 1.0)


def test_cuped_equals_welch_on_the_adjusted_outcomes() -> None:
    """CUPED from summary statistics is the t-test of ``y - theta (x - mean x)`` per customer,
    theta the pooled slope."""
    rng = np.random.default_rng(5)
    lam = rng.gamma(0.6, 1.0, 3_000)
    arm = rng.random(3_000) < 0.5
    x = rng.poisson(lam).astype(float)
    y = rng.poisson(lam * np.where(arm, 1.1, 1.0)).astype(float)
    theta_ref = np.cov(x, y, ddof=1)[0, 1] / x.var(ddof=1)
    adjusted = y - theta_ref * (x - x.mean())
    ref = stats.ttest_ind(adjusted[arm], adjusted[~arm], equal_var=False)

    def arm_stats(mask):
        return (
            mask.sum(),
            x[mask].mean(),
            x[mask].var(ddof=1),
            y[mask].mean(),
            y[mask].var(ddof=1),
            np.cov(x[mask], y[mask], ddof=1)[0, 1],
        )

    t, c = arm_stats(arm), arm_stats(~arm)
    columns = [np.array([c[i], t[i]]) for i in range(6)]
    theta = es.cuped_theta(*columns)
    assert theta == pytest.approx(theta_ref, **TOL)
    adj_t = es.cuped_adjust(theta, x.mean(), t[1], t[2], t[3], t[4], t[5])
    adj_c = es.cuped_adjust(theta, x.mean(), c[1], c[2], c[3], c[4], c[5])
    interval, _ = es.welch(adj_t[0], adj_t[1], t[0], adj_c[0], adj_c[1], c[0])
    assert interval.p_value == pytest.approx(ref.pvalue, **TOL)
    assert interval.low == pytest.approx(ref.confidence_interval().low, **TOL)
    assert interval.se**2 < (y[arm].var(ddof=1) / t[0] + y[~arm].var(ddof=1) / c[0])


def test_relative_lift_by_the_delta_method() -> None:
    lift = es.relative_lift(11.0, 4.0, 400, 10.0, 4.0, 400)
    se = np.sqrt(4 / 400 / 100 + 121 * 4 / 400 / 10_000)
    assert lift.estimate == pytest.approx(0.1)
    assert lift.high - lift.estimate == pytest.approx(stats.norm.ppf(0.975) * se)


def test_confidence_sequence_is_wider_than_the_fixed_interval_and_shrinks() -> None:
    fixed = es.two_proportions(130, 1_000, 100, 1_000)
    seq = es.confidence_sequence(fixed.estimate, fixed.se, 2_000, planned=2_000)
    assert seq.low < fixed.low and seq.high > fixed.high
    more = es.confidence_sequence(fixed.estimate, fixed.se / 2, 8_000, planned=2_000)
    assert more.high - more.low < seq.high - seq.low
    assert 0 < seq.p_value <= 1


def test_daily_looks_keep_false_positives_under_five_percent() -> None:
    """500 A/A experiments, looked at daily for 28 days: the always-valid interval excludes 0
    on some look in at most 5 % of them; the repeated t-test far more often."""
    looks = sim.simulate(500, days=28, per_day=200, effect=0.0, seed=11)
    for metric in sim.METRICS:
        rates = sim.false_positive_rates(looks, metric)
        assert rates["sequential"] <= 0.05, (metric, rates)
        assert rates["naive"] >= 0.15, (metric, rates)


def test_intervals_cover_the_true_effect() -> None:
    """95 % intervals hold the known effect in 93-97 % of A/B runs. Over 500 runs one share
    has a standard error of 1 point, so six of them (3 metrics x plain, CUPED) would leave the
    band by chance now and then: 2,000 runs (four seeds of 500) measure each to half a point."""
    runs = [sim.simulate(500, days=28, per_day=200, effect=0.1, seed=s) for s in (12, 13, 14, 15)]
    for metric, truth in sim.true_effects(0.1).items():
        shares = [sim.coverage(looks, metric, truth) for looks in runs]
        covered = {k: float(np.mean([s[k] for s in shares])) for k in shares[0]}
        assert 0.93 <= covered["plain"] <= 0.97, (metric, covered)
        assert 0.93 <= covered["cuped"] <= 0.97, (metric, covered)
        assert covered["sequential_all_looks"] >= 0.95, (metric, covered)
        assert sim.variance_ratio(runs[0], metric) < 0.95
