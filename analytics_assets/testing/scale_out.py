"""The platform on several hosts, on this machine: one daemon here, Celery workers on hosts made
of network namespaces (:mod:`analytics_assets.testing.hosts`), and what a real deployment shares
between them: Dagster's storage and the lakehouse's catalog on PostgreSQL, a Redis broker, a
Kafka-protocol broker, the data folder. Used by ``tests/celery/test_two_hosts.py`` (a short
version) and ``benchmarks/scale_out.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics_assets import settings
from analytics_assets.lib.atomic_files import write_atomic
from analytics_assets.lib.processes import stop
from analytics_assets.testing.fault_trials import Daemon, events_file
from analytics_assets.testing.hosts import Host, hosts

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    workdir: Path
    service: str
    hosts: list[Host]
    env: dict[str, str]
    broker: str
    kafka_bootstrap: str
    topic: str
    daemon: Daemon
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    concurrency: int = 2

    def start_worker(self, host: Host, timeout_s: float = 180.0) -> None:
        """``analytics worker`` on ``host`` (a session of its own: killed as a whole when the
        host is lost); returns once it answers over the broker."""
        log = (self.workdir / f"worker-{host.name}.log").open("a")
        self.workers[host.name] = subprocess.Popen(
            host.command(
                [sys.executable, "-m", "analytics_assets.celery_worker", "--name", host.name]
                + [f"--concurrency={self.concurrency}"]
            ),
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while host.name not in self.answering():
            if self.workers[host.name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker on {host.name} did not start: {log.name}")
            time.sleep(0.5)

    def answering(self) -> set[str]:
        """The hosts whose worker answers a ping."""
        replies = self.app().control.ping(timeout=1.0)
        return {node.split("-")[0] for reply in replies for node in reply}

    def kill_host(self, name: str) -> float:
        """SIGKILL to everything the host's worker runs (as when the host is lost); returns the
        moment (epoch seconds)."""
        with suppress(ProcessLookupError):
            os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()
        return time.time()

    def app(self):
        from analytics_assets.celery_worker import make_app

        if not hasattr(self, "_app"):
            self._app = make_app(self.broker)
        return self._app

    def host_of(self, run) -> str | None:
        """The host whose worker took ``run`` (from its Celery task's STARTED state)."""
        from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

        from analytics_assets.celery_worker import task_worker

        task = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        node = task_worker(self.app(), task) if task else None
        return node.split("-")[0] if node else None

    def produce(self, tag: str, count: int) -> set[str]:
        """``count`` page views with ids unique to ``tag``, spread over the topic's
        partitions; returns their ids."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.kafka_bootstrap, "enable.idempotence": True})
        now = datetime.now(UTC)
        ids = set()
        for n in range(count):
            event_id = f"{tag}-{n}"
            ids.add(event_id)
            value = {
                "event_id": event_id,
                "event_type": "page_view",
                "customer_id": f"k{n % 97}",
                "occurred_at": (now - timedelta(seconds=n % 600)).isoformat(),
            }
            producer.produce(self.topic, json.dumps(value).encode(), key=str(n).encode())
        producer.flush(30)
        return ids


def land(tag: str, files: int, events: int) -> dict[str, set[str]]:
    """``files`` landing files of ``events`` page views each; batch id -> event ids."""
    expected = {}
    for n in range(files):
        batch = f"{tag}-{n:03d}"
        data, ids = events_file(batch, events)
        write_atomic(settings.landing_dir(), f"{batch}.jsonl", data)
        expected[batch] = ids
    return expected


def stored(ids: set[str]) -> int:
    """How many of ``ids`` are in the events table."""
    from analytics_assets.testing.fault_trials import _query

    found = _query("SELECT event_id FROM events")
    return sum(1 for (event_id,) in found if event_id in ids)


def wait_stored(ids: set[str], timeout: float) -> float:
    started = time.monotonic()
    while stored(ids) < len(ids):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{len(ids) - stored(ids)} events never stored")
        time.sleep(0.5)
    return time.monotonic() - started


@contextmanager
def cluster(
    workdir: Path, host_count: int, partitions: int = 4, concurrency: int = 2, **env: str
) -> Iterator[Cluster]:
    """Hosts, servers on the service address, the daemon here and a worker on every host.
    ``env``: more settings for the daemon and the workers. Raises
    :class:`~analytics_assets.testing.hosts.HostsUnavailable` before anything starts where
    namespaces cannot be made."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from analytics_assets.instance import POSTGRES_STORAGE
    from analytics_assets.testing.servers import kafka_broker, postgres_server, redis_server

    saved = dict(os.environ)
    with ExitStack() as stack:
        service, found = stack.enter_context(hosts(host_count))
        postgres = stack.enter_context(postgres_server(("dagster", "lake"), host=service))
        redis = stack.enter_context(redis_server(workdir, host=service))
        kafka = stack.enter_context(kafka_broker(workdir / "kafka", host=service))
        topic = f"events-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result(timeout=30)
        settings_env = {
            "DAGSTER_POSTGRES_URL": f"{postgres}/dagster".replace(
                "postgresql://", "postgresql+psycopg2://", 1
            ),
            "ANALYTICS_LAKEHOUSE_CATALOG": f"postgres:{postgres}/lake",
            "ANALYTICS_CELERY_BROKER": f"redis://{redis}/0",
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "KAFKA_TOPICS": topic,
            "KAFKA_MAX_WAIT_S": "0",
            "ANALYTICS_SENSOR_INTERVAL_S": "1",
            **env,
        }
        os.environ.update(settings_env)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        daemon = Daemon(
            workdir / "daemon.log", env=settings_env, overrides={"storage": POSTGRES_STORAGE}
        )
        made = Cluster(
            workdir=workdir,
            service=service,
            hosts=found,
            env={**os.environ},
            broker=settings_env["ANALYTICS_CELERY_BROKER"],
            kafka_bootstrap=kafka.bootstrap,
            topic=topic,
            daemon=daemon,
            concurrency=concurrency,
        )
        try:
            daemon.start()
            for host in found:
                made.start_worker(host)
            yield made
        finally:
            for proc in made.workers.values():
                with suppress(ProcessLookupError):
                    stop(proc, timeout_s=20)
            daemon.stop()
