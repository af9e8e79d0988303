"""The lakehouse: commit latency as it grows, many writers, ingest, queries and restore.

One command, every figure measured in this run on this machine (baselines included):

- ``commit_p95_s``: committing one 2,000-event batch (validated already: the commit alone,
  ``tables.commit_batch``) into a lakehouse holding 1M events, then 10M (``commit_growth``:
  p95 at 10M over p95 at 1M);
- ``concurrent_ratio``: events/s of 4 writer processes ingesting 2,000-event files through
  ``ingest_file`` at once, over 1 writer ingesting as many files alone (imports and a warm-up
  paid before the clock starts);
- ``ingest_events_per_s``: one 1M-event JSON-lines file through ``ingest_file``, and its ratio
  to a plain ``polars.read_ndjson`` of the same file (``ingest_ratio_to_parse``);
- ``query_ratio_to_native``: a group-by over the 10M events, lakehouse over the same rows in
  a plain DuckDB file (median of 5 each);
- ``restore_s``: ``restore_to`` the moment before the last batches, 10M events.

- ``kafka_events_per_s``: 1M events (quick: 200k) on a 4-partition topic of a real broker
  (noida-db on loopback), each partition's range ingested by ``ingest_range`` in its own process,
  the four at once; ``kafka_events_per_s_1_process`` the same ranges one after another in one
  process (as ``benchmarks/kafka.py`` does).

Usage: ``uv run python benchmarks/lakehouse.py [--quick]`` (quick: 200k and 1M stored).
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
from datetime import UTC, datetime
from pathlib import Path

BATCH = 2_000
COMMITS = 20
WRITERS = 4
FILES_PER_WRITER = 6


def base_sql(rows: int, offset: int) -> str:
    """``rows`` synthetic events over 90 days of 2024 (ids from ``offset``), in the events
    table's column order."""
    return f"""
        SELECT 'base-' || i AS event_id,
               ['page_view', 'add_to_cart', 'purchase'][1 + (i % 7 = 0)::INT + (i % 13 = 0)::INT],
               'cust-' || lpad((hash(i) % 200000)::VARCHAR, 7, '0'),
               'sess-' || (i // 6),
               TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL (i * 777 % 7776000) SECOND,
               'p' || (i % 500), 1, (i % 9000) / 100.0, 'USD', 'mobile', NULL,
               'bench', now()
        FROM range({offset}, {offset + rows}) t(i)
    """


def grow(conn, rows: int, offset: int) -> None:
    """Add ``rows`` events in chunks of 2.5M (one transaction each)."""
    chunk = 2_500_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        conn.execute(f"INSERT INTO events {base_sql(n, offset + start)}")


def batches(count: int):
    """``count`` validated 2,000-event batches of simulated events (distinct ids)."""
    from analytics_assets.defs.ingest.validation import validate_batch
    from analytics_assets.producers import simulate
    from analytics_assets.producers.files import write_batch

    folder = Path(tempfile.mkdtemp(prefix="lakehouse-batches-"))
    config = simulate.SimulationConfig(customers=2_000, days=30, start=datetime(2024, 2, 1))
    frame = simulate.simulate_events(config)
    out = []
    from analytics_assets.defs.ingest.parsing import parse_batch

    for k in range(count):
        part = frame.slice((k * BATCH) % (frame.height - BATCH), BATCH)
        part = part.with_columns(event_id=part["event_id"] + f"-c{k}")
        path = write_batch(part, folder, f"commit-{k}", "jsonl")
        out.append(validate_batch(parse_batch(Path(path).read_bytes(), Path(path).name)))
    return out


