"""Exports of a lakehouse table's day range as CSV, JSON lines, Parquet or Arrow IPC, streamed:
DuckDB hands over record batches of at most :data:`BATCH_ROWS` rows from one snapshot, and each
is encoded and given away before the next is read, so a 10M-event range never sits in memory.
Used by ``GET /export/{table}`` on the read API and ``analytics export``.

Rows come in the lakehouse's storage order (no ``ORDER BY``: sorting would hold the whole
range). The row count is known before the first byte (one count on the same snapshot), so a
range over the row limit is refused up front and a client can check it got every row.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from analytics_assets.lib import lake, lakehouse

TIME_COLUMNS = {
    "events": "occurred_at",
    "quarantined_events": "quarantined_at",
    "sessions": "day",
    "customer_daily": "day",
    "kpis_hourly": "window_start",
    "kpis_daily": "window_start",
    "ingest_ledger": "committed_at",
}
"""What can be exported, and the column a day range selects on (its UTC day)."""

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
"""The formats: ``json`` is one object per line (JSON lines), ``arrow`` the Arrow IPC stream."""

BATCH_ROWS = 100_000


class ExportError(ValueError):
    """The request cannot be answered: ``status`` is the HTTP status a service should give."""

    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ExportTooSlow(TimeoutError):
    """The export ran past its time limit and was interrupted (the stream ends unfinished)."""


@dataclass
class Export:
    """An export opened on one snapshot: ``rows`` and ``snapshot`` before anything is read;
    ``chunks()`` the encoded bytes. ``close()`` (or reading to the end) frees the cursor."""

    table: str
    fmt: str
    rows: int
    snapshot: int
    cursor: duckdb.DuckDBPyConnection
    query: str
    params: dict
    timeout_s: float
    closed: bool = False

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    @property
    def filename(self) -> str:
        return f"{self.table}.{'jsonl' if self.fmt == 'json' else self.fmt}"

    def chunks(self) -> Iterator[bytes]:
        timer = threading.Timer(self.timeout_s, self.cursor.interrupt)
        started = time.monotonic()
        timer.start()
        try:
            reader = self.cursor.execute(self.query, self.params).fetch_record_batch(BATCH_ROWS)
            yield from ENCODERS[self.fmt](reader)
        except duckdb.InterruptException as exc:
            raise ExportTooSlow(
                f"the export ran past its time limit of {self.timeout_s:g} s "
                f"({time.monotonic() - started:.1f} s)"
            ) from exc
        finally:
            timer.cancel()
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(duckdb.Error):  # ends the read transaction that pinned it
            self.cursor.execute("ROLLBACK")
        self.cursor.close()


def check(table: str, first: date, last: date, fmt: str, max_days: int) -> None:
    """Raise :class:`ExportError` for an unknown table or format, an inverted or too long
    range."""
    if table not in TIME_COLUMNS:
        raise ExportError(
            f"no table {table!r} to export: one of {', '.join(sorted(TIME_COLUMNS))}",
            "unknown_table",
            404,
        )
    if fmt not in MEDIA_TYPES:
        raise ExportError(
            f"unknown format {fmt!r}: one of {', '.join(MEDIA_TYPES)}", "unknown_format"
        )
    if last < first:
        raise ExportError(f"last day {last} is before first day {first}", "invalid_range")
    days = (last - first).days + 1
    if days > max_days:
        raise ExportError(
            f"at most {max_days} days per export, not {days}: split the range", "range_too_long"
        )


def open_export(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    first: date,
    last: date,
    fmt: str,
    max_rows: int,
    max_days: int,
    timeout_s: float,
) -> Export:
    """The export of ``table``'s rows whose time column falls on the UTC days ``first`` to
    ``last`` (both included), on a new cursor of ``conn`` (the lakehouse attached), pinned to
    one snapshot. Raises :class:`ExportError` (bad request, missing table, over ``max_rows``)."""
    check(table, first, last, fmt, max_days)
    column = TIME_COLUMNS[table]
    cursor = lake.cursor(conn)
    try:
        cursor.execute("BEGIN TRANSACTION")  # one snapshot for the count and the rows
        if not lakehouse.exists(cursor, table):
            raise ExportError(f"the lakehouse has no {table} yet", "no_table", 404)
        kind = cursor.execute(
            "SELECT data_type FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = current_schema() AND table_name = ? AND column_name = ?",
            [table, column],
        ).fetchone()[0]
        if kind == "DATE":
            where = f"{column} BETWEEN $first AND $last"
        else:  # a timestamp: the UTC days, whatever the session's time zone
            where = (
                f"{column} >= $first::TIMESTAMP AT TIME ZONE 'UTC' "
                f"AND {column} < $after::TIMESTAMP AT TIME ZONE 'UTC'"
            )
        params = (
            {"first": first, "last": last}
            if kind == "DATE"
            else {"first": first, "after": last + timedelta(days=1)}
        )
        rows = cursor.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]
        if rows > max_rows:
            raise ExportError(
                f"{rows:,} rows in that range, over the limit of {max_rows:,}: a shorter range",
                "result_too_large",
                413,
            )
        snapshot = cursor.execute(
            f"SELECT id FROM {lakehouse.ALIAS}.current_snapshot()"
        ).fetchone()[0]
    except BaseException:
        cursor.close()
        raise
    return Export(
        table, fmt, rows, snapshot, cursor, f"SELECT * FROM {table} WHERE {where}", params,
        timeout_s,
    )  # fmt: skip


# ---- encoders: record batches in, bytes out ---------------------------------------------------


class _Drain:
    """A write-only file whose bytes are taken away after each batch (pyarrow's writers need a
    file; this one never holds more than one batch's encoding)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _csv(reader: pa.RecordBatchReader) -> Iterator[bytes]:
    import polars as pl

    header = True
    for batch in reader:
        yield pl.from_arrow(batch).write_csv(include_header=header).encode()
        header = False
    if header:  # no rows: the header alone
        yield pl.from_arrow(reader.schema.empty_table()).write_csv().encode()


def _json(reader: pa.RecordBatchReader) -> Iterator[bytes]:
    import polars as pl

    for batch in reader:
        if batch.num_rows:
            yield pl.from_arrow(batch).write_ndjson().encode()


def _parquet(reader: pa.RecordBatchReader) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    sink = _Drain()
    with pq.ParquetWriter(sink, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()  # the footer


def _arrow(reader: pa.RecordBatchReader) -> Iterator[bytes]:
    sink = _Drain()
    with pa.ipc.new_stream(sink, reader.schema) as writer:
        yield sink.take()
        for batch in reader:
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()  # the end-of-stream marker


ENCODERS = {"csv": _csv, "json": _json, "parquet": _parquet, "arrow": _arrow}
