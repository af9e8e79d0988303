"""The feature assets materialized for real: snapshots -> feast apply -> online -> training set,
on the SQLite online store and on a real Redis."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl
import pytest

from analytics_assets import settings
from analytics_assets.defs.features import checks
from analytics_assets.defs.features.assets import (
    TrainingSetConfig,
    customer_features,
    feast_definitions,
    online_features,
    training_set,
)
from analytics_assets.lib.feast_repo import open_store
from tests.analytics.conftest import ingest
from tests.conftest import purchase
from tests.features.conftest import FIRST, LAST, range_tags, roll_up

ONLINE_CHECKS = [checks.online_matches_offline, checks.online_not_older_than_offline]


def run(assets, resources, instance, **kwargs) -> dg.ExecuteInMemoryResult:
    result = dg.materialize(assets, resources=resources, instance=instance, **kwargs)
    assert result.success
    return result


def metadata(result: dg.ExecuteInMemoryResult, key: str) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def build_features(resources, instance, first: date = FIRST, last: date = LAST):
    return run([customer_features], resources, instance, tags=range_tags(first, last))


def online_values(customers: list[str]) -> dict:
    store = open_store(settings.feature_repo_path())
    return store.get_online_features(
        features=store.get_feature_service("churn_v1"),
        entity_rows=[{"customer_id": c} for c in customers],
    ).to_dict()


def materialize_online(resources, instance) -> dg.ExecuteInMemoryResult:
    result = run([online_features, *ONLINE_CHECKS], resources, instance)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert len(result.get_asset_check_evaluations()) == 2
    return result


@pytest.mark.parametrize("online_store", ["sqlite", "redis"])
def test_snapshots_to_online_store(
    history, feature_resources, instance, online_store, request
) -> None:
    if online_store == "redis":
        request.getfixturevalue("redis_online")
    build_features(feature_resources, instance)
    applied = metadata(run([feast_definitions], feature_resources, instance), "feast_definitions")
    assert applied["feature_views"] == ["engagement", "purchase_behaviour"]
    assert "Created feature service churn_v1" in applied["registry_diff"]

    first = metadata(materialize_online(feature_resources, instance), "online_features")
    assert first["rows_written"] == {"purchase_behaviour": 3, "engagement": 3}
    assert first["online_store"] == online_store
    served = online_values(["a", "b", "c", "nobody"])
    assert served["frequency"] == [1, 0, 0, None]  # as of Mar 10: b has bought once
    assert served["days_since_last_purchase"] == [7.0, 1.0, None, None]

    # nothing new: the incremental run writes nothing and changes nothing
    again = metadata(materialize_online(feature_resources, instance), "online_features")
    assert again["rows_written"] == {"purchase_behaviour": 0, "engagement": 0}
    assert online_values(["a", "b", "c", "nobody"]) == served

    # a batch later the same day rewrites that day's snapshot: it goes online again
    ingest(
        settings.warehouse_path(),
        "same-day",
        [purchase(20, 12.0, customer_id="c", occurred_at="2024-03-10T18:00:00Z")],
    )
    roll_up(feature_resources, LAST, LAST)
    build_features(feature_resources, instance, LAST, LAST)
    same_day = metadata(materialize_online(feature_resources, instance), "online_features")
    assert same_day["rows_written"] == {"purchase_behaviour": 3, "engagement": 3}
    assert online_values(["c"])["days_since_last_purchase"] == [0.0]
    served = online_values(["a", "b", "c", "nobody"])

    # a new day: only that day's snapshots go online, and they win
    ingest(
        settings.warehouse_path(),
        "next",
        [
            purchase(30, 50.0, customer_id="c", occurred_at="2024-03-11T09:00:00Z"),
        ],
    )
    roll_up(feature_resources, LAST, date(2024, 3, 11))
    build_features(feature_resources, instance, date(2024, 3, 11), date(2024, 3, 11))
    later = metadata(materialize_online(feature_resources, instance), "online_features")
    assert later["rows_written"] == {"purchase_behaviour": 3, "engagement": 3}
    assert online_values(["a", "c"])["days_since_last_purchase"] == [8.0, 0.0]
    assert served["frequency"] == [1, 0, 0, None]


def test_feast_apply_is_idempotent(history, feature_resources, instance) -> None:
    build_features(feature_resources, instance)
    run([feast_definitions], feature_resources, instance)
    store = open_store(settings.feature_repo_path())
    before = sorted(v.name for v in store.list_feature_views())
    run([feast_definitions], feature_resources, instance)
    store.refresh_registry()
    assert sorted(v.name for v in store.list_feature_views()) == before
    assert sorted(s.name for s in store.list_feature_services()) == ["churn_v1", "clv_v1"]


def test_training_set_joins_features_as_of_each_day(history, feature_resources, instance) -> None:
    build_features(feature_resources, instance)
    run([feast_definitions], feature_resources, instance)
    config = TrainingSetConfig(churn_days=2, value_days=3, every_days=3)
    result = run(
        [training_set],
        feature_resources,
        instance,
        run_config=dg.RunConfig(ops={"training_set": config}),
    )
    # the last events are on Mar 9 (observed until Mar 10 00:00), so a 3-day label window must
    # start by Mar 7: as-of days up to Mar 6, every 3 days back
    assert metadata(result, "training_set")["as_of_days"] == ["2024-03-03", "2024-03-06"]
    frame = pl.read_parquet(settings.training_set_path())
    at = {(r["customer_id"], r["event_timestamp"].day): r for r in frame.to_dicts()}
    assert set(at) == {("a", 4), ("b", 4), ("a", 7), ("b", 7)}
    # features as of the end of Mar 3 (valid from Mar 4), labels from Mar 4 on
    a4 = at[("a", 4)]
    assert (a4["frequency"], a4["total_revenue"], a4["days_since_last_purchase"]) == (1, 45.0, 0.0)
    assert (a4["churned"], a4["future_value"]) == (True, 0.0)
    assert at[("a", 7)]["days_since_last_purchase"] == 3.0
    # b buys on Mar 9 15:00: after the 2-day churn window from Mar 7, inside the 3-day value one
    b7 = at[("b", 7)]
    assert (b7["total_revenue"], b7["churned"], b7["future_value"]) == (0.0, True, 20.0)
    # exactly what the two feature services name, plus the labels
    assert "orders" not in frame.columns
    assert set(frame.columns) >= {"frequency", "sessions_28d", "average_order_value", "churned"}


def test_training_set_refuses_when_no_label_window_has_passed(
    history, feature_resources, instance
) -> None:
    build_features(feature_resources, instance)
    run([feast_definitions], feature_resources, instance)
    result = dg.materialize(
        [training_set], resources=feature_resources, instance=instance, raise_on_error=False
    )
    assert not result.success
    assert "no as-of day has a complete label window" in str(result.all_events)


def test_file_registry_is_a_setting(history, feature_resources, instance, monkeypatch) -> None:
    """Feast's file registry instead of the default SQL one: the same assets, only the
    environment differs."""
    path = settings.analytics_home() / "feast" / "registry.db"
    monkeypatch.setenv("FEAST_REGISTRY_TYPE", "file")
    monkeypatch.setenv("FEAST_REGISTRY_PATH", str(path))
    build_features(feature_resources, instance)
    run([feast_definitions], feature_resources, instance)
    store = open_store(settings.feature_repo_path())
    assert type(store.registry).__name__ == "Registry" and path.exists()
    assert not (settings.analytics_home() / "feast" / "registry.sqlite").exists()
    materialize_online(feature_resources, instance)
    assert online_values(["a"])["frequency"] == [1]


def test_online_checks_catch_a_wrong_or_stale_value(history, feature_resources, instance) -> None:
    import pandas as pd

    build_features(feature_resources, instance)
    run([feast_definitions], feature_resources, instance)
    materialize_online(feature_resources, instance)
    store = open_store(settings.feature_repo_path())
    names = [f.name for f in store.get_feature_view("purchase_behaviour").features]
    # customer a: a value the snapshots never had, at an older timestamp
    row = {n: 0.0 for n in names} | {"frequency": 99, "orders": 99}
    tampered = pd.DataFrame(
        [
            row
            | {
                "customer_id": "a",
                "event_timestamp": pd.Timestamp("2024-03-02", tz="UTC"),
                "created_at": pd.Timestamp("2024-03-02", tz="UTC"),
            }
        ]
    )
    store.write_to_online_store("purchase_behaviour", df=tampered)
    result = dg.materialize(
        [online_features, *ONLINE_CHECKS],
        resources=feature_resources,
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(online_features),
        raise_on_error=False,
    )
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "online_matches_offline": False,
        "online_not_older_than_offline": False,
    }


def test_a_late_event_refreshes_the_snapshots_after_it(
    history, feature_resources, instance
) -> None:
    build_features(feature_resources, instance)
    before = snapshot_row("b", date(2024, 3, 10))
    assert before["orders"] == 1
    # a purchase of b on Mar 3 arrives late: the sensor rebuilds Mar 2..3 only
    ingest(
        settings.warehouse_path(),
        "late",
        [
            purchase(40, 7.0, customer_id="b", occurred_at="2024-03-03T08:00:00Z"),
        ],
    )
    roll_up(feature_resources, date(2024, 3, 2), date(2024, 3, 3))
    result = build_features(feature_resources, instance, date(2024, 3, 2), date(2024, 3, 3))
    assert metadata_of_any(result)["later_days_refreshed"] == 7  # Mar 4 .. Mar 10
    after = snapshot_row("b", date(2024, 3, 10))
    assert (after["orders"], after["frequency"], after["total_revenue"]) == (2, 1, 27.0)


def snapshot_row(customer: str, as_of: date) -> dict:
    """A customer's row in the snapshot file of ``as_of``."""
    frame = pl.read_parquet(settings.feature_snapshots_dir() / f"{as_of.isoformat()}.parquet")
    (row,) = frame.filter(pl.col("customer_id") == customer).to_dicts()
    return row


def metadata_of_any(result: dg.ExecuteInMemoryResult) -> dict:
    event = result.get_asset_materialization_events()[0]
    return {k: v.value for k, v in event.materialization.metadata.items()}
