"""Two worker hosts (network namespaces this test makes) take runs from one daemon: landing files
and a 4-partition Kafka topic spread over both, every event stored once; a host's worker killed
mid-run fails its run over to the other host."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.lib import faults
from analytics_assets.testing.fault_trials import audit, in_progress_runs
from analytics_assets.testing.hosts import HostsUnavailable
from analytics_assets.testing.scale_out import cluster, land, wait_stored

pytestmark = pytest.mark.e2e


def test_two_hosts_share_the_stream_and_a_lost_host_fails_over(analytics_home, tmp_path) -> None:
    fault_file = tmp_path / "fault"
    with ExitStack() as stack:
        try:
            made = stack.enter_context(
                cluster(tmp_path, host_count=2, **{faults.ENV: str(fault_file)})
            )
        except HostsUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        instance = dg.DagsterInstance.get()
        expected = land("first", files=20, events=200)
        kafka_ids = made.produce("kafka-first", 2_000)
        wait_stored({e for ids in expected.values() for e in ids} | kafka_ids, timeout=240)
        took = {made.host_of(run) for run in instance.get_runs() if run.status.name == "SUCCESS"}
        assert {h.name for h in made.hosts} <= took  # both hosts took runs

        faults.arm(fault_file, faults.BEFORE_COMMIT, stall=True)
        victim = land("victim", files=1, events=200)
        stalled = Path(f"{fault_file}.stalled")
        deadline = time.monotonic() + 120
        while not stalled.exists():
            assert time.monotonic() < deadline, "no run reached the commit"
            time.sleep(0.1)
        (first,) = [r for r in in_progress_runs(instance) if "victim" in str(r.tags)]
        lost = made.host_of(first)
        killed_at = made.kill_host(lost)
        stalled.unlink()
        later = land("later", files=19, events=200)
        more_kafka = made.produce("kafka-later", 2_000)
        every = {**expected, **victim, **later, "kafka": kafka_ids | more_kafka}
        wait_stored({e for ids in every.values() for e in ids}, timeout=300)
        result = audit(instance, every)
        failed = instance.get_run_record_by_id(first.run_id)
        (retry,) = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": first.run_id}))
        retry_host = made.host_of(retry)
    assert failed.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert failed.end_time - killed_at <= 30, "run monitoring took too long to notice"
    assert retry.status == dg.DagsterRunStatus.SUCCESS
    assert retry_host != lost
    assert result.ok, result
