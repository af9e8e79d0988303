"""Offset ranges into the warehouse through the real broker: exact, exactly once, no gap and no
overlap, bad records quarantined with their partition and offset."""

from __future__ import annotations

import json
import uuid
from functools import partial

from analytics_assets.defs.ingest import kafka
from analytics_assets.lib import kafka_source, lakehouse
from analytics_assets.lib.kafka_source import OffsetRange
from tests.conftest import event
from tests.kafka.conftest import create_topic


def send(broker, topic: str, records: list[dict | bytes], partition_of=None) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i, record in enumerate(records):
        value = record if isinstance(record, bytes) else json.dumps(record).encode()
        producer.produce(topic, value, partition=partition_of(i) if partition_of else 0)
    assert producer.flush(60) == 0


def ingest(conn, broker, rng: OffsetRange):
    config = kafka_source.client_config(broker.bootstrap)
    return kafka.ingest_range(conn, rng, partial(kafka_source.read_range, config))


def test_ranges_across_partitions_store_every_record_once(broker, analytics_home) -> None:
    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}", partitions=2)
    send(broker, topic, [event(i) for i in range(10)], partition_of=lambda i: i % 2)
    config = kafka_source.client_config(broker.bootstrap)
    marks = kafka_source.partitions(config, topic)
    assert marks == {0: (0, 5), 1: (0, 5)}
    planned = kafka_source.plan_ranges({}, marks, max_records=3)
    assert planned == [(0, 0, 3), (0, 3, 5), (1, 0, 3), (1, 3, 5)]
    with lakehouse.connect() as conn:
        for partition, start, end in planned:
            outcome = ingest(conn, broker, OffsetRange(topic, partition, start, end))
            assert outcome.result.clean == end - start
        again = ingest(conn, broker, OffsetRange(topic, 0, 0, 3))
        assert again.status == "already_committed"
        stored = conn.execute("SELECT event_id FROM events ORDER BY 1").fetchall()
        assert sorted(e for (e,) in stored) == sorted(f"e{i}" for i in range(10))
        assert kafka.next_offsets(conn, topic) == {0: 5, 1: 5}


def test_a_range_whose_predecessor_failed_takes_its_records(broker, analytics_home) -> None:
    """No gap: the second range, committed first, starts where the ledger ends; the first then
    finds itself covered and stores nothing."""
    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(broker, topic, [event(i) for i in range(6)])
    with lakehouse.connect() as conn:
        later = ingest(conn, broker, OffsetRange(topic, 0, 3, 6))
        assert later.result.clean == 6
        earlier = ingest(conn, broker, OffsetRange(topic, 0, 0, 3))
        assert earlier.status == "already_committed" and earlier.result.clean == 0
        ledger = conn.execute(
            "SELECT start_offset, end_offset, batch_id FROM kafka_ledger ORDER BY 1"
        ).fetchall()
        assert ledger == [(0, 6, f"kafka.{topic}.0.3-6")]
        assert conn.execute("SELECT count(*) FROM events").fetchall() == [(6,)]


def test_bad_records_are_quarantined_with_partition_and_offset(broker, analytics_home) -> None:
    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(
        broker,
        topic,
        [
            event(1),
            b"{not json",
            b"",
            event(2, event_type="teleport"),
            b'{"a": 1}\n{"b": 2}',
            event(3),
        ],
    )
    with lakehouse.connect() as conn:
        outcome = ingest(conn, broker, OffsetRange(topic, 0, 0, 6))
        assert (outcome.result.clean, outcome.result.quarantined) == (2, 4)
        rows = conn.execute(
            "SELECT record_number, reason, detail FROM quarantined_events ORDER BY 1"
        ).fetchall()
        stored = conn.execute("SELECT event_id, batch_id FROM events ORDER BY 1").fetchall()
    assert [(n, r) for n, r, _ in rows] == [
        (1, "unparseable_line"),
        (2, "unparseable_line"),
        (3, "unknown_event_type"),
        (4, "unparseable_line"),
    ]
    assert all(d.startswith(f"partition 0 offset {n}: ") for n, _, d in rows)
    assert stored == [("e1", f"kafka.{topic}.0.0-6"), ("e3", f"kafka.{topic}.0.0-6")]


