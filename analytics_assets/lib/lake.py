"""Reading the lakehouse: what ``analytics sql``, the read API, the audit report and the sensors
open while runs write.

There is one copy of the data. A reader attaches the lakehouse's catalog read-only
(``lib/lakehouse.py``): it takes no lock, blocks no writer, and each query (or each of its
transactions) sees one snapshot, never half a commit. Any table can be read as it was:
``SELECT ... FROM events AT (TIMESTAMP => TIMESTAMPTZ '2026-12-06 10:00:00+00')`` or
``AT (VERSION => 42)``. Besides the lakehouse's tables, a reader gets ``predictions``: the
scoring service's prediction log (Parquet by model and day), which the service writes itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from pathlib import Path

import duckdb

from analytics_assets.lib import lakehouse
from analytics_assets.lib.warehouse import identifier

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

INTERNAL_TABLES = ("commit_sequence", "lakehouse_upgrades")
"""Tables of the platform's own bookkeeping, not listed to readers (still readable);
``commit_sequence`` is only in lakehouses made before 2026-12-06, unused."""


def _quoted(path: Path | str) -> str:
    return str(path).replace("'", "''")


def predictions_view(predictions: Path | None) -> str | None:
    """``SELECT ...`` over the prediction log, or ``None`` while it has no file."""
    if predictions is None or next(predictions.glob("*/date=*/*.parquet"), None) is None:
        return None
    return (
        f"SELECT * FROM read_parquet('{_quoted(predictions)}/*/date=*/*.parquet', "
        "hive_partitioning = true, union_by_name = true)"
    )


def ensure_exists(where: lakehouse.Location | None = None) -> None:
    """Create an empty lakehouse where none is yet (a reader may start before any run), so a
    read-only attach finds a catalog."""
    where = where or lakehouse.location()
    if where.sqlite_path is not None and where.sqlite_path.exists():
        return
    try:
        lakehouse.connect(read_only=True, where=where).close()
    except (duckdb.Error, FileNotFoundError):
        lakehouse.connect(where=where).close()


def attach(
    conn: duckdb.DuckDBPyConnection,
    predictions: Path | None = None,
    where: lakehouse.Location | None = None,
) -> duckdb.DuckDBPyConnection:
    """Attach the lakehouse read-only to ``conn`` (and make it the default), with the
    ``predictions`` view in the connection's own memory catalog."""
    ensure_exists(where)
    lakehouse.attach(conn, where, read_only=True)
    view = predictions_view(predictions)
    if view is not None:
        conn.execute(f"CREATE OR REPLACE VIEW memory.main.predictions AS {view}")
    return use(conn)


SEARCH_PATH = f"{lakehouse.ALIAS}.main,memory.main"


def use(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Make the lakehouse's tables (and ``predictions``) readable by their bare names on
    ``conn``: per connection in DuckDB, so every cursor needs it (:func:`cursor`)."""
    conn.execute(f"USE {lakehouse.ALIAS}")
    conn.execute(f"SET search_path = '{SEARCH_PATH}'")
    return conn


def cursor(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new cursor of ``conn`` (one per thread or query) reading the lakehouse by name."""
    return use(conn.cursor())


def connect(
    predictions: Path | None = None, where: lakehouse.Location | None = None
) -> duckdb.DuckDBPyConnection:
    """A reader's connection: an in-memory DuckDB with the lakehouse attached read-only."""
    from analytics_assets.lib import duckdb_extensions

    conn = duckdb.connect(config=duckdb_extensions.config())
    try:
        return attach(conn, predictions, where)
    except BaseException:
        conn.close()
        raise


_shared: dict[str, duckdb.DuckDBPyConnection] = {}


def shared() -> duckdb.DuckDBPyConnection:
    """One reader connection per process and lakehouse, attached once (an attach costs a
    catalog round trip): sensors that read on every tick take a cursor of it. Each query on a
    cursor sees the latest snapshot."""
    where = lakehouse.location()
    key = f"{where.catalog}|{where.data}"
    conn = _shared.get(key)
    if conn is None:
        conn = _shared[key] = connect(where=where)
    return conn


def tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables a reader sees (the lakehouse's, and ``predictions`` when it has files)."""
    found = [t for t in lakehouse.table_names(conn) if t not in INTERNAL_TABLES]
    has_predictions = conn.execute(
        "SELECT count(*) FROM duckdb_views() WHERE database_name = 'memory' "
        "AND view_name = 'predictions'"
    ).fetchone()[0]
    return sorted(found + (["predictions"] if has_predictions else []))


def has_table(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    return name in tables(conn)


def shell_commands(where: lakehouse.Location | None = None) -> list[str]:
    """The statements that open the lakehouse read-only in a ``duckdb`` shell (the duckdb-cli
    package, same DuckDB version): what ``analytics sql`` with no query runs."""
    from analytics_assets.lib import duckdb_extensions

    where = where or lakehouse.location()
    return [
        f"SET extension_directory = '{_quoted(duckdb_extensions.prepare())}'",
        "SET autoinstall_known_extensions = false",
        f"ATTACH 'ducklake:{_quoted(where.catalog)}' AS {lakehouse.ALIAS} "
        f"(READ_ONLY, DATA_PATH '{_quoted(where.data)}')",
        f"USE {lakehouse.ALIAS}",
    ]


def table_sql(name: str) -> str:
    """A reader's ``SELECT`` of a whole table."""
    return f"SELECT * FROM {identifier(name)}"


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
