"""Many simulated experiments at once, with a known true effect, through the statistics the
assets use (``lib/experiment_stats.py``): the checks that the methods keep their promises
(false positives under daily looks, interval coverage, CUPED's variance reduction).

A simulated experiment: ``per_day`` customers are exposed each day for ``days`` days, half to
each arm. A customer has an order rate ``lambda ~ Gamma(0.6, 1)`` per 28 days; before exposure
they placed ``Poisson(lambda)`` orders in 28 days (CUPED's covariate), after it
``Poisson(lambda * (1 + effect))`` (treatment) in the 28 days the outcome counts. Each order is
worth ``LogNormal(3, 0.8)``. The true effects are known in closed form: orders per customer
``mean(lambda) * effect``; conversion ``E[exp(-lambda)] - E[exp(-lambda (1 + effect))]``
(Gamma's Laplace transform); revenue ``orders' effect * E[order value]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics_assets.lib import experiment_stats as es

SHAPE, SCALE = 0.6, 1.0
VALUE_MU, VALUE_SIGMA = 3.0, 0.8
METRICS = ("conversion", "orders", "revenue")


def true_effects(effect: float) -> dict[str, float]:
    """The treatment's true difference in each metric's mean per customer."""
    laplace = lambda s: (1 + SCALE * s) ** -SHAPE  # noqa: E731  E[exp(-s lambda)]
    order_value = np.exp(VALUE_MU + VALUE_SIGMA**2 / 2)
    orders = SHAPE * SCALE * effect
    return {
        "conversion": laplace(1.0) - laplace(1.0 + effect),
        "orders": orders,
        "revenue": orders * order_value,
    }


@dataclass(frozen=True)
class Looks:
    """Per simulation (rows) and look (columns): each metric's plain, CUPED and sequential
    intervals for treatment minus control."""

    plain: dict[str, es.Interval]
    cuped: dict[str, es.Interval]
    sequential: dict[str, es.Interval]
    customers: np.ndarray


def simulate(
    sims: int,
    days: int = 28,
    per_day: int = 200,
    effect: float = 0.0,
    seed: int = 0,
    planned: float = 5_000,
) -> Looks:
    """``sims`` experiments, looked at at the end of each of ``days`` days."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    lam = rng.gamma(SHAPE, SCALE, (sims, n))
    arm = np.tile(np.arange(n) % 2, (sims, 1))
    rng.permuted(arm, axis=1, out=arm)
    day = np.tile(np.repeat(np.arange(days), per_day), (sims, 1))
    pre = rng.poisson(lam)
    post = rng.poisson(lam * np.where(arm == 1, 1 + effect, 1.0))
    # the sum of k LogNormal order values, drawn per order
    total_orders = int(post.sum())
    values = rng.lognormal(VALUE_MU, VALUE_SIGMA, total_orders)
    owner = np.repeat(np.arange(post.size), post.ravel())
    revenue = np.bincount(owner, weights=values, minlength=post.size).reshape(post.shape)
    pre_values = rng.lognormal(VALUE_MU, VALUE_SIGMA, int(pre.sum()))
    pre_owner = np.repeat(np.arange(pre.size), pre.ravel())
    pre_revenue = np.bincount(pre_owner, weights=pre_values, minlength=pre.size).reshape(pre.shape)
    outcomes = {
        "conversion": ((post > 0).astype(float), (pre > 0).astype(float)),
        "orders": (post.astype(float), pre.astype(float)),
        "revenue": (revenue, pre_revenue),
    }
    cell = ((np.arange(sims)[:, None] * 2 + arm) * days + day).ravel()

    def cumulative(values: np.ndarray) -> np.ndarray:
        sums = np.bincount(cell, weights=values.ravel(), minlength=sims * 2 * days)
        return np.cumsum(sums.reshape(sims, 2, days), axis=2)

    count = cumulative(np.ones_like(lam))
    plain, cuped, sequential = {}, {}, {}
    for metric, (y, x) in outcomes.items():
        sy, syy = cumulative(y), cumulative(y * y)
        sx, sxx, sxy = cumulative(x), cumulative(x * x), cumulative(x * y)
        my, mx = sy / count, sx / count
        vy = (syy - count * my**2) / (count - 1)
        vx = (sxx - count * mx**2) / (count - 1)
        cxy = (sxy - count * mx * my) / (count - 1)
        t, c = (slice(None), 1), (slice(None), 0)
        if metric == "conversion":
            plain[metric] = es.two_proportions(sy[t], count[t], sy[c], count[c])
        else:
            plain[metric], _ = es.welch(my[t], vy[t], count[t], my[c], vy[c], count[c])
        # arms on the last axis for the pooled moments
        move = lambda a: np.moveaxis(a, 1, -1)  # noqa: E731
        theta = es.cuped_theta(move(count), move(mx), move(vx), move(my), move(vy), move(cxy))
        mx_all = (sx[t] + sx[c]) / (count[t] + count[c])
        adj_t = es.cuped_adjust(theta, mx_all, mx[t], vx[t], my[t], vy[t], cxy[t])
        adj_c = es.cuped_adjust(theta, mx_all, mx[c], vx[c], my[c], vy[c], cxy[c])
        cuped[metric], _ = es.welch(adj_t[0], adj_t[1], count[t], adj_c[0], adj_c[1], count[c])
        sequential[metric] = es.confidence_sequence(
            cuped[metric].estimate, cuped[metric].se, count[t] + count[c], planned
        )
    return Looks(plain, cuped, sequential, count.sum(axis=1))


def false_positive_rates(looks: Looks, metric: str) -> dict[str, float]:
    """Share of (A/A) simulations that any daily look called significant: the repeated
    fixed-horizon test against the always-valid interval."""
    naive = (looks.plain[metric].p_value < es.ALPHA).any(axis=1)
    seq = looks.sequential[metric]
    always_valid = ((seq.low > 0) | (seq.high < 0)).any(axis=1)
    return {"naive": float(naive.mean()), "sequential": float(always_valid.mean())}


def coverage(looks: Looks, metric: str, truth: float) -> dict[str, float]:
    """Share of simulations whose final-look 95 % interval holds the true effect (plain and
    CUPED), and whose always-valid interval holds it at every look."""
    last = lambda i: (i.low[:, -1] <= truth) & (truth <= i.high[:, -1])  # noqa: E731
    seq = looks.sequential[metric]
    return {
        "plain": float(last(looks.plain[metric]).mean()),
        "cuped": float(last(looks.cuped[metric]).mean()),
        "sequential_all_looks": float(((seq.low <= truth) & (truth <= seq.high)).all(1).mean()),
    }


def variance_ratio(looks: Looks, metric: str) -> float:
    """CUPED's variance of the difference over the plain estimate's, at the final look."""
    return float(
        np.mean(np.square(looks.cuped[metric].se[:, -1]))
        / np.mean(np.square(looks.plain[metric].se[:, -1]))
    )
