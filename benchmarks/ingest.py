"""Ingest throughput: one JSON-lines batch through read -> validate -> clean -> dedupe -> commit.

Runs exactly what the ``ingest_batch`` asset runs (``ingest_file``) into a fresh lakehouse,
interleaved in the same process with a plain ``polars.read_ndjson`` of the same file (the
baseline). Timing and peak memory are taken in a child process so the data generation does
not count. Usage: ``uv run python benchmarks/ingest.py [--events N] [--runs R] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def generate(path: Path, events: int) -> None:
    from analytics_assets.producers import simulate
    from analytics_assets.producers.files import write_batch

    customers = max(50, events // 40)
    config = simulate.SimulationConfig(customers=customers, days=90, start=datetime(2024, 1, 1))
    frame = simulate.simulate_events(config)
    while frame.height < events:
        customers *= 2
        config = simulate.SimulationConfig(customers=customers, days=90, start=datetime(2024, 1, 1))
        frame = simulate.simulate_events(config)
    write_batch(frame.head(events), path.parent, path.name.removesuffix(".jsonl"), "jsonl")


def measure(path: Path, runs: int) -> dict:
    import shutil

    import polars as pl

    from analytics_assets.defs.ingest.batch import ingest_file
    from analytics_assets.lib import lakehouse

    pipeline, baseline = [], []
    rows = clean = 0
    for i in range(runs):
        started = time.perf_counter()
        pl.read_ndjson(path)
        baseline.append(time.perf_counter() - started)
        folder = path.parent / f"lakehouse-{i}"
        with lakehouse.connect(where=lakehouse.Location.under(folder)) as conn:
            started = time.perf_counter()
            outcome = ingest_file(conn, path, "bench")
            pipeline.append(time.perf_counter() - started)
        shutil.rmtree(folder)
        rows, clean = outcome.result.rows_in, outcome.result.clean
    return {
        "pipeline_s": pipeline,
        "baseline_s": baseline,
        "rows": rows,
        "clean": clean,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100k events, 3 runs")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.runs)))
        return
    if args.quick:
        args.events, args.runs = 100_000, 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        generate(path, args.events)
        size_mb = path.stat().st_size / 1e6
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), "--runs", str(args.runs)],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    pipeline = statistics.median(result["pipeline_s"])
    baseline = statistics.median(result["baseline_s"])
    events_per_s = result["rows"] / pipeline
    print(f"file: {args.events:,} events, {size_mb:.0f} MB JSON lines; {args.runs} runs, medians")
    print(
        f"plain polars.read_ndjson:     {baseline:.3f} s  ({result['rows'] / baseline:,.0f} ev/s)"
    )
    print(f"read+validate+dedupe+commit:  {pipeline:.3f} s  ({events_per_s:,.0f} ev/s)")
    print(f"all runs (s): pipeline {result['pipeline_s']}, baseline {result['baseline_s']}")
    print(f"clean rows {result['clean']:,} of {result['rows']:,}")
    print(f"peak RSS of the measuring process: {result['peak_rss_mib']:.0f} MiB")
    summary = {
        "bench": "ingest",
        "events": result["rows"],
        "events_per_s": round(events_per_s),
        "raw_parse_events_per_s": round(result["rows"] / baseline),
        "ratio_to_raw_parse": round(baseline / pipeline, 3),
        "seconds": round(pipeline, 3),
        "peak_rss_mib": round(result["peak_rss_mib"]),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