def test_a_range_of_no_readable_record_quarantines_each_and_commits_its_range(
    broker, analytics_home
) -> None:
    """Unlike a file (one unreadable file, one quarantine record), a range's records are each
    their own: every one is quarantined with its own reason, and the range is committed."""
    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(broker, topic, [b"{not json", b"[1, 2]", b""])
    with lakehouse.connect() as conn:
        outcome = ingest(conn, broker, OffsetRange(topic, 0, 0, 3))
        assert (outcome.result.clean, outcome.result.quarantined) == (0, 3)
        rows = conn.execute(
            "SELECT record_number, detail FROM quarantined_events ORDER BY 1"
        ).fetchall()
        assert kafka.next_offsets(conn, topic) == {0: 3}
    assert [n for n, _ in rows] == [0, 1, 2]
    assert rows[0][1].startswith("partition 0 offset 0: not JSON")
    assert rows[1][1] == "partition 0 offset 1: not a JSON object"
    assert rows[2][1] == "partition 0 offset 2: empty value"


def test_a_range_and_a_file_of_the_same_records_store_the_same(
    broker, analytics_home, tmp_path
) -> None:
    """One ingest path: the same records from Kafka and from a landed file give the same
    events and the same quarantine reasons, numbered in each source's terms."""
    from analytics_assets.defs.ingest.batch import ingest_file

    records = [event(1), event(2, amount="x"), b"{oops", event(3, event_type="teleport"), event(4)]
    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(broker, topic, records)
    path = tmp_path / "same.jsonl"
    path.write_bytes(
        b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in records)
    )
    columns = "event_id, event_type, customer_id, occurred_at, amount, quantity"
    with lakehouse.connect() as conn:
        from_kafka = ingest(conn, broker, OffsetRange(topic, 0, 0, 5))
        kafka_rows = conn.execute(f"SELECT {columns} FROM events ORDER BY 1").fetchall()
        kafka_bad = conn.execute(
            "SELECT record_number, reason FROM quarantined_events ORDER BY 1"
        ).fetchall()
    with lakehouse.connect() as conn:  # a second batch would find every id stored: compare
        conn.execute("DELETE FROM events; DELETE FROM quarantined_events")
        from_file = ingest_file(conn, path, "same")
        file_rows = conn.execute(f"SELECT {columns} FROM events ORDER BY 1").fetchall()
        file_bad = conn.execute(
            "SELECT record_number, reason FROM quarantined_events ORDER BY 1"
        ).fetchall()
    assert file_rows == kafka_rows and len(file_rows) == 2
    assert [(n - 1, r) for n, r in file_bad] == kafka_bad  # line n is offset n - 1
    assert from_file.result.reasons == from_kafka.result.reasons
    assert (from_file.result.rows_in, from_kafka.result.rows_in) == (5, 5)


def test_the_broker_restarted_mid_stream(tmp_path, analytics_home) -> None:
    """A broker of its own, restarted between two ranges (its data kept): the second range
    reads on, and every record is stored once."""
    from analytics_assets.testing.servers import kafka_broker

    with kafka_broker(tmp_path / "own-broker") as own:
        topic = create_topic(own, "restarted")
        send(own, topic, [event(i) for i in range(5)])
        with lakehouse.connect() as conn:
            ingest(conn, own, OffsetRange(topic, 0, 0, 5))
        own.restart()
        send(own, topic, [event(i) for i in range(5, 9)])
        with lakehouse.connect() as conn:
            outcome = ingest(conn, own, OffsetRange(topic, 0, 5, 9))
            assert outcome.result.clean == 4
            assert conn.execute(
                "SELECT count(DISTINCT event_id), count(*) FROM events"
            ).fetchall() == [(9, 9)]