def commit_times(conn, validated, prefix: str) -> list[float]:
    from analytics_assets.defs.ingest import tables

    times = []
    for k, batch in enumerate(validated):
        info = tables.BatchFile(f"{prefix}-{k}", f"{prefix}-{k}.jsonl", None, None, None)
        started = time.perf_counter()
        tables.commit_batch(conn, info, batch.clean, batch.quarantined, batch.clean.height)
        times.append(time.perf_counter() - started)
    return times


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.99) - 1]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def stored_phase(folder: Path, small: int, large: int) -> dict:
    """Commit latency at ``small`` then ``large`` stored events; then the query ratio and the
    restore at ``large``."""
    import duckdb

    from analytics_assets.defs.ingest.tables import ensure_tables
    from analytics_assets.lib import lakehouse, restore

    where = lakehouse.Location.under(folder / "lake")
    validated = batches(2 * COMMITS)
    with lakehouse.connect(where=where) as conn:
        ensure_tables(conn)
        grow(conn, small, 0)
        at_small = commit_times(conn, validated[:COMMITS], "small")
        grow(conn, large - small, small)
        at_large = commit_times(conn, validated[COMMITS:], "large")
        (stored,) = conn.execute("SELECT count(*) FROM events").fetchone()

        query = (
            "SELECT event_type, (occurred_at AT TIME ZONE 'UTC')::DATE AS day, "
            "count(*), count(DISTINCT customer_id), sum(amount) FROM events GROUP BY 1, 2"
        )
        native_path = folder / "native.duckdb"  # the same rows in a plain DuckDB file
        conn.execute(f"ATTACH '{native_path}' AS native")
        conn.execute("CREATE TABLE native.events AS SELECT * FROM lake.events")
        conn.execute("DETACH native")
        lake_q, native_q = [], []
        with duckdb.connect(str(native_path), read_only=True) as native:
            for _ in range(5):
                started = time.perf_counter()
                conn.execute(query).fetchall()
                lake_q.append(time.perf_counter() - started)
                started = time.perf_counter()
                native.execute(query).fetchall()
                native_q.append(time.perf_counter() - started)

        kpi_ms = kpi_reads(conn, where)

        time.sleep(0.01)
        moment = datetime.now(UTC)
        time.sleep(0.01)
        commit_times(conn, validated[:3], "after")
        started = time.perf_counter()
        done = restore.restore_to(conn, moment, log=lambda _m: None)
        restore_s = time.perf_counter() - started
        assert done.tables["events"] == stored, (done.tables["events"], stored)
        files = len(lakehouse.data_files(conn, "events"))
    return {
        "stored_small": small,
        "stored_large": stored,
        "commit_s_small": at_small,
        "commit_s_large": at_large,
        "query_lake_s": lake_q,
        "query_native_s": native_q,
        "restore_s": restore_s,
        "event_files": files,
        "kpi_ms": kpi_ms,
    }


def kpi_reads(conn, where) -> list[float]:
    """The read API's ``/kpis`` query (``reads.kpis`` on the service's sandbox, in process):
    90-day ranges of daily windows, after ``kpis_daily`` is built from the stored events."""
    from datetime import date, timedelta

    from analytics_assets.defs.analytics import tables, transforms
    from bentos.analytics_reader import reads
    from bentos.analytics_reader.sandbox import Sandbox

    start, end = date(2024, 1, 1), date(2024, 4, 1)
    sessions = transforms.sessions(conn, start, end).fetch_arrow_table()
    tables.replace_range(conn, "sessions", sessions, "day", start, end)
    data = transforms.kpis(conn, start, end, "day").fetch_arrow_table()
    tables.replace_range(conn, "kpis_daily", data, "window_start", start, end)
    sandbox = Sandbox(None, where)
    cache = reads.SnapshotCache()
    query, cached = [], []
    for k in range(220):
        first = start + timedelta(days=k % 2)  # two ranges, alternating
        last = first + timedelta(days=88)
        began = time.perf_counter()
        rows = reads.kpis(sandbox.db, "day", first, last)
        query.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        again = cache.get(
            sandbox.db,
            ("kpis", first, last),
            lambda f=first, la=last: reads.kpis(sandbox.db, "day", f, la),
        )
        cached.append((time.perf_counter() - began) * 1000)
        assert len(rows) == len(again) == 89, len(rows)
    sandbox.close()
    return {"query": query[20:], "cached": cached[20:]}


