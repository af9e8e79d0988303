"""The daily retention job, run for real: old archive and prediction-log days and old reports
go, model versions beyond the newest few go from MLflow and the BentoML store, and the
champion, the challenger and the champion before them stay."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import mlflow
import numpy as np
import pandas as pd

from analytics_assets import settings
from analytics_assets.defs.maintenance.jobs import apply_retention
from analytics_assets.lib import model_registry
from analytics_assets.lib.retention import old_day_folders, versions_to_drop


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


def test_versions_to_drop_keeps_the_newest_and_the_protected() -> None:
    versions = [str(v) for v in range(1, 13)]
    assert versions_to_drop(versions, 3, {"2", "11"}) == ["1", "3", "4", "5", "6", "7", "8", "9"]
    assert versions_to_drop(versions, 0, set()) == []


def test_old_day_folders(tmp_path) -> None:
    for day in ("2026-01-01", "2026-01-30", "2026-01-31"):
        (tmp_path / "churn_model" / f"date={day}").mkdir(parents=True)
        (tmp_path / day).mkdir()
    found = old_day_folders(tmp_path, 1, date(2026, 1, 31))
    assert [p.name for p in found] == ["2026-01-01", "date=2026-01-01"]


def test_the_job_prunes_files_runs_and_versions(model_resources, monkeypatch) -> None:
    import bentoml

    monkeypatch.setenv("ANALYTICS_KEEP_MODEL_VERSIONS", "1")
    today = datetime.now(UTC).date()
    old_day, new_day = (today - timedelta(days=200)).isoformat(), today.isoformat()
    for day in (old_day, new_day):
        (settings.archive_dir() / day).mkdir(parents=True)
        (settings.predictions_dir() / "churn_model" / f"date={day}").mkdir(parents=True)
    report = settings.reports_dir() / "drift" / "old.html"
    report.parent.mkdir(parents=True)
    report.write_text("old")
    month_ago = time.time() - 100 * 86_400
    os.utime(report, (month_ago, month_ago))

    tracking = model_resources["mlflow"]
    client = tracking.client()
    for _ in range(4):
        with tracking.start_run("churn_model", "r", {}):
            logged = mlflow.pyfunc.log_model(
                name="model",
                python_model=Constant(),
                input_example=pd.DataFrame({"x": [1.0]}),
            )
        model_registry.register(client, "churn_model", logged.model_uri, {})  # challenger: newest
    client.set_registered_model_alias("churn_model", model_registry.CHAMPION, "2")
    client.set_model_version_tag("churn_model", "2", model_registry.PREVIOUS_CHAMPION_TAG, "1")
    store = model_resources["bento_store"].store()
    for version in ("1", "2", "3"):
        with bentoml.models.create(
            f"clv_model:v{version}", labels={"mlflow_version": version}, _model_store=store
        ):
            pass

    with dg.DagsterInstance.ephemeral() as instance:
        result = apply_retention.execute_in_process(resources=model_resources, instance=instance)
    assert result.success
    assert sorted(p.name for p in settings.archive_dir().iterdir()) == [new_day]
    days = sorted(p.name for p in (settings.predictions_dir() / "churn_model").iterdir())
    assert days == [f"date={new_day}"]
    assert not report.exists()
    kept = sorted(str(v.version) for v in client.search_model_versions("name='churn_model'"))
    assert kept == ["1", "2", "4"]  # 3 goes: not newest, champion, challenger nor previous
    assert [m.info.labels["mlflow_version"] for m in store.list("clv_model")] == ["3"]


def test_old_monitoring_runs_go_but_not_the_latest_materialization(analytics_home) -> None:
    from analytics_assets.defs.maintenance.retention import old_runs

    @dg.asset(name="drift_report")
    def report() -> None:
        return None

    tags = {"dagster/sensor_name": "monitoring_automation"}
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.materialize([report], instance=instance, tags=tags).run_id
        second = dg.materialize([report], instance=instance, tags=tags).run_id
        other = dg.materialize([report], instance=instance).run_id  # not a pruned kind
        later = datetime.now(UTC) + timedelta(days=31)
        assert old_runs(instance, 60, later) == 0  # not old enough yet
        # `other` holds the latest materialization now; the two monitoring runs are old
        assert old_runs(instance, 30, later) == 2
        assert instance.get_run_by_id(first) is None and instance.get_run_by_id(second) is None
        assert instance.get_run_by_id(other) is not None
        # the latest materialization's run is kept even when old
        keep = dg.materialize([report], instance=instance, tags=tags).run_id
        assert old_runs(instance, 30, later) == 0
        assert instance.get_run_by_id(keep) is not None
