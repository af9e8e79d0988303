"""The scoring service under load and with several workers: a promotion while 300 requests/s
flow (open loop) costs no error and moves the served version once; with two workers the
server is ready only when both have loaded (one is held stopped while it loads)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import psutil
import pytest

from analytics_assets.lib.names import CHURN_MODEL
from analytics_assets.testing import serving
from analytics_assets.testing.feature_snapshot import customer_id
from analytics_assets.testing.servers import free_port, stop
from bentos.customer_scoring.readiness import WORKER_MODULE
from tests.serving.conftest import SERVICE_DIR, home_env, prepared_home, run_server

CUSTOMERS = 2000
IDS = [customer_id(i) for i in range(CUSTOMERS)]


@pytest.fixture(scope="module")
def load_home(tmp_path_factory) -> Path:
    """Its own home: the promotions here would disturb the other modules' servers."""
    return prepared_home(tmp_path_factory, "load", CUSTOMERS)


async def open_loop(url: str, rate: float, seconds: float, during) -> list[tuple]:
    """``rate`` one-customer requests per second, each started on schedule whatever the
    others do; ``during()`` is called (in a thread) once a third of the time has passed.
    Returns (started, answered, status, version) per request."""
    answers: list[tuple] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:

        async def one(i: int) -> None:
            started = time.monotonic()
            try:
                async with http.post(
                    url + "/churn", json={"customer_ids": [IDS[i % CUSTOMERS]]}
                ) as r:
                    body = await r.json() if r.status == 200 else await r.text()
                    version = body["predictions"][0]["model_version"] if r.status == 200 else body
                    answers.append((started, time.monotonic(), r.status, version))
            except aiohttp.ClientError as error:
                answers.append((started, time.monotonic(), 0, repr(error)))

        begin = time.monotonic()
        tasks, promoted = [], None
        for i in range(int(rate * seconds)):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
            if promoted is None and i >= rate * seconds / 3:
                promoted = asyncio.create_task(asyncio.to_thread(during))
        await asyncio.gather(*tasks)
        await promoted
    return answers


def test_a_promotion_under_300_requests_per_second(load_home: Path, tmp_path) -> None:
    with home_env(load_home):
        folder = serving.churn_folder(load_home / "work" / "churn_v2", max_iter=60)
    # two workers (the default): they switch to the new version at one instant
    with run_server(load_home, tmp_path / "server.log", SCORING_WORKERS="2") as server:
        with server.client() as http:
            before = http.post("/reload", json={}).json()["models"]
        champion = next(m for m in before if m["model"] == CHURN_MODEL and m["role"] == "champion")
        assert champion["model_version"] == "1" and champion["scorer"].startswith("treelite ")

        def promote() -> None:
            with home_env(load_home):
                serving.promote(folder, CHURN_MODEL, "2", "churn_v1")

        answers = asyncio.run(open_loop(server.url, 300, 16, promote))
    failed = [a for a in answers if a[2] != 200]
    assert not failed, failed[:5]
    versions = [a[3] for a in sorted(answers)]
    assert versions[0] == "1" and versions[-1] == "2"
    first_new = min(answered for _, answered, _, version in answers if version == "2")
    # once any answer came from version 2, no request started later is answered by 1
    assert all(version == "2" for started, _, _, version in answers if started > first_new)
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"}


def test_two_workers_are_ready_only_when_both_have_loaded(load_home: Path, tmp_path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **{k: v for k, v in os.environ.items() if k not in {"BENTOML_HOME", "SCORING_API_KEY"}},
        "ANALYTICS_HOME": str(load_home),
        "SCORING_WORKERS": "2",
    }
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "bentoml"), "serve", "--port", str(port)],
            cwd=SERVICE_DIR,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    held = None
    try:
        deadline = time.monotonic() + 60
        while held is None:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            workers = [
                p
                for p in psutil.Process(process.pid).children(recursive=True)
                if WORKER_MODULE in " ".join(p.cmdline())
            ]
            if len(workers) == 2:
                held = max(workers, key=lambda p: p.pid)
                held.send_signal(signal.SIGSTOP)  # this worker stops while it loads
            time.sleep(0.05)
        # the other worker loads and answers, but the server is not ready
        deadline = time.monotonic() + 90
        while log.read_text().count("] worker ") < 1:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        for _ in range(10):
            answer = httpx.get(url + "/readyz", timeout=5)
            assert answer.status_code != 200, "ready while a worker is still loading"
            time.sleep(0.3)
        assert httpx.get(url + "/livez", timeout=5).status_code == 200
        held.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 90
        while httpx.get(url + "/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        assert log.read_text().count("] worker ") == 2  # both logged "worker <pid> loaded"
        with httpx.Client(base_url=url, timeout=10) as http:
            for i in range(40):
                assert http.post("/churn", json={"customer_ids": [IDS[i]]}).status_code == 200
    finally:
        if held is not None and held.is_running():
            held.send_signal(signal.SIGCONT)
        stop(process)
