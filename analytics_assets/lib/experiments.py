"""Experiments read from the events: what is declared, each arm's summary statistics in one
SQL query, and per look the intervals, checks and verdict.

**Declared** in ``experiments.yaml`` (``settings.experiments_file()``): per experiment its
variants (a list, or variant -> weight), ``control`` (default: the first), ``primary_metric``
(``conversion``, ``orders`` or ``revenue``), ``start`` (default: the first exposure),
``horizon_days`` (28) and ``planned_customers`` (the sample the sequential interval is tuned
for, 10,000). Exposures are events ``experiment_exposure`` whose properties name the experiment
and variant.

**Counted** per customer, from their first exposure to the experiment (a customer exposed to
two variants stays in the first, and is reported as a crossover): conversion (any purchase from
the exposure to the look), orders and revenue over that time; the same three over the 28 days
before the exposure are CUPED's covariates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from analytics_assets.lib import experiment_stats as es
from analytics_assets.lib.names import EXPERIMENT_NAME

METRICS = ("conversion", "orders", "revenue")
PRE_DAYS = 28
SHIP, STOP, KEEP_RUNNING = "ship", "stop", "keep_running"


class DeclarationError(ValueError):
    """An experiment's declaration that cannot be analysed, with the reason."""


@dataclass(frozen=True)
class Declaration:
    name: str
    variants: dict[str, float]
    """Variant -> its share of the split (weights, normalized when tested)."""
    control: str
    primary_metric: str = "conversion"
    start: date | None = None
    horizon_days: int = 28
    planned_customers: int = 10_000
    description: str = ""

    @property
    def treatments(self) -> list[str]:
        return [v for v in self.variants if v != self.control]

    def to_yaml(self) -> dict:
        out: dict = {"variants": dict(self.variants), "control": self.control}
        out.update(primary_metric=self.primary_metric, horizon_days=self.horizon_days)
        out["planned_customers"] = self.planned_customers
        if self.start:
            out["start"] = self.start.isoformat()
        if self.description:
            out["description"] = self.description
        return out


def declaration(name: str, spec: object) -> Declaration:
    """One experiment's declaration from its YAML mapping; :class:`DeclarationError` says what
    is wrong with it."""
    import re

    if not re.match(EXPERIMENT_NAME, str(name)):
        raise DeclarationError(f"the name {name!r} is not {EXPERIMENT_NAME}")
    if not isinstance(spec, dict):
        raise DeclarationError("a declaration is a mapping (variants, control, ...)")
    unknown = set(spec) - {
        "variants", "control", "primary_metric", "start", "horizon_days",
        "planned_customers", "description",
    }  # fmt: skip
    if unknown:
        raise DeclarationError(f"unknown keys {sorted(unknown)}")
    raw = spec.get("variants")
    if isinstance(raw, list):
        variants = {str(v): 1.0 for v in raw}
    elif isinstance(raw, dict):
        variants = {str(k): float(v) for k, v in raw.items()}
    else:
        raise DeclarationError("variants: a list of names, or a mapping name -> weight")
    if len(variants) < 2:
        raise DeclarationError(
            f"{len(variants)} variant declared: an experiment compares at least two"
        )
    bad = [v for v in variants if not re.match(EXPERIMENT_NAME, v)]
    if bad:
        raise DeclarationError(f"variant names {bad} are not {EXPERIMENT_NAME}")
    if any(not math.isfinite(w) or w <= 0 for w in variants.values()):
        raise DeclarationError("every variant's weight must be a positive number")
    control = str(spec.get("control", next(iter(variants))))
    if control not in variants:
        raise DeclarationError(f"control {control!r} is not one of the variants {list(variants)}")
    metric = spec.get("primary_metric", "conversion")
    if metric not in METRICS:
        raise DeclarationError(f"primary_metric {metric!r} is not one of {METRICS}")
    start = spec.get("start")
    try:
        start = date.fromisoformat(str(start)) if start is not None else None
        horizon = int(spec.get("horizon_days", 28))
        planned = int(spec.get("planned_customers", 10_000))
    except (TypeError, ValueError) as exc:
        raise DeclarationError(f"start, horizon_days or planned_customers: {exc}") from None
    if horizon < 1 or planned < 10:
        raise DeclarationError("horizon_days must be >= 1 and planned_customers >= 10")
    return Declaration(
        str(name), variants, control, metric, start, horizon, planned,
        str(spec.get("description", "")),
    )  # fmt: skip


