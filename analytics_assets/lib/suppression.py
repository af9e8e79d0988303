"""The suppression list: the customers erased from this platform, as salted hashes, and what
keeps them out.

It is a lakehouse table (``erased_customers``), so every writer on every host sees the same
list in the snapshot it commits on: the batch commit quarantines an erased customer's new
events (reason ``erased_customer``, no raw record) in the same transaction that would have
stored them, and a restore deletes their rows again in the transaction that restores (a
restore never brings an erased customer back). A restore leaves the list itself alone
(``restore.NOT_RESTORED``).

The list holds no id: ``id_hash`` is SHA-256 of ``salt:customer_id``, with one random salt per
lakehouse (stored in each row, so receipts and backups from another home still match).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

import duckdb

from analytics_assets.lib import lakehouse

TABLE = "erased_customers"
DDL = {
    TABLE: f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id_hash      VARCHAR NOT NULL,
    salt         VARCHAR NOT NULL,
    erased_at    TIMESTAMPTZ NOT NULL,
    receipt      VARCHAR NOT NULL,
    history_from TIMESTAMPTZ,
    days_touched DATE[]
)"""
}
"""``history_from``: the first moment a store held the customer; the lakehouse's snapshots
from then to ``erased_at`` were expired by the erasure (a restore cannot reach them)."""

ID_COLUMN = "customer_id"


def id_hash(salt: str, customer_id: str) -> str:
    """The suppression list's form of an id (what DuckDB's ``sha256(salt || ':' || id)``
    computes, so SQL and Python agree)."""
    return hashlib.sha256(f"{salt}:{customer_id}".encode()).hexdigest()


def sql_hash(salt_sql: str, column: str) -> str:
    """The SQL expression of :func:`id_hash` over ``column``."""
    return f"sha256({salt_sql} || ':' || {column})"


def ensure(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the list if need be (outside a transaction: it commits its own)."""
    lakehouse.ensure_tables(conn, DDL)


def create(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the list if need be, inside the caller's transaction."""
    conn.execute(DDL[TABLE])


def salt(conn: duckdb.DuckDBPyConnection) -> str:
    """This lakehouse's salt: the one its list already uses, or a new random one."""
    ensure(conn)
    row = conn.execute(f"SELECT salt FROM {TABLE} ORDER BY erased_at LIMIT 1").fetchone()
    return row[0] if row else secrets.token_hex(16)


def add(
    conn: duckdb.DuckDBPyConnection,
    hashes: Iterable[str],
    salt_value: str,
    erased_at: datetime,
    receipt: str,
    history_from: datetime | None,
    days_touched: list | None = None,
) -> int:
    """Put ``hashes`` on the list (inside the caller's transaction); ones already on it stay
    as they are. Returns how many were new."""
    fresh = sorted(set(hashes))
    if not fresh:
        return 0
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _new_hashes AS SELECT unnest(?::VARCHAR[]) AS id_hash",
        [fresh],
    )
    (count,) = conn.execute(
        f"""
        INSERT INTO {TABLE}
        SELECT n.id_hash, ?, ?, ?, ?, ? FROM _new_hashes n
        WHERE n.id_hash NOT IN (SELECT id_hash FROM {TABLE})
        """,
        [salt_value, erased_at, receipt, history_from, list(days_touched or [])],
    ).fetchone()
    return count


_copies: dict[str, tuple[tuple, object]] = {}
"""Per catalog: the list's version (table id, next row id, row count) and its rows, as read."""


def listed(conn: duckdb.DuckDBPyConnection):
    """The list's ``(id_hash, salt)`` rows as a pyarrow table, read through the lakehouse only
    when it changed: a scan of a lakehouse table in a commit costs 13-16 ms of catalog reads (a
    0.1 s commit), the table's stats row in the catalog 3 ms. Rows are only ever added to the
    list (nothing deletes from it, restores leave it), so DuckLake's ``next_row_id`` of the
    table is its version. Batch commits and erasures take turns (``commit_lock``): no erasure
    commits while a batch's transaction runs, so the catalog's newest list is the one the
    transaction reads."""
    meta = f"__ducklake_metadata_{lakehouse.ALIAS}"
    row = conn.execute(
        f"""
        SELECT t.table_id, s.next_row_id, s.record_count FROM {meta}.ducklake_table t
        LEFT JOIN {meta}.ducklake_table_stats s USING (table_id)
        WHERE t.table_name = ? AND t.end_snapshot IS NULL
        """,
        [TABLE],
    ).fetchone()
    version = tuple(v or 0 for v in row) if row else None
    catalog = lakehouse.catalog_of(conn)
    known = _copies.get(catalog)
    if version is not None and known is not None and known[0] == version:
        return known[1]
    rows = conn.execute(f"SELECT id_hash, salt FROM {TABLE}").fetch_arrow_table()
    if version is not None and rows.num_rows == version[2]:
        _copies[catalog] = (version, rows)
    return rows


