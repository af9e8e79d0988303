"""Real servers on loopback ports, for the tests, the benchmarks and local runs: the Debian
packages' binaries (``redis-server``), never a mock."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from analytics_assets.lib.processes import stop

__all__ = [
    "KafkaBroker",
    "PostgresServer",
    "RedisServer",
    "free_port",
    "kafka_broker",
    "postgres_server",
    "redis_server",
    "stop",
]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RedisServer:
    """A ``redis-server`` without persistence on a free port of ``host`` (loopback unless a test
    of several hosts names its link's address); ``address`` is ``host:port``. :meth:`restart`
    starts it again on the same port, empty, as a broker restarted without persistence."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.workdir = workdir
        self.host = host
        self.port = free_port(host)
        self.address = f"{host}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", self.host, "--protected-mode", "no",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(host=self.host, port=self.port)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout_s=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def redis_server(workdir: Path, timeout_s: float = 10.0, host: str = "127.0.0.1") -> Iterator[str]:
    """A :class:`RedisServer` for the block; yields ``host:port``."""
    server = RedisServer(workdir, host).start(timeout_s)
    try:
        yield server.address
    finally:
        server.stop()


def _postgres_binaries() -> Path:
    """The folder of ``postgres`` and ``initdb``: on PATH, else Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return candidates[-1].parent


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free port of ``host`` (loopback unless a test of
    several hosts names its link's address), TCP only, trust authentication, with ``databases``
    created; ``url`` is ``postgresql://analytics@host:port`` (append ``/<database>``). As root it
    runs as the ``postgres`` user, since PostgreSQL refuses to run as root. :meth:`restart`
    stops it fast (open transactions abort, connections drop) and starts it again, data kept."""

    def __init__(self, databases: tuple[str, ...] = ("dagster",), host: str = "127.0.0.1") -> None:
        import os
        import tempfile

        self.binaries = _postgres_binaries()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.data_dir = Path(tempfile.mkdtemp(prefix="analytics-pg-"))
        self.databases = databases
        self.host = host
        self.port = free_port(host)
        self.url = f"postgresql://analytics@{host}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        import psycopg2

        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            if self.user:
                shutil.chown(self.data_dir, user=self.user)
            subprocess.run(
                [str(self.binaries / "initdb"), "-D", str(self.data_dir), "-U", "analytics",
                 "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True, stdout=subprocess.DEVNULL, user=self.user,
            )  # fmt: skip
            if self.host != "127.0.0.1":  # initdb trusts loopback only: the links' hosts too
                with (self.data_dir / "pg_hba.conf").open("a") as hba:
                    hba.write("host all all samenet trust\n")
        self.proc = subprocess.Popen(
            [str(self.binaries / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-h", self.host, "-k", "", "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=self.user,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = psycopg2.connect(f"{self.url}/postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"postgres did not start on port {self.port}") from None
                time.sleep(0.1)
        if fresh:
            conn.autocommit = True
            with conn.cursor() as cursor:
                for name in self.databases:
                    cursor.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        """A fast shutdown (SIGINT): what is in flight aborts. SIGTERM's smart shutdown waited
        for every client to leave, the full timeout where a pool kept its connections."""
        import signal

        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextmanager
def postgres_server(
    databases: tuple[str, ...] = ("dagster",), timeout_s: float = 30.0, host: str = "127.0.0.1"
) -> Iterator[str]:
    """A :class:`PostgresServer` for the block; yields its URL."""
    server = PostgresServer(databases, host)
    try:
        server.start(timeout_s)
        yield server.url
    finally:
        server.remove()


class KafkaBroker:
    """A Kafka-protocol broker on a free loopback port: the ``noida-db`` binary (PyPI, a dev
    dependency) with only its Kafka service, data under ``workdir`` (kept across a restart).
    ``bootstrap`` is ``host:port`` for a client's ``bootstrap.servers``."""

    def __init__(self, workdir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        import os
        from importlib.resources import files

        # the server binary itself, not the package's console script: that wrapper runs it as a
        # child, so stopping the wrapper returned while the server still held its data folder
        # ("already running" for the restart that followed)
        try:
            binary = str(files("noida_db").joinpath("noida-db"))
        except ModuleNotFoundError:
            binary = None
        if binary is None or not Path(binary).is_file():
            raise RuntimeError("noida-db is not installed (uv sync installs it, a dev dependency)")
        os.chmod(binary, 0o755)
        self.binary = binary
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.bootstrap = f"{host}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> KafkaBroker:
        """Start it and wait until it answers. A process that exits at once (after a restart,
        its port may still be held for a moment) is started again until ``timeout_s``."""
        from confluent_kafka.admin import AdminClient

        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        self._launch()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while True:
            try:
                admin.list_topics(timeout=1)
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"noida-db did not start on port {self.port}") from None
                if self.proc is None or self.proc.poll() is not None:
                    time.sleep(0.5)
                    self._launch()
                time.sleep(0.1)

    def _launch(self) -> None:
        with (self.workdir / "broker.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "start", "--only", "kafka", "--host", self.host,
                 "--kafka-port", str(self.port), "--data-dir", str(self.workdir / "data")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def kafka_broker(workdir: Path, host: str = "127.0.0.1") -> Iterator[KafkaBroker]:
    broker = KafkaBroker(workdir, host=host).start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def bento_service(
    service: str, log: Path, env: dict[str, str] | None = None, timeout_s: float = 180.0
) -> Iterator[str]:
    """``bentoml serve`` of ``bentos/<service>`` on a free loopback port, until ``/readyz``
    answers 200; yields its URL. Stopped (with its workers) on exit."""
    import os
    import sys

    import httpx

    from analytics_assets.settings import REPO_ROOT

    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "bentoml"), "serve", "--port", str(port)],
            cwd=REPO_ROOT / "bentos" / service,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{service} did not become ready; see {log}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)


def temporary_home(prefix: str) -> Path:
    """A fresh ANALYTICS_HOME with its DAGSTER_HOME (the repo's dagster.yaml, storage created
    once: :func:`analytics_assets.instance.prepare_instance`), both exported: what a benchmark
    that starts the daemon runs in."""
    import os
    import tempfile

    from analytics_assets.instance import prepare_instance, repo_config

    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["ANALYTICS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    prepare_instance(home / "dagster_home", repo_config())
    return home
