"""The live feed and the live dashboard while the real daemon ingests: ``bentoml serve`` of the
read API, SSE subscribers over HTTP, and the dashboard in headless Chromium."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from datetime import datetime

import httpx
import pytest

from analytics_assets import settings
from analytics_assets.lib import lakehouse
from analytics_assets.lib.atomic_files import write_atomic
from tests.conftest import event, jsonl, purchase
from tests.e2e.test_daemon import wait_for_batches
from tests.lake.conftest import READER_DIR
from tests.serving.conftest import run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

KEY = "live-test-key"
MAX_SUBSCRIBERS = 6
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def batch(k: int, events: int = 30) -> bytes:
    records = [
        event(k * 1000 + i, occurred_at=f"2024-03-0{1 + k % 3}T1{i % 10}:00:00Z")
        for i in range(events)
    ]
    records.append(
        purchase(k * 1000 + 999, 10.0 * (k + 1), occurred_at=f"2024-03-0{1 + k % 3}T20:00:00Z")
    )
    return jsonl(records)


def parse(block: str) -> tuple[int | None, dict | None]:
    found_id, data = None, None
    for line in block.splitlines():
        if line.startswith("id: "):
            found_id = int(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:])
    return found_id, data


class Subscriber(threading.Thread):
    """Reads ``/live`` and keeps each event with the moment it arrived."""

    def __init__(self, url: str, headers: dict | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, {"X-API-Key": KEY, **(headers or {})}
        self.events: list[tuple[int, dict, float]] = []
        self.heartbeats = 0
        self.stop = threading.Event()
        self.status: int | None = None

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(30, read=None)) as client,
            client.stream("GET", f"{self.url}/live", headers=self.headers) as answer,
        ):
            self.status = answer.status_code
            buffer = ""
            for text in answer.iter_text():
                buffer += text
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    if block.startswith(": heartbeat"):
                        self.heartbeats += 1
                    found_id, data = parse(block)
                    if data is not None:
                        self.events.append((found_id, data, time.time()))
                if self.stop.is_set():
                    return


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def ledger() -> list[tuple]:
    with lakehouse.connect(read_only=True) as conn:
        return conn.execute(
            "SELECT batch_id, clean, committed_at FROM ingest_ledger ORDER BY committed_at"
        ).fetchall()


def test_each_commit_reaches_subscribers_and_the_dashboard(daemon, analytics_home, tmp_path):
    landing = settings.landing_dir()
    write_atomic(landing, "live00.jsonl", batch(0))
    wait_for_batches(daemon, {"live00"}, timeout=200)
    with run_server(
        analytics_home,
        tmp_path / "reader.log",
        service_dir=READER_DIR,
        SCORING_API_KEY=KEY,
        READ_API_LIVE_HEARTBEAT_S="1",
        READ_API_LIVE_MAX_SUBSCRIBERS=str(MAX_SUBSCRIBERS),
    ) as server:
        watcher = Subscriber(server.url)
        watcher.start()
        wait_until(lambda: watcher.events, 30, "no first event on connecting")
        for k in (1, 2, 3):
            write_atomic(landing, f"live{k:02d}.jsonl", batch(k))
            time.sleep(2.5)
        wait_for_batches(daemon, {f"live{k:02d}" for k in range(4)}, timeout=300)
        committed = ledger()
        wait_until(
            lambda: any(
                (d.get("last_batch") or {}).get("batch_id") == committed[-1][0]
                for _, d, _ in watcher.events
            ),
            10,
            "the last commit never reached the subscriber",
        )

        # each batch's commit is an event with the counts as of that commit, within seconds
        total = 0
        for batch_id, clean, committed_at in committed:
            total += clean
            first = next(
                (
                    e
                    for e in watcher.events
                    if (e[1].get("last_batch") or {}).get("batch_id") == batch_id
                ),
                None,
            )
            assert first is not None, f"no event for {batch_id}: {[e[1] for e in watcher.events]}"
            _, data, arrived = first
            assert data["events_last_hour"] == total
            assert data["last_batch"]["events"] == clean
            assert data["last_batch"]["source"] == "files"
            if batch_id != committed[0][0]:  # the first was committed before the server started
                lag = arrived - committed_at.timestamp()
                assert 0 <= lag < 5, f"{batch_id}: {lag:.2f} s from commit to subscriber"
        ids = [i for i, _, _ in watcher.events]
        assert ids == sorted(set(ids)), "one event per snapshot, in order"
        assert watcher.events[-1][1]["day"] == "2024-03-03"
        assert watcher.events[-1][1]["orders"] >= 1
        assert watcher.heartbeats >= 1

        # Last-Event-ID resumes: the events after it, none before
        resumed = Subscriber(server.url, {"Last-Event-ID": str(ids[0])})
        resumed.start()
        wait_until(lambda: len(resumed.events) >= len(ids) - 1, 10, "the resume sent too little")
        assert [i for i, _, _ in resumed.events][: len(ids) - 1] == ids[1:]
        resumed.stop.set()

        # the dashboard: its numbers move when a batch lands
        if CHROMIUM is None:
            pytest.fail("chromium is not installed (apt-get install chromium)")
        from PIL import Image, ImageStat
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{server.url}/dashboard#key={KEY}")
            page.wait_for_function(
                "document.getElementById('status').textContent === 'live' && "
                "document.getElementById('snapshot').textContent !== '–'",
                timeout=20_000,
            )
            before = page.inner_text("#events_last_hour")
            write_atomic(landing, "live04.jsonl", batch(4))
            page.wait_for_function(
                "document.getElementById('last_batch').textContent.includes('live04')",
                timeout=120_000,
            )
            shown = time.time()
            committed_at = next(c for b, _, c in ledger() if b.startswith("live04"))
            assert shown - committed_at.timestamp() < 5
            assert page.inner_text("#events_last_hour") != before
            shot = page.screenshot(full_page=True)
            (tmp_path / "dashboard.png").write_bytes(shot)
            assert ImageStat.Stat(Image.open(io.BytesIO(shot)).convert("L")).stddev[0] > 10
            browser.close()

        # more subscribers than allowed: 503 with Retry-After, the others unaffected
        with httpx.Client(timeout=10, headers={"X-API-Key": KEY}) as client:
            extra, refused = [], None
            for _ in range(MAX_SUBSCRIBERS):
                stream = client.stream("GET", f"{server.url}/live")
                answer = stream.__enter__()
                if answer.status_code == 503:
                    refused = answer
                    answer.read()
                    stream.__exit__(None, None, None)
                    break
                extra.append(stream)
            assert refused is not None and refused.headers["retry-after"] == "5"
            assert refused.json()["error"]["code"] == "too_many_subscribers"
            for stream in extra:
                stream.__exit__(None, None, None)
        seen = len(watcher.events)
        write_atomic(landing, "live05.jsonl", batch(5))
        wait_until(lambda: len(watcher.events) > seen, 120, "the first subscriber stopped hearing")
        watcher.stop.set()
        assert datetime.fromisoformat(watcher.events[-1][1]["sent_at"])
