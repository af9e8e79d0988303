"""A Kafka offset range as a batch source: the ledger says where the range starts, the broker
gives its records, and the shared path (:mod:`.batch`) parses, validates and commits them with
the range's ``kafka_ledger`` row in the same transaction.

Record ``n`` of the range is line ``n`` of a JSON-lines batch; every stored or quarantined row
carries its offset as ``record_number`` and ``partition P offset O`` in a quarantine row's
detail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import duckdb
import polars as pl

from analytics_assets.defs.ingest import tables
from analytics_assets.defs.ingest.batch import (
    BatchOutcome,
    Records,
    Status,
    commit_prepared,
    empty_clean,
    parse_and_validate,
)
from analytics_assets.defs.ingest.schema import QUARANTINE_SCHEMA, Reason
from analytics_assets.lib import lakehouse
from analytics_assets.lib.kafka_source import OffsetRange, RangeRead

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS kafka_ledger (
    topic        VARCHAR NOT NULL,
    "partition"  INTEGER NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset   BIGINT NOT NULL,
    batch_id     VARCHAR NOT NULL,
    records      BIGINT NOT NULL,
    missing      BIGINT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL
)
"""


def ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    lakehouse.ensure_tables(conn, {"kafka_ledger": LEDGER_DDL})


def next_offsets(conn: duckdb.DuckDBPyConnection, topic: str) -> dict[int, int]:
    """Per partition of ``topic``, the offset after the last committed range."""
    ensure_ledger(conn)
    return dict(
        conn.execute(
            'SELECT "partition", max(end_offset) FROM kafka_ledger WHERE topic = ? GROUP BY 1',
            [topic],
        ).fetchall()
    )


def _bad(offset: int, partition: int, reason: str, detail: str, raw: bytes | None) -> dict:
    text = (raw or b"").decode("utf-8", "replace")[:2000]
    return {
        "record_number": offset,
        "reason": reason,
        "detail": f"partition {partition} offset {offset}: {detail}",
        "raw": text,
    }


class RangeMoved(Exception):
    """Another run committed a range of the partition while this one read: start again."""


def ingest_range(
    conn: duckdb.DuckDBPyConnection,
    requested: OffsetRange,
    read_records: Callable[[OffsetRange], RangeRead],
) -> BatchOutcome:
    """Commit the batch ``requested`` names, exactly once, with no gap and no overlap.

    The ledger decides where it starts: at the end of the partition's last committed range.
    A range an earlier run already covered commits nothing (``already_committed``, an empty
    ledger row under its id, so its checks reconcile); a range whose predecessor is not
    committed yet (its run failed, or runs out of order) takes the predecessor's records too,
    which then finds them covered. ``read_records`` reads a range from the broker.

    Runs commit at the same time: inside the commit (batch commits take turns), the ledger is
    read again, and if another run committed a range of this partition since, this one starts
    over from the new end.
    """
    for _ in range(10):
        try:
            return _ingest_range(conn, requested, read_records)
        except RangeMoved:
            continue
    raise RuntimeError(f"{requested.batch_id}: the partition's ledger kept moving; retry the run")


def _ingest_range(
    conn: duckdb.DuckDBPyConnection,
    requested: OffsetRange,
    read_records: Callable[[OffsetRange], RangeRead],
) -> BatchOutcome:
    started = time.perf_counter()
    next_offset = next_offsets(conn, requested.topic).get(requested.partition, 0)
    if requested.end <= next_offset:
        return _covered(conn, requested, started)
    rng = OffsetRange(requested.topic, requested.partition, next_offset, requested.end)
    read = read_records(rng)
    landed = (
        datetime.fromtimestamp(read.first_appended_ms / 1000, tz=UTC)
        if read.first_appended_ms
        else datetime.now(UTC)
    )
    info = tables.BatchFile(
        requested.batch_id,
        f"{rng.topic}[{rng.partition}]@{rng.start}-{rng.end}",
        None,
        sum(len(v or b"") for _, _, v in read.records),
        landed,
    )
    lines: list[bytes] = []
    rejected: list[dict] = []
    for offset, _key, value in read.records:
        if value is None or not value.strip() or b"\n" in value:
            what = "empty value" if not (value or b"").strip() else "a value with a line break"
            rejected.append(_bad(offset, rng.partition, Reason.UNPARSEABLE_LINE, what, value))
            lines.append(b"")  # keeps record n on line n
        else:
            lines.append(value)
    rejected += [
        _bad(
            start,
            rng.partition,
            Reason.KAFKA_RECORDS_MISSING,
            f"offsets {start}..{end - 1} deleted or compacted by the broker before they were read",
            None,
        )
        for start, end in read.missing
    ]
    prepared = parse_and_validate(
        Records(
            b"\n".join(lines),
            "kafka.jsonl",
            numbers=[offset for offset, _, _ in read.records],
            rejected=rejected,
            locate=f"partition {rng.partition} offset {{}}",
            whole=False,
        )
    )
    ensure_ledger(conn)

    def ledger(c: duckdb.DuckDBPyConnection) -> None:
        (end,) = c.execute(
            "SELECT coalesce(max(end_offset), 0) FROM kafka_ledger "
            'WHERE topic = ? AND "partition" = ?',
            [rng.topic, rng.partition],
        ).fetchone()
        if end != rng.start:
            raise RangeMoved(f"{rng.topic}[{rng.partition}] now ends at {end}, not {rng.start}")
        c.execute(
            "INSERT INTO kafka_ledger VALUES (?, ?, ?, ?, ?, ?, ?, now())",
            [
                rng.topic,
                rng.partition,
                rng.start,
                rng.end,
                requested.batch_id,
                len(read.records),
                sum(end - start for start, end in read.missing),
            ],
        )

    outcome = commit_prepared(conn, info, prepared, started, also=ledger)
    if read.high is not None:
        outcome.extra_metadata = {
            "kafka_range": f"{rng.topic}[{rng.partition}] {rng.start}..{rng.end - 1}",
            "kafka_lag": read.high - rng.end,
        }
    return outcome


def _covered(conn: duckdb.DuckDBPyConnection, rng: OffsetRange, started: float) -> BatchOutcome:
    """A range an earlier commit covered: its (empty) ledger row, once."""
    prior = tables.ledger_row(conn, rng.batch_id)
    info = tables.BatchFile(rng.batch_id, f"{rng.topic}[{rng.partition}] (covered)", None, 0, None)
    if prior is None:
        tables.commit_batch(
            conn, info, empty_clean(), pl.DataFrame(schema=QUARANTINE_SCHEMA), 0, status="covered"
        )
        prior = tables.ledger_row(conn, rng.batch_id)
    return BatchOutcome(
        info,
        tables.result_from_ledger(conn, prior),
        time.perf_counter() - started,
        status=Status.ALREADY_COMMITTED,
    )
