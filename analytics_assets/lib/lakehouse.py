"""The lakehouse: every table the platform writes, in one DuckLake.

A DuckLake is a catalog database (which tables exist, which Parquet files hold their rows, one
row per snapshot) plus the Parquet data files. Every transaction is a snapshot, so:

- many processes write at once: commits that do not touch each other's rows go through side by
  side; a real conflict aborts the later one, which :func:`run_transaction` retries with a
  bounded, logged backoff;
- readers attach the catalog read-only (:func:`connect`) and see one snapshot, never half a
  commit, without a lock or a copy;
- any table can be read as it was (``AT (VERSION => n)`` or ``AT (TIMESTAMP => t)``).

Where it lives, from the environment (``settings.lakehouse_catalog`` / ``lakehouse_data``):
the catalog is SQLite under ``ANALYTICS_HOME`` by default (embedded, no server) or PostgreSQL
(``postgres:<libpq connection string or URL>``); data files are a local folder or an object
store URL (``s3://...``, through DuckDB's ``httpfs``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from analytics_assets import settings
from analytics_assets.lib import duckdb_extensions

ALIAS = "lake"
"""The name the lakehouse is attached under; ``USE`` makes it the default, so SQL says
``events``, not ``lake.events``."""

_log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Location:
    """Where a lakehouse lives. ``catalog``: DuckLake's metadata string after ``ducklake:``
    (``sqlite:/path/catalog.sqlite``, ``postgres:dbname=lake host=...``);
    ``data``: the folder or URL of its Parquet files."""

    catalog: str
    data: str

    @property
    def sqlite_path(self) -> Path | None:
        kind, _, path = self.catalog.partition(":")
        return Path(path) if kind == "sqlite" else None

    @classmethod
    def under(cls, folder: Path) -> Location:
        """An embedded lakehouse in ``folder``: the SQLite catalog and the data files."""
        return cls(f"sqlite:{folder / 'catalog.sqlite'}", f"{folder / 'data'}/")


def location() -> Location:
    """The lakehouse the environment names (embedded defaults under ``ANALYTICS_HOME``)."""
    return Location(settings.lakehouse_catalog(), settings.lakehouse_data())


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _prepare_sqlite(path: Path) -> None:
    """A new SQLite catalog in WAL mode: readers then never block a writer's commit (in
    SQLite's default journal mode a reader's open transaction makes every commit fail with
    "database is locked")."""
    if path.exists() and path.stat().st_size > 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with commit_lock(f"sqlite:{path}"):  # two first attaches at once: one creates it
        if path.exists() and path.stat().st_size > 0:
            return
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode = WAL")


def _made_marker(path: Path) -> Path:
    """Beside a SQLite catalog once DuckLake has made its tables in it: until then, attaches
    take turns (two creating them at once fail). Not asked of SQLite itself: a second SQLite
    library in the process (Python's) closing the file drops the POSIX locks DuckDB's holds
    on it, and concurrent attaches then failed with "disk I/O error"."""
    return path.with_name(path.name + ".made")


def attach(
    conn: duckdb.DuckDBPyConnection,
    where: Location | None = None,
    read_only: bool = False,
    alias: str = ALIAS,
    use: bool = True,
) -> duckdb.DuckDBPyConnection:
    """Attach the lakehouse to ``conn`` as ``alias`` (and make it the default schema)."""
    where = where or location()
    options = [f"DATA_PATH '{_quoted(where.data)}'"]
    if where.sqlite_path is not None:
        if read_only and not where.sqlite_path.exists():
            raise FileNotFoundError(
                f"No lakehouse at {where.sqlite_path}: nothing has been ingested into this "
                "ANALYTICS_HOME yet."
            )
        _prepare_sqlite(where.sqlite_path)
        Path(where.data).mkdir(parents=True, exist_ok=True)
    if read_only:
        options.append("READ_ONLY")
    conn.execute("SET enable_progress_bar = false")  # a bar per long query: noise in run logs
    if where.data.startswith(("s3://", "gs://", "gcs://", "r2://", "az://", "https://")):
        duckdb_extensions.load(conn, "httpfs")
    statement = f"ATTACH 'ducklake:{_quoted(where.catalog)}' AS {alias} ({', '.join(options)})"
    for attempt in range(1, 51):
        try:
            # the first attach creates the catalog's tables: two at once take turns
            marker = _made_marker(where.sqlite_path) if where.sqlite_path else None
            new = marker is not None and not marker.exists()
            with commit_lock(where.catalog) if new else contextlib.nullcontext():
                conn.execute(statement)
                if new and not read_only:
                    marker.touch()
            break
        except duckdb.Error as error:  # another process creating or committing to it
            # on PostgreSQL, two first attaches both create the catalog's tables: the loser
            # fails ("already exists", or on PostgreSQL's unique index of type names) and
            # finds them made next time
            message = str(error)
            creating = "Failed to initialize DuckLake" in message and (
                "already exists" in message or "duplicate key value" in message
            )
            if not (is_conflict(error) or creating) or attempt == 50:
                raise
            time.sleep(0.02 * attempt)
    if use:
        conn.execute(f"USE {alias}")
    if not read_only and use and where == location():
        old = settings.warehouse_path()
        if old.exists():  # the first writer after the upgrade moves the old file in, once
            from analytics_assets.lib import lakehouse_upgrade

            lakehouse_upgrade.upgrade(conn, old)
    return conn


def connect(
    read_only: bool = False, where: Location | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB with the lakehouse attached and in use. Readers pass
    ``read_only``: they never block a writer and see one snapshot per query."""
    config = dict(duckdb_extensions.config())
    if threads:
        config["threads"] = threads
    conn = duckdb.connect(config=config)
    try:
        return attach(conn, where, read_only=read_only)
    except BaseException:
        conn.close()
        raise


# ---- transactions and conflicts ----------------------------------------------------------

CONFLICT_MARKERS = (
    "transaction conflict",  # DuckLake: two commits changed the same rows or table
    "database is locked",  # SQLite catalog: another writer committed first
    "could not serialize",  # PostgreSQL catalog
    "conflict on tuple",
)


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` is another writer's commit winning the race (worth a retry), not a
    mistake in what this one does."""
    return isinstance(error, duckdb.Error) and any(
        marker in str(error).lower() for marker in CONFLICT_MARKERS
    )


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # a failed COMMIT has already ended it
        conn.execute("ROLLBACK")


def catalog_of(conn: duckdb.DuckDBPyConnection, alias: str = ALIAS) -> str:
    """The DuckLake catalog string ``conn`` has attached as ``alias`` (``sqlite:/...``),
    remembered per connection or cursor: asking DuckDB outside a transaction reads the
    lakehouse's catalog first (3-4 ms, twice in every batch commit)."""
    known = _catalogs.get(conn)
    if known is not None and alias in known:
        return known[alias]
    row = conn.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = ?", [alias]
    ).fetchone()
    if row is None:
        raise ValueError(f"no lakehouse attached as {alias!r}")
    catalog = row[0].removeprefix("ducklake:")
    _catalogs.setdefault(conn, {})[alias] = catalog
    return catalog


_catalogs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def commit_lock(catalog: str) -> Iterator[None]:
    """Writers that must not overlap take turns here instead of failing each other's
    commits: on a SQLite catalog (one machine) a lock file beside it; on PostgreSQL (any
    number of hosts) an advisory lock in the catalog's database. Held only around a commit."""
    kind, _, target = catalog.partition(":")
    if kind == "sqlite":
        import fcntl

        with open(f"{target}.commit-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if kind == "postgres":
        import psycopg2

        connection = psycopg2.connect(target)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [COMMIT_LOCK_KEY])
            yield
        finally:
            connection.close()  # ends the session: the lock goes with it, even after a kill
        return
    yield  # another catalog: optimistic commits and retries only


COMMIT_LOCK_KEY = 0x616E616C79746963
"""The advisory lock's key on a PostgreSQL catalog ("analytic" in ASCII)."""


def run_transaction(
    conn: duckdb.DuckDBPyConnection,
    body: Callable[[duckdb.DuckDBPyConnection], T],
    what: str = "commit",
    attempts: int | None = None,
    log: Callable[[str], None] | None = None,
    serialize: bool = False,
) -> T:
    """Run ``body`` in one transaction and commit it; when another writer's commit conflicts,
    roll back and run all of ``body`` again on the new state (so its reads, e.g. which event
    ids are stored, are never stale), after a growing, jittered wait. Each retry is logged;
    after ``attempts`` (``$ANALYTICS_COMMIT_ATTEMPTS``, default 12) the conflict is raised.

    ``serialize`` (the batch commits, whose duplicate check must see every earlier commit), and
    every writer on a SQLite catalog (where any two overlapping write transactions conflict),
    take :func:`commit_lock` around each attempt: they wait their turn instead of retrying.
    """
    attempts = attempts or settings.commit_attempts()
    say = log or _log.warning
    catalog = catalog_of(conn)
    lock = serialize or catalog.startswith("sqlite:")
    for attempt in range(1, attempts + 1):
        try:
            with commit_lock(catalog) if lock else contextlib.nullcontext():
                conn.execute("BEGIN TRANSACTION")
                try:
                    result = body(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            return result
        except BaseException as error:
            if not is_conflict(error) or attempt == attempts:
                raise
            delay = min(2.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.0)
            first_line = str(error).strip().splitlines()[-1][:200]
            say(
                f"{what}: conflict with another writer ({first_line}); "
                f"retry {attempt}/{attempts - 1} in {delay:.2f}s"
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


# ---- what the lakehouse holds --------------------------------------------------------------


def exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = current_schema() AND table_name = ?",
            [table],
        ).fetchone()[0]
    )


def table_names(conn: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = current_schema() ORDER BY table_name"
        ).fetchall()
    ]


def current_snapshot(conn: duckdb.DuckDBPyConnection, alias: str = ALIAS) -> int:
    return conn.execute(f"SELECT id FROM {alias}.current_snapshot()").fetchone()[0]


def ensure_tables(
    conn: duckdb.DuckDBPyConnection,
    ddl: dict[str, str],
    partitions: dict[str, str] | None = None,
) -> None:
    """Create the tables of ``ddl`` (``{name: CREATE TABLE ...}``) that do not exist yet, in
    one transaction (retried: two runs may create them at the same moment), each partitioned
    by ``partitions[name]`` (DuckLake's transforms, e.g. ``year(ts), month(ts), day(ts)``).
    Costs one catalog lookup when all exist."""
    key = (catalog_of(conn), frozenset(ddl))
    if key in _ensured:  # seen in this process: no catalog lookup (a run's every commit)
        return
    if set(ddl) <= set(table_names(conn)):  # one catalog lookup
        _ensured.add(key)
        return

    def create(conn: duckdb.DuckDBPyConnection) -> None:
        for name, statement in ddl.items():
            if exists(conn, name):
                continue
            conn.execute(statement)
            if partitions and name in partitions:
                conn.execute(f"ALTER TABLE {name} SET PARTITIONED BY ({partitions[name]})")

    run_transaction(conn, create, "create tables")
    for name in unsorted(conn) if set(ddl) & set(SORTED) else []:
        # not in the creating transaction: DuckLake sets no option on a table made in it
        run_transaction(conn, lambda c, n=name: set_sorted(c, n), f"sort {name}")
    _ensured.add(key)


_ensured: set[tuple[str, frozenset]] = set()
"""Tables :func:`ensure_tables` found in this process, by catalog. A table dropped since (a
restore to before it existed) makes the next write fail with a ``CatalogException``: the
writer calls :func:`forget_tables` and ensures again."""


def forget_tables() -> None:
    _ensured.clear()


def create_as(
    conn: duckdb.DuckDBPyConnection, name: str, source: str, partitioned_as: str | None = None
) -> None:
    """Create table ``name`` holding every row of ``source`` (what follows ``FROM``),
    partitioned as :data:`PARTITIONS` says for ``partitioned_as`` (default: ``name``) before a
    row is written, so the rows land in their partitions' files."""
    key = partitioned_as or name
    conn.execute(f"CREATE TABLE {name} AS SELECT * FROM {source} LIMIT 0")
    if key in PARTITIONS:
        conn.execute(f"ALTER TABLE {name} SET PARTITIONED BY ({PARTITIONS[key]})")
    conn.execute(f"INSERT INTO {name} SELECT * FROM {source}")


SORTED = {"customer_daily": ("customer_id", 4_096)}
"""Tables whose files are sorted by a key, in small row groups: ``customer_daily``'s files (one
per day, every customer in each) hold a customer's rows in one 4,096-row group each, which a
lookup by customer reads alone (min/max statistics skip the rest). A profile's read of 7.7M
rows took 0.42 s unsorted, 0.09-0.11 s sorted (benchmarks/read_api_load.py, BENCHMARKS.md)."""


def set_sorted(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """Give ``name`` the sort order and row-group size :data:`SORTED` names (inside the
    caller's transaction; files written from then on, and compacted ones, follow it)."""
    key, rows = SORTED[name]
    conn.execute(f"ALTER TABLE {name} SET SORTED BY ({key})")
    conn.execute(
        f"CALL {ALIAS}.set_option('parquet_row_group_size', {int(rows)}, table_name => '{name}')"
    )


def unsorted(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables of :data:`SORTED` that exist without their row-group size set (made before
    it): :mod:`lakehouse_maintenance` sets it."""
    names = set(table_names(conn)) & set(SORTED)
    if not names:
        return []
    done = {
        row[0].rpartition(".")[2]
        for row in conn.execute(
            f"SELECT scope_entry FROM {ALIAS}.options() "
            "WHERE option_name = 'parquet_row_group_size' AND scope = 'TABLE' "
            "AND scope_entry IS NOT NULL"
        ).fetchall()
    }
    return sorted(names - done)


def by_day(column: str) -> str:
    """DuckLake's partition key for a timestamp column's day: files split per calendar day
    (UTC), so a day's reads and rewrites touch only its files."""
    return f"year({column}), month({column}), day({column})"


PARTITIONS = {
    "events": by_day("occurred_at"),
    "quarantined_events": by_day("quarantined_at"),
    "sessions": "day",
    "customer_daily": "day",
    "kpis_hourly": "year(window_start), month(window_start)",
    "kpis_daily": "year(window_start), month(window_start)",
}
"""How each table's files are split: per day, so a day's rebuild replaces its own files and a
read of a few days skips the rest. The KPI tables, a row per hour or day, are split by month:
by day, a 90-day read opened 90 tiny files (p99 45 ms, benchmarks/lakehouse.py). The audit
tables, small and replaced whole, are not split."""


def data_files(conn: duckdb.DuckDBPyConnection, table: str, alias: str = ALIAS) -> list[str]:
    """The data and delete files the current snapshot of ``table`` reads."""
    rows = conn.execute(
        f"SELECT data_file, delete_file FROM ducklake_list_files('{alias}', ?)", [table]
    ).fetchall()
    return [path for row in rows for path in row if path]


def missing_files(conn: duckdb.DuckDBPyConnection, table: str) -> tuple[int, list[str]]:
    """How many files ``table`` reads, and those of them that are gone (deleted by hand, a
    disk lost): a count read from such a table would be silently wrong. Local data paths only;
    an object store's files are listed, not probed."""
    import os

    files = data_files(conn, table)
    local = [f for f in files if "://" not in f]
    return len(files), [f for f in local if not os.path.exists(f)]


@contextlib.contextmanager
def pinned(conn: duckdb.DuckDBPyConnection) -> Iterator[int]:
    """Read one snapshot for the whole block (a read-only transaction): yields its id, which a
    later check can read again with ``AT (VERSION => id)`` while other runs commit."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield current_snapshot(conn)
    finally:
        _rollback(conn)


def as_of(table: str, version: int | None) -> str:
    """``table``, or ``table`` at snapshot ``version``, for a FROM clause."""
    return table if version is None else f"{table} AT (VERSION => {int(version)})"
