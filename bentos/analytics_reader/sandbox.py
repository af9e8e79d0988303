"""Read-only SQL over the lake, for strangers: one SELECT, the lake's files and nothing else.

Four fences, each enough for its own class of harm:

1. **Statements**: DuckDB's own parser splits the text; exactly one statement of type SELECT
   is run. ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``, ``PRAGMA``, ``CREATE`` and
   every other write are refused before anything runs.
2. **Files**: the database is configured with ``allowed_directories`` (the lake and the
   prediction log) and ``enable_external_access = false``, then ``lock_configuration``:
   ``read_csv('/etc/passwd')``, ``glob('/*')`` or a path with ``..`` fail in DuckDB itself,
   and no query can change the setting back. Extensions are neither installed nor loaded.
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

from analytics_assets.lib import lake
from analytics_assets.lib.lake import plain

MEMORY_LIMIT = "1GB"
THREADS = 2


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
    """One in-memory DuckDB database, locked down, with a view per lake table; each query runs
    on its own cursor. The views follow the lake: a table published for the first time is
    added before the next query."""

    def __init__(self, root: Path, predictions: Path | None = None) -> None:
        self.root = root
        self.predictions = predictions
        # the fenced database; the service's own queries (profiles) use it too, on cursors
        self.db = duckdb.connect(
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "memory_limit": MEMORY_LIMIT,
                "threads": THREADS,
            }
        )
        allowed = [f"{root}/"] + ([f"{predictions}/"] if predictions else [])
        self.db.execute("SET allowed_directories = ?", [allowed])
        self.db.execute("SET enable_external_access = false")
        self.db.execute("SET lock_configuration = true")
        self._lock = threading.Lock()
        self._views: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> dict[str, str]:
        """Create views for tables the lake has gained; returns ``{name: SELECT ...}``."""
        found = lake.views(self.root, self.predictions)
        if found != self._views:
            with self._lock:
                lake.create_views(self.db, {k: v for k, v in found.items() if k not in self._views})
                self._views = found
        return found

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
        the lake: ``duckdb.PermissionException``)."""
        self.check(sql)
        self.refresh()
        cursor = self.db.cursor()
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
