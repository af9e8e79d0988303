"""Monitoring sensors: retraining when drift or performance says so (with a cool-down), run
failure alerts, and the automation that keeps the monitoring assets current."""

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from analytics_assets import settings
from analytics_assets.defs.training import jobs
from analytics_assets.lib import alerts

DRIFT = dg.AssetKey("drift_report")
PERFORMANCE = dg.AssetKey("model_performance")
PROMOTED = dg.AssetKey("promoted_models")
REASON_TAG = "analytics/retrain_reason"
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass
class Signals:
    """What the sensor has read (the storage ids of the reports) and the reasons it has not
    acted on yet: a signal that arrives during the cool-down waits here, with the time it
    arrived, until a retraining run starts after it."""

    seen: dict[str, int] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "Signals":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(data.get("seen", {}), data.get("pending", {}))

    def dump(self) -> str:
        return json.dumps({"seen": self.seen, "pending": self.pending})


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(key, limit=1).records
    return records[0] if records else None


def _new_flag(instance, signals: Signals, key: dg.AssetKey, flag: str) -> str | None:
    """The report's ``reasons``/status if its newest materialization (unseen so far) raises
    ``flag``; marks it seen either way."""
    record = _latest(instance, key)
    if record is None or signals.seen.get(key.to_user_string(), -1) >= record.storage_id:
        return None
    signals.seen[key.to_user_string()] = record.storage_id
    metadata = record.asset_materialization.metadata
    raised = metadata.get(flag)
    if raised is None or not raised.value:
        return None
    detail = metadata.get("reasons") or metadata.get("status")
    return f"{key.to_user_string()}: {detail.value if detail else flag}"


def _timestamp(instance, key: str) -> float:
    record = _latest(instance, dg.AssetKey(key))
    return record.timestamp if record else 0.0


def first_champion(instance: dg.DagsterInstance) -> tuple[bool, str]:
    """Whether to ask for a first champion, and why (not): only once there is nothing left to
    catch up on, features online newer than the last batch committed and no run queued or in
    progress, so the first model learns from everything landed so far."""
    promoted = _latest(instance, PROMOTED)
    if promoted is not None:
        champions = promoted.asset_materialization.metadata.get("champions")
        if champions and champions.value:
            return False, "a champion is in place"
    events, features, online = (
        _timestamp(instance, k) for k in ("events", "customer_features", "online_features")
    )
    if not online or online < features or features < events:
        return False, "no champion yet; waiting for the features of every batch to be online"
    if instance.get_runs_count(dg.RunsFilter(statuses=_IN_FLIGHT)):
        return False, "no champion yet; waiting for the runs in flight"
    return True, "no champion yet: the pipeline has caught up with the landing zone"


def last_retraining(instance: dg.DagsterInstance) -> float | None:
    """When the last ``retrain_models`` run (of any origin) was created."""
    records = instance.get_run_records(dg.RunsFilter(job_name=jobs.retrain_models.name), limit=1)
    return records[0].create_timestamp.timestamp() if records else None


@dg.sensor(
    name="model_health_sensor",
    job=jobs.retrain_models,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Requests retrain_models when drift_report recommends it, when model_performance finds "
        "the champion degraded, or when there is no champion yet; never twice within the "
        "cool-down ($ANALYTICS_RETRAIN_COOLDOWN_S) of the last retraining run."
    ),
)
def model_health_sensor(context: dg.SensorEvaluationContext):
    signals = Signals.parse(context.cursor)
    instance = context.instance
    reasons = [
        reason
        for reason in (
            _new_flag(instance, signals, DRIFT, "retrain_recommended"),
            _new_flag(instance, signals, PERFORMANCE, "degraded"),
        )
        if reason
    ]
    now = time.time()
    last = last_retraining(instance)
    for reason in reasons:
        signals.pending.setdefault(reason, now)
    # a retraining run that started after a signal has acted on it, whoever asked for it
    signals.pending = {r: at for r, at in signals.pending.items() if last is None or at > last}
    reasons = list(signals.pending)
    wanted, why = first_champion(instance)
    if wanted:
        reasons.append(why)
    if not reasons:
        context.update_cursor(signals.dump())
        return dg.SkipReason(f"no new drift or degradation; {why}")
    cooldown = settings.retrain_cooldown_seconds()
    if last is not None and now - last < cooldown:
        context.update_cursor(signals.dump())
        wait = int(cooldown - (now - last))
        return dg.SkipReason(
            f"cool-down: {'; '.join(reasons)}; kept until the next retraining in {wait} s"
        )
    signals.pending = {}
    context.update_cursor(signals.dump())
    context.log.info(f"requesting retraining: {'; '.join(reasons)}")
    return dg.RunRequest(
        run_key=f"retrain-{int(now)}",
        tags={REASON_TAG: "; ".join(reasons)[:4000]},
    )


def _error_text(error) -> str:
    """The error and its causes, innermost last (Dagster wraps the user's exception)."""
    parts = []
    while error is not None:
        parts.append(error.message.strip())
        error = error.cause
    return " <- ".join(parts)[:2000]


@dg.run_failure_sensor(
    name="run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Records every failed run in <home>/alerts/run_failures.jsonl and posts it to "
        "$ANALYTICS_ALERT_WEBHOOK_URL when that is set."
    ),
)
def run_failure_sensor(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    steps = context.get_step_failure_events()
    errors = {
        event.step_key: _error_text(event.step_failure_data.error)
        for event in steps
        if event.step_key and event.step_failure_data.error
    }
    attempt = int(run.tags.get("dagster/retry_number", "0")) + 1
    retries = (
        context.instance.run_retries_max_retries if context.instance.run_retries_enabled else 0
    )
    failure = {
        "kind": "run_failure",
        "run_id": run.run_id,
        "job_name": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "failed_steps": [event.step_key for event in steps if event.step_key],
        "errors": errors,
        "message": context.failure_event.message or "run failed",
        "attempt": attempt,
        # Dagster retries the run (dagster.yaml run_retries) while attempts are left
        "will_retry": attempt <= retries,
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    alerts.record(settings.alerts_path(), failure)
    url = settings.alert_webhook_url()
    if url:
        status = alerts.post(url, failure)
        context.log.info(f"posted run {run.run_id} failure to the webhook ({status})")


@dg.definitions
def defs() -> dg.Definitions:
    automation = dg.AutomationConditionSensorDefinition(
        "monitoring_automation",
        target=dg.AssetSelection.groups("monitoring"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.monitoring_interval_seconds(),
        description=(
            "Evaluates the monitoring assets' automation conditions: drift_report and "
            "model_performance after each promotion, drift_report as new features come online."
        ),
    )
    return dg.Definitions(sensors=[model_health_sensor, run_failure_sensor, automation])
