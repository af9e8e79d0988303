"""The ingestion tables in DuckDB, and the one transaction that commits a batch.

All SQL of the ingest domain lives here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import polars as pl

from analytics_assets.defs.ingest.schema import EVENT_COLUMNS, EVENT_MODEL, Reason, event_dtypes
from analytics_assets.lib import faults, lakehouse, suppression

_SQL_TYPES = {
    "String": "VARCHAR",
    "Int64": "BIGINT",
    "Float64": "DOUBLE",
    "Datetime(time_unit='us', time_zone='UTC')": "TIMESTAMPTZ",
}


def _events_ddl() -> str:
    """``events``: the event model's columns (:data:`EVENT_MODEL`, types and nullability),
    then where each row came from."""
    columns = [
        f"{name} {_SQL_TYPES[str(rule.dtype)]}{'' if rule.nullable else ' NOT NULL'}"
        for name, rule in EVENT_MODEL.items()
    ]
    columns += ["batch_id VARCHAR NOT NULL", "ingested_at TIMESTAMPTZ NOT NULL"]
    return "CREATE TABLE IF NOT EXISTS events (\n    " + ",\n    ".join(columns) + "\n)"


DDL = {
    "events": _events_ddl(),
    "quarantined_events": """
CREATE TABLE IF NOT EXISTS quarantined_events (
    batch_id       VARCHAR NOT NULL,
    record_number  BIGINT,
    reason         VARCHAR NOT NULL,
    detail         VARCHAR,
    raw            VARCHAR,
    quarantined_at TIMESTAMPTZ NOT NULL
)""",
    "ingest_ledger": """
