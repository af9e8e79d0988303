"""Serving latency and throughput: the BentoML scoring service as configured (the churn
model's fast scorer) against two baselines in the same run, interleaved: the service with
scikit-learn scoring in today's configuration before the fast scorer (1 worker, access log on),
and the same fast scorer and online reader behind a bare FastAPI/uvicorn app.

A home is prepared as the serving tests do (synthetic snapshot of N customers in the SQLite
online store, churn and CLV champions in the BentoML model store, the churn champion's
converted trees beside it). The servers run as subprocesses on loopback; the load generator
(aiohttp, one process, on the same machine) measures ``POST /churn``:
  * capacity: a closed loop of 16 connections, one customer per request: requests/s;
  * sequential, one customer per request: p50/p99;
  * open loop at 100, 300 and 500 requests/s (latency from each request's scheduled start, so
    a stalled server is not hidden; at most 256 in flight, more count as errors; the first
    second opens connections and is not measured);
  * bulk: 100 ids per request, 4 connections, customers scored per second;
  * the model step in this process: one row through the served scorer, microseconds per call;
  * soak (the service only, at the end): 200 requests/s for ``--soak-seconds``, the servers'
    resident memory at its start and end, errors, and the prediction log's rows written against
    the predictions served.

Usage: ``uv run python benchmarks/serving.py [--customers 100000] [--seconds 10]
[--soak-seconds 600] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


async def capacity(
    url: str, ids: list[str], seconds: float, connections: int = 16
) -> tuple[float, int]:
    """Closed loop: ``connections`` clients, each sending its next one-customer request when
    the last is answered. Requests answered per second (after a 1 s warm-up), and errors."""
    done = errors = 0
    counting = False
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        stop_at = time.perf_counter() + WARM_UP_S + seconds

        async def client() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:
                try:
                    async with http.post(
                        url + "/churn", json={"customer_ids": [random.choice(ids)]}
                    ) as answer:
                        await answer.read()
                        ok = answer.status == 200
                except aiohttp.ClientError:
                    ok = False
                if counting:
                    done += ok
                    errors += not ok

        tasks = [asyncio.create_task(client()) for _ in range(connections)]
        await asyncio.sleep(WARM_UP_S)
        counting, started = True, time.perf_counter()
        await asyncio.gather(*tasks)
        return done / (time.perf_counter() - started), errors


def measure(url: str, ids: list[str], seconds: float, sequential_n: int, rates) -> dict:
    figures: dict[str, float] = {}
    figures["capacity_rps"], errors = asyncio.run(capacity(url, ids, seconds))
    one = asyncio.run(sequential(url, ids, sequential_n))
    figures["p50_ms_1"] = statistics.median(one)
    figures["p99_ms_1"] = percentile(one, 99)
    for rate in rates:
        timings, failed = asyncio.run(open_loop(url, ids, rate, seconds))
        figures[f"p99_ms_{rate}rps"] = percentile(timings, 99)
        errors += failed
    figures["customers_per_s_bulk"] = asyncio.run(bulk(url, ids, seconds))
    figures["errors"] = errors
    return figures


def tree_rss_mib(process: subprocess.Popen) -> float:
    """Resident memory of a server and all its processes (BentoML's workers are children)."""
    import psutil

    root = psutil.Process(process.pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def logged_rows(directory: Path) -> int:
    import polars as pl

    files = sorted(directory.rglob("*.parquet"))
    return pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0


def soak(url: str, ids: list[str], seconds: float, process, log_dir: Path, flush_s: float):
    """``seconds`` at 200 requests/s against the service: its memory at the start and end, the
    errors, and whether the prediction log holds exactly one row per prediction served."""
    time.sleep(flush_s * 2 + 1)
    rows_before = logged_rows(log_dir)
    rss_start = tree_rss_mib(process)
    timings, errors = asyncio.run(open_loop(url, ids, 200, seconds))
    rss_end = tree_rss_mib(process)
    time.sleep(flush_s * 2 + 1)
    written = logged_rows(log_dir) - rows_before
    served = len(timings)  # answered 200s after the warm-up second ...
    served += int(200 * WARM_UP_S)  # ... and the warm-up second's (answered, not timed)
    return {
        "soak_seconds": seconds,
        "soak_p99_ms": round(percentile(timings, 99), 3),
        "soak_errors": errors,
        "soak_rss_start_mib": round(rss_start, 1),
        "soak_rss_end_mib": round(rss_end, 1),
        "soak_rss_growth": round((rss_end - rss_start) / rss_start, 4),
        "soak_predictions_served": served,
        "soak_log_rows_written": written,
        "soak_log_complete": written == served and errors == 0,
    }


def model_us_per_call(home: Path) -> dict[str, float]:
    """One row through the churn champion's served scorer (fast and scikit-learn), in this
    process: microseconds per call, best of 5 runs of 500."""
    import bentoml

    from analytics_assets.lib.names import CHURN_MODEL
    from bentos.customer_scoring.champions import churn_scorer, model_store

    model = bentoml.models.get(f"{CHURN_MODEL}:latest", _model_store=model_store())
    results = {}
    for key, fast in (("model_us_per_call", "1"), ("model_us_per_call_sklearn", "0")):
        os.environ["SCORING_FAST_SCORER"] = fast
        features, score, scorer = churn_scorer(model)
        columns = {name: np.array([1.0]) for name in features}
        for _ in range(100):
            score(columns, {})
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(500):
                score(columns, {})
            best = min(best, (time.perf_counter() - started) / 500)
        results[key] = round(best * 1e6, 2)
        print(f"model step, one row, {scorer}: {best * 1e6:.1f} us")
    os.environ.pop("SCORING_FAST_SCORER")
    return results


def request_path_us() -> dict[str, float]:
    """What each step the service keeps on a one-customer request costs, in this process
    (microseconds per call, best of 5 runs of 2,000): the API-key and body guard (an ASGI
    pass-through with the key set), the error shape's middleware (a 200 passing through),
    request validation, the prediction log's record, the
    metrics' counter and the response model."""
    import tempfile as tmp

    from prometheus_client import CollectorRegistry, Counter
    from pydantic import TypeAdapter

    from bentos.customer_scoring.prediction_log import PredictionLog
    from bentos.customer_scoring.schemas import ChurnPrediction, ChurnResponse, CustomerIds
    from bentos.errors import ErrorShape
    from bentos.guard import RequestGuard

    class Model:
        name, version, role, feature_service = "churn_model", "1", "champion", "churn_v1"
        features = [f"f{i}" for i in range(10)]

    async def app(scope, receive, send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})

    guard = RequestGuard(app, api_key="secret", max_body_bytes=1 << 20)
    scope = {
        "type": "http",
        "path": "/churn",
        "method": "POST",
        "headers": [
            (b"x-api-key", b"secret"),
            (b"content-type", b"application/json"),
            (b"content-length", b"30"),
        ],
    }

    async def through(middleware, n: int) -> None:
        async def receive():
            return {"type": "http.request", "body": b'{"customer_ids": ["c0000042"]}'}

        async def send(message) -> None:
            pass

        for _ in range(n):
            await middleware(scope, receive, send)

    ids = TypeAdapter(CustomerIds)
    log = PredictionLog(Path(tmp.mkdtemp()), flush_seconds=3600)
    counter = Counter(
        "bench_predictions",
        "",
        ["model", "model_version", "role", "served"],
        registry=CollectorRegistry(),
    )
    known, as_of = np.array([True]), [None]
    features = {name: np.array([1.0]) for name in Model.features}
    outputs = {"churn_probability": np.array([0.5])}
    row = {
        "customer_id": "c0000042",
        "known": True,
        "model_version": "1",
        "role": "champion",
        "features_as_of": None,
        "churn_probability": 0.5,
    }

    def record() -> None:
        log.record(
            endpoint="churn",
            request_id="r",
            model=Model,
            served=True,
            customer_ids=["c0000042"],
            known=known,
            as_of=as_of,
            features=features,
            outputs=outputs,
            params={},
        )

    steps = {
        "guard_us": lambda: asyncio.run(through(guard, 2000)),
        "error_shape_us": lambda: asyncio.run(through(ErrorShape(app), 2000)),
        "validation_us": lambda: [ids.validate_json(b'["c0000042"]') for _ in range(2000)],
        "prediction_log_us": lambda: [record() for _ in range(2000)],
        "metrics_us": lambda: [
            counter.labels("churn_model", "1", "champion", "true").inc(1) for _ in range(2000)
        ],
        "response_us": lambda: [
            ChurnResponse(
                model="churn_model",
                feature_service="churn_v1",
                predictions=[ChurnPrediction(**row)],
            ).model_dump_json()
            for _ in range(2000)
        ],
    }
    costs = {}
    for name, run in steps.items():
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            run()
            best = min(best, (time.perf_counter() - started) / 2000)
        costs[f"request_path_{name}"] = round(best * 1e6, 2)
    print(
        "request path, per one-customer request: "
        + ", ".join(f"{k.removeprefix('request_path_')} {v} us" for k, v in costs.items())
    )
    return costs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument(
        "--bentoml-config",
        default="",
        help="BENTOML_CONFIG_OPTIONS for the service under test, e.g. "
        "'services.customer_scoring.workers=1'",
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.seconds, args.rounds, args.soak_seconds = 10_000, 3.0, 1, 20.0
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
    model_step = model_us_per_call(home)
    model_step.update(request_path_us())
    # the load generator's own heap (the home prepared in this process: Feast, MLflow, the
    # models) out of its garbage collector's scans: a full pass here stopped the client for
    # about 300 ms, counted as server latency in an open loop
    import gc

    gc.collect()
    gc.freeze()

    bin_dir = Path(sys.executable).parent
    flush_s = 2.0
    configs = {
        # the service as configured
        "bentoml": {"BENTOML_CONFIG_OPTIONS": args.bentoml_config},
        # before the fast scorer: scikit-learn, one worker, access log on
        "sklearn": {
            "SCORING_FAST_SCORER": "0",
            "SCORING_WORKERS": "1",
            "SCORING_ACCESS_LOG": "1",
        },
    }
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for name, extra in configs.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server_env = {
                **env,
                **extra,
                "SCORING_LOG_FLUSH_S": str(flush_s),
                "ANALYTICS_PREDICTIONS_DIR": str(home / f"predictions-{name}"),
            }
            process = start(
                [str(bin_dir / "bentoml"), "serve", "--port", str(port)],
                REPO / "bentos" / "customer_scoring",
                server_env,
                home / f"{name}.log",
                url,
                "/readyz",
            )
            servers[name] = (process, url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = start(
            [sys.executable, str(REPO / "benchmarks" / "bare_fastapi.py"), str(port)],
            REPO,
            {**env, "PYTHONPATH": str(REPO)},
            home / "fastapi.log",
            url,
            "/docs",
        )
        servers["fastapi"] = (process, url)
        results: dict[str, list[dict]] = {name: [] for name in servers}
        for round_ in range(args.rounds):
            for name, (_, url) in servers.items():
                rates = (100, 300) if name == "sklearn" else (100, 300, 500)
                figures = measure(url, ids, args.seconds, sequential_n, rates)
                results[name].append(figures)
                print(
                    f"round {round_ + 1} {name:8s} "
                    + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
                )
        for name in ("sklearn", "fastapi"):  # quiet for the soak
            servers[name][0].terminate()
            servers[name][0].wait(timeout=30)
        process, url = servers["bentoml"]
        soaked = soak(url, ids, args.soak_seconds, process, home / "predictions-bentoml", flush_s)
        print("soak: " + ", ".join(f"{k} {v}" for k, v in soaked.items()))
    finally:
        for process, _ in servers.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    summary: dict[str, object] = {
        "bench": "serving",
        "customers": args.customers,
        "bentoml_config": args.bentoml_config,
    }
    for key in results["bentoml"][0]:
        if key == "errors":
            continue
        summary[key] = round(med("bentoml", key), 3)
        for baseline in ("fastapi", "sklearn"):
            if key in results[baseline][0]:
                summary[f"{baseline}_{key}"] = round(med(baseline, key), 3)
    summary["errors"] = int(sum(r["errors"] for r in results["bentoml"])) + soaked["soak_errors"]
    summary["fastapi_errors"] = int(sum(r["errors"] for r in results["fastapi"]))
    summary["sklearn_errors"] = int(sum(r["errors"] for r in results["sklearn"]))
    summary["ratio_to_fastapi"] = round(summary["p50_ms_1"] / summary["fastapi_p50_ms_1"], 3)
    summary["capacity_ratio_to_fastapi"] = round(
        summary["capacity_rps"] / summary["fastapi_capacity_rps"], 3
    )
    summary["capacity_ratio_to_sklearn"] = round(
        summary["capacity_rps"] / summary["sklearn_capacity_rps"], 3
    )
    summary.update(model_step)
    summary.update(soaked)
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    s = summary
    print(
        f"BentoML service: capacity {s['capacity_rps']:,.0f} req/s (FastAPI"
        f" {s['fastapi_capacity_rps']:,.0f}, scikit-learn service"
        f" {s['sklearn_capacity_rps']:,.0f});"
        f" 1 customer p50 {s['p50_ms_1']:.2f} ms, p99 {s['p99_ms_1']:.2f} ms;"
        f" open loop p99 {s['p99_ms_300rps']:.2f} ms at 300 req/s,"
        f" {s['p99_ms_500rps']:.2f} ms at 500; {s['errors']} errors;"
        f" bulk {s['customers_per_s_bulk']:,.0f} customers/s; model {s['model_us_per_call']} us;"
        f" soak RSS growth {s['soak_rss_growth']:.2%}, log complete {s['soak_log_complete']}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