def writer(folder: Path, writer_id: int, files: int, start_at: float) -> dict:
    """One writer process: imports and warms up (one file parsed and validated: pandera's
    import and polars' first run are 0.3-0.4 s of the first file; the ledger read once), then
    at ``start_at`` ingests its files."""
    from analytics_assets.defs.ingest import tables
    from analytics_assets.defs.ingest.batch import Records, ingest_file, parse_and_validate
    from analytics_assets.lib import lakehouse

    where = lakehouse.Location.under(folder / "lake")
    paths = sorted((folder / f"w{writer_id}").glob("*.jsonl"))[:files]
    with lakehouse.connect(where=where) as conn:
        parse_and_validate(Records(paths[0].read_bytes(), paths[0].name))
        tables.ledger_row(conn, "warm-up")
        time.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        events = sum(ingest_file(conn, p, f"{p.stem}-{writer_id}").result.clean for p in paths)
        return {"writer": writer_id, "events": events, "began": began, "ended": time.time()}


def writers_phase(folder: Path, count: int, files: int) -> float:
    """Events/s of ``count`` writer processes started together on a fresh lakehouse."""
    import shutil

    from analytics_assets.defs.ingest.tables import ensure_tables
    from analytics_assets.lib import lakehouse

    shutil.rmtree(folder / "lake", ignore_errors=True)
    with lakehouse.connect(where=lakehouse.Location.under(folder / "lake")) as conn:
        ensure_tables(conn)
    start_at = time.time() + 12  # every process has imported by then
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--writer", str(folder), str(w), str(files), str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(count)
    ]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    began = min(r["began"] for r in results)
    ended = max(r["ended"] for r in results)
    return sum(r["events"] for r in results) / (ended - began)


def kafka_writer(folder: Path, bootstrap: str, partitions: list[int], start_at: float) -> dict:
    """Ingest whole partitions of topic ``bench`` into the lakehouse under ``folder``."""
    from functools import partial

    from analytics_assets.defs.ingest.kafka import ingest_range
    from analytics_assets.lib import kafka_source, lakehouse
    from analytics_assets.lib.kafka_source import OffsetRange

    config = kafka_source.client_config(bootstrap)
    marks = kafka_source.partitions(config, "bench")
    where = lakehouse.Location.under(folder / "kafka-lake")
    with lakehouse.connect(where=where) as conn:
        time.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        events = sum(
            ingest_range(
                conn,
                OffsetRange("bench", p, 0, marks[p][1]),
                partial(kafka_source.read_range, config),
            ).result.clean
            for p in partitions
        )
    return {"events": events, "began": began, "ended": time.time()}


def kafka_phase(folder: Path, events: int) -> dict:
    """Events/s of 4 partitions ingested by 4 processes at once, and by 1 process in turn."""
    import shutil

    from confluent_kafka.admin import AdminClient, NewTopic

    from analytics_assets.defs.ingest.tables import ensure_tables
    from analytics_assets.lib import kafka_source, lakehouse
    from analytics_assets.producers.kafka import send_batch
    from analytics_assets.testing.servers import kafka_broker

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from kafka import simulated

    with kafka_broker(folder / "kafka") as broker:
        config = kafka_source.client_config(broker.bootstrap)
        admin = AdminClient(config)
        for future in admin.create_topics([NewTopic("bench", 4, 1)]).values():
            future.result(timeout=30)
        send_batch(simulated(events), "bench", config)
        rates = {}
        for label, groups in (("one", [[0, 1, 2, 3]]), ("four", [[0], [1], [2], [3]])):
            shutil.rmtree(folder / "kafka-lake", ignore_errors=True)
            with lakehouse.connect(where=lakehouse.Location.under(folder / "kafka-lake")) as c:
                ensure_tables(c)
            start_at = time.time() + 12
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--kafka-writer",
                        str(folder),
                        broker.bootstrap,
                        ",".join(map(str, group)),
                        str(start_at),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
                for group in groups
            ]
            results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
            stored = sum(r["events"] for r in results)
            assert stored == events, (stored, events)
            span = max(r["ended"] for r in results) - min(r["began"] for r in results)
            rates[label] = events / span
    return rates