@dataclass
class Declarations:
    valid: dict[str, Declaration] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    """Name -> why its declaration cannot be analysed."""
    error: str | None = None
    """Why the file as a whole could not be read (then nothing is declared)."""


def load(path: Path) -> Declarations:
    """The declarations in ``path`` (none when it does not exist). A file that does not parse,
    or a declaration that is wrong, is reported, never raised: the other experiments are still
    analysed."""
    import yaml

    found = Declarations()
    if not path.exists():
        return found
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        found.error = f"{path}: {exc}"
        return found
    if not isinstance(data, dict):
        found.error = f"{path}: expected a mapping of experiment name -> declaration"
        return found
    for name, spec in data.items():
        try:
            found.valid[str(name)] = declaration(str(name), spec)
        except DeclarationError as exc:
            found.invalid[str(name)] = str(exc)
    return found


def save(path: Path, declared: list[Declaration]) -> None:
    """Add (or replace) these declarations in ``path``, keeping the others."""
    import yaml

    from analytics_assets.lib.atomic_files import write_text

    data = {}
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {}
    for d in declared:
        data[d.name] = d.to_yaml()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def _metric_columns() -> str:
    parts = []
    for m in METRICS:
        y, x = m, f"pre_{m}"
        parts.append(
            f"avg({y}) AS {m}_mean, coalesce(var_samp({y}), 0) AS {m}_var, "
            f"avg({x}) AS {m}_pre_mean, coalesce(var_samp({x}), 0) AS {m}_pre_var, "
            f"coalesce(covar_samp({x}, {y}), 0) AS {m}_cov"
        )
    return ",\n       ".join(parts)


ARM_STATISTICS = f"""
WITH looks AS (
    SELECT CAST(d AS DATE) AS day FROM range($first, $last + 1, INTERVAL 1 DAY) t(d)
), exposures AS MATERIALIZED (
    SELECT json_extract_string(properties, '$.experiment') AS experiment,
           json_extract_string(properties, '$.variant') AS variant,
           customer_id, occurred_at
    FROM {{events}}
    WHERE event_type = 'experiment_exposure' AND occurred_at < $cut
), firsts AS MATERIALIZED (
    SELECT experiment, customer_id, arg_min(variant, occurred_at) AS variant,
           min(occurred_at) AS exposed_at,
           (min(occurred_at) AT TIME ZONE 'UTC')::DATE AS exposed_day
    FROM exposures GROUP BY experiment, customer_id
), crossings AS (  -- when a customer first saw a second variant
    SELECT f.experiment, f.customer_id,
           (min(e.occurred_at) AT TIME ZONE 'UTC')::DATE AS crossed_day
    FROM firsts f JOIN exposures e USING (experiment, customer_id)
    WHERE e.variant IS DISTINCT FROM f.variant
    GROUP BY f.experiment, f.customer_id
), purchases AS (
    SELECT customer_id, occurred_at, amount FROM {{events}}
    WHERE event_type = 'purchase' AND occurred_at < $cut
), matched AS MATERIALIZED (
    SELECT f.experiment, f.customer_id, p.occurred_at >= f.exposed_at AS post,
           (p.occurred_at AT TIME ZONE 'UTC')::DATE AS day, p.amount
    FROM firsts f JOIN purchases p
      ON p.customer_id = f.customer_id
     AND p.occurred_at >= f.exposed_at - INTERVAL {PRE_DAYS} DAY
), pre AS (
    SELECT experiment, customer_id, count(*) AS pre_orders,
           coalesce(sum(amount), 0) AS pre_revenue
    FROM matched WHERE NOT post GROUP BY experiment, customer_id
), post_daily AS (
    SELECT experiment, customer_id, day, count(*) AS orders,
           coalesce(sum(amount), 0) AS revenue
    FROM matched WHERE post GROUP BY experiment, customer_id, day
), grid AS (
    SELECT l.day, f.* FROM firsts f JOIN looks l ON f.exposed_day <= l.day
), outcomes AS (  -- each customer's orders and revenue from exposure to each look
    SELECT g.day, g.experiment, g.customer_id, sum(p.orders) AS orders,
           sum(p.revenue) AS revenue
    FROM grid g JOIN post_daily p
      ON p.experiment = g.experiment AND p.customer_id = g.customer_id AND p.day <= g.day
    GROUP BY g.day, g.experiment, g.customer_id
), per_customer AS (
    SELECT g.day, g.experiment, g.variant, g.exposed_at,
           coalesce(c.crossed_day <= g.day, false) AS crossed,
           coalesce(p.orders, 0)::DOUBLE AS orders,
           coalesce(p.revenue, 0)::DOUBLE AS revenue,
           coalesce(b.pre_orders, 0)::DOUBLE AS pre_orders,
           coalesce(b.pre_revenue, 0)::DOUBLE AS pre_revenue
    FROM grid g
    LEFT JOIN outcomes p
      ON p.day = g.day AND p.experiment = g.experiment AND p.customer_id = g.customer_id
    LEFT JOIN pre b ON b.experiment = g.experiment AND b.customer_id = g.customer_id
    LEFT JOIN crossings c ON c.experiment = g.experiment AND c.customer_id = g.customer_id
)
SELECT day, experiment, variant, count(*) AS customers,
       count(*) FILTER (WHERE crossed) AS crossovers,
       min(exposed_at) AS first_exposure,
       {_metric_columns()}
FROM (
    SELECT *, (orders > 0)::DOUBLE AS conversion, (pre_orders > 0)::DOUBLE AS pre_conversion
    FROM per_customer
)
GROUP BY day, experiment, variant
ORDER BY day, experiment, variant
"""


