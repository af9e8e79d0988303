"""Fault-injection trials with the real daemon: runs killed with SIGKILL before, inside and
right after the DuckDB commit, the daemon killed while files arrive. After each trial the
audit checks that every valid event is stored exactly once, every file has exactly one ledger
row, no run is left in progress, and files landed later are ingested.

Used by ``benchmarks/faults.py`` (20 + 5 trials) and ``tests/reliability`` (a short version).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics_assets import settings
from analytics_assets.lib import faults, lakehouse
from analytics_assets.lib.atomic_files import write_atomic

REPO = Path(__file__).resolve().parents[2]
IN_PROGRESS = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def events_file(tag: str, count: int) -> tuple[bytes, set[str]]:
    """``count`` valid page views with ids unique to ``tag``, as JSON lines."""
    now = datetime.now(UTC)
    ids = {f"{tag}-{n}" for n in range(count)}
    lines = [
        json.dumps(
            {
                "event_id": event_id,
                "event_type": "page_view",
                "customer_id": f"c{hash(event_id) % 50}",
                "occurred_at": (now - timedelta(minutes=n % 60)).isoformat(),
            }
        )
        for n, event_id in enumerate(sorted(ids))
    ]
    return ("\n".join(lines) + "\n").encode(), ids


class Daemon:
    """``dagster-daemon run`` on this repo's workspace and ``dagster.yaml`` (copied into
    ``$DAGSTER_HOME``), in a session of its own so its children can be cleaned up."""

    def __init__(
        self, log: Path, env: dict[str, str] | None = None, overrides: dict | None = None
    ) -> None:
        self.log_path = log
        self.overrides = overrides or {}
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.groups: list[int] = []

    def start(self) -> None:
        from analytics_assets.instance import prepare_instance, repo_config

        config = repo_config()
        config.update(self.overrides)
        prepare_instance(settings.dagster_home(), config)
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "dagster-daemon"),
                    "run",
                    "-w",
                    "workspace.yaml",
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.groups.append(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL to the daemon process alone (what the OOM killer does): its children are
        left to notice on their own."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        from analytics_assets.lib.processes import stop

        if self.proc is not None:
            stop(self.proc)
        for group in self.groups:  # what a killed daemon left behind
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


@dataclass
class Audit:
    files: int
    lost: int
    duplicated: int
    extra_ledger_rows: int
    stuck_runs: int
    failed_batches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.extra_ledger_rows or self.stuck_runs)


def ledger(batch_ids: set[str]) -> dict[str, int]:
    """Ledger rows per batch id, read through a read-only attach of the lakehouse."""
    rows = _query("SELECT batch_id, count(*) FROM ingest_ledger GROUP BY 1")
    return {b: n for b, n in rows if b in batch_ids}


def _query(sql: str) -> list[tuple]:
    import duckdb

    try:
        with lakehouse.connect(read_only=True) as conn:
            return conn.execute(sql).fetchall()
    except (duckdb.CatalogException, FileNotFoundError):  # nothing ingested yet
        return []
    except duckdb.InvalidInputException as error:  # a PostgreSQL catalog no writer made yet
        if "does not exist" in str(error):
            return []
        raise


def in_progress_runs(instance) -> list:
    import dagster as dg

    return instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus[s] for s in IN_PROGRESS]))


def healed(instance, batch_ids: set[str]) -> bool:
    """Every batch committed, its file gone from the landing zone (archived: a run killed
    after its commit is healed only when a later run archives the file) and no run in
    progress."""
    landing = settings.landing_dir()
    return (
        set(ledger(batch_ids)) >= batch_ids
        and not any((landing / f"{b}.jsonl").exists() for b in batch_ids)
        and not in_progress_runs(instance)
    )


def wait_until_committed(instance, batch_ids: set[str], timeout: float) -> float:
    """Seconds until every batch is committed and its file archived, with nothing in flight
    (see :func:`healed`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if healed(instance, batch_ids):
            return time.monotonic() - started
        time.sleep(0.25)
    missing = batch_ids - set(ledger(batch_ids))
    raise TimeoutError(f"not committed in {timeout:.0f}s: {sorted(missing)[:10]}")


def audit(instance, expected: dict[str, set[str]], settle_s: float = 180.0) -> Audit:
    """``expected``: batch id -> the event ids its file carries. A run still in progress after
    ``settle_s`` is stuck (runs commit side by side now: the last batches' coalesced rebuild
    may still be going when the last batch is committed)."""
    deadline = time.monotonic() + settle_s
    while in_progress_runs(instance) and time.monotonic() < deadline:
        time.sleep(1.0)
    wanted = {e for ids in expected.values() for e in ids}
    stored = dict(_query("SELECT event_id, count(*) FROM events GROUP BY 1"))
    quarantined_dupes = {
        r[0]
        for r in _query(
            "SELECT json_extract_string(raw, '$.event_id') FROM quarantined_events "
            "WHERE reason = 'duplicate_event_id_already_stored'"
        )
    }
    rows = ledger(set(expected))
    return Audit(
        files=len(expected),
        lost=len([e for e in wanted if e not in stored]),
        duplicated=sum(n - 1 for e, n in stored.items() if e in wanted and n > 1)
        + len(wanted & quarantined_dupes),
        extra_ledger_rows=sum(n - 1 for n in rows.values()),
        stuck_runs=len(in_progress_runs(instance)),
    )


@dataclass
class TrialResult:
    kind: str
    point: str
    recovery_s: float
    fired: bool


def kill_run_trial(
    instance,
    fault_file: Path,
    point: str,
    tag: str,
    events: int,
    expected: dict[str, set[str]],
    timeout: float = 120,
) -> TrialResult:
    """Arm ``point``, land one file: its run kills itself there; monitoring fails the run, a
    retry ingests the file. Recovery: from the kill to the batch committed and runs settled."""
    faults.arm(fault_file, point)
    data, ids = events_file(tag, events)
    write_atomic(settings.landing_dir(), f"{tag}.jsonl", data)
    expected[tag] = ids
    fired = Path(f"{fault_file}.fired")
    deadline = time.monotonic() + timeout
    while not fired.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{point} never fired")
        time.sleep(0.05)
    killed_at = time.monotonic()
    wait_until_committed(instance, {tag}, timeout)
    recovery = time.monotonic() - killed_at
    fired.unlink()
    return TrialResult("run", point, recovery, True)


def stuck_trial(instance, fault_file: Path, point: str, wait_s: float) -> tuple[bool, bool]:
    """The baseline (run monitoring and retries off): kill a run at ``point``, then land the
    next file. Returns whether the killed run is still in progress after ``wait_s`` and
    whether the next batch was committed within another ``wait_s``."""
    faults.arm(fault_file, point)
    data, _ = events_file("baseline-killed", 100)
    write_atomic(settings.landing_dir(), "baseline-killed.jsonl", data)
    fired = Path(f"{fault_file}.fired")
    deadline = time.monotonic() + 120
    while not fired.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{point} never fired")
        time.sleep(0.05)
    fired.unlink()
    time.sleep(wait_s)
    stuck = any(
        "baseline-killed" in r.tags.get("analytics/batches", "") for r in in_progress_runs(instance)
    )
    data, _ = events_file("baseline-next", 100)
    write_atomic(settings.landing_dir(), "baseline-next.jsonl", data)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if ledger({"baseline-next"}):
            return stuck, True
        time.sleep(0.5)
    return stuck, False


def kill_daemon_trial(
    daemon: Daemon,
    instance,
    tag: str,
    files: int,
    events: int,
    expected: dict[str, set[str]],
    seed: int,
    timeout: float = 180,
) -> TrialResult:
    """Land ``files`` files over a few seconds, SIGKILL the daemon at a random moment among
    them, start it again. Recovery: from the restart to every file committed."""
    rng = random.Random(seed)
    kill_after = rng.randrange(1, files)
    names = []
    for n in range(files):
        batch = f"{tag}-{n:02d}"
        data, ids = events_file(batch, events)
        write_atomic(settings.landing_dir(), f"{batch}.jsonl", data)
        expected[batch] = ids
        names.append(batch)
        if n == kill_after:
            time.sleep(rng.uniform(0.0, 2.0))
            daemon.kill()
        time.sleep(0.2)
    daemon.start()
    restarted = time.monotonic()
    wait_until_committed(instance, set(names), timeout)
    return TrialResult("daemon", f"after file {kill_after}", time.monotonic() - restarted, True)
