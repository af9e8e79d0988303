"""Erasure: one customer and 1,000 customers out of a large home, and what the suppression list
costs ingest. Every figure is measured in this run on this machine.

- ``erase_one_s``: ``lib.erasure.erase`` of one customer (every store, verification included)
  in a home whose lakehouse holds 10M events committed as 90 daily batches (90 snapshots, day
  tables built by the real ``sessions`` / ``customer_daily`` assets), with 90 daily feature
  snapshots of 200,000 customers, the online store (SQLite) and a training set;
- ``erase_1000_s``: 1,000 other customers in one call, in the same home;
- ``suppression_ingest_overhead``: the 1M-event file through ``ingest_file`` with 10,000 ids on
  the suppression list (50 of them in the file), against an empty list, interleaved runs,
  medians: (with - without) / without.

Usage: ``uv run python benchmarks/erasure.py [--quick]`` (quick: 1M events over 30 days,
200k-event ingest).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

CUSTOMERS = 200_000


def customer(i: int) -> str:
    return f"cust-{i:07d}"


def build_home(home: Path, events: int, days: int) -> dict:
    """The large home (see the module); seconds per part."""
    import polars as pl

    from analytics_assets import settings
    from analytics_assets.defs.analytics.assets import customer_daily, sessions
    from analytics_assets.testing import large_home
    from analytics_assets.testing.feature_snapshot import write_snapshot

    settings.ensure_dirs()
    spent = {}
    started = time.perf_counter()
    first = large_home.FIRST_DAY
    large_home.insert_events(events, days, CUSTOMERS, first)
    spent["events"] = time.perf_counter() - started
    started = time.perf_counter()
    large_home.materialize_days([sessions, customer_daily], first, large_home.last_day(days))
    spent["day_tables"] = time.perf_counter() - started

    started = time.perf_counter()
    directory = settings.feature_snapshots_dir()
    template = pl.read_parquet(write_snapshot(directory / "tmp", CUSTOMERS))
    template = template.with_columns(
        pl.Series("customer_id", [customer(i) for i in range(CUSTOMERS)])
    )
    for d in range(days):
        day = first + timedelta(days=d)
        instant = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        template.with_columns(as_of=pl.lit(day), event_timestamp=pl.lit(instant)).write_parquet(
            directory / f"{day.isoformat()}.parquet"
        )
    for leftover in (directory / "tmp").iterdir():
        leftover.unlink()
    (directory / "tmp").rmdir()
    template.head(50_000).write_parquet(settings.training_set_path())
    spent["feature_snapshots"] = time.perf_counter() - started

    started = time.perf_counter()
    from analytics_assets.testing.serving import online_from_snapshots

    online_from_snapshots()
    spent["online_store"] = time.perf_counter() - started
    return {k: round(v, 1) for k, v in spent.items()}


def erase_phase(home: Path, events: int, days: int) -> dict:
    from analytics_assets.lib import erasure, lakehouse

    built = build_home(home, events, days)
    print(f"home built: {built}", flush=True)
    with lakehouse.connect(read_only=True) as conn:
        (snapshots,) = conn.execute("SELECT count(*) FROM lake.snapshots()").fetchone()
        (stored,) = conn.execute("SELECT count(*) FROM events").fetchone()
    started = time.perf_counter()
    one, _ = erasure.erase([customer(123)], "benchmark", log=lambda m: print("  " + m))
    erase_one = time.perf_counter() - started
    print(f"one customer: {erase_one:.1f}s, stores {one.stores}", flush=True)
    many = [customer(1000 + 97 * i) for i in range(1000)]
    started = time.perf_counter()
    thousand, _ = erasure.erase(many, "benchmark", log=lambda m: print("  " + m))
    erase_1000 = time.perf_counter() - started
    print(f"1,000 customers: {erase_1000:.1f}s", flush=True)
    return {
        "erase_one_s": round(erase_one, 2),
        "erase_1000_s": round(erase_1000, 2),
        "events_stored": stored,
        "snapshots_before": snapshots,
        "rows_erased_one": sum(v["rows"] for k, v in one.stores.items() if "lakehouse" in k),
        "rows_erased_1000": sum(v["rows"] for k, v in thousand.stores.items() if "lakehouse" in k),
        "build_s": built,
    }


def ingest_phase(folder: Path, events: int, runs: int) -> dict:
    """Interleaved runs of one file into fresh lakehouses, with and without the list."""
    import shutil

    import polars as pl

    from analytics_assets.defs.ingest import tables
    from analytics_assets.defs.ingest.batch import ingest_file
    from analytics_assets.lib import lakehouse, suppression

    path = folder / "bench.jsonl"
    sys.path.insert(0, str(Path(__file__).parent))
    from ingest import generate

    generate(path, events)
    present = pl.read_ndjson(path).get_column("customer_id").unique().sort().head(50).to_list()
    listed = present + [f"gone-{i:06d}" for i in range(10_000 - len(present))]
    times: dict[str, list[float]] = {"without": [], "with": []}
    quarantined = 0
    for run in range(runs):
        for kind in ("without", "with"):
            where = lakehouse.Location.under(folder / f"lake-{kind}-{run}")
            with lakehouse.connect(where=where) as conn:
                tables.ensure_tables(conn)
                if kind == "with":
                    salt = suppression.salt(conn)
                    hashes = [suppression.id_hash(salt, i) for i in listed]
                    lakehouse.run_transaction(
                        conn,
                        lambda c, h=hashes, s=salt: suppression.add(
                            c, h, s, datetime.now(UTC), "bench", None
                        ),
                    )
                started = time.perf_counter()
                outcome = ingest_file(conn, path, "bench")
                times[kind].append(time.perf_counter() - started)
                if kind == "with":
                    quarantined = outcome.result.reasons.get("erased_customer", 0)
            shutil.rmtree(where.sqlite_path.parent)
    without, with_list = statistics.median(times["without"]), statistics.median(times["with"])
    return {
        "suppression_ingest_overhead": round((with_list - without) / without, 4),
        "ingest_s_without_list": round(without, 3),
        "ingest_s_with_10000_listed": round(with_list, 3),
        "ingest_runs_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "erased_events_quarantined": quarantined,
        "ingest_events": events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--phase", choices=["erase", "ingest"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    events, days = (1_000_000, 30) if args.quick else (10_000_000, 90)
    ingest_events, runs = (200_000, 3) if args.quick else (1_000_000, 5)
    if args.phase == "erase":
        print(json.dumps(erase_phase(args.folder, events, days)))
        return
    if args.phase == "ingest":
        print(json.dumps(ingest_phase(args.folder, ingest_events, runs)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for phase in ("ingest", "erase"):
            folder = Path(tmp) / phase
            folder.mkdir()
            env = {**os.environ, "ANALYTICS_HOME": str(folder / "home")}
            for name in ("ANALYTICS_LAKEHOUSE_CATALOG", "ANALYTICS_LAKEHOUSE_DATA", "BENTOML_HOME"):
                env.pop(name, None)
            child = subprocess.run(
                [sys.executable, __file__, "--phase", phase, "--folder", str(folder)]
                + (["--quick"] if args.quick else []),
                env=env,
                capture_output=True,
                text=True,
            )
            sys.stdout.write(child.stdout[-4000:])
            if child.returncode != 0:
                sys.stderr.write(child.stderr[-4000:])
                raise SystemExit(f"{phase} phase failed")
            results.update(json.loads(child.stdout.strip().splitlines()[-1]))
    summary = {"bench": "erasure", "quick": args.quick, **results}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
