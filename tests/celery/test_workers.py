"""Runs in Celery workers, with real Redis and the real daemon: isolation and recycling in one
worker, a killed worker's run failed over to another, a broker that cannot be reached, and the
embedded worker's lifetime with the daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import dagster as dg
import pytest
import redis
from dagster._core.launcher import LaunchRunContext
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from analytics_assets import settings
from analytics_assets.celery_worker import make_app, task_worker
from analytics_assets.instance import prepare_instance, repo_config
from analytics_assets.lib import faults, local_redis
from analytics_assets.lib.atomic_files import write_atomic
from analytics_assets.lib.processes import stop
from analytics_assets.testing.fault_trials import (
    Daemon,
    audit,
    events_file,
    wait_until_committed,
)
from analytics_assets.testing.servers import PostgresServer, RedisServer, free_port, redis_server
from tests.celery.probe_jobs import probe_job

pytestmark = pytest.mark.e2e
BATCHES = "analytics/batches"  # the batch ids a landing run ingests
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def worker(broker: str, log: Path, name: str, *options: str) -> Iterator[subprocess.Popen]:
    """``analytics worker`` in a session of its own (killed as a whole, as a host is lost);
    yields once it answers a ping."""
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "analytics_assets.celery_worker", "--broker", broker]
            + ["--name", name, *options],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = make_app(broker)
    try:
        deadline = time.monotonic() + 120
        while not any(name in node for reply in app.control.ping(timeout=0.5) for node in reply):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker never answered"
        yield proc
    finally:
        stop(proc, timeout_s=30)


def finished(instance, run_id: str, timeout: float = 90.0) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        if run.is_finished:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status}"
        time.sleep(0.2)


@contextmanager
def celery_daemon(
    home: Path, monkeypatch, broker: str, fault_file: Path, overrides: dict | None = None, **env
) -> Iterator[Daemon]:
    """The real daemon sending runs to ``broker`` (no embedded worker), with the fault file
    armed by the test; the test's process sees the same settings."""
    env = {
        "ANALYTICS_CELERY_BROKER": broker,
        faults.ENV: str(fault_file),
        "ANALYTICS_SENSOR_INTERVAL_S": "1",
        **env,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    daemon = Daemon(home / "daemon.log", env=env, overrides=overrides)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def held_at(fault_file: Path, point: str, name: str, events: int) -> tuple[Path, set[str]]:
    """Arm ``point`` to stall, land ``name``.jsonl and wait until its run is held there;
    returns the file whose removal releases it, and the file's event ids."""
    faults.arm(fault_file, point, stall=True)
    data, ids = events_file(name, events)
    write_atomic(settings.landing_dir(), f"{name}.jsonl", data)
    stalled = Path(f"{fault_file}.stalled")
    deadline = time.monotonic() + 120
    while not stalled.exists():
        assert time.monotonic() < deadline, "the run never reached the commit"
        time.sleep(0.1)
    return stalled, ids


def land_more(expected: dict[str, set[str]], count: int = 3) -> None:
    for n in range(count):
        data, expected[f"after-{n}"] = events_file(f"after-{n}", 100)
        write_atomic(settings.landing_dir(), f"after-{n}.jsonl", data)


def test_runs_in_one_worker_process_share_nothing_and_it_is_recycled(
    analytics_home, tmp_path, monkeypatch
) -> None:
    with redis_server(tmp_path) as hostport:
        broker = f"redis://{hostport}/0"
        monkeypatch.setenv("ANALYTICS_CELERY_BROKER", broker)
        prepare_instance(settings.dagster_home(), repo_config())
        out = tmp_path / "seen.jsonl"
        recon = dg.reconstructable(probe_job)
        with worker(broker, tmp_path / "worker.log", "probe", "--concurrency=1", "--max-runs=3"):
            instance = dg.DagsterInstance.get()
            for _ in range(4):
                run = instance.create_run_for_job(
                    job_def=probe_job,
                    run_config={"ops": {"probe": {"config": {"out": str(out)}}}},
                    job_code_origin=recon.get_python_origin(),
                )
                instance.launch_run(run.run_id, workspace=None)
                assert finished(instance, run.run_id).status == dg.DagsterRunStatus.SUCCESS
            # the launcher holds no result subscription per launched run (Celery's default)
            assert redis.Redis.from_url(broker).pubsub_channels() == []
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(seen) == 4
    assert len({row["pid"] for row in seen[:3]}) == 1  # one process took three runs
    assert seen[3]["pid"] != seen[0]["pid"]  # then a fresh fork took over
    # each run changed the environment, the working directory and sys.path: none saw it
    assert not any(row["leaked_env"] or row["leaked_path"] for row in seen)
    assert {row["cwd"] for row in seen} == {str(REPO)}


def test_a_run_whose_worker_is_killed_is_retried_on_another(
    analytics_home, tmp_path, monkeypatch
) -> None:
    fault_file = tmp_path / "fault"
    with (
        redis_server(tmp_path) as hostport,
        celery_daemon(analytics_home, monkeypatch, f"redis://{hostport}/0", fault_file),
    ):
        broker = f"redis://{hostport}/0"
        with (
            worker(broker, tmp_path / "a.log", "a", "--concurrency=1") as a,
            worker(broker, tmp_path / "b.log", "b", "--concurrency=1") as b,
        ):
            instance = dg.DagsterInstance.get()
            stalled, ids = held_at(fault_file, faults.BEFORE_COMMIT, "failover", 300)
            (first,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            node = task_worker(make_app(broker), first.tags[DAGSTER_CELERY_TASK_ID_TAG])
            victim, survivor = (a, "b-") if node.startswith("a-") else (b, "a-")
            os.killpg(victim.pid, signal.SIGKILL)  # the worker and its run, as a host lost
            killed_at = time.time()
            stalled.unlink()
            wait_until_committed(instance, {"failover"}, timeout=120)
            result = audit(instance, {"failover": ids})
            failed = instance.get_run_by_id(first.run_id)
            retries = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": first.run_id}))
            retry_task = retries[0].tags[DAGSTER_CELERY_TASK_ID_TAG]
            retry_node = task_worker(make_app(broker), retry_task)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    record = instance.get_run_record_by_id(first.run_id)
    assert record.end_time - killed_at <= 30  # run monitoring noticed within the goal
    assert [r.status for r in retries] == [dg.DagsterRunStatus.SUCCESS]
    assert retry_node.startswith(survivor)
    assert result.ok, result


def test_a_broker_that_cannot_be_reached_is_named(analytics_home, monkeypatch) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "analytics_assets.celery_worker", "--broker", nowhere],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "ANALYTICS_CELERY_BROKER" in proc.stderr
    assert nowhere.removesuffix("/0") in proc.stderr
    assert time.monotonic() - started < 60

    monkeypatch.setenv("ANALYTICS_CELERY_BROKER", nowhere)
    prepare_instance(settings.dagster_home(), repo_config())
    instance = dg.DagsterInstance.get()
    recon = dg.reconstructable(probe_job)
    run = instance.create_run_for_job(
        job_def=probe_job,
        run_config={"ops": {"probe": {"config": {"out": "/dev/null"}}}},
        job_code_origin=recon.get_python_origin(),
    )
    with pytest.raises(RuntimeError, match="ANALYTICS_CELERY_BROKER"):
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))


