"""Moving a home's ``warehouse.duckdb`` (the platform before the lakehouse) into the lakehouse,
once, on the first writer's connection after the upgrade.

1. One process at a time (a lock file beside the catalog); the others wait, then find it done.
2. The file's tables are exported to Parquet: directly when this DuckDB can open the file,
   else through ``lib/duckdb_export.py`` under the DuckDB that wrote it (``uv run --no-project
   --with duckdb==<version>``; uv's cache has it wherever the old platform was installed).
3. One lakehouse transaction creates the tables from the export (partitioned like new ones),
   and records the file in ``lakehouse_upgrades``. A kill before its commit leaves nothing; a
   kill after it finds the record on the next run, which only finishes step 4.
4. The file is renamed ``warehouse.duckdb.upgraded`` (kept until a person deletes it).

A table the lakehouse already holds rows of is not imported again (it is named in the log).
The published Parquet lake (``<home>/lake``) and ``lake.duckdb`` are left where they are.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from analytics_assets.lib import lakehouse

_log = logging.getLogger(__name__)

OLD_DUCKDB = os.environ.get("ANALYTICS_UPGRADE_DUCKDB", "2.0.0")
"""The DuckDB that wrote the warehouse files before the lakehouse (the lock said 2.0.0)."""

RECORD_DDL = """
CREATE TABLE IF NOT EXISTS lakehouse_upgrades (
    source      VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    tables      VARCHAR NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL
)
"""


def upgraded_name(database: Path) -> Path:
    return database.with_name(database.name + ".upgraded")


def fingerprint(database: Path) -> str:
    """Size and modification time of the file (and its WAL): the same file, not re-read."""
    parts = [database, Path(f"{database}.wal")]
    text = ";".join(f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in parts if p.exists())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def needed(database: Path) -> bool:
    return database.exists()


def export(database: Path, out: Path, say: Callable[[str], None]) -> dict[str, int]:
    """The file's tables as Parquet files in ``out``; ``{table: rows}``."""
    from analytics_assets.lib import duckdb_export

    try:
        return duckdb_export.export(str(database), str(out))
    except duckdb.Error as error:
        if "version" not in str(error).lower():
            raise
        say(f"{database} was written by a newer DuckDB ({error}); exporting it with {OLD_DUCKDB}")
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError(
            f"{database} was written by DuckDB {OLD_DUCKDB}, which this DuckDB cannot read, and "
            f"uv is not on PATH to run that version. Run: uv run --no-project --with "
            f"duckdb=={OLD_DUCKDB} python {duckdb_export.__file__} {database} {out}"
        )
    script = duckdb_export.__file__
    errors = []
    for extra in (["--offline"], []):  # uv's cache first; the package index where there is one
        command = [uv, "run", "--no-project", *extra, "--with", f"duckdb=={OLD_DUCKDB}"]
        done = subprocess.run(
            [*command, "python", script, str(database), str(out)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        )
        if done.returncode == 0:
            import json

            return json.loads((out / "manifest.json").read_text())
        errors.append(done.stderr.strip()[-500:])
    raise RuntimeError(f"exporting {database} with DuckDB {OLD_DUCKDB} failed: {errors}")


def _import(
    conn: duckdb.DuckDBPyConnection,
    out: Path,
    counts: dict[str, int],
    database: Path,
    print_: Callable[[str], None],
) -> None:
    stamp = fingerprint(database)

    def body(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute(RECORD_DDL)
        done = conn.execute(
            "SELECT count(*) FROM lakehouse_upgrades WHERE source = ? AND fingerprint = ?",
            [str(database), stamp],
        ).fetchone()[0]
        if done:
            return
        for name, rows in counts.items():
            path = str(out / f"{name}.parquet").replace("'", "''")
            if lakehouse.exists(conn, name):
                held = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                if held:
                    print_(f"upgrade: {name} already holds {held:,} rows; not imported again")
                    continue
                conn.execute(f"INSERT INTO \"{name}\" SELECT * FROM read_parquet('{path}')")
            else:
                lakehouse.create_as(conn, f'"{name}"', f"read_parquet('{path}')", name)
            print_(f"upgrade: {name}: {rows:,} rows")
        conn.execute(
            "INSERT INTO lakehouse_upgrades VALUES (?, ?, ?, ?)",
            [str(database), stamp, ",".join(counts), datetime.now(UTC)],
        )

    lakehouse.run_transaction(conn, body, "upgrade from warehouse.duckdb")


def upgrade(
    conn: duckdb.DuckDBPyConnection, database: Path, say: Callable[[str], None] | None = None
) -> bool:
    """Move ``database`` into the lakehouse ``conn`` has attached (see the module); whether
    this call did it."""
    say = say or _log.warning
    lock_path = Path(tempfile.gettempdir()) / f"analytics-upgrade-{fingerprint_path(database)}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not database.exists():
            return False  # another process finished it while this one waited
        say(f"upgrade: moving {database} into the lakehouse (once)")
        with tempfile.TemporaryDirectory(prefix="analytics-upgrade-", dir=database.parent) as tmp:
            out = Path(tmp)
            counts = export(database, out, say)
            _import(conn, out, counts, database, say)
        for suffix in ("", ".wal"):
            source = Path(f"{database}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{upgraded_name(database)}{suffix}"))
        say(f"upgrade: done; the old file is {upgraded_name(database)} (delete it when you like)")
    return True


def fingerprint_path(database: Path) -> str:
    return hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:12]


if __name__ == "__main__":  # uv run python -m analytics_assets.lib.lakehouse_upgrade
    with lakehouse.connect():  # a writer's connection upgrades the home
        sys.exit(0)
