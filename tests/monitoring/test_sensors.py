"""The retraining sensor (drift triggers, no drift does not, the cool-down holds, a first
champion is requested once the pipeline has caught up) and the run failure alerts, evaluated
with real sensor contexts on a real instance."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.definitions import defs
from analytics_assets.defs.monitoring.sensors import (
    REASON_TAG,
    model_health_sensor,
    run_failure_sensor,
)
from analytics_assets.lib import alerts


@pytest.fixture
def instance(analytics_home):
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def report(instance, key: str, **metadata) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=metadata))


def with_champion(instance) -> None:
    report(instance, "promoted_models", champions={"churn_model": "1", "clv_model": "1"})


def tick(instance, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = model_health_sensor.evaluate_tick(context)
    return result, result.cursor


def test_drift_requests_retraining_and_no_drift_does_not(instance) -> None:
    with_champion(instance)
    report(instance, "drift_report", retrain_recommended=False, reasons=[])
    result, cursor = tick(instance)
    assert not result.run_requests and "no new drift" in result.skip_message
    report(instance, "drift_report", retrain_recommended=True, reasons=["churn_v1: 4 drifted"])
    result, cursor = tick(instance, cursor)
    (request,) = result.run_requests
    assert request.job_name in (None, "retrain_models")
    assert "churn_v1: 4 drifted" in request.tags[REASON_TAG]
    # the same report is not acted on twice
    result, _ = tick(instance, cursor)
    assert not result.run_requests


def test_degraded_performance_requests_retraining(instance) -> None:
    with_champion(instance)
    report(instance, "model_performance", degraded=True, status="realized AUC 0.61")
    result, _ = tick(instance)
    (request,) = result.run_requests
    assert "realized AUC 0.61" in request.tags[REASON_TAG]


def test_cool_down_holds_after_any_retraining_run(instance, monkeypatch) -> None:
    with_champion(instance)
    instance.create_run_for_job(job_def=defs.resolve_job_def("retrain_models"))
    report(instance, "drift_report", retrain_recommended=True, reasons=["drift"])
    result, cursor = tick(instance)
    assert not result.run_requests and "cool-down" in result.skip_message
    # a later report after the cool-down has passed does trigger
    monkeypatch.setenv("ANALYTICS_RETRAIN_COOLDOWN_S", "0")
    report(instance, "drift_report", retrain_recommended=True, reasons=["drift again"])
    result, _ = tick(instance, cursor)
    assert len(result.run_requests) == 1


def test_a_signal_in_the_cool_down_is_kept_until_it_is_acted_on(instance, monkeypatch) -> None:
    """Drift reported during the cool-down, then no new report: once the cool-down has passed
    the kept signal requests the retraining it was promised."""
    with_champion(instance)
    instance.create_run_for_job(job_def=defs.resolve_job_def("retrain_models"))
    report(instance, "drift_report", retrain_recommended=True, reasons=["drift in cool-down"])
    result, cursor = tick(instance)
    assert not result.run_requests and "kept until the next retraining" in result.skip_message
    result, cursor = tick(instance, cursor)  # still in the cool-down, still kept
    assert not result.run_requests and "drift in cool-down" in result.skip_message
    monkeypatch.setenv("ANALYTICS_RETRAIN_COOLDOWN_S", "0")
    result, cursor = tick(instance, cursor)
    (request,) = result.run_requests
    assert "drift in cool-down" in request.tags[REASON_TAG]
    result, _ = tick(instance, cursor)  # acted on: not twice
    assert not result.run_requests


def test_a_retraining_run_after_a_signal_acts_on_it(instance) -> None:
    with_champion(instance)
    instance.create_run_for_job(job_def=defs.resolve_job_def("retrain_models"))
    report(instance, "drift_report", retrain_recommended=True, reasons=["drift"])
    _, cursor = tick(instance)
    time.sleep(1.1)  # run timestamps may be stored to the second
    instance.create_run_for_job(job_def=defs.resolve_job_def("retrain_models"))  # e.g. Monday's
    result, _ = tick(instance, cursor)
    assert not result.run_requests and "no new drift" in result.skip_message


def test_first_champion_waits_until_features_are_online(instance) -> None:
    report(instance, "events")
    result, cursor = tick(instance)
    assert not result.run_requests and "waiting for the features" in result.skip_message
    report(instance, "customer_features")
    report(instance, "online_features")
    result, cursor = tick(instance, cursor)
    (request,) = result.run_requests
    assert "no champion yet" in request.tags[REASON_TAG]
    with_champion(instance)
    result, _ = tick(instance, cursor)
    assert not result.run_requests


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@dg.op
def explode() -> None:
    raise RuntimeError("the warehouse is on fire")


@dg.job
def doomed() -> None:
    explode()


def test_run_failures_are_recorded_and_posted(instance, monkeypatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ANALYTICS_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/")
    try:
        result = doomed.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        (failure,) = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor",
            dagster_event=failure.event_log_entry.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
        ).for_run_failure()
        run_failure_sensor(context)
    finally:
        server.shutdown()
    (recorded,) = alerts.read(settings.alerts_path())
    assert recorded["run_id"] == result.run_id and recorded["job_name"] == "doomed"
    assert recorded["failed_steps"] == ["explode"]
    assert "the warehouse is on fire" in recorded["errors"]["explode"]
    (posted,) = _Hook.received
    assert posted["run_id"] == result.run_id and "doomed" in posted["text"]
