"""A person's DuckDB session on the warehouse blocks runs (DuckDB allows one process per
file): the run says which process holds the lock, in its log and as an alert, and gives up
with an error naming it."""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg

from analytics_assets import settings
from analytics_assets.lib import alerts
from analytics_assets.resources import Warehouse, lock_holder
from tests.conftest import event, jsonl
from tests.ingest.test_assets import materialize

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(60)
"""


def test_a_run_names_the_session_that_holds_the_warehouse(land, resources, instance) -> None:
    land("a.jsonl", jsonl([event(1)]))
    materialize("a", resources, instance)  # the file exists, with tables
    land("b.jsonl", jsonl([event(2)]))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(settings.warehouse_path())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        locked = {
            **resources,
            "warehouse": Warehouse(database=str(settings.warehouse_path()), lock_timeout_s=3),
        }
        started = time.monotonic()
        result = materialize("b", locked, instance, raise_on_error=False)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert not result.success and 3 <= waited < 30
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.error.cause)
    assert f"PID {holder.pid}" in message and "stayed locked" in message
    (alert,) = [a for a in alerts.read(settings.alerts_path()) if a["kind"] == "warehouse_locked"]
    assert f"PID {holder.pid}" in alert["message"] and "-c" in alert["message"]


def test_lock_holder_reads_duckdbs_message() -> None:
    error = (
        'IO Error: Could not set lock on file "/x/warehouse.duckdb": Conflicting lock is held in '
        "/usr/bin/python3.11 (PID 999999999) by user root. See also https://duckdb.org/docs/"
    )
    assert lock_holder(error) == "PID 999999999 (/usr/bin/python3.11)"
    assert lock_holder("IO Error: disk full") is None
