"""The streaming lane: a batch's customers computed as of an instant with the snapshot SQL, and
the ``streamed_features`` asset that puts them online in the batch's own run."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from analytics_assets import settings
from analytics_assets.defs.features import transforms
from analytics_assets.defs.features.assets import (
    customer_features,
    feast_definitions,
    online_features,
    streamed_features,
)
from analytics_assets.defs.features.checks import online_matches_offline
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.lib import lakehouse, snapshots
from analytics_assets.lib.days import snapshot_instant
from analytics_assets.lib.feast_repo import open_store
from analytics_assets.partitions import batches
from tests.analytics.conftest import ingest
from tests.conftest import event, jsonl, purchase, quarantined
from tests.features.conftest import range_tags, roll_up

FEATURES = list(snapshots.FEATURE_COLUMNS)

# x: a session from 23:50 on Mar 4 into Mar 5 with a cart before midnight and a purchase after,
#    then a purchase at exactly 00:00 on Mar 6 (the instant of Mar 5's snapshot: not in it).
# y: mobile browsing on three days, one purchase. z: a single page view on Mar 7.
EDGES = [
    event(101, customer_id="x", occurred_at="2024-03-02T10:00:00Z", device="desktop"),
    purchase(102, 12.0, customer_id="x", occurred_at="2024-03-02T10:05:00Z", device="desktop"),
    event(103, customer_id="x", occurred_at="2024-03-04T23:50:00Z", device="mobile"),
    event(104, customer_id="x", event_type="add_to_cart", occurred_at="2024-03-04T23:55:00Z"),
    purchase(105, 40.0, customer_id="x", occurred_at="2024-03-05T00:05:00Z", device="mobile"),
    purchase(106, 9.0, customer_id="x", occurred_at="2024-03-06T00:00:00Z", device="mobile"),
    event(107, customer_id="y", occurred_at="2024-03-01T08:00:00Z", device="mobile"),
    event(108, customer_id="y", occurred_at="2024-03-03T08:00:00Z", device="mobile"),
    purchase(109, 25.0, customer_id="y", occurred_at="2024-03-06T12:00:00Z", device="mobile"),
    event(110, customer_id="z", occurred_at="2024-03-07T09:30:00Z", device="tablet"),
]
FIRST, LAST = date(2024, 3, 1), date(2024, 3, 8)


def snapshot_rows(conn, day: date) -> pl.DataFrame:
    created = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.from_arrow(transforms.customer_snapshots(conn, [day], created).to_arrow_table()).sort(
        "customer_id"
    )


def test_rows_as_of_an_instant_equal_the_daily_snapshots(resources) -> None:
    ingest(settings.warehouse_path(), "edges", EDGES)
    roll_up(resources, FIRST, LAST)
    created = datetime(2024, 1, 1, tzinfo=UTC)
    with lakehouse.connect() as conn:
        for n in range((LAST - FIRST).days + 1):
            day = FIRST + timedelta(days=n)
            expected = snapshot_rows(conn, day)
            streamed = pl.from_arrow(
                transforms.customer_features_now(
                    conn, ["x", "y", "z", "nobody"], snapshot_instant(day), created
                )
            ).sort("customer_id")
            assert streamed.columns == expected.columns
            assert streamed.equals(expected), f"as of {day}:\n{streamed}\n{expected}"
        mar5 = snapshot_rows(conn, date(2024, 3, 5)).filter(pl.col("customer_id") == "x")
    (x,) = mar5.to_dicts()
    # the session across midnight counts on Mar 4 with its purchase (not abandoned); the
    # purchase at exactly Mar 6 00:00 is not in Mar 5's snapshot
    assert x["orders"] == 2 and x["total_revenue"] == 52.0
    assert x["cart_abandonment_rate_28d"] == 0.0


def test_as_of_mid_day_counts_that_day_so_far(resources) -> None:
    ingest(settings.warehouse_path(), "edges", EDGES)
    instant = datetime(2024, 3, 6, 6, 0, tzinfo=UTC)
    with lakehouse.connect() as conn:
        rows = pl.from_arrow(
            transforms.customer_features_now(conn, ["x"], instant, instant)
        ).to_dicts()
    (x,) = rows
    assert x["event_timestamp"] == instant and x["as_of"] == date(2024, 3, 6)
    # the purchase at 00:00 on Mar 6 is in (its day is the as-of day), y's noon purchase is not
    assert x["orders"] == 3 and x["days_since_last_purchase"] == 0.0


def land_and_stream(instance, land, name: str, records: list[dict], resources) -> dict:
    land(f"{name}.jsonl", jsonl(records))
    instance.add_dynamic_partitions(batches.name, [name])
    result = dg.materialize(
        [ingest_batch, streamed_features],
        resources=resources,
        instance=instance,
        partition_key=name,
    )
    assert result.success
    (materialization,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("streamed_features")
    ]
    return {k: v.value for k, v in materialization.metadata.items()}


def rebuild_snapshots(resources: dict, first: date, last: date, snapshots_from=None) -> None:
    """What the coalesced lane does after a batch: the day tables of ``first`` to ``last``, then
    the daily snapshots from ``snapshots_from`` (default ``first``) to ``last``."""
    roll_up(resources, first, last)
    assert dg.materialize(
        [customer_features],
        resources=resources,
        tags=range_tags(snapshots_from or first, last),
    ).success


def online_rows(customers: list[str]) -> dict:
    store = open_store(settings.feature_repo_path())
    refs = [f"{v}:{f}" for v in ("purchase_behaviour", "engagement") for f in _view_features(v)]
    return store.get_online_features(
        features=refs, entity_rows=[{"customer_id": c} for c in customers]
    ).to_dict(include_event_timestamps=True)


def _view_features(view: str) -> list[str]:
    store = open_store(settings.feature_repo_path())
    return [f.name for f in store.get_feature_view(view).features]


@pytest.mark.parametrize("online_store", ["sqlite", "redis"])
def test_streamed_rows_equal_todays_snapshot(
    feature_resources, instance, land, online_store, request
) -> None:
    if online_store == "redis":
        request.getfixturevalue("redis_online")
    today = datetime.now(UTC).date()
    assert dg.materialize([feast_definitions], resources=feature_resources).success
    # a new customer's first events, over three days up to a minute ago, one session over
    # midnight; and an old customer from the fixture days
    now = datetime.now(UTC) - timedelta(minutes=1)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    records = [
        event(1, customer_id="new", occurred_at=(midnight - timedelta(days=2)).isoformat()),
        purchase(
            2, 15.0, customer_id="new", occurred_at=(midnight - timedelta(minutes=5)).isoformat()
        ),
        event(
            3,
            customer_id="new",
            event_type="add_to_cart",
            occurred_at=(midnight + timedelta(minutes=3)).isoformat(),
        ),
        event(
            4, customer_id="new", occurred_at=min(now, midnight + timedelta(minutes=20)).isoformat()
        ),
    ]
    meta = land_and_stream(instance, land, "fresh", records, feature_resources)
    assert meta["customers"] == 1 and meta["writer"] == "direct"
    assert meta["written"] == {"purchase_behaviour": 1, "engagement": 1}
    served = online_rows(["new"])
    if date.fromisoformat(meta["as_of"][:10]) != today:
        pytest.skip("the batch was committed after midnight UTC: the days differ")
    # the same customer in today's daily snapshot, built by the coalesced lane's assets
    rebuild_snapshots(feature_resources, today - timedelta(days=3), today, today)
    snapshot = pl.read_parquet(settings.feature_snapshots_dir() / f"{today}.parquet")
    (expected,) = snapshot.filter(pl.col("customer_id") == "new").to_dicts()
    for name in FEATURES:
        assert served[name] == [expected[name]], name
    committed = datetime.fromisoformat(meta["as_of"])
    assert served["frequency__ts"] == [int(committed.timestamp())]


@pytest.mark.parametrize("online_store", ["sqlite", "redis"])
def test_online_rows_never_go_back_in_time(
    history, feature_resources, instance, land, online_store, request
) -> None:
    """A streamed row, then a late batch for an old day and a full refresh from the (older)
    snapshots: every customer keeps its newest row."""
    if online_store == "redis":
        request.getfixturevalue("redis_online")
    assert dg.materialize(
        [customer_features, feast_definitions],
        resources=feature_resources,
        tags=range_tags(date(2024, 3, 1), date(2024, 3, 10)),
    ).success
    # b buys today: streamed as of now
    today = datetime.now(UTC) - timedelta(minutes=1)
    land_and_stream(
        instance,
        land,
        "today",
        [purchase(50, 99.0, customer_id="b", occurred_at=today.isoformat())],
        feature_resources,
    )
    # a late batch for an old day: a is streamed too (as of now, with the old purchase)
    late = [purchase(60, 5.0, customer_id="a", occurred_at="2024-03-04T10:00:00Z")]
    land_and_stream(instance, land, "late", late, feature_resources)
    streamed = online_rows(["a", "b"])
    assert streamed["orders"] == [4, 2] and streamed["days_since_last_purchase"][1] == 0.0
    # the coalesced lane rebuilds the old days and refreshes the online store from snapshots
    rebuild_snapshots(feature_resources, date(2024, 3, 3), date(2024, 3, 10))
    result = dg.materialize(
        [online_features, online_matches_offline], resources=feature_resources, instance=instance
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    refreshed = online_rows(["a", "b", "c"])
    # a and b keep their streamed rows (as of today), newer than the snapshot of Mar 10
    for name, values in streamed.items():
        assert refreshed[name][:2] == values, name
    # c was never streamed: its snapshot row goes online
    assert refreshed["frequency"][2] == 0 and refreshed["days_since_last_purchase"][2] is None
    assert refreshed["frequency__ts"][2] < refreshed["frequency__ts"][0]


def test_streaming_run_does_not_import_feast(feature_resources, instance, land) -> None:
    """In a fresh process, as a run process would: ingest + streamed_features with the layout
    recorded by feast_definitions, and no ``feast`` module loaded."""
    assert dg.materialize([feast_definitions], resources=feature_resources).success
    land("cold.jsonl", jsonl([purchase(7, 3.0, customer_id="cold")]))
    script = """
