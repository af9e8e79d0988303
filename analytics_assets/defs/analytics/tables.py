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
    return replace_ranges(conn, {table: data}, column, start, end)[table]


def replace_ranges(
    conn: duckdb.DuckDBPyConnection,
    data: dict[str, pa.Table],
    column: str,
    start: date,
    end: date,
) -> dict[str, int]:
    """:func:`replace_range` for several tables at once: all of them in one snapshot."""
    identifier(column)
    for table in data:
        identifier(table)
    staged = {table: f"_staged_{i}" for i, table in enumerate(data)}
    for table, view in staged.items():
        conn.register(view, data[table])
    try:
        lakehouse.ensure_tables(
            conn,
            {
                t: f"CREATE TABLE IF NOT EXISTS {t} AS SELECT * FROM {v} LIMIT 0"
                for t, v in staged.items()
            },
            {t: PARTITIONS[t] for t in data if t in PARTITIONS} or None,
        )
        in_range = f"{column} >= $start AND {column} < $end"

        def body(conn: duckdb.DuckDBPyConnection) -> None:
            for table, view in staged.items():
                conn.execute(f"DELETE FROM {table} WHERE {in_range}", {"start": start, "end": end})
                conn.execute(f"INSERT INTO {table} SELECT * FROM {view}")

        lakehouse.run_transaction(conn, body, f"replace {', '.join(data)} [{start}, {end})")
    finally:
        for view in staged.values():
            conn.unregister(view)
    return {table: table_data.num_rows for table, table_data in data.items()}


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
