"""The published lake: what a batch's publish costs as the warehouse grows, the read API's KPI
latency, and ``analytics sql`` against the same query on the DuckDB file.

For each warehouse (1M and 10M stored events, 10,000 a day: a warehouse grows in time; and
10M on the 1M warehouse's 100 days, denser days, reported beside it), in a fresh home:

1. the events are loaded with SQL (not timed) and the whole lake published once (timed:
   ``initial_publish_s``);
2. ``BATCHES`` batches of 2,000 simulated events on the newest day (a stream's batches) are
   ingested by the real path (``ingest_file``: parse, validate, commit, marking the lake) and
   the lake published after each, as ``ingest_batch`` does; ``publish_s_per_batch`` is the
   median publish (partitions, footer check and catalog), ``commit_s_per_batch`` the commit's;
3. at 10M: sessions and KPIs of the last 120 days are built and published; the read API
   (``bentoml serve`` of bentos/analytics_reader) answers random 90-day ``/kpis`` ranges from
   one client, closed loop: p50/p99; the same range read through DuckDB views in-process is
   the baseline;
4. at 10M: ``SELECT event_type, count(*), sum(amount) ... GROUP BY`` through ``analytics sql``
   (a process, as a person runs it), and in-process over the lake, against the same query on
   the warehouse file (read-only).

Usage: ``uv run python benchmarks/lake.py [--quick]``. The last line is the JSON of
PERFORMANCE.md (``publish_s_per_batch``, ``publish_growth``, ``kpi_p99_ms``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PER_DAY = 10_000
BATCH = 2_000
BATCHES = 20
KPI_REQUESTS = 500


def load_events(database: Path, events: int, days: int) -> date:
    """``events`` synthetic events over ``days`` days in time order (as a stream stores them);
    returns the newest day."""
    import duckdb

    from analytics_assets.defs.ingest.tables import ensure_tables

    first = datetime(2022, 1, 1, tzinfo=UTC)
    step_us = days * 86_400_000_000 // events
    with duckdb.connect(str(database)) as conn:
        ensure_tables(conn)
        conn.execute(
            f"""
            INSERT INTO events
            SELECT 'seed-' || i,
                   CASE i % 10 WHEN 0 THEN 'purchase' WHEN 1 THEN 'add_to_cart'
                        ELSE 'page_view' END,
                   'c' || lpad((hash(i) % 200000)::VARCHAR, 7, '0'),
                   's' || (i // 7),
                   $first + to_microseconds(i * {step_us}),
                   'p' || (i % 500),
                   CASE WHEN i % 10 = 0 THEN 1 END,
                   CASE WHEN i % 10 = 0 THEN 5.0 + (i % 50) END,
                   CASE WHEN i % 10 = 0 THEN 'USD' END,
                   CASE i % 3 WHEN 0 THEN 'mobile' WHEN 1 THEN 'desktop' ELSE 'tablet' END,
                   NULL,
                   'seed-' || (i // 100000),
                   now()
            FROM range({events}) t(i)
            """,
            {"first": first},
        )
        conn.execute("CHECKPOINT")
    return (first + timedelta(days=days - 1)).date()


def publish_all(database: Path) -> float:
    import duckdb

    from analytics_assets import settings
    from analytics_assets.lib import lake

    with duckdb.connect(str(database)) as conn:
        started = time.perf_counter()
        conn.execute("BEGIN")
        lake.mark_rows(conn, "events")
        conn.execute("COMMIT")
        lake.publish_pending(conn, settings.lake_dir())
        lake.refresh_catalog(settings.lake_catalog_path(), lake.views(settings.lake_dir()))
        return time.perf_counter() - started


def batch_files(folder: Path, day: date, count: int) -> list[Path]:
    """``count`` files of ``BATCH`` simulated events on ``day`` (distinct seeds: new ids)."""
    from analytics_assets.producers import simulate
    from analytics_assets.producers.files import write_batch

    files = []
    for k in range(count):
        config = simulate.SimulationConfig(
            customers=3000, days=1, seed=1000 + k, start=datetime.combine(day, datetime.min.time())
        )
        events = simulate.simulate_events(config).head(BATCH)
        files.append(write_batch(events, folder, f"bench-{k:03d}", "parquet"))
    return files


def stream(database: Path, files: list[Path]) -> dict:
    """Each batch committed by the real ingest path, then the lake published and checked as
    ``ingest_batch`` does; the publish is timed apart from the commit."""
    import duckdb

    from analytics_assets import settings
    from analytics_assets.defs.ingest.batch import ingest_file
    from analytics_assets.lib import lake

    commits, publishes, partitions = [], [], []
    with duckdb.connect(str(database)) as conn:
        for path in files:
            started = time.perf_counter()
            outcome = ingest_file(conn, path, path.stem)
            assert outcome.result.clean == BATCH, outcome
            committed = time.perf_counter()
            published = lake.publish_pending(conn, settings.lake_dir())
            assert lake.check(conn, settings.lake_dir(), published) == {}
            lake.refresh_catalog(settings.lake_catalog_path(), lake.views(settings.lake_dir()))
            done = time.perf_counter()
            commits.append(committed - started)
            publishes.append(done - committed)
            partitions.append(len(published))
    return {
        "publish_s_median": round(statistics.median(publishes), 4),
        "publish_s_p95": round(sorted(publishes)[int(0.95 * (len(publishes) - 1))], 4),
        "commit_s_median": round(statistics.median(commits), 4),
        "partitions_per_batch": statistics.median(partitions),
    }


def build_kpis(database: Path, last: date, days: int = 120) -> None:
    import duckdb

    from analytics_assets import settings
    from analytics_assets.defs.analytics import tables, transforms
    from analytics_assets.lib import lake

    start, end = last - timedelta(days=days - 1), last + timedelta(days=1)
    with duckdb.connect(str(database)) as conn:
        data = transforms.sessions(conn, start, end, transforms.DEFAULT_GAP_MINUTES)
        tables.replace_range(conn, "sessions", data.to_arrow_table(), "day", start, end)
        for grain, name in (("hour", "kpis_hourly"), ("day", "kpis_daily")):
            data = transforms.kpis(conn, start, end, grain).to_arrow_table()
            tables.replace_range(conn, name, data, "window_start", start, end)
        lake.publish_pending(conn, settings.lake_dir())


def kpi_latency(home: Path, last: date, span: int) -> dict:
    """Random 90-day ``/kpis`` ranges from one client against the real read API; and the same
    through DuckDB views over the lake, in-process."""
    import httpx

    from analytics_assets import settings
    from analytics_assets.lib import lake
    from analytics_assets.testing.servers import bento_service

    rng = random.Random(3)
    starts = [
        last - timedelta(days=span - 1 - rng.randrange(span - 89)) for _ in range(KPI_REQUESTS)
    ]
    latencies = []
    with (
        bento_service(
            "analytics_reader", home / "reader.log", {"ANALYTICS_HOME": str(home)}
        ) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        for i, first in enumerate(starts):
            body = {
                "window": "day",
                "first_day": str(first),
                "last_day": str(first + timedelta(days=89)),
            }
            began = time.perf_counter()
            answer = client.post("/kpis", json=body)
            elapsed = time.perf_counter() - began
            assert answer.status_code == 200 and len(answer.json()["rows"]) == 90, answer.text
            if i >= 20:  # the first requests fill the file cache
                latencies.append(elapsed * 1e3)
    conn = lake.connect(settings.lake_dir())
    duck = []
    for first in starts[:100]:
        began = time.perf_counter()
        rows = conn.execute(
            "SELECT * FROM kpis_daily WHERE day BETWEEN ? AND ? ORDER BY window_start",
            [first, first + timedelta(days=89)],
        ).fetchall()
        duck.append((time.perf_counter() - began) * 1e3)
        assert len(rows) == 90
    conn.close()
    latencies.sort()
    duck.sort()
    return {
        "kpi_p50_ms": round(latencies[len(latencies) // 2], 2),
        "kpi_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
        "kpi_duckdb_views_p50_ms": round(duck[len(duck) // 2], 2),
        "kpi_duckdb_views_p99_ms": round(duck[int(0.99 * (len(duck) - 1))], 2),
    }


GROUP_BY = (
    "SELECT event_type, count(*) AS n, sum(amount) AS revenue FROM events GROUP BY event_type "
    "ORDER BY event_type"
)


def sql_against_warehouse(database: Path) -> dict:
    import duckdb

    from analytics_assets import settings
    from analytics_assets.lib import lake

    def best(run, repeat: int = 3) -> float:
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
        return min(times)

    with duckdb.connect(str(database), read_only=True) as conn:
        expected = conn.execute(GROUP_BY).fetchall()
        warehouse_s = best(lambda: conn.execute(GROUP_BY).fetchall())
    conn = lake.connect(settings.lake_dir())
    got = conn.execute(GROUP_BY).fetchall()
    assert [(t, n) for t, n, _ in got] == [(t, n) for t, n, _ in expected], (got, expected)
    lake_s = best(lambda: conn.execute(GROUP_BY).fetchall())
    conn.close()
    cli = [str(Path(sys.executable).parent / "analytics"), "sql", "--format", "csv", GROUP_BY]
    cli_s = best(lambda: subprocess.run(cli, check=True, capture_output=True))
    return {
        "sql_warehouse_s": round(warehouse_s, 3),
        "sql_lake_s": round(lake_s, 3),
        "sql_cli_s": round(cli_s, 3),
        "sql_ratio_to_warehouse": round(lake_s / warehouse_s, 2),
        "sql_cli_ratio_to_warehouse": round(cli_s / warehouse_s, 2),
    }


def trial(events: int, days: int, full: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp:
        home = Path(tmp) / "analytics"
        os.environ["ANALYTICS_HOME"] = str(home)
        from analytics_assets import settings

        settings.ensure_dirs()
        database = settings.warehouse_path()
        began = time.perf_counter()
        last = load_events(database, events, days)
        print(f"  {events:,} events over {days} days loaded in {time.perf_counter() - began:.1f}s")
        result = {
            "events": events,
            "days": days,
            "initial_publish_s": round(publish_all(database), 2),
        }
        print(f"  whole lake published in {result['initial_publish_s']}s")
        files = batch_files(Path(tmp) / "batches", last, BATCHES)
        result.update(stream(database, files))
        print(f"  per batch: {result}")
        if full:
            span = min(120, days)
            build_kpis(database, last, span)
            result.update(kpi_latency(home, last, span))
            result.update(sql_against_warehouse(database))
        lake_bytes = sum(p.stat().st_size for p in settings.lake_dir().rglob("*.parquet"))
        result["lake_mib"] = round(lake_bytes / 2**20, 1)
        result["warehouse_mib"] = round(database.stat().st_size / 2**20, 1)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k and 1M events")
    args = parser.parse_args()
    small, large = (100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
    print(f"{small:,} events, {small // PER_DAY} days")
    first = trial(small, small // PER_DAY, full=False)
    print(f"{large:,} events, {large // PER_DAY} days")
    second = trial(large, large // PER_DAY, full=True)
    print(f"{large:,} events on {small // PER_DAY} days (denser days)")
    dense = trial(large, small // PER_DAY, full=False)
    summary = {
        "publish_s_per_batch": second["publish_s_median"],
        "publish_s_per_batch_1m": first["publish_s_median"],
        "publish_s_p95": second["publish_s_p95"],
        "publish_growth": round(second["publish_s_median"] / first["publish_s_median"], 2),
        "publish_growth_denser_days": round(
            dense["publish_s_median"] / first["publish_s_median"], 2
        ),
        "commit_s_per_batch": second["commit_s_median"],
        "kpi_p50_ms": second["kpi_p50_ms"],
        "kpi_p99_ms": second["kpi_p99_ms"],
        "kpi_duckdb_views_p99_ms": second["kpi_duckdb_views_p99_ms"],
        "sql_ratio_to_warehouse": second["sql_ratio_to_warehouse"],
        "sql_cli_ratio_to_warehouse": second["sql_cli_ratio_to_warehouse"],
        "sql_warehouse_s": second["sql_warehouse_s"],
        "sql_lake_s": second["sql_lake_s"],
        "sql_cli_s": second["sql_cli_s"],
        "initial_publish_s_10m": second["initial_publish_s"],
        "lake_mib_10m": second["lake_mib"],
        "warehouse_mib_10m": second["warehouse_mib"],
        "events": [small, large],
        "machine": f"{os.cpu_count()} cores",
    }
    print(json.dumps({"trials": [first, second, dense]}))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
