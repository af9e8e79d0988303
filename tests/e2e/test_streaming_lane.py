"""The streaming lane end to end: the real daemon (runs in its embedded Celery worker) and the real
``bentoml serve``. A new customer's first events land in a file; one run ingests them and puts
the customer's features online; the scoring service then knows the customer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from analytics_assets import settings
from analytics_assets.lib.atomic_files import write_atomic
from analytics_assets.testing import serving
from tests.conftest import event, jsonl, purchase
from tests.e2e.test_daemon import wait_for_batches
from tests.serving.conftest import run_server

pytestmark = pytest.mark.e2e


def test_a_new_customer_is_scored_from_its_first_file(daemon, analytics_home, tmp_path) -> None:
    serving.prepare(200, tmp_path / "models")  # repo applied, snapshot online, champions
    with run_server(analytics_home, tmp_path / "server.log") as server, server.client() as http:
        answer = http.post("/churn", json={"customer_ids": ["newcomer"]}).json()
        assert answer["predictions"][0]["known"] is False

        now = datetime.now(UTC)
        records = [
            event(1, customer_id="newcomer", occurred_at=(now - timedelta(minutes=3)).isoformat()),
            purchase(
                2,
                80.0,
                customer_id="newcomer",
                occurred_at=(now - timedelta(minutes=2)).isoformat(),
            ),
            "{broken",
        ]
        write_atomic(settings.landing_dir(), "first-visit.jsonl", jsonl(records))
        deadline = time.monotonic() + 120
        while True:
            (row,) = http.post("/churn", json={"customer_ids": ["newcomer"]}).json()["predictions"]
            if row["known"]:
                break
            assert time.monotonic() < deadline, "the new customer was never scored as known"
            time.sleep(0.5)
        clv = http.post("/clv", json={"customer_ids": ["newcomer"], "horizon_days": 90}).json()

    (run,) = wait_for_batches(daemon, {"first-visit"}, timeout=60)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert DAGSTER_CELERY_TASK_ID_TAG in run.tags  # executed by the Celery worker
    materialized = {
        record.event_log_entry.asset_materialization.asset_key.to_user_string()
        for record in daemon.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
    }
    assert materialized == {"raw_events", "events", "quarantined_events", "streamed_features"}
    # features as of the batch's commit: one order of $80, bought today
    assert 0.0 <= row["churn_probability"] <= 1.0
    as_of = datetime.fromisoformat(row["features_as_of"])
    assert now - timedelta(seconds=5) <= as_of <= datetime.now(UTC)
    (value,) = clv["predictions"]
    assert value["known"] is True
