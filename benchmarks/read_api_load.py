"""The read API under load: 100 analysts at once, 1,000 live subscribers, exports of every
event, and clients that hang up. Every figure is measured in this run on this machine.

A home is built fast (``testing/large_home``: 10M events over 90 days, one commit per day;
sessions, customer_daily, the KPI tables and the customer-base audit by the real assets). The
read API runs as ``bentoml serve`` (``READ_API_WORKERS``, default 1) on loopback; the load
generator is this process (aiohttp, one event loop); a writer process commits real batches
(``ingest_file``, 2,000 events) while the load runs.

- ``p95_ms_100_users`` / ``sql_p95_s_100_users``: 100 users, each with the live feed open,
  each looping over a realistic mix with an exponential think time (mean 5 s: reading a chart,
  writing a query), with the server's CPU milliseconds per request: KPI windows
  (daily, 7-90 days; hourly, 1-3 days), audit lenses, customer profiles, the table list, a
  one-day export (CSV), and sandboxed SQL over events, sessions and customer_daily (15 %).
  p95 of the non-SQL requests, and of the SQL ones. The baseline in the same run: the same mix
  with one user (``p95_ms_1_user``, ``sql_p95_s_1_user``). ``errors``: any answer but 200.
  The same 100 users thinking 1 s (about 80 requests a second: a stress test) as ``stress_*``.
- ``feed_lag_p95_s``: 1,000 subscribers of ``/live``; the writer commits a batch every 2 s;
  lag = the moment a subscriber reads the event naming the batch - the batch's
  ``committed_at`` in the ledger (stamped inside the commit, so a little over the real lag).
- ``export_mib_per_s``: ``GET /export/events`` of all 90 days (10M rows) as Parquet and CSV,
  read and dropped by the client; with the server's resident memory before and at its peak.
- ``rss_growth_1000_disconnects``: the server's resident memory (all its processes) after 200
  warm-up hang-ups (which fill DuckDB's caches, bounded by its 1 GB), then after 1,000 more
  (500 exports after their first chunk, 500 live subscribers after their first event):
  (after - before) / before.

Usage: ``uv run python benchmarks/read_api_load.py [--quick] [--workers N] [--home DIR]``
(quick: 1M events over 30 days, 20 s of load, 200 subscribers, 200 hang-ups).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READER = REPO / "bentos" / "analytics_reader"
CUSTOMERS = 200_000
KEY = "bench-read-key"
THINK_S = 5.0
"""A user's mean think time between two requests (exponential): an analyst reads a chart or
writes a query between two requests. The stress run (``STRESS_THINK_S``) is reported beside."""
STRESS_THINK_S = 1.0
LENSES = [
    "summary",
    "purchase_distribution",
    "revenue_deciles",
    "period_comparison",
    "cohort_evolution",
]


def build(events: int, days: int) -> dict:
    from analytics_assets import settings
    from analytics_assets.testing import large_home

    settings.ensure_dirs()
    spent = {}
    started = time.perf_counter()
    large_home.insert_events(events, days, CUSTOMERS)
    spent["events"] = time.perf_counter() - started
    started = time.perf_counter()
    large_home.materialize_analytics(large_home.FIRST_DAY, large_home.last_day(days))
    spent["day_tables_and_audit"] = time.perf_counter() - started
    return {k: round(v, 1) for k, v in spent.items()}


# ---- the server ---------------------------------------------------------------------------


class Server:
    def __init__(self, home: Path, workers: int, log: Path) -> None:
        from analytics_assets.testing.servers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "ANALYTICS_HOME": str(home),
            "SCORING_API_KEY": KEY,
            "READ_API_WORKERS": str(workers),
            "BENTOML_HOME": str(home / "bentoml"),
        }
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "bentoml"), "serve", "--port", str(self.port)],
            cwd=READER,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import urllib.request

        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the read API exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the read API was not ready in 180 s:\n{log.read_text()}")
            time.sleep(0.5)

    def rss_mib(self) -> float:
        import psutil

        root = psutil.Process(self.process.pid)
        total = 0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total / 2**20

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server's processes (all of them)."""
        import psutil

        root = psutil.Process(self.process.pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        from analytics_assets.lib.processes import stop

        stop(self.process, timeout_s=20)


# ---- the writer (its own process) ---------------------------------------------------------


def writer_phase(commits: int, every_s: float, day: date, prefix: str) -> None:
    """``commits`` batches of 2,000 events on ``day``, one every ``every_s``, through the real
    batch commit; prints each batch id as it is committed."""
    from analytics_assets.defs.ingest.batch import ingest_file
    from analytics_assets.lib import lakehouse

    folder = Path(tempfile.mkdtemp(prefix="read-load-writer-"))
    with lakehouse.connect() as conn:
        for k in range(commits):
            started = time.monotonic()
            lines = []
            for i in range(2_000):
                moment = datetime(day.year, day.month, day.day, 12) + timedelta(seconds=i * 7 + k)
                lines.append(
                    json.dumps(
                        {
                            "event_id": f"{prefix}-{k}-{i}",
                            "event_type": "purchase" if i % 10 == 0 else "page_view",
                            "customer_id": f"cust-{(k * 2000 + i) % CUSTOMERS:07d}",
                            "session_id": f"{prefix}-{k}-{i // 5}",
                            "occurred_at": moment.isoformat() + "Z",
                            "amount": 12.5 if i % 10 == 0 else None,
                            "quantity": 1 if i % 10 == 0 else None,
                            "currency": "USD" if i % 10 == 0 else None,
                            "product_id": "p1" if i % 10 == 0 else None,
                            "device": "mobile",
                        }
                    )
                )
            path = folder / f"{prefix}-{k:03d}.jsonl"
            path.write_text("\n".join(lines) + "\n")
            ingest_file(conn, path, f"{prefix}-{k:03d}")
            print(f"{prefix}-{k:03d}", flush=True)
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))


