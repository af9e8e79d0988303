"""Kafka end to end: the real daemon with a Kafka sensor, the real broker and ``bentoml serve``.
A new customer's first events are produced to a topic; one run ingests their range and puts the
customer online; the scoring service then knows the customer."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from analytics_assets.lib import kafka_source
from analytics_assets.testing import serving
from analytics_assets.testing.fault_trials import Daemon
from tests.conftest import event, purchase
from tests.kafka.conftest import configure
from tests.serving.conftest import run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
def kafka_daemon(analytics_home, broker, monkeypatch):
    topic = configure(monkeypatch, broker)
    monkeypatch.setenv("ANALYTICS_SENSOR_INTERVAL_S", "1")
    monkeypatch.setenv("ANALYTICS_REBUILD_INTERVAL_S", "1")
    process = Daemon(analytics_home / "daemon.log")
    process.start()
    try:
        yield dg.DagsterInstance.get(), topic
    finally:
        process.stop()


def test_a_customer_produced_to_kafka_is_scored(kafka_daemon, broker, analytics_home, tmp_path):
    instance, topic = kafka_daemon
    serving.prepare(200, tmp_path / "models")
    now = datetime.now(UTC)
    minutes_ago = lambda n: (now - timedelta(minutes=n)).isoformat()  # noqa: E731
    records = [
        event(1, customer_id="kafka-newcomer", occurred_at=minutes_ago(3)),
        purchase(2, 40.0, customer_id="kafka-newcomer", occurred_at=minutes_ago(2)),
    ]
    config = kafka_source.client_config(broker.bootstrap)
    with run_server(analytics_home, tmp_path / "server.log") as server, server.client() as http:
        produced = time.monotonic()
        values = [json.dumps(r).encode() for r in records] + [b"{broken"]
        kafka_source.produce(config, topic, values, [b"kafka-newcomer"] * 3)
        deadline = time.monotonic() + 180
        while True:
            answer = http.post("/churn", json={"customer_ids": ["kafka-newcomer"]}).json()
            if answer["predictions"][0]["known"]:
                break
            assert time.monotonic() < deadline, "the customer was never scored as known"
            time.sleep(0.5)
        print(f"produced -> scored as known in {time.monotonic() - produced:.1f} s")
    runs = [r for r in instance.get_runs() if r.tags.get("analytics/kafka_topic") == topic]
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    partition_keys = {r.tags["dagster/partition"] for r in runs}
    assert any(k.endswith(".0-3") for k in partition_keys), partition_keys
