"""The streaming lane end to end: the real daemon (with the warm run launcher) and the real
``bentoml serve``. A new customer's first events land in a file; one run ingests them and puts
the customer's features online; the scoring service then knows the customer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.ingest.sensors import BATCHES_TAG
from analytics_assets.lib.atomic_files import write_atomic
from analytics_assets.testing import serving
from analytics_assets.warm_runs import PID_TAG, server_address
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
    assert PID_TAG in run.tags  # forked from the warm process
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


def test_a_killed_warm_server_is_replaced(daemon, analytics_home) -> None:
    """kill -9 of the fork server between two batches: the next launch starts a new one."""
    import psutil

    write_atomic(settings.landing_dir(), "one.jsonl", jsonl([event(1)]))
    (first,) = wait_for_batches(daemon, {"one"}, timeout=120)
    assert PID_TAG in first.tags
    address = server_address(daemon.root_directory).removeprefix("\0")
    (server,) = [
        p for p in psutil.process_iter(["cmdline"]) if address in " ".join(p.info["cmdline"] or [])
    ]
    server.kill()
    server.wait(10)
    write_atomic(settings.landing_dir(), "two.jsonl", jsonl([event(2)]))
    runs = wait_for_batches(daemon, {"one", "two"}, timeout=120)
    (second,) = [r for r in runs if r.tags[BATCHES_TAG] == "two"]
    assert second.status == dg.DagsterRunStatus.SUCCESS
    # forked too (not the fallback): a second server was started and took it
    assert PID_TAG in second.tags
    log = (settings.dagster_home() / "logs" / "warm_runs.log").read_text()
    assert log.count("ready in") == 2


def test_code_fingerprint_follows_the_code(tmp_path) -> None:
    from analytics_assets.warm_runs import code_fingerprint

    (tmp_path / "a.py").write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 22\n")
    assert code_fingerprint(tmp_path) != before
    (tmp_path / "b.py").write_text("")
    assert len({before, code_fingerprint(tmp_path)}) == 2
