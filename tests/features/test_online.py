"""The bulk online writer produces exactly the bytes Feast's own writer does."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import dagster as dg
import pyarrow as pa

from analytics_assets import settings
from analytics_assets.defs.features import offline
from analytics_assets.defs.features.assets import customer_features, feast_definitions
from analytics_assets.lib import feast_online as online
from analytics_assets.lib import snapshots
from analytics_assets.lib.feast_repo import open_store
from tests.features.conftest import FIRST, LAST, range_tags


def test_entity_keys_are_feasts() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    ids = ["", "a", "customer-00042", "ü" * 40, "x" * 300]
    for version in (3,):
        assert online.entity_keys(pa.array(ids), version) == [
            serialize_entity_key(
                EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=c)]),
                entity_key_serialization_version=version,
            )
            for c in ids
        ]


def dump(store, view) -> list[tuple]:
    from feast.infra.online_stores.helpers import compute_table_id

    table = compute_table_id(store.project, view, False)
    with sqlite3.connect(store.config.online_store.path) as conn:
        found = conn.execute(
            f"SELECT entity_key, feature_name, value, value_text, vector_value, event_ts "
            f'FROM "{table}" ORDER BY 1, 2'
        ).fetchall()
        conn.execute(f'DELETE FROM "{table}"')
    return found


def test_sqlite_rows_match_feasts_own_writer(history, feature_resources, instance) -> None:
    assert dg.materialize(
        [customer_features, feast_definitions],
        resources=feature_resources,
        instance=instance,
        tags=range_tags(FIRST, LAST),
    ).success
    store = open_store(settings.feature_repo_path())
    directory = settings.feature_snapshots_dir()
    until = snapshots.newest_timestamp(directory) + timedelta(seconds=1)
    views = offline.views_over_snapshots(store)
    batches = offline.latest_rows_by_view(directory, views, until)
    assert online.write_latest(store, batches) == {v.name: 3 for v in views}
    for view, rows in batches:
        ours = dump(store, view)
        online._write_with_feast(store, view, rows)
        assert ours == dump(store, view)
        assert len(ours) == 3 * len(view.features)
