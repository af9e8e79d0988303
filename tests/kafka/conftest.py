"""Topics on the session's real broker (the ``broker`` fixture, tests/conftest.py)."""

from __future__ import annotations

from analytics_assets.testing.servers import KafkaBroker


def create_topic(broker: KafkaBroker, name: str, partitions: int = 1) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=10)
    return name
