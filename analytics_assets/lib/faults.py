"""Fault injection for the reliability trials (``benchmarks/faults.py``, ``tests/reliability``).

A process reaching a named point kills itself with SIGKILL when the file named by
``$ANALYTICS_FAULT_FILE`` exists and holds that point's name. The file is renamed first, so
exactly one process fires it, once: the retry that follows runs through. Unset (always, outside
the trials), a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

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
LAKEHOUSE_POINTS = (RESTORE_IN_COMMIT, RESTORE_AFTER_COMMIT, *MAINTENANCE_POINTS)


def point(name: str) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path) as handle:
            wanted = handle.read().strip()
    except OSError:
        return
    if wanted != name:
        return
    try:
        os.rename(path, f"{path}.fired")
    except OSError:  # another process fired it
        return
    os.kill(os.getpid(), signal.SIGKILL)


def arm(path: str | os.PathLike, name: str) -> None:
    """Make the next process that reaches ``name`` kill itself (``path``: the fault file)."""
    if name not in POINTS + LAKEHOUSE_POINTS:
        raise ValueError(f"unknown fault point {name!r}: one of {POINTS + LAKEHOUSE_POINTS}")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(name)
    os.replace(tmp, path)