CREATE TABLE IF NOT EXISTS ingest_ledger (
    batch_id      VARCHAR NOT NULL,
    file_name     VARCHAR NOT NULL,
    file_sha256   VARCHAR,
    file_bytes    BIGINT,
    status        VARCHAR NOT NULL,
    rows_in       BIGINT NOT NULL,
    clean         BIGINT NOT NULL,
    quarantined   BIGINT NOT NULL,
    days_touched  DATE[],
    landed_at     TIMESTAMPTZ,
    committed_at  TIMESTAMPTZ NOT NULL
)""",
}
"""The ingest tables. Batch commits take turns (``lakehouse.commit_lock``), so each one's
duplicate check sees every earlier commit (DuckLake lets concurrent inserts into one table
through without a conflict: without the lock, two batches holding one event id both stored
it). A one-row table every commit updated, to make overlapping commits conflict as well, cost
10-14 ms of a 0.10-0.12 s commit (an inlined table read and written through the catalog) and
is gone; lakehouses made before keep an unused ``commit_sequence``."""

PARTITIONS = {name: lakehouse.PARTITIONS[name] for name in ("events", "quarantined_events")}


@dataclass(frozen=True)
class BatchFile:
    batch_id: str
    file_name: str
    sha256: str | None
    size: int | None
    landed_at: datetime | None


@dataclass(frozen=True)
class CommitResult:
    rows_in: int
    clean: int
    quarantined: int
    days_touched: list
    reasons: dict[str, int]
    committed_at: datetime | None


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    lakehouse.ensure_tables(conn, {**DDL, **suppression.DDL}, PARTITIONS)


def commit_batch(
    conn: duckdb.DuckDBPyConnection,
    batch: BatchFile,
    clean: pl.DataFrame,
    quarantined: pl.DataFrame,
    records_read: int,
    status: str = "ingested",
    also: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> CommitResult:
    """Replace everything stored for ``batch`` with this result, atomically.

    ``records_read`` is what the reader counted in the file; the ledger keeps it beside the
    stored counts so a check can reconcile the two. ``also`` runs inside the same transaction,
    after the ledger row (the Kafka source writes its offset ledger there).

    Inside one transaction: the batch's old rows go, clean rows whose ``event_id`` is already
    stored by another batch are quarantined as duplicates, the rest are inserted, and the ledger
    row is written. Events that other batches quarantined as duplicates of an event this batch
    no longer stores are restored to them (:func:`_restore_duplicates`). A crash at any point
    leaves the previous state.
    """
    ensure_tables(conn)
    faults.point(faults.BEFORE_COMMIT)
    staged = {"staged_clean": clean.to_arrow(), "staged_quarantine": quarantined.to_arrow()}

    def body(conn: duckdb.DuckDBPyConnection) -> tuple:
        # registered inside the transaction: outside, each registration began a transaction of
        # its own, which read the lakehouse's catalog (8 ms apiece, against 0.4 ms)
        for name, frame in staged.items():
            conn.register(name, frame)
        for name, frame in _hold_back_erased(conn, staged).items():
            conn.register(name, frame)  # the staged rows without erased customers' ones
        # a batch's rows are only ever written with its ledger row (this transaction): a batch
        # the ledger does not know has nothing to replace, and skips three scans
        known = conn.execute(
            "SELECT count(*) FROM ingest_ledger WHERE batch_id = ?", [batch.batch_id]
        ).fetchone()[0]
        if known:
            conn.execute(
                "CREATE OR REPLACE TEMP TABLE _previous_ids AS "
                "SELECT event_id, occurred_at FROM events WHERE batch_id = ?",
                [batch.batch_id],
            )
            for table in ("events", "quarantined_events", "ingest_ledger"):
                conn.execute(f"DELETE FROM {table} WHERE batch_id = ?", [batch.batch_id])
            _restore_duplicates(conn, batch.batch_id)
        conn.execute(
            """
            CREATE OR REPLACE TEMP TABLE _stored_dupes AS
            SELECT s.event_id, min(e.batch_id) AS stored_in
            FROM staged_clean s JOIN events e USING (event_id)
            GROUP BY s.event_id
            """
        )
        conn.execute(
            """
            INSERT INTO events
            SELECT s.event_id, s.event_type, s.customer_id, s.session_id, s.occurred_at,
                   s.product_id, s.quantity, s.amount, s.currency, s.device, s.properties,
                   ?, now()
            FROM staged_clean s ANTI JOIN _stored_dupes d USING (event_id)
            """,
            [batch.batch_id],
        )
        conn.execute(
            f"""
            INSERT INTO quarantined_events
            SELECT $b, record_number, reason, detail, raw, now()
            FROM staged_quarantine
            UNION ALL
            SELECT $b, s.record_number, '{Reason.DUPLICATE_STORED}',
                   'event_id already stored by batch ' || d.stored_in,
                   to_json(s)::VARCHAR, now()
            FROM staged_clean s JOIN _stored_dupes d USING (event_id)
            UNION ALL
            SELECT $b, record_number, '{Reason.ERASED_CUSTOMER}', NULL, NULL, now()
            FROM _erased_records
            """,
            {"b": batch.batch_id},
        )
        # what was stored, from the staged rows (the batch's own rows are exactly these: its
        # old ones are deleted above, its ids are unique within it)
        ((clean_n, days),) = conn.execute(
            """
            SELECT count(*),
                   coalesce(list(DISTINCT (occurred_at AT TIME ZONE 'UTC')::DATE
                                 ORDER BY (occurred_at AT TIME ZONE 'UTC')::DATE), [])
            FROM staged_clean s ANTI JOIN _stored_dupes d USING (event_id)
            """
        ).fetchall()
        reasons = dict(
            conn.execute(
                f"""
                SELECT reason, count(*) FROM (
                    SELECT reason FROM staged_quarantine
                    UNION ALL
                    SELECT '{Reason.DUPLICATE_STORED}'
                    FROM staged_clean s SEMI JOIN _stored_dupes d USING (event_id)
                    UNION ALL
                    SELECT '{Reason.ERASED_CUSTOMER}' FROM _erased_records
                ) GROUP BY reason ORDER BY reason
                """
            ).fetchall()
        )
        quarantined_n = sum(reasons.values())
        faults.point(faults.IN_COMMIT)
        # now() is the transaction's start; the ledger wants the moment the data is in
        committed_at = datetime.now(UTC)
        conn.execute(
            "INSERT INTO ingest_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                batch.batch_id,
                batch.file_name,
                batch.sha256,
                batch.size,
                status,
                records_read,
                clean_n,
                quarantined_n,
                days,
                batch.landed_at,
                committed_at,
            ],
        )
        if also is not None:
            also(conn)
        for name in [*staged, "_erased_records"]:
            conn.unregister(name)
        return clean_n, quarantined_n, days, committed_at, reasons

    try:
        clean_n, quarantined_n, days, committed_at, reasons = lakehouse.run_transaction(
            conn, body, f"commit of batch {batch.batch_id}", log=log, serialize=True
        )
    except duckdb.CatalogException:  # a table dropped since this process last looked
        lakehouse.forget_tables()
        ensure_tables(conn)
        clean_n, quarantined_n, days, committed_at, reasons = lakehouse.run_transaction(
            conn, body, f"commit of batch {batch.batch_id}", log=log, serialize=True
        )
    return CommitResult(
        rows_in=records_read,
        clean=clean_n,
        quarantined=quarantined_n,
        days_touched=list(days),
        reasons=reasons,
        committed_at=committed_at,
    )


def _hold_back_erased(conn: duckdb.DuckDBPyConnection, staged: dict) -> dict:
    """An erased customer's staged rows, clean or not, leave the staged frames; their record
    numbers are ``_erased_records``, quarantined as ``erased_customer`` with neither the record
    nor a detail. Returns the frames to register (called with the staged ones registered).

    The list comes from :func:`suppression.listed` (a copy per process, read again when it
    changed: reading the lakehouse table in every commit cost 25 ms of a 0.075 s commit). The
    ids are hashed once each (distinct ids of the batch), and the rows are dropped from the
    Arrow frames (filtering views over them in SQL cost 12 % of a 1M-event ingest)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    listed = suppression.listed(conn)
    dropped: list[int] = []
    frames: dict = {}
    if listed.num_rows:
        conn.register("_listed", listed)
        erased = [
            r[0]
            for r in conn.execute(
                suppression.suppressed_ids("staged_clean", listed="_listed")
                + " UNION "
                + suppression.suppressed_ids(
                    f"(SELECT {suppression.raw_customer('raw')} AS rid FROM staged_quarantine) r "
                    "WHERE rid IS NOT NULL",
                    "rid",
                    listed="_listed",
                )
            ).fetchall()
        ]
        conn.unregister("_listed")
        if erased:
            clean = staged["staged_clean"]
            ids = pa.array(erased, clean["customer_id"].type)
            held = pc.fill_null(pc.is_in(clean["customer_id"], value_set=ids), False)
            dropped += clean.filter(held)["record_number"].to_pylist()
            frames["staged_clean"] = clean.filter(pc.invert(held))
            raw = [
                n
                for (n,) in conn.execute(
                    "SELECT record_number FROM staged_quarantine "
                    f"WHERE list_contains(?, {suppression.raw_customer('raw')})",
                    [erased],
                ).fetchall()
            ]
            quarantine = staged["staged_quarantine"]
            keep = pc.invert(
                pc.is_in(quarantine["record_number"], value_set=pa.array(raw, pa.int64()))
            )
            frames["staged_quarantine"] = quarantine.filter(keep)
            dropped += raw
    frames["_erased_records"] = pa.table({"record_number": pa.array(dropped, pa.int64())})
    return frames


