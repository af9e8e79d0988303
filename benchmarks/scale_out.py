"""Scale-out: runs on Celery workers on one host and on two (network namespaces on this machine),
a host lost mid-run, and how many batch commits per second the lakehouse's catalog takes on
SQLite and on PostgreSQL.

Hosts phase (``analytics_assets/testing/scale_out.py``): for 1, then 2 worker hosts, a fresh
cluster (the daemon here; Dagster's storage and the lakehouse catalog on PostgreSQL; a Redis
broker; a Kafka-protocol broker; each host's worker with ``--concurrency 2``). FILES files of
EVENTS page views land at once and KAFKA events go to a 4-partition topic; events/s runs from
the first file landed to the last event stored. Then, on the two hosts, a host is lost: a run
is held at its commit, its host's worker killed (SIGKILL to all it runs), and the run's failure
(run monitoring) timed from the kill (``failover_s``); after more files and Kafka events, every
event is checked stored exactly once (``lost``, ``duplicated``) and no run left in progress
(``stuck_runs``). Both "hosts" share this machine's 2 cores: a second host adds workers, not
CPU, so ``events_per_s_2_hosts`` shows the cost of the distribution, not a speed-up.

Catalog phase: WRITERS processes commit tiny batches (10 events and the ledger row) through the
real batch commit for SECONDS each, on a SQLite catalog, then on PostgreSQL:
``catalog_commits_per_s_*``, the ceiling on batches per second whatever the number of workers.

Usage: ``uv run python benchmarks/scale_out.py [--files 40] [--events 5000] [--kafka 50000]
[--writers 2] [--seconds 20] [--quick]``. Needs root (namespaces) and the Debian servers the
tests use.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def hosts_phase(host_count: int, files: int, events: int, kafka: int, failover: bool) -> dict:
    import dagster as dg

    from analytics_assets.lib import faults
    from analytics_assets.testing.fault_trials import audit, in_progress_runs
    from analytics_assets.testing.scale_out import cluster, land, wait_stored
    from analytics_assets.testing.servers import temporary_home

    home = temporary_home(f"scale-out-{host_count}-")
    fault_file = home / "fault"
    with cluster(home, host_count=host_count, **{faults.ENV: str(fault_file)}) as made:
        instance = dg.DagsterInstance.get()
        warm = land("warm", files=1, events=100)  # the code server and sensors are up
        wait_stored({e for ids in warm.values() for e in ids}, timeout=300)
        started = time.time()
        expected = land("load", files=files, events=events)
        kafka_ids = made.produce("kafka-load", kafka)
        wanted = {e for ids in expected.values() for e in ids} | kafka_ids
        wait_stored(wanted, timeout=900)
        elapsed = time.time() - started
        took = {made.host_of(r) for r in instance.get_runs() if r.status.name == "SUCCESS"}
        out = {
            f"events_per_s_{host_count}_host{'s' if host_count > 1 else ''}": round(
                len(wanted) / elapsed
            ),
            f"hosts_used_{host_count}": len(took & {h.name for h in made.hosts}),
        }
        print(f"{host_count} host(s): {len(wanted):,} events in {elapsed:.1f}s", flush=True)
        if not failover:
            return out
        faults.arm(fault_file, faults.BEFORE_COMMIT, stall=True)
        victim = land("victim", files=1, events=events)
        stalled = Path(f"{fault_file}.stalled")
        deadline = time.monotonic() + 120
        while not stalled.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no run reached the commit")
            time.sleep(0.05)
        (first,) = [r for r in in_progress_runs(instance) if "victim" in str(r.tags)]
        lost_host = made.host_of(first)
        killed_at = made.kill_host(lost_host)
        stalled.unlink()
        later = land("later", files=files // 2, events=events)
        more = made.produce("kafka-later", kafka // 2)
        every = {**expected, **victim, **later, "kafka": kafka_ids | more}
        wait_stored({e for ids in every.values() for e in ids}, timeout=900)
        result = audit(instance, every)
        record = instance.get_run_record_by_id(first.run_id)
        retries = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": first.run_id}))
        failed_at = record.end_time if record.dagster_run.is_finished else float("nan")
        print(
            f"host {lost_host} lost at a commit: run failed after {failed_at - killed_at:.1f}s, "
            f"retried on {[made.host_of(r) for r in retries]}; {result}",
            flush=True,
        )
        return {
            **out,
            "lost": result.lost,
            "duplicated": result.duplicated + result.extra_ledger_rows,
            "stuck_runs": result.stuck_runs,
            "failover_s": round(failed_at - killed_at, 1),
        }


def commit_writer(catalog: str, data: str, writer: int, seconds: float, start_at: float) -> None:
    """One process: tiny batches committed through the real batch commit for ``seconds``."""
    from datetime import UTC, datetime

    from analytics_assets.defs.ingest import tables
    from analytics_assets.defs.ingest.parsing import parse_batch
    from analytics_assets.defs.ingest.validation import validate_batch
    from analytics_assets.lib import lakehouse
    from analytics_assets.testing.fault_trials import events_file

    raw, _ = events_file(f"w{writer}", 10)
    batch = validate_batch(parse_batch(raw, "tiny.jsonl"))
    with lakehouse.connect(where=lakehouse.Location(catalog, data)) as conn:
        tables.ensure_tables(conn)
        time.sleep(max(0.0, start_at - time.time()))
        commits = 0
        end = time.time() + seconds
        while time.time() < end:
            name = f"w{writer}-{commits}"
            clean = batch.clean.with_columns(event_id=batch.clean["event_id"] + f"-{commits}")
            info = tables.BatchFile(name, f"{name}.jsonl", None, None, datetime.now(UTC))
            tables.commit_batch(conn, info, clean, batch.quarantined, clean.height)
            commits += 1
    print(json.dumps({"writer": writer, "commits": commits}))


def catalog_phase(catalog: str, data: str, writers: int, seconds: float) -> float:
    from analytics_assets.defs.ingest.tables import ensure_tables
    from analytics_assets.lib import lakehouse

    with lakehouse.connect(where=lakehouse.Location(catalog, data)) as conn:
        ensure_tables(conn)
    start_at = time.time() + 15  # every process has imported and attached by then
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--commit-writer", catalog, data, str(w), str(seconds)]
            + [str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for w in range(writers)
    ]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return sum(r["commits"] for r in results) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--kafka", type=int, default=50_000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="10 files of 1,000, 5 s commits")
    parser.add_argument("--commit-writer", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.commit_writer:
        catalog, data, writer, seconds, start_at = args.commit_writer
        commit_writer(catalog, data, int(writer), float(seconds), float(start_at))
        return
    if args.quick:
        args.files, args.events, args.kafka, args.seconds = 10, 1_000, 10_000, 5.0
    from analytics_assets.testing.servers import postgres_server

    results: dict = {}
    results.update(hosts_phase(1, args.files, args.events, args.kafka, failover=False))
    results.update(hosts_phase(2, args.files, args.events, args.kafka, failover=True))
    folder = Path(tempfile.mkdtemp(prefix="scale-out-catalog-"))
    sqlite = catalog_phase(
        f"sqlite:{folder / 'sqlite' / 'catalog.sqlite'}",
        f"{folder / 'sqlite' / 'data'}/",
        args.writers,
        args.seconds,
    )
    with postgres_server(("lake",)) as url:
        postgres = catalog_phase(
            f"postgres:{url}/lake", f"{folder / 'pg' / 'data'}/", args.writers, args.seconds
        )
    print(
        f"catalog commits/s, {args.writers} writers: SQLite {sqlite:.1f}, PostgreSQL {postgres:.1f}"
    )
    print(
        json.dumps(
            {
                "bench": "scale_out",
                **results,
                "catalog_commits_per_s_sqlite": round(sqlite, 1),
                "catalog_commits_per_s_postgres": round(postgres, 1),
                "files": args.files,
                "events_per_file": args.events,
                "kafka_events": args.kafka,
                "commit_writers": args.writers,
            }
        )
    )


if __name__ == "__main__":
    main()
