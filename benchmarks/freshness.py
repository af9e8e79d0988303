"""Freshness: a file lands -> its events are committed in DuckDB, with the real daemon running.

Starts ``dagster-daemon`` on a temporary ANALYTICS_HOME / DAGSTER_HOME with the repo's
dagster.yaml, warms it up with one file, then drops FILES micro-batches about SPACING seconds
apart (a stream, as producers would) and reads landing and commit times back from the ingestion
ledger and the run records. Usage:
``uv run python benchmarks/freshness.py [--files 20] [--spacing 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_for(instance, batch_ids: set[str], timeout: float) -> None:
    import dagster as dg

    deadline = time.monotonic() + timeout
    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    while time.monotonic() < deadline:
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/partition") in batch_ids]
        if len(runs) == len(batch_ids) and all(r.status in done for r in runs):
            failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            if failed:
                raise RuntimeError(f"runs failed: {failed}")
            return
        time.sleep(0.2)
    raise TimeoutError(f"batches {sorted(batch_ids)} not committed within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=5.0, help="mean seconds between files")
    parser.add_argument("--events-per-file", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="5 files")
    args = parser.parse_args()
    if args.quick:
        args.files = 5
    home = Path(tempfile.mkdtemp(prefix="freshness-"))
    os.environ["ANALYTICS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    (home / "dagster_home").mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster_home" / "dagster.yaml")

    import dagster as dg
    import duckdb

    from analytics_assets import settings
    from analytics_assets.producers import simulate
    from analytics_assets.producers.files import write_batch

    settings.ensure_dirs()
    interval = settings.sensor_interval_seconds()
    config = simulate.SimulationConfig(customers=2_000, days=30, start=datetime(2024, 1, 1))
    events = simulate.simulate_events(config)
    parts = list(simulate.batches(events, args.events_per_file, seed=config.seed))
    log = (home / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        instance = dg.DagsterInstance.get()
        warm_id, warm = parts[0]
        write_batch(warm, settings.landing_dir(), warm_id, "jsonl")
        wait_for(instance, {warm_id}, timeout=180)
        dropped = []
        # jittered gaps: a stream does not arrive in lockstep with the daemon's 5 s loop
        gaps = random.Random(0)
        for batch_id, part in parts[1 : args.files + 1]:
            write_batch(part, settings.landing_dir(), batch_id, "jsonl")
            dropped.append(batch_id)
            time.sleep(args.spacing * gaps.uniform(0.5, 1.5))
        wait_for(instance, set(dropped), timeout=300)
        stages = {}
        for run in instance.get_runs():
            record = instance.get_run_record_by_id(run.run_id)
            launched = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_STARTING)
            stages[run.tags["dagster/partition"]] = (
                record.create_timestamp.timestamp(),
                launched[0].timestamp if launched else float("nan"),
                record.start_time,
            )
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
    with duckdb.connect(str(settings.warehouse_path()), read_only=True) as conn:
        ledger = conn.execute(
            "SELECT batch_id, epoch(landed_at), epoch(committed_at) FROM ingest_ledger"
        ).fetchall()
    rows = [(stages[b], landed, committed) for b, landed, committed in ledger if b in dropped]
    values = [committed - landed for _, landed, committed in rows]
    p50, p95 = statistics.median(values), percentile(values, 0.95)
    print(f"{len(values)} files of {args.events_per_file:,} events, one every ~{args.spacing}s;")
    print(f"sensor interval {interval}s, queued run coordinator, default run launcher")
    steps = {
        "landed -> run requested (sensor)": [c - landed for (c, _, _), landed, _ in rows],
        "requested -> launched (queue)": [la - c for (c, la, _), _, _ in rows],
        "launched -> run started (process)": [st - la for (_, la, st), _, _ in rows],
        "run started -> committed (step)": [done - st for (_, _, st), _, done in rows],
    }
    for label, parts in steps.items():
        print(f"  {label:36s} p50 {statistics.median(parts):6.2f}s  max {max(parts):6.2f}s")
    print(f"landed -> events committed: p50 {p50:.2f}s  p95 {p95:.2f}s  max {max(values):.2f}s")
    print(
        json.dumps(
            {
                "bench": "freshness",
                "files": len(values),
                "sensor_interval_s": interval,
                "p50_s": round(p50, 2),
                "p95_s": round(p95, 2),
                "max_s": round(max(values), 2),
                **{
                    f"p50_{key}_s": round(statistics.median(parts), 2)
                    for key, parts in zip(
                        ("sensor", "queue", "process", "step"), steps.values(), strict=True
                    )
                },
            }
        )
    )
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
