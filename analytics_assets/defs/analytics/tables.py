"""Writing derived tables: a day range of a lakehouse table is replaced in one transaction."""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from analytics_assets.lib import lakehouse
from analytics_assets.lib.warehouse import identifier

PARTITIONS = lakehouse.PARTITIONS


def replace_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    data: pa.Table,
    column: str,
    start: date,
    end: date,
) -> int:
    """Make ``table``'s rows with ``column`` in ``[start, end)`` exactly ``data``; returns rows.

    The table is created from ``data``'s schema the first time. Delete and insert commit
    together (one lakehouse snapshot), so a re-run, or a run killed half-way, never leaves a
    day twice or half-written; readers see the old days or the new ones. Ingest appending to
    ``events`` meanwhile does not conflict; another rebuild of the table does, and is retried.
    """
    identifier(table), identifier(column)
    conn.register("_staged", data)
    try:
        lakehouse.ensure_tables(
            conn,
            {table: f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _staged LIMIT 0"},
            {table: PARTITIONS[table]} if table in PARTITIONS else None,
        )
        in_range = f"{column} >= $start AND {column} < $end"

        def body(conn: duckdb.DuckDBPyConnection) -> None:
            conn.execute(f"DELETE FROM {table} WHERE {in_range}", {"start": start, "end": end})
            conn.execute(f"INSERT INTO {table} SELECT * FROM _staged")

        lakehouse.run_transaction(conn, body, f"replace {table} [{start}, {end})")
    finally:
        conn.unregister("_staged")
    return data.num_rows


def replace_all(conn: duckdb.DuckDBPyConnection, data: dict[str, pa.Table]) -> None:
    """Replace each named table with its data, all in one transaction."""
    for name in data:
        identifier(name)

    def body(conn: duckdb.DuckDBPyConnection) -> None:
        for name, table in data.items():
            conn.register("_staged", table)
            try:
                conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _staged")
            finally:
                conn.unregister("_staged")

    lakehouse.run_transaction(conn, body, f"replace {', '.join(data)}")
