"""A home with online features and champions, and the real scoring service started from
``bentos/customer_scoring`` (``bentoml serve``) in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from analytics_assets import settings
from analytics_assets.testing import serving
from analytics_assets.testing.servers import free_port, stop

SERVICE_DIR = settings.REPO_ROOT / "bentos" / "customer_scoring"
CUSTOMERS = 3000


@contextmanager
def home_env(home: Path, **extra: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANALYTICS_HOME", str(home))
        for name in ("BENTOML_HOME", "MLFLOW_TRACKING_URI", "ANALYTICS_PREDICTIONS_DIR"):
            patch.delenv(name, raising=False)
        for name, value in extra.items():
            patch.setenv(name, value)
        yield


def prepared_home(tmp_path_factory, name: str, customers: int) -> Path:
    """A fresh home with ``customers`` online and version 1 of both models as champions."""
    home = tmp_path_factory.mktemp(name) / "analytics"
    with home_env(home):
        serving.prepare(customers, home / "work")
    return home


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory) -> Path:
    return prepared_home(tmp_path_factory, "serving", CUSTOMERS)


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen
    log: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30, **kwargs})

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def run_server(
    home: Path, log: Path, service_dir: Path = SERVICE_DIR, **env: str
) -> Iterator[Server]:
    """``bentoml serve`` in ``service_dir`` (its bentofile), until ``/readyz`` says 200."""
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in {"BENTOML_HOME", "SCORING_API_KEY"}},
        "ANALYTICS_HOME": str(home),
        "SCORING_RELOAD_INTERVAL_S": "1",
        "SCORING_LOG_FLUSH_S": "1",
        "SCORING_WORKERS": "1",  # one process per test server; tests/serving/test_load.py: 2
        **env,
    }
    bentoml = Path(sys.executable).parent / "bentoml"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(bentoml), "serve", "--port", str(port)],
            cwd=service_dir,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", home, process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the server exited:\n{server.output()}"
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready in 120 s:\n{server.output()}"
            time.sleep(0.3)
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="module")
def server(serving_home: Path, tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with run_server(serving_home, log, SCORING_CHALLENGER_SHARE="0.3") as running:
        yield running


def error_of(answer: httpx.Response, status: int) -> dict:
    """The body of an error answer, after checking it has the services' one shape
    (``{"error": {"code", "message", "detail"}}``, bentos/errors.py) and ``status``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"].isidentifier(), error
    assert isinstance(error["message"], str) and error["message"], error
    return error
