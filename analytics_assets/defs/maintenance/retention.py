"""``apply_retention``: the daily job that keeps what grows without bound in check (archived
landing files, the prediction log, reports, old training and monitoring runs with their plots,
model versions in MLflow and in the BentoML store). The limits are settings
(:func:`analytics_assets.settings.retention`)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from analytics_assets import settings
from analytics_assets.lib import retention
from analytics_assets.lib.names import CHALLENGER_SUFFIX, CHURN_MODEL, CLV_MODEL
from analytics_assets.resources import MODEL_REGISTRY_POOL, BentoModelStore, MlflowTracking

MODELS = (CHURN_MODEL, CLV_MODEL)
PRUNED_JOBS = ("retrain_models",)
PRUNED_SENSORS = ("monitoring_automation",)
"""Runs whose plots live in the event log: retraining and monitoring."""


@dg.op(pool=MODEL_REGISTRY_POOL)
def apply_retention_op(
    context: dg.OpExecutionContext, mlflow: MlflowTracking, bento_store: BentoModelStore
) -> dict:
    limits = settings.retention()
    today = datetime.now(UTC).date()
    removed = {
        "archive": retention.remove(
            retention.old_day_folders(settings.archive_dir(), limits["archive_days"], today)
        ),
        "predictions": retention.remove(
            retention.old_day_folders(settings.predictions_dir(), limits["predictions_days"], today)
        ),
        "reports": retention.remove(
            retention.old_files(settings.reports_dir(), limits["reports_days"])
        ),
    }
    protected = _mlflow_versions(context, mlflow, limits["model_versions"], removed)
    _bento_versions(context, bento_store, limits["model_versions"], protected, removed)
    removed["runs"] = old_runs(context.instance, limits["runs_days"], datetime.now(UTC))
    context.log.info(f"retention {limits}: removed {removed}")
    context.add_output_metadata({"limits": limits, "removed": removed})
    return removed


def _mlflow_versions(context, mlflow: MlflowTracking, keep: int, removed: dict) -> dict:
    """Old registered versions go (their runs and artifacts stay in MLflow); returns the
    protected versions per model."""
    from mlflow.exceptions import MlflowException

    from analytics_assets.lib import model_registry

    client = mlflow.client()
    protected: dict[str, set[str]] = {}
    dropped = 0
    for name in MODELS:
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except MlflowException:
            continue
        keep_these = {
            v.version
            for alias in (model_registry.CHAMPION, model_registry.CHALLENGER)
            if (v := model_registry.by_alias(client, name, alias)) is not None
        }
        champion = model_registry.by_alias(client, name, model_registry.CHAMPION)
        if champion is not None and model_registry.PREVIOUS_CHAMPION_TAG in champion.tags:
            keep_these.add(champion.tags[model_registry.PREVIOUS_CHAMPION_TAG])
        protected[name] = keep_these
        for version in retention.versions_to_drop(
            [str(v.version) for v in versions], keep, keep_these
        ):
            client.delete_model_version(name, version)
            dropped += 1
    removed["mlflow_versions"] = dropped
    return protected


def _bento_versions(context, bento_store: BentoModelStore, keep: int, protected, removed):
    """BentoML copies of old versions go; ``latest`` (the champion) and protected stay."""
    import bentoml
    from bentoml.exceptions import NotFound

    store = bento_store.store()
    dropped = 0
    for name in MODELS:
        for stored_name in (name, name + CHALLENGER_SUFFIX):
            try:
                models = store.list(stored_name)
                latest = str(store.get(f"{stored_name}:latest").tag)
            except NotFound:
                continue
            by_version = {m.info.labels.get("mlflow_version", ""): m for m in models}
            keep_these = set(protected.get(name, set())) | {
                v for v, m in by_version.items() if str(m.tag) == latest
            }
            for version in retention.versions_to_drop(by_version, keep, keep_these):
                bentoml.models.delete(by_version[version].tag, _model_store=store)
                dropped += 1
    removed["bento_versions"] = dropped


def old_runs(instance: dg.DagsterInstance, keep_days: int, now: datetime) -> int:
    """Finished retraining and monitoring runs older than ``keep_days`` are deleted with their
    events (plots included), except a run that holds an asset's latest materialization."""
    if keep_days <= 0:
        return 0
    cutoff = now - timedelta(days=keep_days)
    finished = [
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    ]
    filters = [dg.RunsFilter(job_name=job, statuses=finished) for job in PRUNED_JOBS] + [
        dg.RunsFilter(tags={"dagster/sensor_name": sensor}, statuses=finished)
        for sensor in PRUNED_SENSORS
    ]
    old = [
        record.dagster_run.run_id
        for runs_filter in filters
        for record in instance.get_run_records(runs_filter)
        if record.create_timestamp < cutoff
    ]
    deleted = 0
    for run_id in old:
        keys = {
            r.event_log_entry.dagster_event.asset_key
            for r in instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
        }
        if any(
            (latest := instance.get_latest_materialization_event(key)) is not None
            and latest.run_id == run_id
            for key in keys
        ):
            continue
        instance.delete_run(run_id)
        deleted += 1
    return deleted