def test_records_the_broker_deleted_are_recorded_not_skipped(broker, analytics_home) -> None:
    """Retention (here DeleteRecords) removed offsets 0..3 before the range was read: the six
    left are stored, the four gone are one quarantine row and the ledger's ``missing``."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(broker, topic, [event(i) for i in range(10)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 4)]).values():
        future.result(timeout=10)
    with lakehouse.connect() as conn:
        outcome = ingest(conn, broker, OffsetRange(topic, 0, 0, 10))
        assert (outcome.result.clean, outcome.result.quarantined) == (6, 1)
        (row,) = conn.execute(
            "SELECT record_number, reason, detail FROM quarantined_events"
        ).fetchall()
        assert row[:2] == (0, "kafka_records_missing") and "offsets 0..3" in row[2]
        assert conn.execute("SELECT records, missing FROM kafka_ledger").fetchall() == [(6, 4)]


def test_two_runs_of_one_partition_at_once_leave_no_overlap(broker, analytics_home) -> None:
    """Runs commit at the same time now: both read the ledger before either commits; the one
    that commits second finds the ledger moved inside its commit and starts over."""
    import threading

    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(broker, topic, [event(i) for i in range(6)])
    config = kafka_source.client_config(broker.bootstrap)
    both_read = threading.Barrier(2, timeout=30)
    first_reads: set[str] = set()

    def read_together(rng: OffsetRange):
        read = kafka_source.read_range(config, rng)
        name = threading.current_thread().name
        if name not in first_reads:  # only the first read of each run waits for the other
            first_reads.add(name)
            both_read.wait()
        return read

    outcomes = {}

    def run(name: str, rng: OffsetRange) -> None:
        with lakehouse.connect() as conn:
            outcomes[name] = kafka.ingest_range(conn, rng, read_together)

    threads = [
        threading.Thread(target=run, name=n, args=(n, r))
        for n, r in (("a", OffsetRange(topic, 0, 0, 3)), ("b", OffsetRange(topic, 0, 3, 6)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    with lakehouse.connect(read_only=True) as conn:
        stored = sorted(e for (e,) in conn.execute("SELECT event_id FROM events").fetchall())
        ranges = conn.execute(
            "SELECT start_offset, end_offset FROM kafka_ledger WHERE end_offset > start_offset "
            "ORDER BY 1"
        ).fetchall()
    assert stored == sorted(f"e{i}" for i in range(6))
    assert sum(end - start for start, end in ranges) == 6  # no overlap
    assert all(b[0] == a[1] for a, b in zip(ranges, ranges[1:], strict=False))  # no gap
    assert sum(o.result.clean for o in outcomes.values()) == 6


def test_an_erased_customers_records_are_kept_out(broker, analytics_home) -> None:
    """As from files: quarantined ``erased_customer``, with neither the record nor a detail."""
    from datetime import UTC, datetime

    from analytics_assets.lib import suppression

    with lakehouse.connect() as conn:
        from analytics_assets.defs.ingest import tables

        tables.ensure_tables(conn)
        salt = suppression.salt(conn)
        lakehouse.run_transaction(
            conn,
            lambda c: suppression.add(
                c, [suppression.id_hash(salt, "gone-1")], salt, datetime.now(UTC), "r", None
            ),
        )
    topic = create_topic(broker, f"events-{uuid.uuid4().hex[:8]}")
    send(broker, topic, [event(1, customer_id="gone-1"), event(2, customer_id="kept-2")])
    with lakehouse.connect() as conn:
        outcome = ingest(conn, broker, OffsetRange(topic, 0, 0, 2))
        assert outcome.result.clean == 1 and outcome.result.reasons == {"erased_customer": 1}
        assert conn.execute("SELECT customer_id FROM events").fetchall() == [("kept-2",)]
        assert conn.execute("SELECT reason, detail, raw FROM quarantined_events").fetchall() == [
            ("erased_customer", None, None)
        ]
