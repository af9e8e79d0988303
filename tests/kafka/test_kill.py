"""SIGKILL of a Kafka range's run before, inside and after its commit, then the run again:
every record stored exactly once, the ledger row once, the broker's offset committed after."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import dagster as dg
import pytest
from confluent_kafka import Consumer, TopicPartition

from analytics_assets import settings
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.lib import faults, lakehouse
from analytics_assets.partitions import batches
from tests.conftest import event
from tests.kafka.conftest import create_topic
from tests.kafka.test_ranges import send

RUN = textwrap.dedent(
    """
    import dagster as dg
    from analytics_assets.defs.ingest.assets import ingest_batch
    from analytics_assets.partitions import batches
    from analytics_assets.resources import landing_resource, warehouse_resource
    key = {key!r}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches.name, [key])
        dg.materialize([ingest_batch], partition_key=key, instance=instance,
                       resources={{"landing_zone": landing_resource(),
                                   "warehouse": warehouse_resource()}})
    """
)


@pytest.mark.parametrize("point", faults.POINTS)
def test_killed_then_run_again_stores_each_record_once(
    point, broker, analytics_home, monkeypatch, resources, instance
) -> None:
    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(broker, topic, [event(i) for i in range(8)] + [b"broken"])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    key = f"kafka.{topic}.0.0-9"
    fault = analytics_home / "fault"
    faults.arm(fault, point)
    killed = subprocess.run(
        [sys.executable, "-c", RUN.format(key=key)],
        env={**os.environ, faults.ENV: str(fault)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    instance.add_dynamic_partitions(batches.name, [key])
    dg.materialize([ingest_batch], partition_key=key, resources=resources, instance=instance)
    with lakehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == [
            (8, 8)
        ]
        assert conn.execute("SELECT count(*) FROM quarantined_events").fetchall() == [(1,)]
        assert conn.execute("SELECT start_offset, end_offset FROM kafka_ledger").fetchall() == [
            (0, 9)
        ]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": settings.kafka_group()})
    (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    assert committed.offset == 9
