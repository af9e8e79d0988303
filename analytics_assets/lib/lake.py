"""The published lake: the warehouse's tables as Parquet in a Hive layout, for readers.

The warehouse is one DuckDB file that one process at a time may open, so nobody reads it while
the platform runs. Instead, the runs that change a table publish the partitions they changed:

    <lake>/events/day=2026-12-03/data.parquet         (events by event day, UTC)
    <lake>/quarantined_events/day=.../data.parquet    (by day quarantined; no raw record)
    <lake>/sessions/day=.../data.parquet              (and customer_daily, kpis_hourly, kpis_daily)
    <lake>/audit_summary/data.parquet                 (the audit tables, small, replaced whole)

One file per partition, written beside it and renamed into place: a reader sees a partition as
it was at one commit or the next, never half of one. The partition column lives in the folder
name only, as Hive, Spark, Trino and DuckDB expect (``hive_partitioning``).

Which partitions to publish is recorded in the warehouse, in ``lake_pending``, in the same
transaction as the change; a publish removes the rows it did. So a run killed between its
commit and its publish leaves the work for the next publish (of any run): the lake heals
without a person. The cost of a publish is the partitions a change touched, not the warehouse.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from analytics_assets.lib.atomic_files import temporary_beside, write_text
from analytics_assets.lib.warehouse import identifier

FILE = "data.parquet"
PARTITION = "day"


@dataclass(frozen=True)
class LakeTable:
    """How a warehouse table is published. ``day``: SQL for a row's partition (``None``: the
    table is small and published whole); ``rows``: a predicate picking one partition's rows
    from ``$day`` (written so DuckDB's min/max indexes skip the rest); ``columns``: what is
    written (the partition column is in the path, not the file)."""

    name: str
    day: str | None = None
    rows: str = "true"
    columns: str = "*"


def _utc_day(column: str) -> tuple[str, str]:
    """A TIMESTAMPTZ column's UTC day, and the range predicate for one day."""
    start = "($day::TIMESTAMP AT TIME ZONE 'UTC')"
    return (
        f"({column} AT TIME ZONE 'UTC')::DATE",
        f"{column} >= {start} AND {column} < {start} + INTERVAL 1 DAY",
    )


def _naive_day(column: str) -> tuple[str, str]:
    """A TIMESTAMP (UTC, no zone) column's day, and the range predicate for one day."""
    return (
        f"{column}::DATE",
        f"{column} >= $day::TIMESTAMP AND {column} < $day::TIMESTAMP + INTERVAL 1 DAY",
    )


AUDIT_TABLES = (
    "audit_summary",
    "audit_purchase_distribution",
    "audit_revenue_deciles",
    "audit_lorenz",
    "audit_period_comparison",
    "audit_cohort_evolution",
    "audit_cohort_comparison",
    "audit_layer_cake",
)


def tables(quarantine_raw: bool = False) -> dict[str, LakeTable]:
    """Every published table. ``quarantine_raw``: keep quarantined rows' raw records."""
    events = _utc_day("occurred_at")
    quarantined = _utc_day("quarantined_at")
    hourly = _naive_day("window_start")
    found = [
        LakeTable("events", *events),
        LakeTable("quarantined_events", *quarantined, "*" if quarantine_raw else "* EXCLUDE (raw)"),
        LakeTable("sessions", "day", "day = $day", "* EXCLUDE (day)"),
        LakeTable("customer_daily", "day", "day = $day", "* EXCLUDE (day)"),
        LakeTable("kpis_hourly", *hourly),
        LakeTable("kpis_daily", *hourly),
        LakeTable("kafka_ledger", *_utc_day("committed_at")),
        *(LakeTable(name) for name in AUDIT_TABLES),
    ]
    return {table.name: table for table in found}


PENDING_DDL = """
CREATE TABLE IF NOT EXISTS lake_pending (
    table_name VARCHAR NOT NULL,
    day        DATE,
    marked_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def ensure_pending(conn: duckdb.DuckDBPyConnection) -> None:
    """Create ``lake_pending``. A warehouse from before the lake gets every partition of every
    published table marked once, so the first run after an upgrade publishes it all."""
    if _exists(conn, "lake_pending"):
        return
    conn.execute(PENDING_DDL)
    for name, spec in tables().items():
        if not _exists(conn, name):
            continue
        if spec.day is None:
            mark(conn, name)
        else:
            mark_rows(conn, name)


def mark(conn: duckdb.DuckDBPyConnection, table: str, days: Iterable[date] | None = None) -> None:
    """Record that ``table``'s partitions ``days`` (``None``: the whole, unpartitioned table)
    changed; call it inside the transaction that changes them."""
    ensure_pending(conn)
    if days is None:
        conn.execute("INSERT INTO lake_pending (table_name, day) VALUES (?, NULL)", [table])
        return
    days = sorted(set(days))
    if days:
        conn.execute(
            "INSERT INTO lake_pending (table_name, day) SELECT ?, unnest(?::DATE[])", [table, days]
        )


def mark_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    where: str = "true",
    params: list | dict | None = None,
    source: str | None = None,
) -> None:
    """Record the partitions of ``table``'s rows that match ``where`` (before they are deleted,
    or after they are written); inside the changing transaction. ``source``: a relation with
    the table's partition column to read instead (rows already picked out)."""
    spec = tables()[table]
    ensure_pending(conn)
    conn.execute(
        f"INSERT INTO lake_pending (table_name, day) SELECT DISTINCT '{identifier(table)}', "
        f"{spec.day} FROM {identifier(source or table)} WHERE {where}",
        params or [],
    )


