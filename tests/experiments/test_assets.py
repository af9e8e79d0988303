"""The experiments assets materialized for real on events ingested through the real ingest
path: a simulated experiment with a known effect ships, an A/A test does not, the numbers equal
a count of the same events in polars, and bad input gets a verdict with a reason."""

from __future__ import annotations

import json
from datetime import date, datetime

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analytics_assets import settings
from analytics_assets.defs.experiments.assets import experiment_looks, experiment_report
from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.lib import experiments, lakehouse
from analytics_assets.producers import simulate
from analytics_assets.producers.files import write_batch
from tests.conftest import event, purchase

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
START = datetime(2024, 3, 1)


def land(frame: pl.DataFrame, batch_id: str, tmp_path) -> None:
    path = write_batch(frame, tmp_path, batch_id, "parquet")
    with lakehouse.connect() as conn:
        ingest_file(conn, path, batch_id)


def look(resources, instance, first: date, last: date, report: bool = True):
    result = dg.materialize(
        [experiment_looks],
        resources={"warehouse": resources["warehouse"]},
        instance=instance,
        tags={RANGE[0]: first.isoformat(), RANGE[1]: last.isoformat()},
        raise_on_error=False,
    )
    if report:
        assert dg.materialize(
            [experiment_report], resources={"warehouse": resources["warehouse"]}, instance=instance
        ).success
    return result


def verdicts(day: date) -> dict[str, dict]:
    with lakehouse.connect(read_only=True) as conn:
        rows = conn.execute("SELECT * FROM experiment_verdicts WHERE day = $d", {"d": day}).pl()
    return {r["experiment"]: r for r in rows.iter_rows(named=True)}


def srm_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_a_known_effect_ships_and_an_aa_test_does_not(
    resources, instance, tmp_path, analytics_home
) -> None:
    config = simulate.SimulationConfig(
        customers=3_000,
        days=30,
        seed=4,
        start=START,
        experiments=(
            simulate.SimulatedExperiment.parse("green_button=0.6"),
            simulate.SimulatedExperiment.parse("aa_check=0"),
        ),
    )
    events = simulate.simulate_events(config)
    land(events, "sim", tmp_path)
    experiments.save(
        settings.experiments_file(),
        [experiments.declaration(e.name, {"variants": e.variants}) for e in config.experiments],
    )
    last = date(2024, 3, 30)
    result = look(resources, instance, date(2024, 3, 27), last)
    assert result.success and srm_check(result).passed
    found = verdicts(last)
    assert found["green_button"]["verdict"] == "ship", found["green_button"]["reason"]
    assert found["green_button"]["best_variant"] == "treatment"
    assert found["aa_check"]["verdict"] != "ship", found["aa_check"]["reason"]
    assert found["aa_check"]["srm_passed"]

    # a range of looks in one query equals each look on its own
    with lakehouse.connect(read_only=True) as conn:
        ranged = experiments.arm_statistics(conn, date(2024, 3, 20), last, "events")
        for day in (date(2024, 3, 20), date(2024, 3, 25)):
            alone = experiments.arm_statistics(conn, day, day, "events")
            # equal to the last bits but for the order sums were taken in
            assert_frame_equal(alone, ranged.filter(pl.col("day") == day), rel_tol=1e-12)

    # the SQL's per-arm conversion equals a count of the same events in polars
    exposures = (
        events.filter(pl.col("event_type") == "experiment_exposure")
        .with_columns(
            pl.col("properties").str.json_path_match("$.experiment").alias("experiment"),
            pl.col("properties").str.json_path_match("$.variant").alias("variant"),
        )
        .filter(pl.col("experiment") == "green_button")
        .group_by("customer_id")
        .agg(pl.col("variant").sort_by("occurred_at").first(), pl.col("occurred_at").min())
    )
    purchases = events.filter(pl.col("event_type") == "purchase").select(
        "customer_id", pl.col("occurred_at").alias("bought_at"), "amount"
    )
    per_customer = (
        exposures.join(purchases, on="customer_id", how="left")
        .group_by("customer_id", "variant")
        .agg(
            (pl.col("bought_at") >= pl.col("occurred_at")).sum().alias("orders"),
            pl.col("amount").filter(pl.col("bought_at") >= pl.col("occurred_at")).sum(),
        )
    )
    expected = per_customer.group_by("variant").agg(
        pl.len().alias("customers"),
        (pl.col("orders") > 0).mean().alias("conversion"),
        pl.col("orders").mean(),
        pl.col("amount").mean().alias("revenue"),
    )
    with lakehouse.connect(read_only=True) as conn:
        got = conn.execute(
            "SELECT variant, metric, customers, mean FROM experiment_looks "
            "WHERE day = $d AND experiment = 'green_button'",
            {"d": last},
        ).pl()
    for row in expected.iter_rows(named=True):
        for metric in ("conversion", "orders", "revenue"):
            (match,) = got.filter(
                (pl.col("variant") == row["variant"]) & (pl.col("metric") == metric)
            ).iter_rows(named=True)
            assert match["customers"] == row["customers"]
            assert match["mean"] == pytest.approx(row[metric], rel=1e-9)

    page = settings.reports_dir() / "experiments" / "index.html"
    text = page.read_text()
    assert "green_button: ship" in text and "aa_check" in text
    assert (settings.reports_dir() / "experiments" / "green_button.png").stat().st_size > 10_000


