"""A new Dagster home gets its storage created once, before Dagster's processes start, so
that several of them starting at once cannot stamp two schema versions; a home broken that
way is repaired by ``analytics dagster-home`` (or told how to fix it)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from analytics_assets import settings
from analytics_assets.cli import main
from analytics_assets.instance import SQLITE_STORAGE_FILES, _alembic_head

OPEN = (
    "import dagster as dg, sys\n"
    "with dg.DagsterInstance.from_config(sys.argv[1]) as i:\n"
    "    i.get_runs(limit=1); i.all_instigator_state()\n"
)


def versions(home: Path, name: str) -> list[str]:
    with sqlite3.connect(home / name) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def open_at_once(home: Path, processes: int) -> list[subprocess.CompletedProcess]:
    started = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(), *p.communicate()) for p in started]


def test_a_prepared_home_opens_from_many_processes_at_once(analytics_home) -> None:
    result = CliRunner().invoke(main, ["dagster-home"])
    assert result.exit_code == 0, result.output
    home = settings.dagster_home()
    for done in open_at_once(home, 4):
        assert done.returncode == 0, done.stderr[-2000:]
    for name in SQLITE_STORAGE_FILES:
        assert versions(home, name) == [_alembic_head()], name


def test_a_home_with_two_schema_versions_is_repaired(analytics_home) -> None:
    assert CliRunner().invoke(main, ["dagster-home"]).exit_code == 0
    home = settings.dagster_home()
    # what two processes creating runs.db at once leave: the head and the revision stamped
    # by the one that found the other's tables already there
    with sqlite3.connect(home / "history" / "runs.db") as conn:
        conn.execute("INSERT INTO alembic_version VALUES ('5771160a95ad')")
    (broken,) = open_at_once(home, 1)
    assert broken.returncode != 0 and "more than one head" in broken.stderr

    result = CliRunner().invoke(main, ["dagster-home"])
    assert result.exit_code == 0, result.output
    assert versions(home, "history/runs.db") == [_alembic_head()]
    (healed,) = open_at_once(home, 1)
    assert healed.returncode == 0, healed.stderr[-2000:]


def test_a_home_without_the_current_version_is_reported_with_the_fix(analytics_home) -> None:
    assert CliRunner().invoke(main, ["dagster-home"]).exit_code == 0
    home = settings.dagster_home()
    with sqlite3.connect(home / "schedules" / "schedules.db") as conn:
        conn.execute("DELETE FROM alembic_version")
        conn.execute("INSERT INTO alembic_version VALUES ('aaaa'), ('bbbb')")
    result = CliRunner().invoke(main, ["dagster-home"])
    assert result.exit_code == 1
    assert "move" in result.output and "analytics dagster-home" in result.output
