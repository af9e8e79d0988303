"""The real dagster-daemon on a temporary home, with the repo's dagster.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.servers import stop

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def daemon(analytics_home: Path, monkeypatch: pytest.MonkeyPatch):
    dagster_home = settings.dagster_home()
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("ANALYTICS_SENSOR_INTERVAL_S", "1")
    monkeypatch.setenv("ANALYTICS_REBUILD_INTERVAL_S", "1")
    log = (analytics_home / "daemon.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield dg.DagsterInstance.get()
    finally:
        stop(proc)
        log.close()