def arm_statistics(
    conn: duckdb.DuckDBPyConnection, first: date, last: date, events: str
) -> pl.DataFrame:
    """Per look (``day``, each of ``first`` .. ``last``: events before its end), experiment and
    variant seen: exposed customers, crossovers, first exposure, and per metric the mean and
    variance of the outcome and of its pre-exposure covariate, and their covariance. One query
    for all the looks: each customer's outcome at each look sums their purchase days up to
    it, so the events are read once for a range of looks (30 looks at 10M events took 12 s
    against 1.6 s for one: ``BENCHMARKS.md``, experiments)."""
    relation = conn.execute(
        ARM_STATISTICS.format(events=events),
        {"first": first, "last": last, "cut": look_cut(last)},
    )
    return pl.from_arrow(relation.fetch_arrow_table())


LOOK_SCHEMA = {
    "day": pl.Date,
    "experiment": pl.String,
    "variant": pl.String,
    "is_control": pl.Boolean,
    "metric": pl.String,
    "customers": pl.Int64,
    "mean": pl.Float64,
    "control_mean": pl.Float64,
    "diff": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p_value": pl.Float64,
    "lift": pl.Float64,
    "lift_low": pl.Float64,
    "lift_high": pl.Float64,
    "cuped_diff": pl.Float64,
    "cuped_low": pl.Float64,
    "cuped_high": pl.Float64,
    "cuped_variance_ratio": pl.Float64,
    "seq_low": pl.Float64,
    "seq_high": pl.Float64,
    "seq_p_value": pl.Float64,
}
VERDICT_SCHEMA = {
    "day": pl.Date,
    "experiment": pl.String,
    "verdict": pl.String,
    "valid": pl.Boolean,
    "reason": pl.String,
    "primary_metric": pl.String,
    "best_variant": pl.String,
    "customers": pl.Int64,
    "srm_p_value": pl.Float64,
    "srm_passed": pl.Boolean,
    "crossovers": pl.Int64,
    "unknown_variant_customers": pl.Int64,
    "days_running": pl.Int64,
    "horizon_days": pl.Int64,
    "start": pl.Date,
}


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _compare(arms: dict[str, dict], control: str, variant: str, metric: str, d: Declaration):
    """Treatment ``variant`` against the control on ``metric``: one look row's numbers."""
    t, c = arms[variant], arms[control]
    n_t, n_c = t["customers"], c["customers"]
    mt, vt, mc, vc = (
        t[f"{metric}_mean"],
        t[f"{metric}_var"],
        c[f"{metric}_mean"],
        c[f"{metric}_var"],
    )
    if metric == "conversion":
        plain = es.two_proportions(mt * n_t, n_t, mc * n_c, n_c)
    else:
        plain, _ = es.welch(mt, vt, n_t, mc, vc, n_c)
    lift = es.relative_lift(mt, vt, n_t, mc, vc, n_c)
    both = [c, t]
    column = lambda k: np.array([a[f"{metric}_{k}"] for a in both])  # noqa: E731
    counts = np.array([n_c, n_t], dtype=float)
    theta = float(
        es.cuped_theta(
            counts, column("pre_mean"), column("pre_var"), column("mean"), column("var"),
            column("cov"),
        )
    )  # fmt: skip
    x_all = float((counts * column("pre_mean")).sum() / counts.sum())
    adj = [
        es.cuped_adjust(
            theta, x_all, a[f"{metric}_pre_mean"], a[f"{metric}_pre_var"], a[f"{metric}_mean"],
            a[f"{metric}_var"], a[f"{metric}_cov"],
        )
        for a in both
    ]  # fmt: skip
    cuped, _ = es.welch(adj[1][0], adj[1][1], n_t, adj[0][0], adj[0][1], n_c)
    alpha = es.ALPHA / max(1, len(d.treatments))
    seq = es.confidence_sequence(cuped.estimate, cuped.se, n_t + n_c, d.planned_customers, alpha)
    plain_var = float(plain.se) ** 2
    return {
        "customers": n_t,
        "mean": _finite(mt),
        "control_mean": _finite(mc),
        "diff": _finite(plain.estimate),
        "ci_low": _finite(plain.low),
        "ci_high": _finite(plain.high),
        "p_value": _finite(plain.p_value),
        "lift": _finite(lift.estimate),
        "lift_low": _finite(lift.low),
        "lift_high": _finite(lift.high),
        "cuped_diff": _finite(cuped.estimate),
        "cuped_low": _finite(cuped.low),
        "cuped_high": _finite(cuped.high),
        "cuped_variance_ratio": _finite(float(cuped.se) ** 2 / plain_var) if plain_var else None,
        "seq_low": _finite(seq.low),
        "seq_high": _finite(seq.high),
        "seq_p_value": _finite(seq.p_value),
    }