import sys
import dagster as dg
from dagster_duckdb import DuckDBResource
from analytics_assets import settings
from analytics_assets.resources import warehouse_resource, FeastRepo, LandingZone
from analytics_assets.defs.features.assets import streamed_features
from analytics_assets.defs.ingest.assets import ingest_batch
with dg.DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions("batches", ["cold"])
    result = dg.materialize(
        [ingest_batch, streamed_features], instance=instance, partition_key="cold",
        resources={
            "warehouse": warehouse_resource(),
            "landing_zone": LandingZone(root=str(settings.landing_dir()),
                                        quarantine_root=str(settings.quarantine_dir())),
            "feast": FeastRepo(repo_path=str(settings.feature_repo_path())),
        },
    )
assert result.success
print("FEAST", sorted(m for m in sys.modules if m == "feast" or m.startswith("feast.")))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FEAST []" in out.stdout, out.stdout
    assert online_rows(["cold"])["total_revenue"] == [3.0]


def test_one_run_over_several_files(feature_resources, instance, land) -> None:
    """A backlog claimed as one run: a good file, an unreadable one and one whose every row
    fails validation; each is its own batch, the good one's customers go online."""
    from analytics_assets.defs.ingest import checks

    assert dg.materialize([feast_definitions], resources=feature_resources).success
    now = datetime.now(UTC) - timedelta(minutes=1)
    land("g1.jsonl", jsonl([purchase(1, 10.0, customer_id="g", occurred_at=now.isoformat())]))
    land("g2.jsonl.gz", b"not gzip at all")
    land("g3.jsonl", jsonl([event(3, customer_id="", event_type="nonsense")]))
    land("g4.jsonl", jsonl([event(4, customer_id="h", occurred_at=now.isoformat())]))
    names = ["g1", "g2", "g3", "g4"]
    instance.add_dynamic_partitions(batches.name, names)
    result = dg.materialize(
        [ingest_batch, streamed_features, checks.rows_reconcile, checks.file_readable],
        resources=feature_resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "g1",
            "dagster/asset_partition_range_end": "g4",
        },
    )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["rows_reconcile"].passed
    assert not evaluations["file_readable"].passed  # a warning: g2 was quarantined
    with lakehouse.connect(read_only=True) as conn:
        ledger = conn.execute(
            "SELECT batch_id, status, clean, quarantined FROM ingest_ledger ORDER BY 1"
        ).fetchall()
    assert ledger == [
        ("g1", "ingested", 1, 0),
        ("g2", "file_quarantined", 0, 1),
        ("g3", "ingested", 0, 1),
        ("g4", "ingested", 1, 0),
    ]
    assert quarantined("g2.jsonl.gz", b"not gzip at all").exists()
    materialized = {
        (e.asset_key.to_user_string(), e.partition)
        for e in result.get_asset_materialization_events()
    }
    assert {("events", n) for n in names} <= materialized
    assert {("streamed_features", n) for n in names} <= materialized
    assert online_rows(["g", "h"])["total_revenue"] == [10.0, 0.0]
    # the feast CLI reads the streamed row too
    from tests.features.test_feast_cli import feast

    served = feast(
        settings.feature_repo_path(),
        "get-online-features",
        "-e",
        "customer_id=g",
        "-f",
        "purchase_behaviour:total_revenue",
    )
    assert '"total_revenue": [\n        10.0' in served, served


