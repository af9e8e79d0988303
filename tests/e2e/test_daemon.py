"""The real dagster-daemon: files dropped in the landing zone end up as events, by themselves."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.ingest.sensors import BATCHES_TAG
from analytics_assets.lib import lakehouse
from analytics_assets.lib.atomic_files import write_atomic
from tests.conftest import event, jsonl, purchase, quarantined

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def wait_for_runs(instance: dg.DagsterInstance, count: int, timeout: float, **tags) -> list:
    """Wait until ``count`` runs carrying ``tags`` exist and all runs have finished."""
    deadline = time.monotonic() + timeout
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        matching = [r for r in runs if all(t in r.tags for t in tags.values())]
        if len(matching) >= count and all(r.status in finished for r in runs):
            return matching
        time.sleep(0.5)
    raise AssertionError(f"runs did not finish in {timeout}s: {[r.status for r in runs]}")


def wait_for_batches(instance: dg.DagsterInstance, batches: set[str], timeout: float) -> list:
    """The landing_sensor runs that ingested ``batches`` (one run per file, or one per group of
    files found together), once all runs have finished."""
    deadline = time.monotonic() + timeout
    while True:
        runs = wait_for_runs(instance, 0, timeout=max(1.0, deadline - time.monotonic()))
        ingest = [r for r in runs if r.tags.get(BATCHES_TAG)]
        covered = {b for r in ingest for b in r.tags[BATCHES_TAG].split(",")}
        if batches <= covered:
            return ingest
        assert time.monotonic() < deadline, f"batches not ingested: {batches - covered}"
        time.sleep(0.5)


def test_dropped_files_are_ingested_by_the_daemon(daemon: dg.DagsterInstance, analytics_home):
    landing = settings.landing_dir()
    write_atomic(landing, "first.jsonl", jsonl([event(1), purchase(2, amount=20.0)]))
    write_atomic(landing, "second.jsonl", jsonl([event(3), event(1), "{broken"]))
    write_atomic(landing, "empty.jsonl", b"")
    runs = wait_for_batches(daemon, {"empty", "first", "second"}, timeout=120)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    with lakehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT event_id FROM events ORDER BY 1").fetchall() == [
            ("e1",),
            ("e2",),
            ("e3",),
        ]
        reasons = conn.execute(
            "SELECT batch_id, reason FROM quarantined_events ORDER BY 1, 2"
        ).fetchall()
    # first and second both carry e1; whichever committed second quarantined it
    duplicates = [b for b, r in reasons if r == "duplicate_event_id_already_stored"]
    assert len(duplicates) == 1 and duplicates[0] in ("first", "second")
    assert sorted(r for r in reasons if r[1] != "duplicate_event_id_already_stored") == [
        ("empty", "file_unreadable"),
        ("second", "unparseable_line"),
    ]
    assert quarantined("empty.jsonl", b"").exists()


def test_analytics_follow_ingested_batches(daemon: dg.DagsterInstance, analytics_home):
    landing = settings.landing_dir()
    write_atomic(landing, "day1.jsonl", jsonl([event(1), purchase(2, amount=20.0)]))
    write_atomic(landing, "day2.jsonl", jsonl([purchase(3, amount=7.5)]))
    wait_for_batches(daemon, {"day1", "day2"}, timeout=120)
    deadline = time.monotonic() + 120
    while True:  # the events_sensor's range run over the days the batches touched
        runs = wait_for_runs(daemon, 0, timeout=120)
        analytics = [r for r in runs if r.tags.get("dagster/sensor_name") == "events_sensor"]
        if analytics:
            break
        assert time.monotonic() < deadline, "events_sensor requested no run"
        time.sleep(0.5)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    with lakehouse.connect(read_only=True) as conn:
        events = conn.execute("SELECT count(*), sum(amount) FROM events").fetchall()
        daily = conn.execute("SELECT sum(events), sum(revenue) FROM customer_daily").fetchall()
        assert events == daily == [(3, 27.5)]
        assert conn.execute("SELECT sum(revenue) FROM kpis_daily").fetchall() == [(27.5,)]
    # declarative automation (the daemon's default automation sensor) then runs the audit
    deadline = time.monotonic() + 120
    while daemon.get_latest_materialization_event(dg.AssetKey("customer_base_audit")) is None:
        assert time.monotonic() < deadline, "customer_base_audit was not materialized"
        time.sleep(1)
    wait_for_runs(daemon, 0, timeout=60)
    with lakehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT sum(revenue) FROM audit_summary").fetchall() == [(27.5,)]
