"""The Feast-free online writer: Feast's encodings to the byte, and the newest row kept."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from analytics_assets.lib import online_store
from analytics_assets.lib.online_store import Layout, ViewLayout


def test_values_encode_like_feast() -> None:
    from feast.protos.feast.types.Value_pb2 import Value

    doubles = [1.5, 0.0, -0.0, None, float("nan"), 1e300, -3.25]
    assert online_store.encode_values(pa.array(doubles)) == [
        b"" if v is None or v != v else Value(double_val=v).SerializeToString() for v in doubles
    ]
    ints = [1, None, 0, -5, 2**40, 127, 128, -(2**63), 2**63 - 1]
    assert online_store.encode_values(pa.array(ints, pa.int64())) == [
        b"" if v is None else Value(int64_val=v).SerializeToString() for v in ints
    ]
    texts = ["a", None, "ü", "", "x" * 300]
    assert online_store.encode_values(pa.array(texts)) == [
        b"" if v is None else Value(string_val=v).SerializeToString() for v in texts
    ]
    flags = [True, False, None]
    assert online_store.encode_values(pa.array(flags)) == [
        b"" if v is None else Value(bool_val=v).SerializeToString() for v in flags
    ]
    with pytest.raises(TypeError):
        online_store.encode_values(pa.array([b"raw"]))


def test_timestamps_encode_like_protobuf() -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    for instant in (
        datetime(2024, 3, 1, tzinfo=UTC),
        datetime(2026, 12, 2, 18, 0, 1, 250_001, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
    ):
        proto = Timestamp()
        proto.FromDatetime(instant)
        assert online_store.encode_timestamp(instant) == proto.SerializeToString()


def test_redis_fields_and_entity_keys_are_feasts() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    for name in ("purchase_behaviour:frequency", "engagement:sessions_7d", "ü:x"):
        assert online_store._mmh3_field(name) == _mmh3(name)
    empty = serialize_entity_key(
        EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val="")]), 3
    )
    layout = Layout(project="p", key_head=empty[:-4].hex())
    for cid in ("a", "customer-00042", "ü" * 40, "x" * 300):
        proto = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=cid)])
        assert layout.entity_key(cid) == serialize_entity_key(proto, 3)


LAYOUT = Layout(
    project="p",
    key_head="00",
    views=[ViewLayout("v", "p_v", "v", {"x": "double", "n": "int64"})],
)


def rows(customer: str, instant: datetime, x: float) -> pa.Table:
    return pa.table(
        {
            "customer_id": [customer],
            "event_timestamp": pa.array([instant], pa.timestamp("us", tz="UTC")),
            "x": [x],
            "n": pa.array([int(x)], pa.int64()),
        }
    )


def stored(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT feature_name, value, event_ts FROM p_v ORDER BY entity_key, feature_name"
        ).fetchall()


def test_sqlite_keeps_the_newest_row(tmp_path) -> None:
    path = tmp_path / "online.db"
    with sqlite3.connect(path) as conn:  # the table as Feast creates it
        conn.execute(
            "CREATE TABLE p_v (entity_key BLOB, feature_name TEXT, value BLOB, vector_value BLOB,"
            " value_text TEXT, event_ts timestamp, created_ts timestamp,"
            " PRIMARY KEY(entity_key, feature_name))"
        )
    assert online_store.plain_sqlite_layout(path, "p_v")
    config = {"type": "sqlite", "path": str(path)}
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert online_store.write(LAYOUT, config, rows("a", now, 2.0)) == {"v": 1}
    newest = stored(path)
    # older: skipped; the newest values and timestamp stay
    assert online_store.write(LAYOUT, config, rows("a", now - timedelta(days=1), 1.0)) == {"v": 0}
    assert stored(path) == newest
    # the same instant (a day's snapshot rewritten by a later batch): the later write wins
    assert online_store.write(LAYOUT, config, rows("a", now, 3.0)) == {"v": 1}
    assert [v for _, v, _ in stored(path)] == online_store.encode_values(
        pa.array([3], pa.int64())
    ) + online_store.encode_values(pa.array([3.0]))
    with pytest.raises(online_store.NotSupportedHere):
        online_store.write(LAYOUT, {"type": "dynamodb"}, rows("a", now, 1.0))


def test_sqlite_replace_after_a_restore(tmp_path) -> None:
    """After the lakehouse is restored to an earlier moment, the restored (older) rows become
    the store's content and customers that came later go."""
    path = tmp_path / "online.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE p_v (entity_key BLOB, feature_name TEXT, value BLOB, vector_value BLOB,"
            " value_text TEXT, event_ts timestamp, created_ts timestamp,"
            " PRIMARY KEY(entity_key, feature_name))"
        )
    config = {"type": "sqlite", "path": str(path)}
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    online_store.write(LAYOUT, config, pa.concat_tables([rows("a", now, 5.0), rows("b", now, 1.0)]))
    restored = rows("a", now - timedelta(days=1), 2.0)
    assert online_store.write(LAYOUT, config, restored) == {"v": 0}  # the guard keeps newer
    assert online_store.write(LAYOUT, config, restored, replace=True) == {"v": 1}
    values = stored(path)
    assert len(values) == 2  # only customer a, its two features
    assert {ts for _, _, ts in values} == {int((now - timedelta(days=1)).timestamp())}


def test_redis_replace_after_a_restore(tmp_path) -> None:
    from analytics_assets.testing.servers import redis_server

    with redis_server(tmp_path) as address:
        config = {"type": "redis", "connection_string": address}
        client = online_store.redis_client(config)
        now = datetime(2026, 12, 2, 12, tzinfo=UTC)
        both = pa.concat_tables([rows("a", now, 5.0), rows("b", now, 1.0)])
        assert online_store.write(LAYOUT, config, both) == {"v": 2}
        restored = rows("a", now - timedelta(days=1), 2.0)
        assert online_store.write(LAYOUT, config, restored) == {"v": 0}
        assert online_store.write(LAYOUT, config, restored, replace=True) == {"v": 1}
        keys = sorted(client.scan_iter(match=b"*p"))
        assert keys == [LAYOUT.entity_key("a") + b"p"]
