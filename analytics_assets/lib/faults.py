"""Fault injection for the reliability trials (``benchmarks/faults.py``, ``tests/reliability``).

A process reaching a named point kills itself with SIGKILL when the file named by
``$ANALYTICS_FAULT_FILE`` exists and holds that point's name. The file is renamed first, so
exactly one process fires it, once: the retry that follows runs through. Armed with
``stall=True`` the process instead waits there, mid-run, until ``<file>.stalled`` is removed (or
it is killed from outside: a worker or a host lost mid-run). Unset (always, outside the trials),
a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "ANALYTICS_FAULT_FILE"

BEFORE_COMMIT = "ingest.before_commit"
IN_COMMIT = "ingest.in_commit"
AFTER_COMMIT = "ingest.after_commit"
POINTS = (BEFORE_COMMIT, IN_COMMIT, AFTER_COMMIT)

RESTORE_IN_COMMIT = "restore.in_commit"
"""Every table undone, the restore's transaction not yet committed."""
RESTORE_AFTER_COMMIT = "restore.after_commit"
"""The restore committed, not yet announced to Dagster (days to rebuild, online store)."""
MAINTENANCE_POINTS = tuple(
    f"maintenance.{step}_in_commit" for step in ("compact", "expire", "clean", "orphans")
)
"""A maintenance step's work done (merged files written, old files deleted), its catalog
transaction not yet committed."""
ERASURE_POINTS = tuple(
    f"erasure.{step}" for step in ("in_commit", "after_commit", "after_history", "after_files")
)
"""An erasure (``lib/erasure.py``) in its lakehouse transaction, after it, after the history
is purged, after the files are rewritten."""
LAKEHOUSE_POINTS = (
    RESTORE_IN_COMMIT,
    RESTORE_AFTER_COMMIT,
    *MAINTENANCE_POINTS,
    *ERASURE_POINTS,
)
STALL = "stall:"


def point(name: str) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path) as handle:
            wanted = handle.read().strip()
    except OSError:
        return
    if wanted == STALL + name:
        try:
            os.rename(path, f"{path}.stalled")
        except OSError:  # another process stalls on it
            return
        while os.path.exists(f"{path}.stalled"):
            time.sleep(0.1)
        return
    if wanted != name:
        return
    try:
        os.rename(path, f"{path}.fired")
    except OSError:  # another process fired it
        return
    os.kill(os.getpid(), signal.SIGKILL)


def arm(path: str | os.PathLike, name: str, stall: bool = False) -> None:
    """Make the next process that reaches ``name`` kill itself (``path``: the fault file), or,
    with ``stall``, wait there until ``<path>.stalled`` is removed."""
    if name not in POINTS + LAKEHOUSE_POINTS:
        raise ValueError(f"unknown fault point {name!r}: one of {POINTS + LAKEHOUSE_POINTS}")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(STALL + name if stall else name)
    os.replace(tmp, path)
