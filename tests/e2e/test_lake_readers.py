"""Readers of the lakehouse while the real daemon ingests: no error, every answer a snapshot of
some commit (a reader attaches the catalog read-only: it takes no lock a run could wait for)."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from datetime import date

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.lib import lake, lakehouse
from analytics_assets.lib.atomic_files import write_atomic
from tests.conftest import event, jsonl
from tests.e2e.test_daemon import wait_for_batches, wait_for_runs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BATCHES = 20
PER_BATCH = 40


def batch(k: int) -> bytes:
    """Batch ``k``: events on two of five days (a later batch adds to days earlier ones
    filled: late data for an old day)."""
    first = k % 5
    return jsonl(
        [
            event(k * 1000 + i, occurred_at=f"2024-03-0{1 + (first + i % 2) % 5}T1{i % 10}:00:00Z")
            for i in range(PER_BATCH)
        ]
    )


class Reader(threading.Thread):
    """Queries the lakehouse in a loop, as an analyst would: events per day (a new read-only
    attach each time, as ``analytics sql`` does)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.answers: list[dict[date, int]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = lake.connect()
                try:
                    if lake.has_table(conn, "events"):
                        rows = conn.sql(
                            "SELECT (occurred_at AT TIME ZONE 'UTC')::DATE, count(*) "
                            "FROM events GROUP BY 1"
                        ).fetchall()
                        self.answers.append(dict(rows))
                finally:
                    conn.close()
            except Exception as exc:  # any error at all fails the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)


def counts_at_each_commit() -> dict[date, set[int]]:
    """Per day, every row count the warehouse had after some commit (0 before the first)."""
    with lakehouse.connect(read_only=True) as conn:
        rows = conn.sql(
            """
            SELECT l.committed_at, (e.occurred_at AT TIME ZONE 'UTC')::DATE, count(*)
            FROM events e JOIN ingest_ledger l USING (batch_id)
            GROUP BY ALL ORDER BY 1
            """
        ).fetchall()
    seen: dict[date, set[int]] = defaultdict(lambda: {0})
    totals: dict[date, int] = defaultdict(int)
    for _, group in itertools.groupby(rows, key=lambda r: r[0]):
        for _, day, n in group:
            totals[day] += n
            seen[day].add(totals[day])
    return seen


def test_readers_see_whole_commits_while_the_daemon_ingests(daemon, analytics_home) -> None:
    reader = Reader()
    reader.start()
    landing = settings.landing_dir()
    for k in range(BATCHES):
        write_atomic(landing, f"b{k:02d}.jsonl", batch(k))
        time.sleep(0.4)
    runs = wait_for_batches(daemon, {f"b{k:02d}" for k in range(BATCHES)}, timeout=400)
    # the reader's view of the last commit, and enough reads to mean something: how many fit
    # in the ingest depends on the machine's speed (46 on a slow CI machine), so it reads on
    deadline = time.monotonic() + 60
    time.sleep(1.0)
    while len(reader.answers) <= 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    reader.stop.set()
    reader.join(timeout=30)
    runs = wait_for_runs(daemon, 0, timeout=200)
    failures = [
        e.dagster_event.event_specific_data.error.to_string()
        for r in runs
        if r.status != dg.DagsterRunStatus.SUCCESS
        for e in daemon.all_logs(r.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
    ]
    assert failures == []
    assert reader.errors == []
    assert len(reader.answers) > 50
    # it read while batches came in: several states, not just the last one
    distinct = {tuple(sorted(a.items())) for a in reader.answers}
    print(f"{len(reader.answers)} answers, {len(distinct)} distinct states, {len(runs)} runs")
    assert len(distinct) >= 3
    allowed = counts_at_each_commit()
    final = {day: max(counts) for day, counts in allowed.items()}
    assert sum(final.values()) == BATCHES * PER_BATCH
    for answer in reader.answers:
        for day, n in answer.items():
            assert n in allowed[day], f"{day}: {n} rows is no commit's count {sorted(allowed[day])}"
    assert reader.answers[-1] == final
