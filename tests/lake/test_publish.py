"""The published lake: what the runs write under $ANALYTICS_HOME/lake, read back by DuckDB (this
process's 2.0 and the 1.5 command-line client) without the warehouse."""

from __future__ import annotations

import os
import subprocess
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from analytics_assets import settings
from analytics_assets.defs.analytics.assets import (
    customer_base_audit,
    customer_daily,
    kpis_daily,
    kpis_hourly,
    sessions,
)
from analytics_assets.defs.analytics.audit import Audit
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.lib import lake, lakehouse
from analytics_assets.partitions import batches
from tests.conftest import event, jsonl, purchase

RANGE = {
    "dagster/asset_partition_range_start": "2024-03-01",
    "dagster/asset_partition_range_end": "2024-03-05",
}


def ingest(batch_id: str, resources, instance) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions(batches.name, [batch_id])
    return dg.materialize(
        [ingest_batch], partition_key=batch_id, resources=resources, instance=instance
    )


def lake_counts(table: str) -> dict[date, int]:
    """Rows per partition as a reader of the lake sees them (no warehouse involved)."""
    with duckdb.connect() as conn:
        lake.create_views(conn, lake.views(settings.lake_dir()))
        return dict(conn.sql(f"SELECT day, count(*) FROM {table} GROUP BY day").fetchall())


def warehouse_counts(table: str, day_sql: str) -> dict[date, int]:
    with lakehouse.connect(read_only=True) as conn:
        return dict(conn.sql(f"SELECT {day_sql}, count(*) FROM {table} GROUP BY 1").fetchall())


def lake_check(result) -> dict[str, bool]:
    return {
        e.asset_key.to_user_string(): e.passed
        for e in result.get_asset_check_evaluations()
        if e.check_name == "lake_matches_warehouse"
    }


def test_batches_publish_their_event_days(land, resources, instance) -> None:
    land("b1.jsonl", jsonl([event(i) for i in range(10)] + ["not json"]))
    result = ingest("b1", resources, instance)
    assert lake_check(result) == {"events": True, "quarantined_events": True}
    day = "(occurred_at AT TIME ZONE 'UTC')::DATE"
    assert lake_counts("events") == warehouse_counts("events", day)
    assert sum(lake_counts("events").values()) == 10
    files = sorted(p.relative_to(settings.lake_dir()) for p in settings.lake_dir().rglob("*"))
    assert Path("events/day=2024-03-01/data.parquet") in files
    assert not [p for p in files if p.name.endswith(".tmp")]
    # the raw record stays in the warehouse; the lake has the reason, not the data
    with duckdb.connect() as conn:
        lake.create_views(conn, lake.views(settings.lake_dir()))
        columns = [c[0] for c in conn.sql("DESCRIBE quarantined_events").fetchall()]
        assert conn.sql("SELECT reason FROM quarantined_events").fetchall() == [
            ("unparseable_line",)
        ]
    assert "raw" not in columns and "reason" in columns and "day" in columns


def test_a_late_batch_republishes_only_the_old_day_it_touches(land, resources, instance):
    land(
        "b1.jsonl",
        jsonl([event(i, occurred_at=f"2024-03-0{1 + i % 3}T10:00:00Z") for i in range(9)]),
    )
    ingest("b1", resources, instance)
    root = settings.lake_dir() / "events"
    before = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("day=*/data.parquet")}
    assert sorted(before) == ["day=2024-03-01", "day=2024-03-02", "day=2024-03-03"]
    land("b2.jsonl", jsonl([event(100 + i, occurred_at="2024-03-01T12:00:00Z") for i in range(4)]))
    result = ingest("b2", resources, instance)
    assert lake_check(result)["events"]
    after = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("day=*/data.parquet")}
    assert after["day=2024-03-01"] != before["day=2024-03-01"]
    assert after["day=2024-03-02"] == before["day=2024-03-02"]
    assert after["day=2024-03-03"] == before["day=2024-03-03"]
    assert lake_counts("events") == {date(2024, 3, 1): 7, date(2024, 3, 2): 3, date(2024, 3, 3): 3}


def test_a_publish_killed_after_the_commit_is_done_by_the_next_run(
    land, resources, instance
) -> None:
    """The commit marks the days in the warehouse; a run killed before publishing leaves the
    marks, and any later publish does them."""
    path = land("b1.jsonl", jsonl([event(1), event(2, occurred_at="2024-03-04T09:00:00Z")]))
    with lakehouse.connect() as conn:
        ingest_file(conn, path, "b1")  # committed, never published (the run died here)
        pending = conn.sql("SELECT DISTINCT table_name, day FROM lake_pending").fetchall()
    assert ("events", date(2024, 3, 2)) in pending and ("events", date(2024, 3, 4)) in pending
    assert not (settings.lake_dir() / "events").exists()
    land("b2.jsonl", jsonl([event(3, occurred_at="2024-03-05T09:00:00Z")]))
    ingest("b2", resources, instance)
    assert lake_counts("events") == {
        date(2024, 3, 2): 1,
        date(2024, 3, 4): 1,
        date(2024, 3, 5): 1,
    }
    with lakehouse.connect(read_only=True) as conn:
        assert conn.sql("SELECT count(*) FROM lake_pending").fetchall() == [(0,)]


