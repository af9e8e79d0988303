"""The lakehouse for real: many writer processes at once (SQLite and PostgreSQL catalogs), time
travel and the restore drill, a backup taken while ingesting and restored on a fresh home, and
a data file deleted by hand named by the check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from analytics_assets import settings
from analytics_assets.cli import main
from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.lib import lakehouse
from analytics_assets.metadata import files_check
from analytics_assets.testing.servers import postgres_server
from tests.conftest import event, jsonl
from tests.lake import writers

pytestmark = pytest.mark.timeout(300)

WRITERS, BATCHES = 4, 6


def run_writers(env: dict) -> list[dict]:
    """Four ingesting processes and one rebuilding ``sessions``, started together."""
    jobs = [("ingest", BATCHES, w) for w in range(WRITERS)] + [("rebuild", 5, 0)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.lake.writers", kind, str(n), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=settings.REPO_ROOT,
        )
        for kind, n, seed in jobs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def check_exactly_once(results: list[dict]) -> None:
    with lakehouse.connect(read_only=True) as conn:
        stored, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).fetchone()
        ledger_clean, ledger_quarantined, batches = conn.execute(
            "SELECT sum(clean), sum(quarantined), count(*) FROM ingest_ledger"
        ).fetchone()
        duplicates = conn.execute(
            "SELECT count(*) FROM quarantined_events WHERE reason LIKE 'duplicate%'"
        ).fetchone()[0]
        sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    expected = WRITERS * BATCHES * writers.PER_BATCH
    assert stored == distinct == expected  # every event once
    assert ledger_clean == stored and batches == WRITERS * BATCHES  # the ledger agrees
    assert duplicates == ledger_quarantined == (WRITERS - 1) * BATCHES * writers.SHARED
    assert sum(r.get("committed", 0) for r in results) == stored
    assert sessions > 0
    print("retries:", [r["retries"] for r in results], "seconds:", [r["seconds"] for r in results])


def test_four_writers_and_a_day_rebuild_at_once(analytics_home) -> None:
    check_exactly_once(run_writers(dict(os.environ)))


def test_four_writers_on_a_postgresql_catalog(analytics_home, monkeypatch) -> None:
    with postgres_server(("lake",)) as url:
        catalog = f"postgres:{url}/lake"
        monkeypatch.setenv("ANALYTICS_LAKEHOUSE_CATALOG", catalog)
        results = run_writers({**os.environ, "ANALYTICS_LAKEHOUSE_CATALOG": catalog})
        check_exactly_once(results)
        assert not (analytics_home / "lakehouse" / "catalog.sqlite").exists()


def ingest(name: str, events: list[dict]) -> None:
    path = settings.analytics_home() / f"{name}.jsonl"
    path.write_bytes(jsonl(events))
    with lakehouse.connect() as conn:
        ingest_file(conn, path, name)


def counts() -> tuple[int, int]:
    with lakehouse.connect(read_only=True) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM ingest_ledger)"
        ).fetchone()


def landed_twice() -> datetime:
    """Batch a (100 events), the moment, batch b (150 more): the moment to restore to."""
    ingest("a", [event(i) for i in range(100)])
    time.sleep(0.05)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    ingest("b", [event(i) for i in range(100, 250)])
    assert counts() == (250, 2)
    return moment


def analytics(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_restore_drill(analytics_home) -> None:
    import dagster as dg

    from analytics_assets.instance import prepare_instance

    prepare_instance()  # a Dagster home: the restore reports to it
    moment = landed_twice()
    at = f"AT (TIMESTAMP => TIMESTAMPTZ '{moment.isoformat()}')"
    query = f"SELECT count(*) AS n FROM events {at}"
    then = json.loads(analytics("sql", "--format", "json", query))
    assert then == [{"n": 100}]

    before_restore = datetime.now(UTC)
    time.sleep(0.05)
    out = analytics("restore", "--as-of", moment.isoformat())
    assert "restored" in out and counts() == (100, 1)
    # Dagster hears of it: an events materialization with the undone batch's days, which
    # events_sensor rebuilds
    with dg.DagsterInstance.from_config(str(settings.dagster_home())) as instance:
        reported = instance.get_latest_materialization_event(dg.AssetKey("events"))
    metadata = reported.asset_materialization.metadata
    assert metadata["restored_to"].value == moment.isoformat()
    assert metadata["days_touched"].value  # batch b's event days
    # the next batches carry on from there
    ingest("c", [event(i) for i in range(300, 310)])
    assert counts() == (110, 2)
    # and the restore itself can be undone
    analytics("restore", "--as-of", before_restore.isoformat())
    assert counts() == (250, 2)


def test_restore_refuses_times_it_cannot_reach(analytics_home) -> None:
    ingest("a", [event(i) for i in range(10)])
    for instant in ("1999-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00"):
        result = CliRunner().invoke(main, ["restore", "--as-of", instant])
        assert result.exit_code == 1
        assert "oldest snapshot" in result.output or "future" in result.output
    assert counts() == (10, 1)


def test_backup_while_ingesting_then_restore_on_a_fresh_home(
    analytics_home, tmp_path, monkeypatch
) -> None:
    ingest("first", [event(i) for i in range(200)])
    stop = threading.Event()

    def keep_ingesting() -> None:
        k = 0
        while not stop.is_set():
            ingest(f"more{k}", [event(1000 + 50 * k + i) for i in range(50)])
            k += 1

    writer = threading.Thread(target=keep_ingesting, daemon=True)
    writer.start()
    time.sleep(0.5)
    try:
        target = tmp_path / "backup"
        analytics("backup", str(target))
    finally:
        stop.set()
        writer.join(timeout=60)
    manifest = json.loads((target / "manifest.json").read_text())
    with lakehouse.connect(read_only=True) as conn:
        at_snapshot = conn.execute(
            f"SELECT count(*) FROM events AT (VERSION => {manifest['snapshot']})"
        ).fetchone()[0]
    assert manifest["tables"]["events"] == at_snapshot >= 200

    refused = CliRunner().invoke(main, ["backup", str(target)])
    assert refused.exit_code == 1 and "not empty" in refused.output

    fresh = tmp_path / "fresh"
    monkeypatch.setenv("ANALYTICS_HOME", str(fresh))
    analytics("restore", "--from", str(target))
    with lakehouse.connect(read_only=True) as conn:
        for table, rows in manifest["tables"].items():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == rows, table
    again = CliRunner().invoke(main, ["restore", "--from", str(target)])
    assert again.exit_code == 1 and "not empty" in again.output


def test_a_data_file_deleted_by_hand_is_named(analytics_home) -> None:
    ingest("a", [event(i) for i in range(500)])
    with lakehouse.connect() as conn:
        assert files_check(conn, "events").passed
        victim = Path(lakehouse.data_files(conn, "events")[0])
    victim.unlink()
    with lakehouse.connect() as conn:
        result = files_check(conn, "events")
    assert not result.passed
    assert str(victim) in result.description and "events" in result.description


def test_maintenance_compacts_and_expires(analytics_home, monkeypatch) -> None:
    from analytics_assets.defs.maintenance.jobs import maintain_lakehouse
    from analytics_assets.resources import warehouse_resource

    for k in range(8):  # eight micro-batches on the same days: eight files per day
        ingest(f"m{k}", [event(100 * k + i) for i in range(100)])
    with lakehouse.connect(read_only=True) as conn:
        before = len(lakehouse.data_files(conn, "events"))
    kept = datetime.now(UTC)
    monkeypatch.setenv("ANALYTICS_SNAPSHOT_RETENTION_DAYS", "0.000001")  # ~0.1 s
    time.sleep(0.2)
    result = maintain_lakehouse.execute_in_process(resources={"warehouse": warehouse_resource()})
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["files_before"].value > metadata["files_after"].value
    with lakehouse.connect(read_only=True) as conn:
        after = len(lakehouse.data_files(conn, "events"))
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 800
    assert after < before
    # the expired past is out of reach, and says so
    refused = CliRunner().invoke(main, ["restore", "--as-of", kept.isoformat()])
    assert refused.exit_code == 1 and "oldest snapshot" in refused.output


def test_restore_rewrites_a_table_replaced_since(analytics_home) -> None:
    """Undoing changes by row id needs the same table: one replaced since (the audit's tables
    are replaced whole) is written again from the snapshot instead."""
    import pyarrow as pa

    from analytics_assets.defs.analytics.tables import replace_all

    ingest("a", [event(i) for i in range(30)])
    with lakehouse.connect() as conn:
        replace_all(conn, {"audit_summary": pa.table({"period": [1, 2], "customers": [5, 6]})})
    time.sleep(0.05)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    ingest("b", [event(i) for i in range(30, 40)])
    with lakehouse.connect() as conn:
        replace_all(conn, {"audit_summary": pa.table({"quarter": ["q1"], "orders": [9]})})
    analytics("restore", "--as-of", moment.isoformat())
    with lakehouse.connect(read_only=True) as conn:
        assert conn.execute("SELECT * FROM audit_summary ORDER BY 1").fetchall() == [(1, 5), (2, 6)]
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 30


def test_restore_undoes_deletes_updates_and_inserts_row_for_row(analytics_home) -> None:
    """The restore reads DuckLake's change feed: a re-ingest since the moment (its rows deleted
    and written again, another batch's duplicates restored to it: an UPDATE of the ledger),
    a new batch, and rows deleted by hand all undone, across a compaction; every table equals
    its snapshot row for row, by the fast way (no fallback logged)."""
    from analytics_assets.lib import lakehouse_maintenance, restore

    ingest("a", [event(i) for i in range(40)])
    ingest("b", [event(i) for i in range(30, 60)])  # 30..39 quarantined as duplicates of a
    time.sleep(0.05)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    ingest("a", [event(i) for i in range(35)])  # a again, without 35..39: b gets them back
    ingest("c", [event(i) for i in range(100, 120)])
    with lakehouse.connect() as conn:
        conn.execute("DELETE FROM events WHERE event_id IN ('e1', 'e50')")
        stored_b = conn.execute("SELECT clean FROM ingest_ledger WHERE batch_id = 'b'").fetchone()
        assert stored_b == (25,)  # the UPDATE the restore must undo
        lakehouse_maintenance.maintain(conn, 0, log=lambda _m: None)  # files merged since
        said: list[str] = []
        done = restore.restore_to(conn, moment, log=said.append)
        assert not said, said
        at = f"AT (TIMESTAMP => TIMESTAMPTZ '{moment.isoformat()}')"
        for table in ("events", "quarantined_events", "ingest_ledger"):
            differ = conn.execute(
                f"SELECT count(*) FROM ((SELECT * FROM {table} EXCEPT ALL "
                f"SELECT * FROM {table} {at}) UNION ALL (SELECT * FROM {table} {at} "
                f"EXCEPT ALL SELECT * FROM {table}))"
            ).fetchone()[0]
            assert differ == 0, table
        assert done.tables["events"] == 60  # a: 40, b: its 20 not duplicates
