"""The real dagster-daemon on a temporary home, with the repo's dagster.yaml."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.testing.fault_trials import Daemon


@pytest.fixture
def daemon(analytics_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANALYTICS_SENSOR_INTERVAL_S", "1")
    monkeypatch.setenv("ANALYTICS_REBUILD_INTERVAL_S", "1")
    process = Daemon(analytics_home / "daemon.log")
    process.start()
    try:
        yield dg.DagsterInstance.get()
    finally:
        process.stop()
