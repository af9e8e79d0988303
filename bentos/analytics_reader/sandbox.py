"""Read-only SQL over the lakehouse, for strangers: one SELECT, the lakehouse and nothing else.

Four fences, each enough for its own class of harm:

1. **Statements**: DuckDB's own parser splits the text; exactly one statement of type SELECT
   is run. ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``, ``PRAGMA``, ``CREATE`` and
   every other write are refused before anything runs.
2. **Files**: the lakehouse is attached read-only (DuckLake's own ``READ_ONLY``: no write
   reaches its catalog), then the database is configured with ``allowed_directories`` (the
   lakehouse's data and catalog folders, the prediction log), ``enable_external_access =
   false`` and ``lock_configuration``: ``read_csv('/etc/passwd')``, ``ATTACH``, ``glob('/*')``
   or a path with ``..`` fail in DuckDB itself, and no query can change the setting back. No
   extension is installed or loaded after that.
3. **Time**: a query still running after the time limit is interrupted
   (``DuckDBPyConnection.interrupt``).
4. **Size**: at most ``max_rows + 1`` rows are fetched; more is refused, not truncated. Memory
   and threads are capped per database.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from analytics_assets import settings
from analytics_assets.lib import duckdb_extensions, lake, lakehouse
from analytics_assets.lib.lake import plain

MEMORY_LIMIT = "1GB"


class Refused(ValueError):
    """The query is not allowed (a client error; nothing ran)."""


class TooSlow(TimeoutError):
    """The query ran past the time limit and was interrupted."""


class TooBig(ValueError):
    """The result has more rows than the limit."""


@dataclass(frozen=True)
class Result:
    columns: list[str]
    types: list[str]
    rows: list[list]
    elapsed_ms: float


class Sandbox:
    """One in-memory DuckDB database with the lakehouse attached read-only, locked down; each
    query runs on its own cursor and sees the lakehouse's latest snapshot (tables created since
    the service started included). Time travel works: ``AT (VERSION => n)``."""

    def __init__(
        self, predictions: Path | None = None, where: lakehouse.Location | None = None
    ) -> None:
        self.predictions = predictions
        where = where or lakehouse.location()
        # the fenced database; the service's own queries (profiles, KPIs) use it too, on cursors
        self.db = duckdb.connect(
            config={
                **duckdb_extensions.config(),
                "allow_community_extensions": False,
                "memory_limit": MEMORY_LIMIT,
                "threads": settings.read_api_duckdb_threads(),
            }
        )
        lake.attach(self.db, None, where)  # predictions: a view created in refresh()
        allowed = [where.data if where.data.endswith("/") else where.data + "/"]
        if where.sqlite_path is not None:
            allowed.append(f"{where.sqlite_path.parent}/")
        if predictions:
            allowed.append(f"{predictions}/")
        # footers read once per file, not once per query (a profile's 90 day files: 114 -> 90 ms)
        self.db.execute("SET parquet_metadata_cache = true")
        self.db.execute("SET allowed_directories = ?", [allowed])
        self.db.execute("SET enable_external_access = false")
        self.db.execute("SET autoload_known_extensions = false")
        self.db.execute("SET lock_configuration = true")
        self._lock = threading.Lock()
        self._predictions: str | None = None
        self.refresh()

    def ensure_predictions(self) -> None:
        """Create the prediction log's view once its first file exists (a glob, no query)."""
        if self._predictions is not None:
            return
        view = lake.predictions_view(self.predictions)
        if view is not None:
            with self._lock:
                self.db.execute(f"CREATE OR REPLACE VIEW memory.main.predictions AS {view}")
                self._predictions = view

    @property
    def has_predictions(self) -> bool:
        return self._predictions is not None

    def refresh(self) -> dict[str, str]:
        """``{table: SELECT ...}`` of what queries can read; the prediction log's view is
        created once its first file exists."""
        self.ensure_predictions()
        with lake.cursor(self.db) as cursor:
            names = lake.tables(cursor)
        return {
            name: (self._predictions if name == "predictions" else lake.table_sql(name))
            for name in names
        }

    def check(self, sql: str) -> None:
        """Raise :class:`Refused` unless ``sql`` is exactly one SELECT."""
        try:
            with self.db.cursor() as cursor:
                statements = cursor.extract_statements(sql)
        except duckdb.Error as exc:
            raise Refused(f"the query does not parse: {exc}") from exc
        if len(statements) != 1:
            raise Refused(f"one statement per request, not {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise Refused(
                f"only SELECT is allowed here (read-only), not {kind.name}: writes, COPY, "
                "ATTACH, INSTALL/LOAD, SET and PRAGMA are refused"
            )

    def run(self, sql: str, max_rows: int, timeout_s: float) -> Result:
        """Run one SELECT under the fences; raises :class:`Refused`, :class:`TooSlow`,
        :class:`TooBig` or ``duckdb.Error`` (a query that fails in DuckDB, e.g. a file outside
        the lakehouse: ``duckdb.PermissionException``)."""
        self.check(sql)
        self.ensure_predictions()
        cursor = lake.cursor(self.db)
        timer = threading.Timer(timeout_s, cursor.interrupt)
        started = time.perf_counter()
        timer.start()
        try:
            cursor.execute(sql)
            rows = cursor.fetchmany(max_rows + 1)
            columns = [d[0] for d in cursor.description]
            types = [str(d[1]) for d in cursor.description]
        except duckdb.InterruptException as exc:
            raise TooSlow(f"the query ran past the time limit of {timeout_s:g} s") from exc
        finally:
            timer.cancel()
            cursor.close()
        elapsed = time.perf_counter() - started
        if elapsed > timeout_s:
            raise TooSlow(f"the query ran past the time limit of {timeout_s:g} s")
        if len(rows) > max_rows:
            raise TooBig(
                f"the result has more than {max_rows:,} rows: aggregate, filter or add a LIMIT"
            )
        return Result(
            columns, types, [[plain(v) for v in row] for row in rows], round(elapsed * 1e3, 2)
        )

    def close(self) -> None:
        self.db.close()
