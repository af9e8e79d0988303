"""The demo's "more data" hint joins the calendar the home holds: new customers on its last
days, nothing else moved. Without the flag a simulation that would land on another calendar
writes nothing and says why."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from analytics_assets import settings
from analytics_assets.cli import main
from analytics_assets.defs.features import transforms
from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.lib import lakehouse
from analytics_assets.producers import simulate
from analytics_assets.producers.calendar import home_calendar
from analytics_assets.producers.files import write_batch
from tests.features.conftest import roll_up

FIRST = date(1997, 1, 1)
DAYS = 30
LAST = FIRST + timedelta(days=DAYS - 1)
HINT = ["simulate", "--customers", "40", "--days", "7", "--events-per-batch", "2000"]


def ingest(path: Path, batch_id: str) -> None:
    with lakehouse.connect() as conn:
        assert ingest_file(conn, path, batch_id).result.quarantined == 0


def snapshot(resources: dict) -> pl.DataFrame:
    """Every customer's features as of the calendar's last day, as the daily snapshot has them."""
    roll_up(resources, FIRST, LAST)
    with lakehouse.connect() as conn:
        relation = transforms.customer_snapshots(conn, [LAST], datetime(2000, 1, 1, tzinfo=UTC))
        return relation.pl().drop("created_at").sort("customer_id")


def test_the_hint_adds_new_customers_on_the_homes_calendar(resources) -> None:
    config = simulate.SimulationConfig(
        customers=60, days=DAYS, seed=4, start=datetime.combine(FIRST, datetime.min.time())
    )
    seeded = simulate.simulate_events(config)
    ingest(write_batch(seeded, settings.analytics_home(), "seed", "parquet"), "seed")
    calendar = home_calendar()
    assert calendar is not None and FIRST <= calendar.first_day <= calendar.last_day <= LAST
    assert calendar.simulated_customers == 60
    before = snapshot(resources)

    refused = CliRunner().invoke(main, HINT)
    assert refused.exit_code == 1
    assert "--continue-calendar" in refused.output and "Nothing written" in refused.output
    assert not any(settings.landing_dir().iterdir())

    added = CliRunner().invoke(main, [*HINT, "--continue-calendar"])
    assert added.exit_code == 0, added.output
    files = sorted(settings.landing_dir().iterdir())
    new = pl.concat([pl.read_ndjson(f) for f in files])
    days = new["occurred_at"].str.to_datetime(time_zone="UTC").dt.date()
    assert calendar.last_days(7) <= days.min() and days.max() <= calendar.last_day
    assert set(new["customer_id"]).isdisjoint(set(seeded["customer_id"]))
    assert min(new["customer_id"]) >= "cust-0000060"

    for path in files:
        ingest(path, path.stem)
    after = snapshot(resources)
    existing = after.filter(pl.col("customer_id").is_in(before["customer_id"].implode()))
    # the models are functions of these features: churn and CLV of existing customers stay
    assert existing.equals(before)
    assert after.height > before.height
    assert home_calendar().last_day == calendar.last_day


def test_a_home_without_events_has_no_calendar(analytics_home) -> None:
    assert home_calendar() is None
    result = CliRunner().invoke(main, [*HINT, "--continue-calendar"])
    assert result.exit_code == 2 and "holds no events yet" in result.output
    flags = CliRunner().invoke(main, [*HINT, "--continue-calendar", "--start", "2024-01-01"])
    assert flags.exit_code == 2 and "pass one" in flags.output
