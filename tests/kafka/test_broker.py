"""What the Kafka source relies on in the broker, checked on its own so that a change of broker
(or of its version) shows here first: latest offsets per record, assign-and-seek reads of an
exact range, committed offsets per consumer group, and an idempotent producer."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.kafka.conftest import create_topic


def produce(bootstrap: str, topic: str, values: list[bytes], partition: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value, partition=partition)
    assert producer.flush(10) == 0


def test_latest_offsets_count_records_and_ranges_read_exactly(broker) -> None:
    topic = create_topic(broker, f"t-{uuid.uuid4().hex[:8]}", partitions=2)
    produce(broker.bootstrap, topic, [b"a", b"b", b"c"], 0)
    produce(broker.bootstrap, topic, [b"x"], 1)
    produce(broker.bootstrap, topic, [b"d", b"e"], 0)
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "g1", "enable.auto.commit": False}
    )
    assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 5)
    assert consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (0, 1)
    consumer.assign([TopicPartition(topic, 0, 1)])
    got = []
    while len(got) < 3:
        message = consumer.poll(5)
        assert message is not None and message.error() is None
        got.append((message.offset(), message.value()))
    assert got == [(1, b"b"), (2, b"c"), (3, b"d")]
    consumer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    consumer.close()
    other = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g1"})
    (committed,) = other.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed.offset == 4
    other.close()