_RESTORE_STRUCTURE = json.dumps(
    {
        column: _SQL_TYPES.get(str(dtype), "VARCHAR")
        for column, dtype in event_dtypes().items()
        if column in EVENT_COLUMNS
    }
)


def _restore_duplicates(conn: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """After ``batch_id``'s events are deleted (a re-ingest): an event another batch
    quarantined as ``duplicate_event_id_already_stored`` whose id is now stored nowhere, and is
    not coming back with this batch, is restored to that batch (the earliest such row per id),
    and that batch's ledger counts follow. Only ids this batch stored before are looked at, so
    a new batch pays nothing."""
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _restored AS
        SELECT q.batch_id, q.record_number, q.raw
        FROM quarantined_events q
        WHERE q.reason = '{Reason.DUPLICATE_STORED}' AND q.batch_id <> $b
          AND json_extract_string(q.raw, '$.event_id') IN (SELECT event_id FROM _previous_ids)
          AND json_extract_string(q.raw, '$.event_id') NOT IN (SELECT event_id FROM staged_clean)
          AND json_extract_string(q.raw, '$.event_id') NOT IN (
              SELECT event_id FROM events
              WHERE event_id IN (SELECT event_id FROM _previous_ids))
        QUALIFY row_number() OVER (
            PARTITION BY json_extract_string(q.raw, '$.event_id')
            ORDER BY q.quarantined_at, q.batch_id, q.record_number) = 1
        """,
        {"b": batch_id},
    )
    (restored,) = conn.execute("SELECT count(*) FROM _restored").fetchone()
    if not restored:
        return
    columns = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)
    conn.execute(
        f"""
        INSERT INTO events ({", ".join(EVENT_COLUMNS)}, batch_id, ingested_at)
        SELECT {columns}, r.batch_id, now()
        FROM (SELECT batch_id, from_json(raw, '{_RESTORE_STRUCTURE}') AS e FROM _restored) r
        """
    )
    conn.execute(
        f"""
        DELETE FROM quarantined_events q USING _restored r
        WHERE q.batch_id = r.batch_id AND q.record_number = r.record_number
          AND q.reason = '{Reason.DUPLICATE_STORED}'
        """
    )
    conn.execute(
        """
        UPDATE ingest_ledger l SET clean = l.clean + r.n, quarantined = l.quarantined - r.n
        FROM (SELECT batch_id, count(*) AS n FROM _restored GROUP BY batch_id) r
        WHERE l.batch_id = r.batch_id
        """
    )


def result_from_ledger(conn: duckdb.DuckDBPyConnection, row: dict) -> CommitResult:
    """A batch already committed, as its commit reported it (a rerun that has nothing to do)."""
    reasons = dict(
        conn.execute(
            "SELECT reason, count(*) FROM quarantined_events WHERE batch_id = ? "
            "GROUP BY reason ORDER BY reason",
            [row["batch_id"]],
        ).fetchall()
    )
    return CommitResult(
        rows_in=row["rows_in"],
        clean=row["clean"],
        quarantined=row["quarantined"],
        days_touched=list(row["days_touched"] or []),
        reasons=reasons,
        committed_at=row["committed_at"],
    )


def ledger_row(conn: duckdb.DuckDBPyConnection, batch_id: str) -> dict | None:
    ensure_tables(conn)
    cursor = conn.execute("SELECT * FROM ingest_ledger WHERE batch_id = ?", [batch_id])
    rows = cursor.fetchall()  # fetchall: leave no open result on a shared connection
    if not rows:
        return None
    return dict(zip([d[0] for d in cursor.description], rows[0], strict=True))


def stored_counts(conn: duckdb.DuckDBPyConnection, batch_id: str) -> tuple[int, int]:
    """Rows actually stored for a batch: (clean events, quarantined rows)."""
    ensure_tables(conn)
    return conn.execute(
        """
        SELECT (SELECT count(*) FROM events WHERE batch_id = $b),
               (SELECT count(*) FROM quarantined_events WHERE batch_id = $b)
        """,
        {"b": batch_id},
    ).fetchall()[0]


def duplicate_event_ids(conn: duckdb.DuckDBPyConnection, limit: int = 10) -> tuple[int, list[str]]:
    """How many event ids appear more than once in ``events``, with a few examples."""
    ensure_tables(conn)
    rows = conn.execute(
        "SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1"
    ).fetchall()
    return len(rows), [r[0] for r in rows[:limit]]


def null_required_counts(
    conn: duckdb.DuckDBPyConnection, batch_id: str, columns: tuple[str, ...]
) -> dict[str, int]:
    """Per required column, how many of the batch's stored events have it null."""
    ensure_tables(conn)
    select = ", ".join(f'count(*) FILTER (WHERE "{c}" IS NULL)' for c in columns)
    row = conn.execute(f"SELECT {select} FROM events WHERE batch_id = ?", [batch_id]).fetchall()[0]
    return dict(zip(columns, row, strict=True))


def file_errors(conn: duckdb.DuckDBPyConnection, batch_id: str) -> list[str]:
    """Why a batch's file was quarantined as a whole (empty when it was not)."""
    ensure_tables(conn)
    rows = conn.execute(
        "SELECT detail FROM quarantined_events WHERE batch_id = ? AND list_contains(?, reason)",
        [batch_id, list(Reason.FILE_LEVEL)],
    ).fetchall()
    return [r[0] for r in rows]
