"""The statistics of an A/B test, from each arm's summary statistics (count, mean, variance and,
for CUPED, the covariate's mean, variance and covariance): what a SQL aggregate returns, so an
experiment over millions of events is analysed without bringing a row into Python.

Every function takes numbers or numpy arrays (element-wise), so the simulations that check the
methods (``tests/lib/test_experiment_stats.py``, ``benchmarks/experiments.py``) run thousands
of experiments in one call through the same code the assets use.

* Fixed horizon: Welch's t-test and interval for a difference of means (equal to
  ``scipy.stats.ttest_ind(equal_var=False)``), the two-proportion z-test (pooled, as
  ``statsmodels``' ``proportions_ztest``) with the Wald interval, the relative lift by the delta
  method.
* CUPED (Deng, Xu, Kohavi and Walker, 2013): the outcome less ``theta`` times the pre-exposure
  covariate's deviation from its pooled mean, ``theta`` the pooled regression slope.
* Sequential: the normal-mixture confidence sequence (mixture SPRT; Robbins 1970, Johari et al.
  2017, Howard et al. 2021), valid at every look at once, so daily looks do not inflate false
  positives. Its mixing variance is tuned to be tightest near ``planned`` customers.
* Sample-ratio mismatch: Pearson's chi-square goodness of fit against the declared split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
SRM_ALPHA = 0.001
"""A split this unlikely under the declared weights is broken (the usual bar: a 1-in-1,000
false alarm per look, since the check runs at every look)."""


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided interval and p-value (arrays when the inputs are)."""

    estimate: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float
    p_value: np.ndarray | float
    se: np.ndarray | float


def welch(
    mean_t, var_t, n_t, mean_c, var_c, n_c, alpha: float = ALPHA
) -> tuple[Interval, np.ndarray | float]:
    """Difference of means (treatment - control) by Welch's t: the interval and two-sided
    p-value, and the Welch-Satterthwaite degrees of freedom."""
    a, b = np.divide(var_t, n_t), np.divide(var_c, n_c)
    se = np.sqrt(a + b)
    diff = np.subtract(mean_t, mean_c)
    with np.errstate(divide="ignore", invalid="ignore"):  # no variance: no test (NaN)
        df = (a + b) ** 2 / (a**2 / np.subtract(n_t, 1) + b**2 / np.subtract(n_c, 1))
        t = diff / se
    q = stats.t.ppf(1 - alpha / 2, df)
    p = 2 * stats.t.sf(np.abs(t), df)
    return Interval(diff, diff - q * se, diff + q * se, p, se), df


def two_proportions(x_t, n_t, x_c, n_c, alpha: float = ALPHA) -> Interval:
    """Difference of two proportions: the pooled z-test's p-value and the Wald interval."""
    p_t, p_c = np.divide(x_t, n_t), np.divide(x_c, n_c)
    pooled = np.add(x_t, x_c) / np.add(n_t, n_c)
    diff = p_t - p_c
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / np.sqrt(pooled * (1 - pooled) * (1 / np.asarray(n_t) + 1 / np.asarray(n_c)))
    se = np.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    q = stats.norm.ppf(1 - alpha / 2)
    return Interval(diff, diff - q * se, diff + q * se, 2 * stats.norm.sf(np.abs(z)), se)


def relative_lift(mean_t, var_t, n_t, mean_c, var_c, n_c, alpha: float = ALPHA) -> Interval:
    """``mean_t / mean_c - 1`` with its delta-method interval (normal)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.divide(mean_t, mean_c) - 1
        var = np.divide(var_t, n_t) / np.square(mean_c) + np.square(mean_t) * np.divide(
            var_c, n_c
        ) / np.power(mean_c, 4)
        se = np.sqrt(var)
        z = lift / se
    q = stats.norm.ppf(1 - alpha / 2)
    return Interval(lift, lift - q * se, lift + q * se, 2 * stats.norm.sf(np.abs(z)), se)


def pooled_moments(n, mean_x, var_x, mean_y, var_y, cov_xy):
    """Count, means, variances and covariance of all arms together, from each arm's (arrays
    along the last axis, one entry per arm)."""
    n = np.asarray(n, dtype=float)
    total = n.sum(axis=-1)
    mx = (n * mean_x).sum(axis=-1) / total
    my = (n * mean_y).sum(axis=-1) / total
    dx = np.asarray(mean_x) - mx[..., None]
    dy = np.asarray(mean_y) - my[..., None]
    within = lambda v: ((n - 1) * v).sum(axis=-1)  # noqa: E731
    between = lambda u, w: (n * u * w).sum(axis=-1)  # noqa: E731
    vx = (within(var_x) + between(dx, dx)) / (total - 1)
    vy = (within(var_y) + between(dy, dy)) / (total - 1)
    cxy = (within(cov_xy) + between(dx, dy)) / (total - 1)
    return total, mx, vx, my, vy, cxy


def cuped_theta(n, mean_x, var_x, mean_y, var_y, cov_xy):
    """The CUPED slope, ``cov(x, y) / var(x)`` over every exposed customer (0 where the
    covariate does not vary, which leaves the outcome as it was)."""
    _, _, vx, _, _, cxy = pooled_moments(n, mean_x, var_x, mean_y, var_y, cov_xy)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(vx > 0, cxy / np.where(vx > 0, vx, 1), 0.0)


def cuped_adjust(theta, mean_x_all, mean_x, var_x, mean_y, var_y, cov_xy):
    """One arm's mean and variance of ``y - theta * (x - mean_x_all)``."""
    mean = np.subtract(mean_y, theta * np.subtract(mean_x, mean_x_all))
    var = var_y + np.square(theta) * var_x - 2 * theta * np.asarray(cov_xy)
    return mean, np.maximum(var, 0.0)


def mixing_variance(unit_variance, planned: float, alpha: float = ALPHA):
    """The normal mixture's variance, tuned so the confidence sequence is tightest when the
    difference is estimated from about ``planned`` customers (Howard et al. 2021, eq. 14):
    ``unit_variance`` is the variance of the difference times the customers it is from."""
    rho2 = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / planned
    return np.asarray(unit_variance) * rho2


def confidence_sequence(diff, se, customers, planned: float, alpha: float = ALPHA) -> Interval:
    """The always-valid interval for a difference estimated as ``diff`` with standard error
    ``se`` from ``customers``: with probability ``1 - alpha`` it holds the true difference at
    every look at once. Its p-value (``1 / likelihood ratio`` of the mixture SPRT) is valid at
    any stopping time; its running minimum over looks is the always-valid p-value."""
    v = np.square(se)
    tau2 = mixing_variance(v * np.asarray(customers), planned, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * np.log(alpha)))
        log_lr = 0.5 * np.log(v / (v + tau2)) + np.square(diff) * tau2 / (2 * v * (v + tau2))
    p = np.minimum(1.0, np.exp(-log_lr))
    return Interval(diff, diff - half, diff + half, p, se)


def sample_ratio(observed, weights) -> tuple[float, float]:
    """Pearson's chi-square of the exposed customers per arm against the declared weights:
    the statistic and its p-value (``scipy.stats.chisquare``)."""
    observed = np.asarray(observed, dtype=float)
    weights = np.asarray(weights, dtype=float)
    expected = observed.sum() * weights / weights.sum()
    if observed.sum() == 0 or observed.size < 2:
        return 0.0, 1.0
    statistic = float(np.sum(np.square(observed - expected) / expected))
    return statistic, float(stats.chi2.sf(statistic, observed.size - 1))