def test_a_batch_on_a_replayed_calendar_is_as_of_its_newest_day(
    history, feature_resources, instance, land
) -> None:
    """The history ends on Mar 9, 2024; a batch for a new customer on its last days, committed
    today, is streamed as of that calendar's end (its daily snapshots' instant), not as of
    today: no years of silence in its features, and the snapshot of that day agrees."""
    assert dg.materialize(
        [customer_features, feast_definitions],
        resources=feature_resources,
        tags=range_tags(date(2024, 3, 1), date(2024, 3, 10)),
    ).success
    records = [
        event(70, customer_id="x", occurred_at="2024-03-08T09:00:00Z"),
        purchase(71, 12.0, customer_id="x", occurred_at="2024-03-08T09:05:00Z"),
        purchase(72, 8.0, customer_id="x", occurred_at="2024-03-09T18:00:00Z"),
    ]
    meta = land_and_stream(instance, land, "replayed", records, feature_resources)
    end = datetime(2024, 3, 10, tzinfo=UTC)
    assert datetime.fromisoformat(meta["as_of"]) == end
    assert datetime.fromisoformat(meta["committed_at"]) > datetime.now(UTC) - timedelta(hours=1)
    served = online_rows(["x"])
    assert served["days_since_last_purchase"] == [0.0] and served["orders"] == [2]
    assert served["frequency__ts"] == [int(end.timestamp())]
    rebuild_snapshots(feature_resources, date(2024, 3, 8), date(2024, 3, 9), date(2024, 3, 9))
    snapshot = pl.read_parquet(settings.feature_snapshots_dir() / "2024-03-09.parquet")
    (expected,) = snapshot.filter(pl.col("customer_id") == "x").to_dicts()
    for name in FEATURES:
        assert served[name] == [expected[name]], name