def start_writer(commits: int, every_s: float, day: date, prefix: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--phase", "writer", "--commits", str(commits),
         "--every", str(every_s), "--day", day.isoformat(), "--prefix", prefix],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def committed_at(prefix: str) -> dict[str, float]:
    from analytics_assets.lib import lakehouse

    with lakehouse.connect(read_only=True) as conn:
        rows = conn.execute(
            "SELECT batch_id, committed_at FROM ingest_ledger WHERE batch_id LIKE ?",
            [f"{prefix}-%"],
        ).fetchall()
    return {batch: moment.timestamp() for batch, moment in rows}


# ---- clients --------------------------------------------------------------------------------


async def subscribe(url: str, seen: dict | None, stop: asyncio.Event, ready: asyncio.Event | None):
    """One ``/live`` subscriber on a raw connection: records, per batch id named by an event's
    ``last_batch``, the first moment it was read."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /live HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"/live answered {status!r}")
    if ready is not None:
        ready.set()
    marker = b'"batch_id": "'
    try:
        while not stop.is_set():
            line = await reader.readline()
            if not line:
                return
            if seen is not None and line.startswith(b"data: ") and marker in line:
                start = line.index(marker) + len(marker)
                batch = line[start : line.index(b'"', start)].decode()
                seen.setdefault(batch, time.time())
    finally:
        writer.close()


def sql_queries(first: date, days: int) -> list[str]:
    def day(rng: random.Random) -> date:
        return first + timedelta(days=rng.randrange(max(1, days - 31)))

    rng = random.Random(7)
    out = []
    for _ in range(50):
        d = day(rng)
        out += [
            "SELECT event_type, count(*) AS events, sum(amount) AS revenue FROM events "
            f"WHERE occurred_at >= TIMESTAMPTZ '{d}' AND occurred_at < TIMESTAMPTZ '{d}' "
            "+ INTERVAL 7 DAY GROUP BY 1",
            "SELECT customer_id, sum(revenue) AS revenue FROM customer_daily WHERE day "
            f"BETWEEN DATE '{d}' AND DATE '{d}' + 30 GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
            "SELECT day, count(DISTINCT customer_id) AS active FROM customer_daily WHERE day "
            f"BETWEEN DATE '{d}' AND DATE '{d}' + 13 GROUP BY 1 ORDER BY 1",
            f"SELECT device, count(*), avg(duration_s) FROM sessions WHERE day = DATE '{d}' "
            "AND purchases > 0 GROUP BY 1",
        ]
    return out


MIX = [
    (0.25, "kpis_day"),
    (0.35, "kpis_hour"),
    (0.50, "audit"),
    (0.75, "customer"),
    (0.80, "tables"),
    (0.85, "export"),
    (1.00, "sql"),
]
"""The mix: each kind up to its cumulative share (KPI windows 35 %, audit lenses 15 %, customer
profiles 25 %, the table list 5 %, one-day exports 5 %, SQL 15 %)."""


def request_for(kind: str, rng: random.Random, first: date, days: int, queries, customers):
    """(method, path, JSON body, query parameters) of one request of ``kind``."""
    d = first + timedelta(days=rng.randrange(days))
    if kind == "kpis_day":
        start = max(first, d - timedelta(days=rng.randint(7, 90)))
        return "POST", "/kpis", {"window": "day", "first_day": str(start), "last_day": str(d)}, None
    if kind == "kpis_hour":
        last = min(d + timedelta(days=rng.randint(0, 2)), first + timedelta(days=days - 1))
        return "POST", "/kpis", {"window": "hour", "first_day": str(d), "last_day": str(last)}, None
    if kind == "audit":
        return "POST", "/audit", {"lens": rng.choice(LENSES)}, None
    if kind == "customer":
        return "POST", "/customer", {"customer_id": rng.choice(customers)}, None
    if kind == "tables":
        return "POST", "/tables", {}, None
    if kind == "export":
        params = {"first_day": str(d), "last_day": str(d), "format": "csv"}
        return "GET", "/export/customer_daily", None, params
    return "POST", "/sql", {"query": rng.choice(queries)}, None


async def user(session, url, rng, first, days, queries, customers, think_s, until, out):
    """One analyst: a request, a think time, again, until ``until``."""
    headers = {"X-API-Key": KEY}
    while time.monotonic() < until:
        pick = rng.random()
        kind = next(k for share, k in MIX if pick < share)
        method, path, body, params = request_for(kind, rng, first, days, queries, customers)
        started = time.perf_counter()
        try:
            async with session.request(
                method, url + path, json=body, params=params, headers=headers
            ) as answer:
                await answer.read()
                status = answer.status
        except Exception as exc:  # noqa: BLE001 - every failure is an error of the run
            status = f"{type(exc).__name__}"
        out.append((kind, time.perf_counter() - started, status))
        await asyncio.sleep(rng.expovariate(1.0 / think_s))
    return out


def known_customers(count: int = 5_000) -> list[str]:
    """Customers the lakehouse has (a profile of an unknown one is a 404, not a read)."""
    from analytics_assets.lib import lake

    with lake.connect() as conn:
        rows = conn.execute(
            f"SELECT DISTINCT customer_id FROM customer_daily USING SAMPLE {count * 4} ROWS"
        ).fetchall()
    return [r[0] for r in rows][:count]


async def mix(
    url: str,
    users: int,
    seconds: float,
    first: date,
    days: int,
    live: bool,
    think_s: float,
    on_start: Callable[[], None] | None = None,
) -> dict:
    import aiohttp

    queries = sql_queries(first, days)
    customers = known_customers()
    if on_start is not None:
        on_start()
    results: list = []
    stop = asyncio.Event()
    # idle connections kept below the server's 5 s keep-alive (uvicorn's default): a think time
    # of about 5 s otherwise sends a request on a connection the server is closing that moment
    # (ServerDisconnectedError: one in 1,213 requests), which browsers retry and aiohttp does not
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        subscribers = (
            [asyncio.create_task(subscribe(url, None, stop, None)) for _ in range(users)]
            if live
            else []
        )
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(
                user(
                    session,
                    url,
                    random.Random(i),
                    first,
                    days,
                    queries,
                    customers,
                    think_s,
                    until,
                    results,
                )
                for i in range(users)
            )
        )
        stop.set()
        for task in subscribers:
            task.cancel()
        await asyncio.gather(*subscribers, return_exceptions=True)
    by_kind: dict[str, list[float]] = {}
    for kind, seconds_taken, _ in results:
        by_kind.setdefault(kind, []).append(seconds_taken)
    other = [s for k, s, _ in results if k != "sql"]
    sql = [s for k, s, _ in results if k == "sql"]
    errors = [(k, st) for k, _, st in results if st != 200]
    return {
        "requests": len(results),
        "requests_per_s": round(len(results) / seconds, 1),
        "p95_ms": round(p(other, 95) * 1e3, 1),
        "p99_ms": round(p(other, 99) * 1e3, 1),
        "sql_p95_s": round(p(sql, 95), 3),
        "sql_p50_s": round(p(sql, 50), 3),
        "errors": len(errors),
        "error_kinds": sorted({f"{k}:{st}" for k, st in errors}),
        "p95_ms_by_kind": {k: round(p(v, 95) * 1e3, 1) for k, v in sorted(by_kind.items())},
    }


def p(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def feed_phase(url: str, subscribers: int, commits: int, last: date) -> dict:
    seen_per: list[dict] = [{} for _ in range(subscribers)]
    stop = asyncio.Event()
    tasks, ready = [], []
    for i in range(subscribers):
        event = asyncio.Event()
        ready.append(event)
        tasks.append(asyncio.create_task(subscribe(url, seen_per[i], stop, event)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 120)
    await asyncio.sleep(2)
    prefix = f"feed{int(time.time())}"
    writer = start_writer(commits, 2.0, last, prefix)
    await asyncio.to_thread(writer.wait)
    await asyncio.sleep(3)
    stop.set()
    for task in tasks:
        task.cancel()
    failed = [
        r
        for r in await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)
    ]
    stamps = committed_at(prefix)
    lags, missing = [], 0
    for seen in seen_per:
        for batch, moment in stamps.items():
            if batch in seen:
                lags.append(seen[batch] - moment)
            else:
                missing += 1
    return {
        "subscribers": subscribers,
        "commits": len(stamps),
        "lag_p50_s": round(p(lags, 50), 3),
        "lag_p95_s": round(p(lags, 95), 3),
        "lag_max_s": round(max(lags), 3) if lags else None,
        "missed": missing,
        "subscriber_errors": len(failed),
    }


async def export_phase(url: str, server: Server, first: date, last: date, fmt: str) -> dict:
    import aiohttp

    before = server.rss_mib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak.append(server.rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size = 0
    started = time.perf_counter()
    params = {"first_day": str(first), "last_day": str(last), "format": fmt}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session,
        session.get(f"{url}/export/events", params=params, headers={"X-API-Key": KEY}) as answer,
    ):
        if answer.status != 200:
            raise RuntimeError(f"export {fmt}: {answer.status} {await answer.text()}")
        rows = int(answer.headers["X-Row-Count"])
        async for chunk in answer.content.iter_any():
            size += len(chunk)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "rows": rows,
        "mib": round(size / 2**20, 1),
        "seconds": round(seconds, 2),
        "mib_per_s": round(size / 2**20 / seconds, 1),
        "rows_per_s": round(rows / seconds),
        "server_rss_mib_before": round(before),
        "server_rss_mib_peak": round(max(peak)),
    }


async def hang_ups(url: str, count: int, first: date, last: date) -> int:
    """``count`` clients that hang up: half exports after their first chunk, half live
    subscribers after their first event. Returns how many did not get their first bytes."""
    import aiohttp

    failures = 0
    params = {"first_day": str(first), "last_day": str(last), "format": "csv"}
    headers = {"X-API-Key": KEY}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int) -> None:
            nonlocal failures
            path = "/export/events" if i % 2 == 0 else "/live"
            try:
                async with session.get(
                    url + path, params=params if i % 2 == 0 else None, headers=headers
                ) as answer:
                    if answer.status != 200:
                        failures += 1
                        return
                    await answer.content.readany()
                    answer.close()  # hang up mid-stream
            except Exception:  # noqa: BLE001
                failures += 1

        for start in range(0, count, 20):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20))))
    return failures


def cpu_by_kind(server: Server, first: date, days: int, each: int = 20) -> dict[str, float]:
    """The server's CPU milliseconds per request of each kind, alone, ``each`` in a row."""
    import urllib.request

    queries, customers = sql_queries(first, days), known_customers()
    rng = random.Random(11)
    found = {}
    for _, kind in MIX:
        cpu = server.cpu_s()
        for _ in range(each):
            method, path, body, params = request_for(kind, rng, first, days, queries, customers)
            query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
            request = urllib.request.Request(
                server.url + path + query,
                data=json.dumps(body).encode() if body is not None else None,
                method=method,
                headers={"X-API-Key": KEY, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
        found[kind] = round((server.cpu_s() - cpu) / each * 1e3, 1)
    return found


def crowd_run(server: Server, seconds: float, first: date, last: date, days: int, think: float):
    """100 users, each with ``/live`` open, thinking ``think`` s on average, while a batch is
    committed every 5 s; with the server's CPU seconds per request."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    writer = start_writer(int(seconds / 5) + 1, 5.0, last, f"mix{int(time.time())}")
    at: dict[str, float] = {}

    def start() -> None:  # the load begins: the customers are known (a query of its own)
        at.update(cpu=server.cpu_s(), client=time.process_time(), started=time.monotonic())

    found = asyncio.run(mix(server.url, 100, seconds, first, days, True, think, start))
    cpu, client, started = at["cpu"], at["client"], at["started"]
    server_cpu, client = server.cpu_s() - cpu, time.process_time() - client
    elapsed = time.monotonic() - started
    writer.wait()
    done = resource.getrusage(resource.RUSAGE_CHILDREN)  # the writer: the one child reaped
    writer_cpu = (done.ru_utime - children.ru_utime) + (done.ru_stime - children.ru_stime)
    found["server_cpu_ms_per_request"] = round(server_cpu / found["requests"] * 1e3, 1)
    # where the machine's cores went (the writer's whole life: its imports too)
    found["cores_used"] = {
        "server": round(server_cpu / elapsed, 2),
        "load_generator": round(client / elapsed, 2),
        "writer": round(writer_cpu / elapsed, 2),
        "of": os.cpu_count(),
    }
    print(f"100 users thinking {think:g} s (each with /live open, a batch every 5 s): {found}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--home", type=Path, help="an existing home built by this script")
    parser.add_argument("--phase", choices=["writer"], help=argparse.SUPPRESS)
    parser.add_argument("--commits", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--every", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--day", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "writer":
        writer_phase(args.commits, args.every, date.fromisoformat(args.day), args.prefix)
        return
    events, days = (1_000_000, 30) if args.quick else (10_000_000, 90)
    seconds, subscribers, hang = (20, 200, 200) if args.quick else (60, 1_000, 1_000)
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-read-")) / "analytics"
    os.environ["ANALYTICS_HOME"] = str(home)
    from analytics_assets.testing import large_home

    first, last = large_home.FIRST_DAY, large_home.last_day(days)
    built = None
    if args.home is None:
        home.mkdir(parents=True)
        print(f"building {events:,} events over {days} days in {home} ...", flush=True)
        built = build(events, days)
        print(f"  built: {built}", flush=True)
    server = Server(home, args.workers, home.parent / "reader.log")
    result: dict = {"bench": "read_api_load", "events": events, "workers": args.workers}
    try:
        asyncio.run(mix(server.url, 4, 5, first, days, False, 1.0))  # warm up
        # the baseline: one user, thinking 0.2 s between requests (enough of each kind)
        alone = asyncio.run(mix(server.url, 1, seconds, first, days, False, 0.2))
        alone["server_cpu_ms_by_kind"] = cpu_by_kind(server, first, days)
        print(f"1 user: {alone}", flush=True)
        crowd, stress = (
            crowd_run(server, seconds, first, last, days, think)
            for think in (THINK_S, STRESS_THINK_S)
        )
        feed = asyncio.run(feed_phase(server.url, subscribers, 15 if args.quick else 20, last))
        print(f"live feed: {feed}", flush=True)
        exported = {}
        for fmt in ("parquet", "csv"):
            exported[fmt] = asyncio.run(export_phase(server.url, server, first, last, fmt))
            print(f"export {fmt}: {exported[fmt]}", flush=True)
        asyncio.run(hang_ups(server.url, 200, first, last))  # fills DuckDB's caches first
        time.sleep(3)
        before = server.rss_mib()
        failed = asyncio.run(hang_ups(server.url, hang, first, last))
        time.sleep(5)
        after = server.rss_mib()
        print(
            f"{hang} hang-ups ({failed} without a first byte): server RSS {before:.0f} -> "
            f"{after:.0f} MiB",
            flush=True,
        )
    finally:
        server.stop()
    result |= {
        "p95_ms_100_users": crowd["p95_ms"],
        "sql_p95_s_100_users": crowd["sql_p95_s"],
        "errors": crowd["errors"] + alone["errors"] + failed,
        "requests_per_s_100_users": crowd["requests_per_s"],
        "think_s": THINK_S,
        "server_cpu_ms_per_request": crowd["server_cpu_ms_per_request"],
        "server_cpu_ms_by_kind": alone["server_cpu_ms_by_kind"],
        "cores_used_100_users": crowd["cores_used"],
        "stress_think_s": STRESS_THINK_S,
        "stress_p95_ms_100_users": stress["p95_ms"],
        "stress_sql_p95_s_100_users": stress["sql_p95_s"],
        "stress_errors": stress["errors"],
        "stress_requests_per_s": stress["requests_per_s"],
        "p95_ms_1_user": alone["p95_ms"],
        "sql_p95_s_1_user": alone["sql_p95_s"],
        "feed_lag_p95_s": feed["lag_p95_s"],
        "feed_subscribers": feed["subscribers"],
        "feed_missed": feed["missed"],
        "export_mib_per_s": {f: e["mib_per_s"] for f, e in exported.items()},
        "export_rows": exported["parquet"]["rows"],
        "export_server_rss_peak_mib": {f: e["server_rss_mib_peak"] for f, e in exported.items()},
        "rss_growth_1000_disconnects": round((after - before) / before, 4),
        "hang_ups": hang,
        "build_s": built,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