def exposure(n: int, customer: str, experiment: str, variant: str, day: int = 2) -> dict:
    return event(
        n,
        customer_id=customer,
        event_type="experiment_exposure",
        occurred_at=f"2024-03-0{day}T09:00:00Z",
        properties={"experiment": experiment, "variant": variant},
    )


def test_bad_input_gets_a_verdict_with_a_reason(
    resources, instance, tmp_path, analytics_home
) -> None:
    records = []
    n = 0
    # a broken split: 300 against 200 where 50/50 was declared
    for i in range(500):
        n += 1
        records.append(exposure(n, f"b{i}", "broken", "control" if i < 300 else "treatment"))
    # crossovers and an unknown variant
    for i in range(40):
        n += 1
        records.append(exposure(n, f"x{i}", "mixed", ["control", "treatment"][i % 2]))
    for i in range(10):
        n += 1
        records.append(exposure(n, f"x{i}", "mixed", ["treatment", "control"][i % 2], day=3))
    n += 1
    records.append(exposure(n, "x99", "mixed", "purple"))
    n += 1
    records.append(exposure(n, "u1", "undeclared", "a"))
    n += 1
    records.append(purchase(n, 10.0, customer_id="x1", occurred_at="2024-03-04T10:00:00Z"))
    land(
        pl.DataFrame(records).with_columns(pl.col("properties").struct.json_encode()),
        "bad",
        tmp_path,
    )
    settings.experiments_file().write_text(
        "broken: {variants: [control, treatment]}\n"
        "mixed: {variants: [control, treatment]}\n"
        "waiting: {variants: [control, treatment]}\n"
        "lonely: {variants: [control]}\n"
        "wrong_metric: {variants: [a, b], primary_metric: clicks}\n"
    )
    day = date(2024, 3, 5)
    result = look(resources, instance, date(2024, 3, 2), day)
    check = srm_check(result)
    assert not check.passed
    assert not result.success  # blocking: the run fails, after the looks were written
    assert check.metadata["broken"].value == ["broken"]
    found = verdicts(day)
    assert found["broken"]["verdict"] == "stop" and not found["broken"]["valid"]
    assert "sample ratio mismatch" in found["broken"]["reason"]
    assert found["mixed"]["crossovers"] == 10
    assert verdicts(date(2024, 3, 2))["mixed"]["crossovers"] == 0  # they crossed on the 3rd
    assert found["mixed"]["unknown_variant_customers"] == 1
    assert found["mixed"]["customers"] == 40
    assert found["waiting"]["reason"] == "no exposures yet"
    assert "not declared" in found["undeclared"]["reason"]
    assert "at least two" in found["lonely"]["reason"]
    assert "primary_metric" in found["wrong_metric"]["reason"]
    assert not found["lonely"]["valid"]


