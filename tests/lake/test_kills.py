"""SIGKILL inside the lakehouse's own work, then the work again: a restore killed inside its
transaction or after its commit, and each maintenance step killed with its work done but its
catalog transaction open. Every table is at one snapshot or the next, never in between, and
the next run heals (the restore announced, the files cleaned)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analytics_assets import settings
from analytics_assets.lib import faults, lakehouse
from tests.conftest import event
from tests.lake.test_lakehouse import analytics, counts, ingest, landed_twice

pytestmark = pytest.mark.timeout(300)

MAINTAIN = (
    "from analytics_assets.lib import lakehouse, lakehouse_maintenance\n"
    "with lakehouse.connect() as conn:\n"
    "    lakehouse_maintenance.maintain(conn, 1e-6, orphan_grace_hours=0)\n"
)


def killed_at(point: str, code: list[str]) -> None:
    """Run ``code`` (python's arguments) in a process that dies at ``point``."""
    fault = settings.analytics_home() / "fault"
    faults.arm(fault, point)
    proc = subprocess.run(
        [sys.executable, *code],
        env={**os.environ, faults.ENV: str(fault)},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=settings.REPO_ROOT,
    )
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert Path(f"{fault}.fired").exists()


def restores_recorded() -> int:
    with lakehouse.connect(read_only=True) as conn:
        if not lakehouse.exists(conn, "lakehouse_restores"):
            return 0
        return conn.execute("SELECT count(*) FROM lakehouse_restores").fetchone()[0]


def test_a_restore_killed_inside_its_transaction_changes_nothing(analytics_home) -> None:
    moment = landed_twice()
    cli = ["-m", "analytics_assets.cli", "restore", "--as-of", moment.isoformat()]
    killed_at(faults.RESTORE_IN_COMMIT, cli)
    assert counts() == (250, 2) and restores_recorded() == 0  # the snapshot before it
    analytics("restore", "--as-of", moment.isoformat())
    assert counts() == (100, 1) and restores_recorded() == 1


def test_a_restore_killed_after_its_commit_is_announced_by_the_next(analytics_home) -> None:
    """The days the undone batch touched reach Dagster all the same: the rerun (a restore to
    the same moment, which finds nothing left to undo) announces the killed one first."""
    import dagster as dg

    from analytics_assets.instance import prepare_instance

    prepare_instance()
    moment = landed_twice()
    cli = ["-m", "analytics_assets.cli", "restore", "--as-of", moment.isoformat()]
    killed_at(faults.RESTORE_AFTER_COMMIT, cli)
    assert counts() == (100, 1) and restores_recorded() == 1  # committed, not announced
    with dg.DagsterInstance.from_config(str(settings.dagster_home())) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("events")) is None
    out = analytics("restore", "--as-of", moment.isoformat())
    assert "reported 2 restore(s)" in out
    with dg.DagsterInstance.from_config(str(settings.dagster_home())) as instance:
        records = instance.fetch_materializations(dg.AssetKey("events"), limit=10).records
    days = [r.asset_materialization.metadata["days_touched"].value for r in records]
    assert len(days) == 2 and sorted(map(len, days)) == [0, 5]  # batch b's five event days
    out = analytics("restore", "--as-of", moment.isoformat())
    assert "reported 1 restore(s)" in out  # each once


def files_on_disk() -> set[str]:
    root = settings.lakehouse_data()
    return {str(p) for p in Path(root).rglob("*.parquet")}


def files_listed() -> set[str]:
    with lakehouse.connect(read_only=True) as conn:
        return {f for t in lakehouse.table_names(conn) for f in lakehouse.data_files(conn, t)}


@pytest.mark.parametrize("point", faults.MAINTENANCE_POINTS)
def test_maintenance_killed_in_each_step_then_run_again(point, analytics_home) -> None:
    for k in range(6):  # six micro-batches on the same days: six small files per day
        ingest(f"m{k}", [event(100 * k + i) for i in range(100)])
    time.sleep(0.1)
    before = files_listed()
    killed_at(point, ["-c", MAINTAIN])
    assert counts() == (600, 6)
    listed = files_listed()
    assert listed <= files_on_disk()  # the snapshot it reads is whole
    if point.startswith("maintenance.compact"):
        assert listed == before  # the merge did not commit
    from analytics_assets.lib import lakehouse_maintenance

    with lakehouse.connect() as conn:
        done = lakehouse_maintenance.maintain(conn, 1e-6, log=print, orphan_grace_hours=0)
        total = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    assert total == (600, 600)
    assert sum(done.files_after.values()) < len(before)
    assert files_on_disk() == files_listed()  # nothing left behind, nothing missing