def suppressed_ids(source: str, column: str = ID_COLUMN, listed: str = TABLE) -> str:
    """SQL for the distinct ids of ``source``'s ``column`` that are on the list (``listed``:
    the table, or a copy of it read once). The hash is computed once per distinct id and salt
    (one salt, unless lists were merged)."""
    return f"""
        SELECT DISTINCT c.id FROM (SELECT DISTINCT {column} AS id FROM {source}) c
        JOIN (SELECT DISTINCT salt FROM {listed}) k ON true
        WHERE {sql_hash("k.salt", "c.id")} IN (SELECT id_hash FROM {listed})
    """


def raw_customer(raw_sql: str) -> str:
    """The customer id inside a quarantined record's raw text (JSON), else null."""
    return f"try(json_extract_string({raw_sql}, '$.customer_id'))"


def is_empty(conn: duckdb.DuckDBPyConnection) -> bool:
    if not lakehouse.exists(conn, TABLE):
        return True
    return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == 0


def without_listed(conn: duckdb.DuckDBPyConnection, source: str, tag: str = "") -> str:
    """``source`` (what follows FROM) without the rows of listed customers, as SQL to read
    from while writing, so that no file written from it ever holds them (deleting them after
    an insert in the same transaction would leave them in the new files)."""
    if is_empty(conn):
        return source
    columns = {r[0] for r in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    conditions = []
    if ID_COLUMN in columns:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE _listed{tag} AS {suppressed_ids(source)}")
        conditions.append(f"coalesce({ID_COLUMN} IN (SELECT id FROM _listed{tag}), false)")
    if "raw" in columns:
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _listed_raw{tag} AS "
            + suppressed_ids(
                f"(SELECT {raw_customer('raw')} AS rid FROM {source}) r WHERE rid IS NOT NULL",
                "rid",
            )
        )
        conditions.append(
            f"coalesce({raw_customer('raw')} IN (SELECT id FROM _listed_raw{tag}), false)"
        )
    if not conditions:
        return source
    return f"(SELECT * FROM {source} WHERE NOT ({' OR '.join(conditions)}))"


def id_tables(conn: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Tables that can hold a customer (the list itself aside): name -> the columns that do
    (``customer_id``; ``raw`` and ``detail``, a quarantined record and why)."""
    found = {}
    for table in lakehouse.table_names(conn):
        if table == TABLE:
            continue
        columns = {r[0] for r in conn.execute(f'DESCRIBE "{table}"').fetchall()}
        held = columns & {ID_COLUMN, "raw", "detail"}
        if held:
            found[table] = held
    return found


def reapply(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Delete every listed customer's rows from every table (inside the caller's
    transaction): what a restore does before anyone reads. Rows per table removed."""
    if is_empty(conn):
        return {}
    removed: dict[str, int] = {}
    for table, columns in id_tables(conn).items():
        conditions = []
        if ID_COLUMN in columns:
            quoted = f'"{table}"'
            conn.execute(f"CREATE OR REPLACE TEMP TABLE _suppressed AS {suppressed_ids(quoted)}")
            conditions.append(f"{ID_COLUMN} IN (SELECT id FROM _suppressed)")
        if "raw" in columns:
            conn.execute(
                "CREATE OR REPLACE TEMP TABLE _suppressed_raw AS "
                + suppressed_ids(
                    f'(SELECT {raw_customer("raw")} AS rid FROM "{table}") r WHERE rid IS NOT NULL',
                    "rid",
                )
            )
            conditions.append(f"{raw_customer('raw')} IN (SELECT id FROM _suppressed_raw)")
        if not conditions:
            continue
        (count,) = conn.execute(
            f'DELETE FROM "{table}" WHERE ' + " OR ".join(f"({c})" for c in conditions)
        ).fetchone()
        if count:
            removed[table] = count
    return removed


def from_receipts(conn: duckdb.DuckDBPyConnection, folder) -> int:
    """Put the customers of every receipt in ``folder`` (``ANALYTICS_HOME/erasures``) on the
    list (inside the caller's transaction): a lakehouse loaded from a backup learns of the
    erasures done since. Returns how many were new."""
    import json
    from pathlib import Path

    create(conn)
    added = 0
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            receipt = json.loads(path.read_text())
            hashes, salt_value = receipt["id_hashes"], receipt["salt"]
            erased_at = datetime.fromisoformat(receipt["started_at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a receipt
        history = receipt.get("history_from")
        added += add(
            conn,
            hashes,
            salt_value,
            erased_at,
            receipt.get("receipt_id", path.stem),
            datetime.fromisoformat(history) if history else None,
            receipt.get("days_touched") or [],
        )
    return added


def expired_spans(conn: duckdb.DuckDBPyConnection) -> list[tuple[datetime, datetime, str]]:
    """``(from, to, receipt)`` per erasure whose snapshots were expired: a restore cannot
    reach a moment in between."""
    if not lakehouse.exists(conn, TABLE):
        return []
    return conn.execute(
        f"SELECT min(history_from), max(erased_at), receipt FROM {TABLE} "
        "WHERE history_from IS NOT NULL GROUP BY receipt ORDER BY 1"
    ).fetchall()
