"""A small hand-made event history, ingested and rolled up through the real assets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from analytics_assets import settings
from analytics_assets.defs.analytics.assets import customer_daily, sessions
from analytics_assets.lib import lakehouse
from analytics_assets.resources import FeastRepo
from analytics_assets.testing import servers
from tests.analytics.conftest import ingest
from tests.conftest import event, purchase

FIRST, LAST = date(2024, 3, 1), date(2024, 3, 10)

# a: buys on Mar 1 ($30) and twice on Mar 3 ($10 + $5), browses on mobile, abandons a cart on
#    Mar 5. b: one page view on Mar 2 and a purchase on Mar 9 ($20). c: appears on Mar 8 only.
HISTORY = [
    event(1, customer_id="a", occurred_at="2024-03-01T09:00:00Z", device="mobile"),
    purchase(2, 30.0, customer_id="a", occurred_at="2024-03-01T09:05:00Z", device="mobile"),
    purchase(3, 10.0, customer_id="a", occurred_at="2024-03-03T12:00:00Z", device="desktop"),
    purchase(4, 5.0, customer_id="a", occurred_at="2024-03-03T12:10:00Z", device="desktop"),
    event(5, customer_id="a", occurred_at="2024-03-05T20:00:00Z", device="mobile"),
    event(6, customer_id="a", event_type="add_to_cart", occurred_at="2024-03-05T20:01:00Z"),
    event(7, customer_id="b", occurred_at="2024-03-02T08:00:00Z", device="tablet"),
    purchase(8, 20.0, customer_id="b", occurred_at="2024-03-09T15:00:00Z", device="tablet"),
    event(9, customer_id="c", occurred_at="2024-03-08T10:00:00Z", device="desktop"),
]


def roll_up(resources: dict, first: date = FIRST, last: date = LAST) -> None:
    """sessions and customer_daily for the days, as the events_sensor's runs build them."""
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [sessions, customer_daily],
            resources={"warehouse": resources["warehouse"]},
            instance=instance,
            tags=range_tags(first, last),
        ).success


def range_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


@pytest.fixture
def history(resources: dict) -> Path:
    ingest(settings.warehouse_path(), "history", HISTORY)
    roll_up(resources)
    return settings.warehouse_path()


@pytest.fixture
def feature_resources(resources: dict) -> dict:
    return {**resources, "feast": FeastRepo(repo_path=str(settings.feature_repo_path()))}


def warehouse() -> duckdb.DuckDBPyConnection:
    return lakehouse.connect()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a loopback port (Debian package redis-server; .ci/run installs
    it). Yields ``host:port``."""
    with servers.redis_server(tmp_path_factory.mktemp("redis")) as address:
        yield address


@pytest.fixture
def redis_online(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the feature store's online store at the real Redis (a clean database)."""
    import redis

    host, port = redis_server.split(":")
    redis.Redis(host=host, port=int(port)).flushall()
    monkeypatch.setenv(
        "FEAST_ONLINE_STORE", f'{{type: redis, connection_string: "{redis_server}"}}'
    )
    return redis_server
