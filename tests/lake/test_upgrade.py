"""A home from before the lakehouse: its ``warehouse.duckdb``, written by DuckDB 2.0 (which the
pinned 1.5 line cannot open), moves into the lakehouse once, on the first writer's connection,
and a kill after the import's commit does not import it twice."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from analytics_assets import settings
from analytics_assets.lib import lakehouse, lakehouse_upgrade

pytestmark = pytest.mark.timeout(300)

OLD_HOME = textwrap.dedent(
    """
    import sys, duckdb
    assert duckdb.__version__.startswith("2."), duckdb.__version__
    conn = duckdb.connect(sys.argv[1])
    conn.execute('''CREATE TABLE events AS SELECT 'e' || range AS event_id,
        TIMESTAMPTZ '2024-03-01 00:00:00+00' + range * INTERVAL 1 HOUR AS occurred_at,
        'b' || (range // 100) AS batch_id FROM range(1000)''')
    conn.execute("CREATE TABLE ingest_ledger (batch_id VARCHAR, days_touched DATE[])")
    conn.execute("INSERT INTO ingest_ledger SELECT DISTINCT batch_id, [] FROM events")
    """
)


@pytest.fixture
def old_home(analytics_home: Path) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv runs the DuckDB that wrote the old files")
    database = settings.warehouse_path()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run(
        [uv, "run", "--no-project", "--with", f"duckdb=={lakehouse_upgrade.OLD_DUCKDB}"]
        + ["python", "-c", OLD_HOME, str(database)],
        check=True,
        env=env,
        cwd=analytics_home,
    )
    return database


def counts() -> tuple[int, int]:
    with lakehouse.connect(read_only=True) as conn:
        return (
            conn.execute("SELECT count(*) FROM events").fetchone()[0],
            conn.execute("SELECT count(*) FROM ingest_ledger").fetchone()[0],
        )


def test_old_warehouse_moves_into_the_lakehouse_once(old_home: Path) -> None:
    with lakehouse.connect():  # the first writer
        pass
    assert not old_home.exists()
    assert lakehouse_upgrade.upgraded_name(old_home).exists()
    assert counts() == (1000, 10)

    # killed after the import committed, before the rename: the file is back under its name
    os.replace(lakehouse_upgrade.upgraded_name(old_home), old_home)
    with lakehouse.connect():
        pass
    assert counts() == (1000, 10)
    assert not old_home.exists()
