"""Serving latency and throughput: the BentoML scoring service against the same model behind a
bare FastAPI/uvicorn app, on loopback, in the same run, interleaved.

A home is prepared as the serving tests do (synthetic snapshot of N customers in the SQLite
online store, churn and CLV champions in the BentoML model store). Both servers run as
subprocesses; the load generator (aiohttp, one process) measures ``POST /churn``:
  * sequential, one customer per request: p50/p99;
  * open loop at 100 and 300 requests/s (latency from each request's scheduled start, so a
    stalled server is not hidden; at most 256 in flight, more count as errors; the first
    second opens connections and is not measured);
  * bulk: 100 ids per request, 4 connections, customers scored per second.

Usage: ``uv run python benchmarks/serving.py [--customers 100000] [--seconds 10] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from analytics_assets.testing.servers import free_port

REPO = Path(__file__).resolve().parent.parent
MAX_IN_FLIGHT = 256
WARM_UP_S = 1.0


def start(command: list[str], cwd: Path, env: dict, log: Path, url: str, probe: str):
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 180
    import urllib.request

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + probe, timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"not ready:\n{log.read_text()[-3000:]}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def sequential(url: str, ids: list[str], n: int) -> list[float]:
    timings = []
    async with aiohttp.ClientSession() as http:
        for i in range(n + 50):
            body = {"customer_ids": [random.choice(ids)]}
            started = time.perf_counter()
            async with http.post(url + "/churn", json=body) as answer:
                await answer.read()
                assert answer.status == 200, answer.status
            if i >= 50:  # warm-up
                timings.append((time.perf_counter() - started) * 1000)
    return timings


async def open_loop(
    url: str, ids: list[str], rate: float, seconds: float
) -> tuple[list[float], int]:
    timings: list[float] = []
    errors = 0
    in_flight = 0
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(scheduled: float, measured: bool) -> None:
            nonlocal errors, in_flight
            try:
                async with http.post(
                    url + "/churn", json={"customer_ids": [random.choice(ids)]}
                ) as answer:
                    await answer.read()
                    if answer.status != 200:
                        errors += 1
                        return
                if measured:
                    timings.append((time.perf_counter() - scheduled) * 1000)
            except aiohttp.ClientError:
                errors += 1
            finally:
                in_flight -= 1

        tasks = []
        begin = time.perf_counter() + 0.05
        warm = int(rate * WARM_UP_S)  # first second: connections open, not measured
        for i in range(warm + int(rate * seconds)):
            scheduled = begin + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= MAX_IN_FLIGHT:
                errors += 1
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(scheduled, i >= warm)))
        await asyncio.gather(*tasks)
    return timings, errors


async def bulk(url: str, ids: list[str], seconds: float, connections: int = 4) -> float:
    scored = 0
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            nonlocal scored
            while time.perf_counter() < end:
                body = {"customer_ids": random.sample(ids, 100)}
                async with http.post(url + "/churn", json=body) as answer:
                    payload = await answer.json()
                    assert answer.status == 200, payload
                    scored += len(payload["predictions"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return scored / (time.perf_counter() - started)


def measure(url: str, ids: list[str], seconds: float, sequential_n: int) -> dict:
    one = asyncio.run(sequential(url, ids, sequential_n))
    at100, errors100 = asyncio.run(open_loop(url, ids, 100, seconds))
    at300, errors300 = asyncio.run(open_loop(url, ids, 300, seconds))
    return {
        "p50_ms_1": statistics.median(one),
        "p99_ms_1": percentile(one, 99),
        "p99_ms_100rps": percentile(at100, 99),
        "p99_ms_300rps": percentile(at300, 99),
        "errors": errors100 + errors300,
        "customers_per_s_bulk": asyncio.run(bulk(url, ids, seconds)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--bentoml-config",
        default="",
        help="BENTOML_CONFIG_OPTIONS for the service, e.g. 'services.customer_scoring.workers=2 "
        "services.customer_scoring.logging.access.enabled=false'",
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.seconds, args.rounds = 10_000, 3.0, 1
    sequential_n = 2000 if not args.quick else 500

    home = Path(tempfile.mkdtemp(prefix="bench-serving-")) / "analytics"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCORING_", "BENTOML_HOME"))}
    env["ANALYTICS_HOME"] = str(home)
    os.environ.update(env)
    os.environ.pop("BENTOML_HOME", None)
    from analytics_assets.testing import serving

    started = time.perf_counter()
    serving.prepare(args.customers, home / "work")
    elapsed = time.perf_counter() - started
    print(f"prepared {args.customers:,} customers and both champions in {elapsed:.1f} s")
    ids = [f"c{i:07d}" for i in range(args.customers)]

    bento_port, fastapi_port = free_port(), free_port()
    bento_url, fastapi_url = f"http://127.0.0.1:{bento_port}", f"http://127.0.0.1:{fastapi_port}"
    bin_dir = Path(sys.executable).parent
    bento_env = {**env, "BENTOML_CONFIG_OPTIONS": args.bentoml_config}
    servers = [
        start(
            [str(bin_dir / "bentoml"), "serve", "--port", str(bento_port)],
            REPO / "bentos" / "customer_scoring",
            bento_env,
            home / "bentoml.log",
            bento_url,
            "/readyz",
        ),
        start(
            [sys.executable, str(REPO / "benchmarks" / "bare_fastapi.py"), str(fastapi_port)],
            REPO,
            {**env, "PYTHONPATH": str(REPO)},
            home / "fastapi.log",
            fastapi_url,
            "/docs",
        ),
    ]
    results: dict[str, list[dict]] = {"bentoml": [], "fastapi": []}
    try:
        for round_ in range(args.rounds):
            for name, url in (("bentoml", bento_url), ("fastapi", fastapi_url)):
                figures = measure(url, ids, args.seconds, sequential_n)
                results[name].append(figures)
                print(
                    f"round {round_ + 1} {name:8s} "
                    + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
                )
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    keys = ["p50_ms_1", "p99_ms_1", "p99_ms_100rps", "p99_ms_300rps", "customers_per_s_bulk"]
    summary = {
        "bench": "serving",
        "customers": args.customers,
        "bentoml_config": args.bentoml_config,
    }
    for key in keys:
        summary[key] = round(med("bentoml", key), 3)
        summary[f"fastapi_{key}"] = round(med("fastapi", key), 3)
    summary["errors"] = int(sum(r["errors"] for r in results["bentoml"]))
    summary["fastapi_errors"] = int(sum(r["errors"] for r in results["fastapi"]))
    summary["ratio_to_fastapi"] = round(summary["p50_ms_1"] / summary["fastapi_p50_ms_1"], 3)
    summary["peak_rss_mib_children"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
    )
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    s = summary
    print(
        f"BentoML service: 1 customer p50 {s['p50_ms_1']:.2f} ms, p99 {s['p99_ms_1']:.2f} ms"
        f" (FastAPI {s['fastapi_p50_ms_1']:.2f} / {s['fastapi_p99_ms_1']:.2f});"
        f" p99 at 100 req/s {summary['p99_ms_100rps']:.2f} ms, at 300 req/s"
        f" {summary['p99_ms_300rps']:.2f} ms, {summary['errors']} errors;"
        f" bulk {summary['customers_per_s_bulk']:,.0f} customers/s"
        f" (FastAPI {s['fastapi_customers_per_s_bulk']:,.0f}); ratio {s['ratio_to_fastapi']}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