def test_the_embedded_worker_comes_and_goes_with_the_daemon(analytics_home, monkeypatch) -> None:
    monkeypatch.delenv("ANALYTICS_CELERY_BROKER", raising=False)
    monkeypatch.setenv("ANALYTICS_SENSOR_INTERVAL_S", "1")
    state = settings.dagster_home() / "celery"
    socket = local_redis.socket_path(str(settings.dagster_home().resolve()))

    def worker_pid(timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while True:
            with suppress(FileNotFoundError, ValueError):
                pid = json.loads((state / "worker.json").read_text())["pid"]
                if local_redis.alive(pid):
                    return pid
            assert time.monotonic() < deadline, "no embedded worker"
            time.sleep(0.2)

    daemon = Daemon(analytics_home / "daemon.log")
    daemon.start()
    try:
        instance = dg.DagsterInstance.get()
        write_atomic(settings.landing_dir(), "one.jsonl", events_file("one", 10)[0])
        wait_until_committed(instance, {"one"}, timeout=120)
        first = worker_pid()  # started by the daemon's first launch
        assert local_redis.is_up(socket)
        daemon.kill()  # the daemon alone (the OOM killer): the next one adopts its worker
        daemon.start()
        write_atomic(settings.landing_dir(), "two.jsonl", events_file("two", 10)[0])
        wait_until_committed(instance, {"two"}, timeout=120)
        assert worker_pid() == first
        daemon.proc.send_signal(signal.SIGTERM)  # a plain stop: worker and broker go with it
        daemon.proc.wait(60)
        deadline = time.monotonic() + 60
        while local_redis.alive(first) or socket.exists():
            assert time.monotonic() < deadline, "the embedded worker or broker outlived the daemon"
            time.sleep(0.5)
    finally:
        daemon.stop()


def test_an_owner_is_gone_only_after_its_grace(tmp_path) -> None:
    file = tmp_path / "owner"
    local_redis.Owner.claim(file)
    owner = local_redis.Owner(file, grace_s=0.5)
    assert not owner.gone()
    dead = subprocess.Popen(["true"])
    dead.wait()
    file.write_text(str(dead.pid))
    assert not owner.gone()  # not yet: a restarted daemon may claim it meanwhile
    time.sleep(0.6)
    assert owner.gone()
    local_redis.Owner.claim(file)
    assert not owner.gone()


def test_the_stream_flows_on_after_the_broker_restarts(
    analytics_home, tmp_path, monkeypatch
) -> None:
    """Redis restarted (no persistence: queued tasks and task states gone) while a run is in
    its step: the run finishes as it was, and the files landed after it are committed within a
    minute; every event once."""
    fault_file = tmp_path / "fault"
    server = RedisServer(tmp_path).start()
    broker = f"redis://{server.address}/0"
    expected = {}
    try:
        with (
            celery_daemon(analytics_home, monkeypatch, broker, fault_file),
            worker(broker, tmp_path / "worker.log", "w", "--concurrency=2"),
        ):
            instance = dg.DagsterInstance.get()
            stalled, expected["held"] = held_at(fault_file, faults.BEFORE_COMMIT, "held", 200)
            server.restart()
            restarted = time.monotonic()
            time.sleep(12)  # run monitoring checks the held run at least twice meanwhile
            stalled.unlink()
            land_more(expected)
            wait_until_committed(instance, set(expected), timeout=120)
            flowed_in = time.monotonic() - restarted
            result = audit(instance, expected)
            held = [r for r in instance.get_runs() if "held" in r.tags.get(BATCHES, "")]
    finally:
        server.stop()
    assert [r.status for r in held] == [dg.DagsterRunStatus.SUCCESS]  # not failed, not retried
    assert flowed_in <= 60
    assert result.ok, result


def test_the_stream_flows_on_after_postgresql_restarts_in_a_commit(
    analytics_home, tmp_path, monkeypatch
) -> None:
    """Dagster's storage and the lakehouse catalog on PostgreSQL, restarted (fast shutdown)
    while a run is inside its commit: that run fails and is retried, the worker's next runs
    (in the same processes) commit, later files are committed within a minute; every event
    once."""
    from analytics_assets.instance import POSTGRES_STORAGE

    fault_file = tmp_path / "fault"
    postgres = PostgresServer(("dagster", "lake")).start()
    expected = {}
    try:
        with redis_server(tmp_path) as hostport:
            broker = f"redis://{hostport}/0"
            with (
                celery_daemon(
                    analytics_home,
                    monkeypatch,
                    broker,
                    fault_file,
                    overrides={"storage": POSTGRES_STORAGE},
                    DAGSTER_POSTGRES_URL=f"{postgres.url}/dagster".replace(
                        "postgresql://", "postgresql+psycopg2://", 1
                    ),
                    ANALYTICS_LAKEHOUSE_CATALOG=f"postgres:{postgres.url}/lake",
                ),
                worker(broker, tmp_path / "worker.log", "w", "--concurrency=1"),
            ):
                instance = dg.DagsterInstance.get()
                data, expected["before"] = events_file("before", 100)
                write_atomic(settings.landing_dir(), "before.jsonl", data)
                wait_until_committed(instance, {"before"}, timeout=120)
                stalled, expected["held"] = held_at(fault_file, faults.IN_COMMIT, "held", 200)
                postgres.restart()
                restarted = time.monotonic()
                stalled.unlink()
                land_more(expected)
                wait_until_committed(instance, set(expected), timeout=180)
                flowed_in = time.monotonic() - restarted
                result = audit(instance, expected)
                held = sorted(
                    (r for r in instance.get_runs() if "held" in r.tags.get(BATCHES, "")),
                    key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp,
                )
    finally:
        postgres.remove()
    # the commit the restart broke failed its run; the retry committed the batch
    assert [r.status.name for r in held] == ["FAILURE", "SUCCESS"]
    assert flowed_in <= 60
    assert result.ok, result


def test_a_cancelled_run_ends_cancelled_and_is_not_retried(
    analytics_home, tmp_path, monkeypatch
) -> None:
    """Terminate (what the UI's button calls) on a run in its step: Dagster's interrupt reaches
    the worker's process, the run ends CANCELED, nothing retries it, the worker goes on."""
    fault_file = tmp_path / "fault"
    with redis_server(tmp_path) as hostport:
        broker = f"redis://{hostport}/0"
        with (
            celery_daemon(analytics_home, monkeypatch, broker, fault_file),
            worker(broker, tmp_path / "worker.log", "w", "--concurrency=1"),
        ):
            instance = dg.DagsterInstance.get()
            stalled, _ = held_at(fault_file, faults.BEFORE_COMMIT, "cancel", 50)
            (run,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            asked = time.monotonic()
            assert instance.run_launcher.terminate(run.run_id)
            cancelled = finished(instance, run.run_id, timeout=60)
            took = time.monotonic() - asked
            stalled.unlink(missing_ok=True)
            write_atomic(settings.landing_dir(), "next.jsonl", events_file("next", 50)[0])
            wait_until_committed(instance, {"next"}, timeout=120)
            retries = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id}))
    assert cancelled.status == dg.DagsterRunStatus.CANCELED
    assert took < 20  # not run monitoring's 60 s cancel timeout
    assert retries == []