@dataclass(frozen=True)
class Look:
    """Every experiment as of the end of one day: rows of ``experiment_looks`` and
    ``experiment_verdicts``."""

    looks: pl.DataFrame
    verdicts: pl.DataFrame


def analyse(arm_stats: pl.DataFrame, declared: Declarations, day: date) -> Look:
    """The look at the end of ``day`` (``arm_stats``: that day's rows of
    :func:`arm_statistics`): per experiment and treatment the plain, CUPED and sequential
    comparisons on each metric, the SRM check and the verdict. Experiments exposed but not
    declared, and declarations that are wrong, get a verdict row that says so."""
    look_rows: list[dict] = []
    verdicts: list[dict] = []
    seen = (
        set(arm_stats["experiment"].drop_nulls().unique().to_list()) if arm_stats.height else set()
    )
    base = {"day": day}
    for name in sorted(seen | set(declared.valid) | set(declared.invalid)):
        rows = arm_stats.filter(pl.col("experiment") == name).to_dicts()
        exposed = sum(r["customers"] for r in rows)
        crossovers = sum(r["crossovers"] for r in rows)
        if name in declared.invalid or name not in declared.valid:
            reason = (
                f"declaration invalid: {declared.invalid[name]}"
                if name in declared.invalid
                else "not declared: add it to experiments.yaml (variants, control) to analyse it"
            )
            verdicts.append(
                {**base, "experiment": name, "verdict": KEEP_RUNNING, "valid": False,
                 "reason": reason, "customers": exposed, "crossovers": crossovers}
            )  # fmt: skip
            continue
        d = declared.valid[name]
        arms = {r["variant"]: r for r in rows if r["variant"] in d.variants}
        unknown = exposed - sum(a["customers"] for a in arms.values())
        observed = [arms[v]["customers"] if v in arms else 0 for v in d.variants]
        _, srm_p = es.sample_ratio(observed, list(d.variants.values()))
        first = min((r["first_exposure"] for r in rows), default=None)
        start = d.start or (first.date() if first else None)
        running = (day - start).days + 1 if start else 0
        verdict = {
            **base, "experiment": name, "primary_metric": d.primary_metric,
            "customers": exposed - unknown, "srm_p_value": srm_p,
            "srm_passed": srm_p >= es.SRM_ALPHA, "crossovers": crossovers,
            "unknown_variant_customers": unknown, "days_running": running,
            "horizon_days": d.horizon_days, "start": start, "valid": True,
        }  # fmt: skip
        for variant in d.variants:
            arm = arms.get(variant)
            for metric in METRICS:
                row = {**base, "experiment": name, "variant": variant, "metric": metric}
                row["is_control"] = variant == d.control
                row["customers"] = arm["customers"] if arm else 0
                if arm and variant == d.control:
                    row["mean"] = row["control_mean"] = _finite(arm[f"{metric}_mean"])
                elif (
                    arm
                    and d.control in arms
                    and min(arm["customers"], arms[d.control]["customers"]) >= 2
                ):
                    row.update(_compare(arms, d.control, variant, metric, d))
                look_rows.append(row)
        verdict.update(_verdict(d, arms, look_rows, name, day, running, srm_p, observed))
        verdicts.append(verdict)
    return Look(
        pl.DataFrame(look_rows, schema=LOOK_SCHEMA),
        pl.DataFrame(verdicts, schema=VERDICT_SCHEMA),
    )


