"""Analytics cost: sessions + customer_daily + hourly and daily KPIs over N simulated events.

For each size, one child process simulates the events and loads them into the ``events`` table
of a fresh lakehouse (not timed); a second child attaches it and builds the four derived tables
over the whole day range, timed, with its own peak memory. Sizes default to 1M, 3M and 10M.
Usage: ``uv run python benchmarks/analytics.py [--sizes 1000000,3000000] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

DAYS = 90
START = datetime(2024, 1, 1)


def build(database: Path, events: int) -> None:
    from analytics_assets.defs.ingest.tables import ensure_tables
    from analytics_assets.lib import lakehouse
    from analytics_assets.producers import simulate

    customers = max(50, events // 45)
    while True:
        config = simulate.SimulationConfig(customers=customers, days=DAYS, start=START)
        frame = simulate.simulate_events(config)
        if frame.height >= events:
            break
        customers = int(customers * 1.3 * events / max(frame.height, 1)) + 1
    frame = frame.head(events)
    with lakehouse.connect(where=lakehouse.Location.under(database)) as conn:
        ensure_tables(conn)
        conn.register("staged", frame.to_arrow())
        conn.execute("INSERT INTO events SELECT *, 'bench', now() FROM staged")


def measure(database: Path) -> dict:
    from analytics_assets.defs.analytics import transforms
    from analytics_assets.lib import lakehouse

    start = START.date()
    end = start + timedelta(days=DAYS + 2)
    timings = {}
    with lakehouse.connect(where=lakehouse.Location.under(database)) as conn:
        rows = conn.execute("SELECT count(*) FROM events").fetchall()[0][0]
        steps = {
            "sessions": lambda: transforms.sessions(conn, start, end),
            "customer_daily": lambda: transforms.customer_daily(conn, start, end),
            "kpis_hourly": lambda: transforms.kpis(conn, start, end, "hour"),
            "kpis_daily": lambda: transforms.kpis(conn, start, end, "day"),
        }
        began = time.perf_counter()
        for name, relation in steps.items():
            step = time.perf_counter()
            relation().create(name)
            timings[name] = round(time.perf_counter() - step, 3)
        total = time.perf_counter() - began
        counts = {name: conn.table(name).count("*").fetchall()[0][0] for name in steps}
    return {
        "rows": rows,
        "seconds": total,
        "steps": timings,
        "counts": counts,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--quick", action="store_true", help="100k and 300k events")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(args.build, args.events)
        return
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    sizes = [100_000, 300_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            database = Path(tmp) / f"lakehouse-{size}"
            run = [sys.executable, __file__]
            subprocess.run([*run, "--build", str(database), "--events", str(size)], check=True)
            out = subprocess.run(
                [*run, "--measure", str(database)], check=True, capture_output=True, text=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results[size] = result
            shutil.rmtree(database)
            print(
                f"{result['rows']:>11,} events: {result['seconds']:6.2f} s "
                f"({result['rows'] / result['seconds']:,.0f} ev/s), "
                f"peak {result['peak_rss_mib']:,.0f} MiB, steps {result['steps']}, "
                f"rows {result['counts']}"
            )
    largest = results[max(results)]
    smallest = results[min(results)]
    scale = (largest["seconds"] / smallest["seconds"]) / (largest["rows"] / smallest["rows"])
    print(f"cost growth vs linear from {min(results):,} to {max(results):,} events: {scale:.2f}x")
    summary = {"bench": "analytics", "days": DAYS}
    for size, result in results.items():
        label = f"{size // 1_000_000}m" if size >= 1_000_000 else f"{size // 1_000}k"
        summary[f"seconds_{label}"] = round(result["seconds"], 2)
    summary["growth_vs_linear"] = round(scale, 2)
    summary["peak_rss_mib"] = round(max(r["peak_rss_mib"] for r in results.values()))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