def test_a_reingested_batch_empties_the_day_it_left(land) -> None:
    """Re-ingesting a batch whose events moved to another day: the old day's partition becomes
    an empty file (a reader that listed it still reads it), the new day appears."""
    path = land("b1.jsonl", jsonl([event(1, occurred_at="2024-03-02T10:00:00Z")]))
    with lakehouse.connect() as conn:
        ingest_file(conn, path, "b1")
        lake.publish_pending(conn, settings.lake_dir())
        assert lake_counts("events") == {date(2024, 3, 2): 1}
        path.write_bytes(jsonl([event(1, occurred_at="2024-03-03T10:00:00Z")]))
        ingest_file(conn, path, "b1")
        done = lake.publish_pending(conn, settings.lake_dir())
        assert lake.check(conn, settings.lake_dir(), done) == {}
    assert lake_counts("events") == {date(2024, 3, 3): 1}
    assert lake.file_rows(settings.lake_dir() / "events/day=2024-03-02/data.parquet") == 0


def test_analytics_and_audit_tables_are_published(land, resources, instance) -> None:
    land(
        "b1.jsonl",
        jsonl(
            [event(i) for i in range(20)]
            + [
                purchase(100 + i, 10.0 + i, occurred_at=f"2024-03-0{1 + i % 4}T11:00:00Z")
                for i in range(8)
            ]
        ),
    )
    ingest("b1", resources, instance)
    result = dg.materialize(
        [sessions, customer_daily, kpis_hourly, kpis_daily],
        resources={"warehouse": resources["warehouse"]},
        instance=instance,
        tags=RANGE,
    )
    assert lake_check(result) == dict.fromkeys(
        ["sessions", "customer_daily", "kpis_hourly", "kpis_daily"], True
    )
    assert lake_counts("sessions") == warehouse_counts("sessions", "day")
    assert lake_counts("kpis_hourly") == warehouse_counts("kpis_hourly", "window_start::DATE")
    audit = dg.materialize(
        [customer_base_audit], resources={"warehouse": resources["warehouse"]}, instance=instance
    )
    assert lake_check(audit) == {"customer_base_audit": True}
    # every table of the audit is published, and the lake's list of them is the audit's
    assert set(lake.AUDIT_TABLES) == {f"audit_{name}" for name in Audit.__dataclass_fields__}
    views = lake.views(settings.lake_dir())
    assert set(lake.AUDIT_TABLES) <= set(views)
    with duckdb.connect() as conn:
        lake.create_views(conn, views)
        with lakehouse.connect(read_only=True) as warehouse:
            for name in lake.AUDIT_TABLES:
                stored = warehouse.sql(f"SELECT count(*) FROM {name}").fetchall()
                assert conn.sql(f"SELECT count(*) FROM {name}").fetchall() == stored, name
    page = settings.reports_dir() / "customer_base_audit" / "index.html"
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 5 and "audit_layer_cake" in text


@pytest.mark.timeout(120)
def test_the_catalog_opens_in_duckdb_1_5_while_the_warehouse_is_held(
    land, resources, instance
) -> None:
    """The views file is at a storage version DuckDB 1.5 reads, and reading it needs no lock on
    the warehouse: here a writer holds the warehouse all along."""
    land("b1.jsonl", jsonl([event(i) for i in range(12)]))
    ingest("b1", resources, instance)
    catalog = settings.lake_catalog_path()
    assert catalog.exists()
    cli = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "duckdb"
    cli = cli if cli.exists() else settings.REPO_ROOT / ".venv" / "bin" / "duckdb"
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v1.5")
    with lakehouse.connect():  # the writer
        out = subprocess.run(
            [cli, "-readonly", "-csv", str(catalog), "-c", "SELECT count(*) AS n FROM events"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", "12"]


@pytest.mark.timeout(120)
def test_analytics_sql_and_its_shell_read_the_lake_while_a_writer_holds_the_warehouse(
    land, resources, instance
) -> None:
    land("b1.jsonl", jsonl([event(i) for i in range(12)]))
    ingest("b1", resources, instance)
    command = [str(Path(os.sys.executable).parent / "analytics"), "sql"]
    with lakehouse.connect():  # a run holding the warehouse
        out = subprocess.run(
            [
                *command,
                "--format",
                "csv",
                "SELECT day, count(*) AS n FROM events GROUP BY day ORDER BY day",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == "day,n"
        assert sum(int(line.split(",")[1]) for line in out.stdout.splitlines()[1:]) == 12
        shell = subprocess.run(
            command,
            input="SELECT count(*) AS n FROM events;\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        assert "12" in shell.stdout
        bad = subprocess.run(
            [*command, "SELECT * FROM no_such_table"], capture_output=True, text=True, timeout=60
        )
    assert bad.returncode == 1 and "no_such_table" in bad.stderr


def test_the_audit_before_any_purchase(land, resources, instance) -> None:
    """Page views only: the audit still materializes (empty tables, published; plots that say
    so), instead of failing every automation tick until someone buys."""
    land("b1.jsonl", jsonl([event(i) for i in range(6)]))
    ingest("b1", resources, instance)
    dg.materialize(
        [customer_daily],
        resources={"warehouse": resources["warehouse"]},
        instance=instance,
        tags=RANGE,
    )
    audit = dg.materialize(
        [customer_base_audit], resources={"warehouse": resources["warehouse"]}, instance=instance
    )
    assert lake_check(audit) == {"customer_base_audit": True}
    assert lake.file_rows(settings.lake_dir() / "audit_summary" / "data.parquet") == 0
    page = (settings.reports_dir() / "customer_base_audit" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 5


def test_a_warehouse_from_before_the_lake_is_published_whole_by_the_first_run(
    land, resources, instance
) -> None:
    path = land("old.jsonl", jsonl([event(i) for i in range(10)]))
    with lakehouse.connect() as conn:
        ingest_file(conn, path, "old")
        conn.execute("DROP TABLE lake_pending")  # as a warehouse written before the lake
    land("new.jsonl", jsonl([event(100, occurred_at="2024-03-09T10:00:00Z")]))
    ingest("new", resources, instance)
    assert sum(lake_counts("events").values()) == 11
    assert date(2024, 3, 9) in lake_counts("events")
