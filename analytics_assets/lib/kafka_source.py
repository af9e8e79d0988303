"""Kafka as a source of micro-batches: offset ranges, exact reads, offsets committed after.

A micro-batch from Kafka is an offset range of one partition, ``[start, end)``. Its batch id
names it (``kafka.<topic>.<partition>.<start>-<end>``), so the same range is always the same
batch, and the warehouse's ledger (``kafka_ledger``, written in the transaction that stores the
events) is what says a range is done: offsets are stored with the data. The broker's committed
offsets are written only after that commit, for lag monitoring; nothing reads them back.

Client settings come from the environment (``KAFKA_*``, :mod:`analytics_assets.settings`);
``KAFKA_CLIENT_CONFIG`` passes anything else (security, SASL) to librdkafka as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_BATCH = re.compile(
    r"^kafka\.(?P<topic>[A-Za-z0-9._-]+)\.(?P<partition>\d+)\.(?P<start>\d+)-(?P<end>\d+)$"
)


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Offsets ``start`` (included) to ``end`` (excluded) of one partition of ``topic``."""

    topic: str
    partition: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(
                f"an offset range needs 0 <= start < end, not {self.start}..{self.end}"
            )

    @property
    def batch_id(self) -> str:
        return f"kafka.{self.topic}.{self.partition}.{self.start}-{self.end}"

    @classmethod
    def parse(cls, batch_id: str) -> OffsetRange | None:
        """The range a batch id names, or ``None`` for any other batch (a landed file)."""
        found = _BATCH.match(batch_id)
        if found is None:
            return None
        return cls(found["topic"], int(found["partition"]), int(found["start"]), int(found["end"]))


@dataclass
class RangeRead:
    """What the broker still has of a range: ``records`` as ``(offset, key, value)`` in offset
    order, and the ``missing`` sub-ranges it no longer has (deleted by retention, or compacted
    away), never silently skipped."""

    rng: OffsetRange
    records: list[tuple[int, bytes | None, bytes | None]] = field(default_factory=list)
    missing: list[tuple[int, int]] = field(default_factory=list)
    first_appended_ms: int | None = None
    """The broker's timestamp of the range's first record (when it "landed")."""
    high: int | None = None
    """The partition's high watermark when it was read (its lag after this range)."""


def client_config(bootstrap: str, extra: dict | None = None) -> dict:
    return {"bootstrap.servers": bootstrap, **(extra or {})}


def partitions(config: dict, topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
    """Per partition of ``topic``: ``(low, high)`` watermarks (the first offset the broker
    has, and the next offset it will write)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": "analytics-watermarks", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            raise LookupError(f"topic {topic!r}: {info.error if info else 'not found'}")
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in sorted(info.partitions)
        }
    finally:
        consumer.close()


def plan_ranges(
    next_offsets: dict[int, int],
    watermarks: dict[int, tuple[int, int]],
    max_records: int,
) -> list[tuple[int, int, int]]:
    """``(partition, start, end)`` ranges from each partition's next offset to its high
    watermark, at most ``max_records`` each. Consecutive by construction: each starts where the
    last ended, so there is no gap and no overlap. A partition never seen starts at offset 0
    (its low watermark may be higher: the read records what retention deleted)."""
    ranges = []
    for partition, (_, high) in sorted(watermarks.items()):
        start = next_offsets.get(partition, 0)
        while start < high:
            end = min(high, start + max_records)
            ranges.append((partition, start, end))
            start = end
    return ranges


def read_range(config: dict, rng: OffsetRange, timeout_s: float = 30.0) -> RangeRead:
    """Exactly the records of ``rng``: assign the partition at ``start`` (no consumer group
    position involved) and read to ``end``. Offsets the broker does not have any more are
    reported in ``missing``. Raises ``TimeoutError`` when the broker does not deliver the range
    in ``timeout_s`` (the run fails and is retried; nothing is stored)."""
    import time

    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            **config,
            "group.id": "analytics-range-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    read = RangeRead(rng)
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(rng.topic, rng.partition), timeout=timeout_s
        )
        read.high = high
        if high < rng.end:
            raise ValueError(f"{rng.batch_id}: the partition ends at {high}, before {rng.end}")
        position = max(rng.start, low)
        if position > rng.start:
            read.missing.append((rng.start, min(position, rng.end)))
        if position >= rng.end:
            return read
        consumer.assign([TopicPartition(rng.topic, rng.partition, position)])
        expected = position
        deadline = time.monotonic() + timeout_s
        while expected < rng.end:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{rng.batch_id}: read to {expected} of {rng.end} in {timeout_s}s"
                )
            # no more than the range still needs: consume() waits for num_messages or timeout
            wanted = min(10_000, rng.end - expected)
            for message in consumer.consume(num_messages=wanted, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"{rng.batch_id}: {error}")
                offset = message.offset()
                if offset >= rng.end:
                    expected = rng.end
                    break
                if offset > expected:  # compacted away
                    read.missing.append((expected, offset))
                read.records.append((offset, message.key(), message.value()))
                if read.first_appended_ms is None:
                    read.first_appended_ms = message.timestamp()[1]
                expected = offset + 1
        return read
    finally:
        consumer.close()


def commit_offset(
    config: dict, group: str, topic: str, partition: int, offset: int, timeout_s: float = 10.0
) -> None:
    """Tell the broker the group has consumed ``partition`` up to ``offset`` (after the
    warehouse commit; for lag monitoring only: the ledger, not this, decides what is done)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        consumer.close()


def produce(config: dict, topic: str, values: list[bytes], keys: list[bytes] | None = None) -> int:
    """Send ``values`` (with ``keys``: the partition follows the key) with an idempotent
    producer; returns how many the broker acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({**config, "enable.idempotence": True, "linger.ms": 20})
    delivered = 0
    failed: list[str] = []

    def on_delivery(error, _message) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1
        else:
            failed.append(str(error))

    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(
                    topic, value, key=keys[i] if keys else None, on_delivery=on_delivery
                )
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failed:
        raise RuntimeError(f"{remaining} records not delivered; errors: {failed[:3]}")
    return delivered
