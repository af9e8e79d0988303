"""Keeping the lakehouse fast and bounded: compaction, snapshot expiry and file clean-up.

Micro-batches write small files (a file per day a batch touches). :func:`maintain` merges each
table's adjacent small files (DuckLake's ``merge_adjacent_files``: a new snapshot whose reads
touch fewer files, same rows), expires snapshots older than the retention, and deletes the
files only those held (``cleanup_old_files``) and files no snapshot ever committed (a writer
killed before its commit: ``delete_orphaned_files``). Each step is its own transaction: a kill
leaves the lakehouse at one snapshot or the next, and the next run finishes the work.

What a point-in-time restore can reach is exactly the snapshots kept: the last
``ANALYTICS_SNAPSHOT_RETENTION_DAYS`` days.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

from analytics_assets.lib import faults, lakehouse


@dataclass
class Maintained:
    files_before: dict[str, int] = field(default_factory=dict)
    files_after: dict[str, int] = field(default_factory=dict)
    snapshots_expired: int = 0
    files_deleted: int = 0
    orphans_deleted: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _files(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: len(lakehouse.data_files(conn, t)) for t in lakehouse.table_names(conn)}


def maintain(
    conn: duckdb.DuckDBPyConnection,
    retention_days: float,
    log: Callable[[str], None] = print,
    orphan_grace_hours: float = 6.0,
) -> Maintained:
    """Compact, expire and clean (see the module). Orphaned files younger than
    ``orphan_grace_hours`` stay: they may belong to a commit in progress."""
    done = Maintained(files_before=_files(conn))
    alias = lakehouse.ALIAS

    def step(name: str, sql: str) -> list:
        started = time.perf_counter()

        def body(c: duckdb.DuckDBPyConnection) -> list:
            found = c.execute(sql).fetchall()
            faults.point(f"maintenance.{name}_in_commit")
            return found

        rows = lakehouse.run_transaction(conn, body, f"maintenance: {name}", log=log)
        done.seconds[name] = round(time.perf_counter() - started, 3)
        return rows

    for name in lakehouse.unsorted(conn):  # a lakehouse made before the table's layout
        lakehouse.run_transaction(conn, lambda c, n=name: lakehouse.set_sorted(c, n), "layout")
        log(f"{name}: sorted by {lakehouse.SORTED[name][0]} from now on")
    step("compact", f"CALL ducklake_merge_adjacent_files('{alias}')")
    if retention_days > 0:
        expired = step(
            "expire",
            f"CALL ducklake_expire_snapshots('{alias}', "
            f"older_than => now() - INTERVAL '{float(retention_days) * 86400:.0f} seconds')",
        )
        done.snapshots_expired = len(expired)
    done.files_deleted = len(
        step("clean", f"CALL ducklake_cleanup_old_files('{alias}', cleanup_all => true)")
    )
    done.orphans_deleted = len(
        step(
            "orphans",
            f"CALL ducklake_delete_orphaned_files('{alias}', "
            f"older_than => now() - INTERVAL '{float(orphan_grace_hours) * 3600:.0f} seconds')",
        )
    )
    done.files_after = _files(conn)
    log(
        f"lakehouse: {sum(done.files_before.values())} -> {sum(done.files_after.values())} "
        f"files, {done.snapshots_expired} snapshots expired, {done.files_deleted} old and "
        f"{done.orphans_deleted} orphaned files deleted"
    )
    return done
