"""The whole loop with the real webserver, daemon and scoring service, as ``make demo`` runs
it, on a small landing zone (the CDNOW sample and a short simulated stream): nothing is
materialized by hand, and ``scripts/demo_check.py`` passes every stage from the outside."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.testing.servers import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_the_loop_closes_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "analytics"
    env = {
        **os.environ,
        "ANALYTICS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "ANALYTICS_SENSOR_INTERVAL_S": "1",
        "ANALYTICS_REBUILD_INTERVAL_S": "5",
        "ANALYTICS_MONITOR_INTERVAL_S": "5",
    }
    for name in ("MLFLOW_TRACKING_URI", "BENTOML_HOME", "DAGSTER_POSTGRES_URL"):
        env.pop(name, None)
    analytics = str(Path(sys.executable).parent / "analytics")
    for command in (
        [analytics, "dagster-home"],
        [analytics, "replay", "cdnow", "--sample", "--period-days", "120"],
        # on CDNOW's calendar, as make demo does
        [
            analytics,
            "simulate",
            "--customers",
            "200",
            "--days",
            "30",
            "--start",
            "1997-01-01",
            "--experiment",
            "green_button=0.5",
        ],  # fmt: skip
    ):
        subprocess.run(command, env=env, check=True, cwd=REPO, capture_output=True)
    demo = subprocess.run(
        [
            sys.executable,
            "scripts/demo.py",
            "--exit",
            "--timeout",
            "420",
            "--dagster-port",
            str(free_port()),
            "--scoring-port",
            str(free_port()),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=560,
    )
    assert demo.returncode == 0, demo.stdout[-6000:] + demo.stderr[-3000:]
    assert "all stages passed" in demo.stdout

    for name in ("ANALYTICS_HOME", "DAGSTER_HOME"):
        monkeypatch.setenv(name, env[name])
    with dg.DagsterInstance.get() as instance:
        # the experiment's looks: requested by events_sensor, not by hand; the last may still run
        busy = dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            instance.get_runs(filters=busy)
            or not instance.get_latest_materialization_event(dg.AssetKey("experiment_looks"))
        ):
            time.sleep(2)
        looks = instance.get_latest_materialization_event(dg.AssetKey("experiment_looks"))
        assert looks is not None and looks.asset_materialization.metadata["experiments"].value == 1
        runs = instance.get_runs()
        retraining = [r for r in runs if r.job_name == "retrain_models"]
        # the first champion was asked for by the retraining sensor, not by anyone's hand
        assert retraining and all(
            r.tags.get("dagster/sensor_name") == "model_health_sensor" for r in retraining
        )
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        drift = instance.get_latest_materialization_event(dg.AssetKey("drift_report"))
        assert drift.asset_materialization.metadata["features_compared"].value > 0
