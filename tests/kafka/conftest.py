"""A real Kafka-protocol broker (noida-db) on a loopback port, per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from analytics_assets.testing.servers import KafkaBroker, kafka_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Iterator[KafkaBroker]:
    with kafka_broker(tmp_path_factory.mktemp("kafka")) as running:
        yield running


def create_topic(broker: KafkaBroker, name: str, partitions: int = 1) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=10)
    return name
