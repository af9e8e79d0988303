"""The Kafka sensor in real sensor contexts, and its runs materialized for real: ranges per
partition, the ledger published to the lake, and a sensor without a cursor resuming from it."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.defs.ingest.kafka_sensors import build_kafka_sensor
from analytics_assets.defs.ingest.sensors import STREAMING_LANE
from analytics_assets.lib import lakehouse
from analytics_assets.partitions import batches
from tests.conftest import event
from tests.kafka.conftest import configure
from tests.kafka.test_ranges import send


@pytest.fixture
def kafka_env(broker, monkeypatch, analytics_home):
    return configure(monkeypatch, broker, MAX_RECORDS="4")


def tick(sensor, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = sensor(context)
    return result, context.cursor


def run_all(result, resources, instance) -> list[str]:
    keys = [r.partition_key for r in result.run_requests]
    instance.add_dynamic_partitions(batches.name, keys)
    for key in keys:
        done = dg.materialize(
            [ingest_batch], partition_key=key, resources=resources, instance=instance
        )
        (events,) = [
            m.materialization.metadata
            for m in done.get_asset_materialization_events()
            if m.asset_key == dg.AssetKey("events")
        ]
        assert events["kafka_lag"].value >= 0 and "kafka_range" in events
    return keys


def test_ranges_per_partition_then_resume_from_the_ledger(kafka_env, broker, resources, instance):
    topic = kafka_env
    send(broker, topic, [event(i) for i in range(10)], partition_of=lambda i: i % 2)
    sensor = build_kafka_sensor(topic, STREAMING_LANE, 1)
    result, cursor = tick(sensor, instance)
    keys = run_all(result, resources, instance)
    assert sorted(keys) == sorted(
        f"kafka.{topic}.{p}.{s}-{e}" for p in (0, 1) for s, e in ((0, 4), (4, 5))
    )
    assert json.loads(cursor)["next"] == {"0": 5, "1": 5}
    with lakehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchall() == [(10,)]
    # the same cursor: nothing new
    again, _ = tick(sensor, instance, cursor)
    assert isinstance(again, dg.SkipReason)
    # no cursor (a reset sensor): it resumes where the lake's ledger ends, not from 0
    resumed, _ = tick(sensor, instance, None)
    assert isinstance(resumed, dg.SkipReason)
    send(broker, topic, [event(100 + i) for i in range(3)], partition_of=lambda i: 1)
    more, _ = tick(sensor, instance, None)
    assert [r.partition_key for r in more.run_requests] == [f"kafka.{topic}.1.5-8"]
    run_all(more, resources, instance)
    with lakehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == [
            (13, 13)
        ]


def test_a_quiet_partition_waits_for_more_then_flows(kafka_env, broker, instance, monkeypatch):
    topic = kafka_env
    monkeypatch.setenv("KAFKA_MAX_WAIT_S", "30")
    send(broker, topic, [event(1)], partition_of=lambda i: 0)
    sensor = build_kafka_sensor(topic, STREAMING_LANE, 1)
    waiting, cursor = tick(sensor, instance)
    assert isinstance(waiting, dg.SkipReason)
    state = json.loads(cursor)
    state["waiting"]["0"] -= 31  # its first record has waited long enough
    flowing, _ = tick(sensor, instance, json.dumps(state))
    assert [r.partition_key for r in flowing.run_requests] == [f"kafka.{topic}.0.0-1"]