@dataclass(frozen=True)
class Published:
    table: str
    day: date | None
    rows: int
    path: Path


def partition_path(root: Path, table: str, day: date | None) -> Path:
    folder = root / identifier(table)
    return (folder / f"{PARTITION}={day.isoformat()}" if day is not None else folder) / FILE


def publish_pending(
    conn: duckdb.DuckDBPyConnection, root: Path, quarantine_raw: bool = False
) -> list[Published]:
    """Publish every partition recorded in ``lake_pending`` (this run's, and any a killed run
    left), then forget them. Safe to run again at any point: a publish is a pure function of
    the warehouse at the time."""
    ensure_pending(conn)
    pending = conn.execute(
        "SELECT DISTINCT table_name, day FROM lake_pending ORDER BY table_name, day NULLS FIRST"
    ).fetchall()
    if not pending:
        return []
    (marked_until,) = conn.execute("SELECT max(marked_at) FROM lake_pending").fetchone()
    specs = tables(quarantine_raw)
    done = [
        published
        for table, day in pending
        if table in specs and (published := publish(conn, root, specs[table], day)) is not None
    ]
    # rows marked while this ran (another connection of the same process) stay for the next
    conn.execute("DELETE FROM lake_pending WHERE marked_at <= ?", [marked_until])
    return done


def _exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary",
            [table],
        ).fetchone()[0]
    )


def publish(
    conn: duckdb.DuckDBPyConnection, root: Path, spec: LakeTable, day: date | None
) -> Published | None:
    """Write one partition (or a whole small table) from the warehouse and rename it into place.
    A partition that has become empty is replaced by an empty file (so a reader that listed it
    can still read it); one that never had rows is not created (a whole table always is).
    ``None`` when the table is not in the warehouse yet."""
    if not _exists(conn, spec.name):
        return None
    path = partition_path(root, spec.name, day if spec.day else None)
    params = {"day": day} if spec.day and "$day" in spec.rows else {}
    with temporary_beside(path) as tmp:
        ((rows,),) = conn.execute(
            f"COPY (SELECT {spec.columns} FROM {spec.name} WHERE {spec.rows}) "
            f"TO '{_quoted(tmp)}' (FORMAT parquet, COMPRESSION zstd)",
            params,
        ).fetchall()
        if rows == 0 and spec.day is not None and not path.exists():
            return Published(spec.name, day, 0, path)
        os.replace(tmp, path)
    return Published(spec.name, day, rows, path)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def check(
    conn: duckdb.DuckDBPyConnection, root: Path, published: Iterable[Published]
) -> dict[str, dict[str, tuple[int, int]]]:
    """For each table, the partitions whose published file's row count (read back from the
    Parquet footer) differs from the warehouse's count now: ``{table: {day: (lake, warehouse)}}``;
    empty when every partition matches."""
    specs = tables()
    wrong: dict[str, dict[str, tuple[int, int]]] = {}
    for item in published:
        spec = specs[item.table]
        lake_rows = file_rows(item.path) if item.path.exists() else 0
        params = {"day": item.day} if spec.day and "$day" in spec.rows else {}
        ((stored,),) = conn.execute(
            f"SELECT count(*) FROM {spec.name} WHERE {spec.rows}", params
        ).fetchall()
        if lake_rows != stored:
            key = item.day.isoformat() if item.day else "*"
            wrong.setdefault(item.table, {})[key] = (lake_rows, stored)
    return wrong