def test_no_declarations_and_no_exposures_is_an_empty_look(
    resources, instance, tmp_path, analytics_home
) -> None:
    land(
        pl.DataFrame([event(1)]).with_columns(pl.col("properties").struct.json_encode()),
        "one",
        tmp_path,
    )
    result = look(resources, instance, date(2024, 3, 2), date(2024, 3, 2))
    assert result.success and srm_check(result).passed
    assert verdicts(date(2024, 3, 2)) == {}
    page = settings.reports_dir() / "experiments" / "index.html"
    assert "No experiment declared or exposed yet" in page.read_text()


def test_the_model_split_is_read_as_an_experiment(
    resources, instance, tmp_path, analytics_home
) -> None:
    """Champion and challenger answered random halves of 600 customers on 2024-03-01; the
    champion's probabilities foretell who bought again within 10 days, the challenger's are
    noise: its realized AUC is shown worse, and the gate's live-split check fails on it."""
    import types

    import numpy as np

    from analytics_assets.defs.analytics.assets import customer_daily
    from analytics_assets.defs.experiments.assets import model_split
    from analytics_assets.defs.training.evaluation import live_split

    rng = np.random.default_rng(3)
    customers = [f"m{i}" for i in range(600)]
    churned = rng.random(600) < 0.5
    records = [
        purchase(i, 20.0, customer_id=c, occurred_at="2024-03-05T10:00:00Z")
        for i, c in enumerate(customers)
        if not churned[i]
    ] + [event(10_000, occurred_at="2024-03-20T10:00:00Z")]
    land(
        pl.DataFrame(records).with_columns(pl.col("properties").struct.json_encode()), "m", tmp_path
    )
    assert dg.materialize(
        [customer_daily],
        resources={"warehouse": resources["warehouse"]},
        instance=instance,
        tags={RANGE[0]: "2024-03-01", RANGE[1]: "2024-03-20"},
    ).success
    arm = rng.random(600) < 0.5
    informed = np.clip(np.where(churned, 0.7, 0.3) + rng.normal(0, 0.15, 600), 0, 1)
    log = pl.DataFrame(
        {
            "logged_at": [datetime(2026, 1, 1)] * 600,
            "role": np.where(arm, "challenger", "champion"),
            "model_version": np.where(arm, "8", "7"),
            "served": [True] * 600,
            "known": [True] * 600,
            "customer_id": customers,
            "features_as_of": ["2024-03-01T00:00:00+00:00"] * 600,
            "churn_probability": np.where(arm, rng.random(600), informed),
        }
    )
    folder = settings.predictions_dir() / "churn_model" / "date=2026-01-01"
    folder.mkdir(parents=True)
    log.write_parquet(folder / "part.parquet")
    result = dg.materialize(
        [model_split],
        resources={"warehouse": resources["warehouse"]},
        instance=instance,
        run_config={"ops": {"model_split": {"config": {"churn_days": 10}}}},
    )
    assert result.success
    evidence = json.loads(settings.model_split_path().read_text())
    champion, challenger = evidence["arms"]["champion"], evidence["arms"]["challenger"]
    assert champion["customers"] + challenger["customers"] == 600
    assert champion["auc_low"] > 0.8 and challenger["auc_low"] < 0.5 < challenger["auc_high"]
    assert evidence["challenger_worse"] is True
    # the gate reads it for exactly this pair of versions
    found, check = live_split("churn_model", "8", types.SimpleNamespace(version="7"))
    assert found is not None and not check.passed and "worse on live traffic" in check.detail
    _, other = live_split("churn_model", "9", types.SimpleNamespace(version="7"))
    assert other.passed and "no live split" in other.detail
