"""``analytics simulate --to kafka`` and ``analytics replay cdnow --to kafka`` for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from analytics_assets.lib import kafka_source
from tests.kafka.conftest import create_topic

ANALYTICS = str(Path(sys.executable).parent / "analytics")


def run(broker, *args: str) -> str:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    done = subprocess.run([ANALYTICS, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_simulate_to_kafka_keys_records_by_customer(broker, analytics_home) -> None:
    topic = create_topic(broker, f"sim-{uuid.uuid4().hex[:8]}", partitions=3)
    out = run(broker, "simulate", "--to", "kafka", "--topic", topic, "--customers", "30",
              "--days", "3", "--events-per-batch", "200", "--experiment", "green=0.2")  # fmt: skip
    produced = int(out.split(" events")[0].replace(",", ""))
    marks = kafka_source.partitions(kafka_source.client_config(broker.bootstrap), topic)
    assert sum(high for _, high in marks.values()) == produced
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t"})
    consumer.assign([TopicPartition(topic, p, 0) for p in marks])
    seen: dict[str, set[int]] = {}
    types = set()
    for _ in range(produced):
        message = consumer.poll(10)
        record = json.loads(message.value())
        types.add(record["event_type"])
        assert message.key().decode() == record["customer_id"]
        seen.setdefault(record["customer_id"], set()).add(message.partition())
    consumer.close()
    assert all(len(parts) == 1 for parts in seen.values())  # one partition per customer
    assert "experiment_exposure" in types  # experiments go to Kafka as to files


def test_replay_cdnow_to_kafka(broker, analytics_home) -> None:
    topic = create_topic(broker, f"cdnow-{uuid.uuid4().hex[:8]}")
    out = run(broker, "replay", "cdnow", "--sample", "--to", "kafka", "--topic", topic)
    purchases = int(out.split(" purchases")[0].replace(",", ""))
    marks = kafka_source.partitions(kafka_source.client_config(broker.bootstrap), topic)
    assert marks[0][1] == purchases > 6_000


def test_to_kafka_without_a_broker_is_a_clear_error(analytics_home) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    done = subprocess.run(
        [ANALYTICS, "simulate", "--to", "kafka"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "KAFKA_BOOTSTRAP_SERVERS" in done.stderr