def _verdict(d, arms, look_rows, name, day, running, srm_p, observed) -> dict:
    """Ship, stop or keep running, with the reason, from the primary metric's always-valid
    intervals (the only ones that may be read at every look)."""
    split = "/".join(f"{n:,}" for n in observed)
    weights = "/".join(f"{w:g}" for w in d.variants.values())
    if sum(observed) == 0:
        return {"verdict": KEEP_RUNNING, "reason": "no exposures yet"}
    if srm_p < es.SRM_ALPHA:
        return {
            "verdict": STOP,
            "valid": False,
            "reason": f"sample ratio mismatch: {split} exposed against weights {weights} "
            f"(chi-square p = {srm_p:.2g}); the split is broken and its lifts are no result: "
            "fix the assignment and restart",
        }
    if d.control not in arms:
        return {"verdict": KEEP_RUNNING, "reason": f"no customer in control {d.control!r} yet"}
    primary = [
        r for r in look_rows
        if r["experiment"] == name and r["metric"] == d.primary_metric and not r["is_control"]
        and r.get("seq_low") is not None
    ]  # fmt: skip
    winners = [r for r in primary if r["seq_low"] > 0]
    losers = [r for r in primary if r["seq_high"] < 0]

    def described(r: dict) -> str:
        c = r["control_mean"] or 0
        rel = (lambda x: x / c if c else None) if c else (lambda x: None)
        return (
            f"{r['variant']}: {d.primary_metric} {_pct(r['lift'])} "
            f"(always-valid interval {_pct(rel(r['seq_low']))} .. {_pct(rel(r['seq_high']))})"
        )

    if winners:
        best = max(winners, key=lambda r: r["cuped_diff"])
        return {
            "verdict": SHIP,
            "best_variant": best["variant"],
            "reason": f"ship {described(best)}",
        }
    if primary and len(losers) == len(primary):
        return {
            "verdict": STOP,
            "reason": "every treatment is worse: " + "; ".join(map(described, losers)),
        }
    if running >= d.horizon_days:
        shown = "; ".join(map(described, primary)) or "no comparison possible"
        return {
            "verdict": STOP,
            "reason": f"horizon of {d.horizon_days} days reached with no effect shown: {shown}",
        }
    shown = "; ".join(map(described, primary)) or "too few customers to compare"
    left = d.horizon_days - running
    return {
        "verdict": KEEP_RUNNING,
        "reason": f"no effect shown yet, {left} days to the horizon: {shown}",
    }


def look_cut(day: date) -> datetime:
    """The instant a look at the end of ``day`` (UTC) counts events before."""
    from datetime import UTC

    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