def write_files(folder: Path, per_writer: int) -> None:
    from analytics_assets.producers import simulate
    from analytics_assets.producers.files import write_batch

    config = simulate.SimulationConfig(customers=3_000, days=30, start=datetime(2024, 2, 1))
    frame = simulate.simulate_events(config)
    for w in range(WRITERS):
        for k in range(per_writer):
            offset = ((w * per_writer + k) * BATCH) % (frame.height - BATCH)
            part = frame.slice(offset, BATCH)
            part = part.with_columns(event_id=part["event_id"] + f"-w{w}-{k}")
            write_batch(part, folder / f"w{w}", f"w{w}-{k:03d}", "jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--writer", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--kafka-writer", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--stored", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        folder, w, files, start_at = args.writer
        print(json.dumps(writer(Path(folder), int(w), int(files), float(start_at))))
        return
    if args.kafka_writer:
        folder, bootstrap, partitions, start_at = args.kafka_writer
        groups = [int(p) for p in partitions.split(",")]
        print(json.dumps(kafka_writer(Path(folder), bootstrap, groups, float(start_at))))
        return
    if args.stored:
        folder, small, large = args.stored
        print(json.dumps(stored_phase(Path(folder), int(small), int(large))))
        return
    small, large = (200_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
    ingest_events = 200_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "ANALYTICS_HOME": str(folder / "home")}
        stored = json.loads(
            subprocess.run(
                [sys.executable, __file__, "--stored", str(folder), str(small), str(large)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        print(
            f"commit of {BATCH:,} events: p95 {p95(stored['commit_s_small']):.3f}s at "
            f"{small:,} stored, {p95(stored['commit_s_large']):.3f}s at {stored['stored_large']:,}"
        )
        print(
            f"group-by over {stored['stored_large']:,} events: lakehouse "
            f"{statistics.median(stored['query_lake_s']):.3f}s, plain DuckDB file "
            f"{statistics.median(stored['query_native_s']):.3f}s"
        )
        print(f"restore of {stored['stored_large']:,} events: {stored['restore_s']:.2f}s")
        for label, times in stored["kpi_ms"].items():
            kpi = sorted(times)
            print(
                f"/kpis, 89 days of daily windows, {label} (in process): p50 "
                f"{statistics.median(kpi):.1f} ms, p99 {kpi[int(len(kpi) * 0.99) - 1]:.1f} ms"
            )

        write_files(folder, FILES_PER_WRITER * WRITERS)
        alone = writers_phase(folder, 1, FILES_PER_WRITER * WRITERS)
        together = writers_phase(folder, WRITERS, FILES_PER_WRITER * WRITERS // WRITERS)
        print(
            f"ingest of {BATCH:,}-event files: 1 writer {alone:,.0f} ev/s, {WRITERS} writers "
            f"{together:,.0f} ev/s"
        )

        kafka = kafka_phase(folder, ingest_events)
        print(
            f"Kafka, {ingest_events:,} events on 4 partitions: 1 process {kafka['one']:,.0f} "
            f"ev/s, 4 processes at once {kafka['four']:,.0f} ev/s"
        )

        ingest = (
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("ingest.py")),
                    "--events",
                    str(ingest_events),
                    "--runs",
                    "3",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()
        )
        print("\n".join(ingest[:-1]))
        ingest_result = json.loads(ingest[-1])

    summary = {
        "bench": "lakehouse",
        "catalog": "sqlite",
        "commit_p95_s": round(p95(stored["commit_s_large"]), 4),
        "commit_p95_s_small": round(p95(stored["commit_s_small"]), 4),
        "commit_growth": round(p95(stored["commit_s_large"]) / p95(stored["commit_s_small"]), 3),
        "stored_small": small,
        "stored_large": stored["stored_large"],
        "concurrent_ratio": round(together / alone, 3),
        "events_per_s_1_writer": round(alone),
        "events_per_s_4_writers": round(together),
        "kafka_events_per_s": round(kafka["four"]),
        "kafka_events_per_s_1_process": round(kafka["one"]),
        "ingest_events_per_s": ingest_result["events_per_s"],
        "ingest_ratio_to_parse": ingest_result["ratio_to_raw_parse"],
        "query_ratio_to_native": round(
            statistics.median(stored["query_lake_s"]) / statistics.median(stored["query_native_s"]),
            3,
        ),
        "restore_s": round(stored["restore_s"], 3),
        "kpi_p99_ms": round(p99(stored["kpi_ms"]["cached"]), 2),
        "kpi_query_p99_ms": round(p99(stored["kpi_ms"]["query"]), 2),
        "event_files": stored["event_files"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
