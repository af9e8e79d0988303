"""Experiments: how long one look at 20 experiments over 10M events takes, and whether the
statistics keep their promises. Every figure is measured in this run on this machine.

- ``analyse_s``: one look (``lib.experiments.arm_statistics`` + ``analyse``: first exposures,
  outcomes after them, pre-exposure covariates, intervals, CUPED, SRM and verdicts) at 20
  experiments of 50,000 customers each, in a lakehouse of 10M events (9M page views, carts and
  purchases of 200,000 customers over 90 days, 1M exposures), median of 3; beside it in the same
  run ``scan_floor_s``, the time to read the same rows' columns and do nothing with them, and
  ``looks_30_s``, the 30 looks of a backfill (the last 30 days) in one query and 30 analyses;
- ``aa_false_positive_rate``: 500 simulated A/A experiments looked at daily for 28 days
  (``testing/experiment_sim``: 200 customers a day): the share where any look's always-valid
  interval excluded 0, worst metric; ``aa_naive_false_positive_rate`` the repeated t-test's;
- ``ci_coverage``: 500 A/B runs with a 10 % effect: the share of final 95 % intervals holding
  the true effect, worst of (conversion, orders, revenue) x (plain, CUPED);
- ``cuped_variance_ratio``: CUPED's variance of the difference over the plain one's, revenue,
  in the simulation; ``cuped_variance_ratio_warehouse`` the median over the 20 experiments'
  revenue in the 10M-event warehouse (its synthetic customers have little history to use).

Usage: ``uv run python benchmarks/experiments.py [--quick]`` (quick: 1M events, 200 sims).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

CUSTOMERS = 200_000


def simulations(sims: int) -> dict:
    from analytics_assets.testing import experiment_sim as sim

    started = time.perf_counter()
    aa = sim.simulate(sims, days=28, per_day=200, effect=0.0, seed=2026)
    rates = {m: sim.false_positive_rates(aa, m) for m in sim.METRICS}
    ab = sim.simulate(sims, days=28, per_day=200, effect=0.1, seed=2027)
    truth = sim.true_effects(0.1)
    cover = {m: sim.coverage(ab, m, truth[m]) for m in sim.METRICS}
    ratios = {m: sim.variance_ratio(ab, m) for m in sim.METRICS}
    print(f"simulations: {time.perf_counter() - started:.1f} s", flush=True)
    for m in sim.METRICS:
        print(f"  {m}: A/A {rates[m]}, coverage {cover[m]}, CUPED ratio {ratios[m]:.3f}")
    return {
        "aa_false_positive_rate": max(r["sequential"] for r in rates.values()),
        "aa_naive_false_positive_rate": min(r["naive"] for r in rates.values()),
        "ci_coverage": min(min(c["plain"], c["cuped"]) for c in cover.values()),
        "ci_coverage_max": max(max(c["plain"], c["cuped"]) for c in cover.values()),
        "sequential_coverage_all_looks": min(c["sequential_all_looks"] for c in cover.values()),
        "cuped_variance_ratio": round(ratios["revenue"], 4),
        "cuped_variance_ratio_by_metric": {m: round(r, 4) for m, r in ratios.items()},
        "simulations": sims,
    }


def warehouse(events: int, days: int, per_experiment: int) -> dict:
    from analytics_assets import settings
    from analytics_assets.lib import experiments, lakehouse
    from analytics_assets.testing import large_home

    settings.ensure_dirs()
    started = time.perf_counter()
    exposures = 20 * per_experiment
    large_home.insert_events(events - exposures, days, CUSTOMERS)
    names = large_home.insert_exposures(20, per_experiment, CUSTOMERS, days // 3, days // 3)
    print(f"home: {events:,} events in {time.perf_counter() - started:.1f} s", flush=True)
    declared = experiments.Declarations(
        valid={n: experiments.declaration(n, {"variants": ["control", "treatment"]}) for n in names}
    )
    last = large_home.last_day(days)
    cut = experiments.look_cut(last)
    timings, floors = [], []
    with lakehouse.connect(read_only=True) as conn:
        (total,) = conn.execute("SELECT count(*) FROM events").fetchone()
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(
                "SELECT count(*), count(properties), sum(amount) FROM events "
                "WHERE event_type IN ('experiment_exposure', 'purchase') AND occurred_at < $cut",
                {"cut": cut},
            ).fetchall()
            floors.append(time.perf_counter() - started)
            started = time.perf_counter()
            stats = experiments.arm_statistics(conn, last, last, "events")
            look = experiments.analyse(stats, declared, last)
            timings.append(time.perf_counter() - started)
            print(f"look: {timings[-1]:.2f} s (scan alone {floors[-1]:.2f} s)", flush=True)
        # the 30 looks of a backfill (the last 30 days) in one query, then analysed one by one
        started = time.perf_counter()
        first = last - timedelta(days=29)
        ranged = experiments.arm_statistics(conn, first, last, "events")
        for day in (first + timedelta(days=i) for i in range(30)):
            experiments.analyse(ranged.filter(ranged["day"] == day), declared, day)
        backfill = time.perf_counter() - started
        print(f"30 looks: {backfill:.2f} s", flush=True)
    revenue = look.looks.filter((look.looks["metric"] == "revenue") & ~look.looks["is_control"])[
        "cuped_variance_ratio"
    ]
    verdicts = look.verdicts["verdict"].value_counts()
    return {
        "analyse_s": round(statistics.median(timings), 3),
        "analyse_s_runs": [round(t, 3) for t in timings],
        "scan_floor_s": round(statistics.median(floors), 3),
        "looks_30_s": round(backfill, 3),
        "events": total,
        "experiments": look.verdicts.height,
        "exposed_customers": int(look.verdicts["customers"].sum()),
        "srm_failures": int((~look.verdicts["srm_passed"]).sum()),
        "verdicts": dict(zip(verdicts["verdict"], verdicts["count"], strict=True)),
        "cuped_variance_ratio_warehouse": round(float(revenue.median()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    events, days, per_experiment, sims = (
        (1_000_000, 30, 5_000, 200) if args.quick else (10_000_000, 90, 50_000, 500)
    )
    results = simulations(sims)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ANALYTICS_HOME"] = str(Path(tmp) / "home")
        for name in ("ANALYTICS_LAKEHOUSE_CATALOG", "ANALYTICS_LAKEHOUSE_DATA"):
            os.environ.pop(name, None)
        results.update(warehouse(events, days, per_experiment))
    print(json.dumps({"bench": "experiments", "quick": args.quick, **results}))


if __name__ == "__main__":
    main()