def file_rows(path: Path) -> int:
    """Rows in a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def by_table(published: Iterable[Published]) -> dict[str, list[Published]]:
    grouped: dict[str, list[Published]] = {}
    for item in published:
        grouped.setdefault(item.table, []).append(item)
    return grouped


# ---- reading ------------------------------------------------------------------------------


def views(root: Path, predictions: Path | None = None) -> dict[str, str]:
    """``{view name: SELECT ...}`` over what the lake holds now (a table with no file yet has
    no view). ``predictions``: the scoring service's prediction log, Parquet by model and day."""
    found: dict[str, str] = {}
    for name, spec in tables().items():
        folder = root / name
        pattern = f"{PARTITION}=*/{FILE}" if spec.day else FILE
        if next(folder.glob(pattern), None) is None:
            continue
        hive = ", hive_partitioning = true" if spec.day else ""
        found[name] = f"SELECT * FROM read_parquet('{_quoted(folder / pattern)}'{hive})"
    if predictions is not None and next(predictions.glob("*/date=*/*.parquet"), None):
        found["predictions"] = (
            f"SELECT * FROM read_parquet('{_quoted(predictions)}/*/date=*/*.parquet', "
            "hive_partitioning = true, union_by_name = true)"
        )
    return found


def create_views(conn: duckdb.DuckDBPyConnection, view_sql: dict[str, str]) -> None:
    for name, sql in view_sql.items():
        conn.execute(f"CREATE OR REPLACE VIEW {identifier(name)} AS {sql}")


def connect(root: Path, predictions: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per published table: what ``analytics sql``
    and the read API query. Never touches the warehouse file."""
    conn = duckdb.connect()
    create_views(conn, views(root, predictions))
    return conn


CATALOG_STORAGE_VERSION = "v1.0.0"
"""What DuckDB 1.x clients read (2.0's default storage version they cannot)."""


def write_catalog(path: Path, view_sql: dict[str, str]) -> Path:
    """A DuckDB file holding only views over the lake (no data): open it read-only from any
    DuckDB client, 1.5 included, while the platform runs. Replaced atomically."""
    with temporary_beside(path) as tmp:
        tmp.unlink()  # DuckDB creates the file itself
        conn = duckdb.connect()
        try:
            conn.execute(
                f"ATTACH '{_quoted(tmp)}' AS catalog (STORAGE_VERSION '{CATALOG_STORAGE_VERSION}')"
            )
            conn.execute("USE catalog")
            create_views(conn, view_sql)
            conn.execute("USE memory")
            conn.execute("DETACH catalog")
        finally:
            conn.close()
        Path(f"{tmp}.wal").unlink(missing_ok=True)
        os.replace(tmp, path)
    return path


def refresh_catalog(path: Path, view_sql: dict[str, str]) -> bool:
    """Rewrite the catalog when its views changed (a table's first partition) or it is missing;
    returns whether it did. What it holds is recorded beside it (``<catalog>.json``), so the
    usual publish, which adds no table, only reads that small file (opening the catalog cost
    30 ms a publish)."""
    record = path.with_name(path.name + ".json")
    wanted = json.dumps(view_sql, sort_keys=True)
    try:
        if path.exists() and record.read_text() == wanted:
            return False
    except OSError:
        pass  # no record: written again
    write_catalog(path, view_sql)
    write_text(record, wanted)
    return True


def plain(value):
    """A DuckDB result value as JSON (or CSV) can carry it."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)
