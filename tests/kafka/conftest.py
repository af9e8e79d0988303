"""Topics on the session's real broker (the ``broker`` fixture, tests/conftest.py)."""

from __future__ import annotations

from analytics_assets.testing.servers import KafkaBroker


def create_topic(broker: KafkaBroker, name: str, partitions: int = 1) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=10)
    return name


def configure(monkeypatch, broker: KafkaBroker, partitions: int = 2, **settings: str) -> str:
    """A fresh topic on ``broker``, and the code location's Kafka settings pointing at it
    (``settings``: more ``KAFKA_*`` variables by their suffix, e.g. ``MAX_RECORDS="4"``)."""
    import uuid

    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}", partitions=partitions)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("KAFKA_TOPICS", topic)
    monkeypatch.setenv("KAFKA_MAX_WAIT_S", "0")
    for name, value in settings.items():
        monkeypatch.setenv(f"KAFKA_{name}", value)
    return topic
