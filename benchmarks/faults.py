"""Fault trials with the real daemon: runs killed with SIGKILL at random points of the ingest
(before, inside and right after the DuckDB commit), and the daemon killed while files arrive.

After all trials the audit counts events lost or stored twice, files with other than one ledger
row, and runs left in progress after run monitoring had its turn. ``recovery_p95_s`` is over
all trials: from the kill to the batch committed and every run settled (run trials), from the
daemon's restart to every file committed (daemon trials).

Usage: ``uv run python benchmarks/faults.py [--runs 20] [--daemons 5] [--files 20]``.
The last line is the JSON of PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="run kills")
    parser.add_argument("--daemons", type=int, default=5, help="daemon kills")
    parser.add_argument("--files", type=int, default=20, help="files per daemon trial")
    parser.add_argument("--events", type=int, default=2000, help="events per file")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--baseline-wait",
        type=float,
        default=60.0,
        help="seconds a killed run is watched with run monitoring and retries off (the "
        "baseline, first in the same run; 0 skips it)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        home = Path(tmp) / "analytics"
        os.environ["ANALYTICS_HOME"] = str(home)
        os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
        os.environ["ANALYTICS_SENSOR_INTERVAL_S"] = "1"
        import dagster as dg

        from analytics_assets import settings
        from analytics_assets.lib import faults
        from analytics_assets.testing.fault_trials import (
            Daemon,
            audit,
            kill_daemon_trial,
            kill_run_trial,
            stuck_trial,
        )

        settings.ensure_dirs()
        fault_file = Path(tmp) / "fault"
        daemon = Daemon(home / "daemon.log", {faults.ENV: str(fault_file)})
        rng = random.Random(args.seed)
        expected: dict[str, set[str]] = {}
        results = []
        baseline_stuck = flowed = None
        if args.baseline_wait:
            before = Daemon(
                home / "daemon-baseline.log",
                {faults.ENV: str(fault_file)},
                {"run_monitoring": {"enabled": False}, "run_retries": {"enabled": False}},
            )
            before.start()
            try:
                instance = dg.DagsterInstance.get()
                stuck, flowed = stuck_trial(
                    instance, fault_file, faults.IN_COMMIT, args.baseline_wait
                )
                baseline_stuck = int(stuck)
            finally:
                before.stop()
            print(
                f"baseline (no run monitoring, no retries): the run killed inside its commit is "
                f"{'still STARTED' if stuck else 'finished'} after {args.baseline_wait:.0f}s; "
                f"the next file was {'committed' if flowed else 'NOT committed'} within another "
                f"{args.baseline_wait:.0f}s",
                flush=True,
            )
            # the fixed platform heals what the baseline left behind, then the trials start
            for path in settings.landing_dir().glob("baseline-*"):
                expected[path.name.removesuffix(".jsonl")] = set()
        started = time.monotonic()
        daemon.start()
        try:
            instance = dg.DagsterInstance.get()
            for n in range(args.runs):
                point = rng.choice(faults.POINTS)
                result = kill_run_trial(
                    instance, fault_file, point, f"run-{n:02d}", args.events, expected
                )
                results.append(result)
                print(
                    f"run trial {n + 1}/{args.runs}: killed at {point}, healed in "
                    f"{result.recovery_s:.1f}s",
                    flush=True,
                )
            for n in range(args.daemons):
                result = kill_daemon_trial(
                    daemon,
                    instance,
                    f"daemon-{n}",
                    args.files,
                    args.events // 4,
                    expected,
                    seed=args.seed + n,
                )
                results.append(result)
                print(
                    f"daemon trial {n + 1}/{args.daemons}: killed {result.point}, all "
                    f"{args.files} files in {result.recovery_s:.1f}s after the restart",
                    flush=True,
                )
            # runs left in progress are counted after monitoring has had its turn
            time.sleep(10)
            report = audit(instance, expected)
        finally:
            daemon.stop()
    recoveries = sorted(r.recovery_s for r in results)
    p95 = recoveries[min(len(recoveries) - 1, round(0.95 * (len(recoveries) - 1)))]
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores; "
        f"{len(results)} trials in {time.monotonic() - started:.0f}s; audit {report}"
    )
    by_point: dict[str, list[float]] = {}
    for r in results:
        by_point.setdefault(r.point if r.kind == "run" else "daemon", []).append(r.recovery_s)
    for point, values in sorted(by_point.items()):
        print(
            f"  {point:24s} n={len(values):2d}  median {statistics.median(values):5.1f}s  "
            f"max {max(values):5.1f}s"
        )
    print(
        json.dumps(
            {
                "bench": "faults",
                "trials": len(results),
                "run_trials": args.runs,
                "daemon_trials": args.daemons,
                "files": report.files,
                "lost": report.lost,
                "duplicated": report.duplicated,
                "extra_ledger_rows": report.extra_ledger_rows,
                "stuck_runs": report.stuck_runs,
                "baseline_stuck_runs": baseline_stuck,
                "baseline_next_batch_flowed": flowed,
                "recovery_p50_s": round(statistics.median(recoveries), 2),
                "recovery_p95_s": round(p95, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
