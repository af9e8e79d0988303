"""``make demo-check`` reads a run and Dagster's retries of it as one outcome: failed then
retried successfully is healed (with the retry's id), failed with no retry left is a failure.
Runs made in a real instance, read through a real ``dagster-webserver``'s GraphQL API."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.instance import write_instance
from analytics_assets.testing.servers import free_port, stop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import demo_check  # noqa: E402 (scripts/ is not a package)


@dg.asset(config_schema={"fail": bool})
def flaky(context) -> None:
    if context.op_config["fail"]:
        raise RuntimeError("a transient failure")


def run(job: str, fail: bool, instance: dg.DagsterInstance, retry_of: str | None = None, n=1):
    """A run of ``job``; ``retry_of``: as the daemon's retry of that run (its tags)."""
    tags = {}
    if retry_of:
        tags = {
            "dagster/parent_run_id": retry_of,
            "dagster/root_run_id": retry_of,
            "dagster/retry_number": str(n),
        }
    definitions = dg.Definitions(assets=[flaky], jobs=[dg.define_asset_job(job, [flaky])])
    result = definitions.resolve_job_def(job).execute_in_process(
        instance=instance,
        run_config={"ops": {"flaky": {"config": {"fail": fail}}}},
        tags=tags,
        raise_on_error=False,
    )
    return result.run_id


@pytest.fixture
def webserver(analytics_home: Path):
    write_instance()
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "--empty-workspace",
            "--read-only",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("dagster-webserver exited") from None
                time.sleep(0.2)
        yield url
    finally:
        stop(proc)


def test_a_failed_run_healed_by_its_retry_is_one_healed_outcome(webserver) -> None:
    instance = dg.DagsterInstance.get()
    failed = run("retrain_models", True, instance)
    retry = run("retrain_models", False, instance, retry_of=failed)
    found = demo_check.runs(webserver)
    (outcome,) = demo_check.outcomes(found)
    assert outcome.status == "HEALED"
    assert outcome.first["runId"] == failed and outcome.last["runId"] == retry
    line = demo_check.check_runs(webserver)
    assert "none failed for good" in line and f"retry {retry[:8]}: success" in line

    # a run whose retries are used up failed for good; one with a retry left is retrying
    given_up = run("ingest", True, instance)
    run("ingest", True, instance, retry_of=given_up, n=2)
    run("features", True, instance)
    by_job = {o.first["jobName"]: o.status for o in demo_check.outcomes(demo_check.runs(webserver))}
    assert by_job == {"retrain_models": "HEALED", "ingest": "FAILURE", "features": "RETRYING"}
    with pytest.raises(AssertionError, match=f"ingest {given_up[:8]}"):
        demo_check.check_runs(webserver)
