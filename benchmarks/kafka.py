"""Kafka as a source: ingest throughput against a bare consume, and produce -> scored latency.

Phase 1, throughput. A real broker (noida-db, ``analytics_assets.testing.servers``) on a loopback
port; 1M simulated events produced to a topic of 4 partitions, keyed by customer (timed apart:
``produce_events_per_s``). Then, in ROUNDS rounds, interleaved:

- **consume**: every partition's whole range read by ``kafka_source.read_range`` (the client,
  settings and loop the ingest uses) and discarded;
- **ingest**: the same ranges, one per partition, through ``ingest_range`` (read, parse,
  validate, quarantine, commit with the ledger row) into a fresh warehouse, as the runs do,
  without Dagster.

``events_per_s`` is 1M over the median ingest time; ``ratio_to_consume`` is the consume time
over the ingest time (1.0: ingesting costs no more than reading).

Phase 2, latency (skipped with ``--throughput-only``). The real daemon with a Kafka sensor and
the BentoML scoring service on fixture champions; every 5 s a batch of 2,000 events is produced,
each with one new customer; a probe is done when ``/churn`` says the customer is ``known``:
``p50_online_s``, ``p95_online_s`` from the produce call's return.

Usage: ``uv run python benchmarks/kafka.py [--events 1000000] [--probes 12] [--quick]``. The
last line is the JSON of PERFORMANCE.md (``events_per_s``, ``ratio_to_consume``,
``p95_online_s``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from freshness import percentile, prepare_serving, probe_batch, start_daemon  # noqa: E402

PARTITIONS = 4
ROUNDS = 3
SPACING_S = 5.0
BATCH = 2_000


def simulated(events: int):
    from analytics_assets.producers import simulate

    customers = max(100, events // 45)
    while True:
        config = simulate.SimulationConfig(customers=customers, days=60, start=datetime(2024, 1, 1))
        frame = simulate.simulate_events(config)
        if frame.height >= events:
            return frame.head(events)
        customers = int(customers * 1.3 * events / max(frame.height, 1)) + 1


def throughput(home: Path, broker, events: int) -> dict:
    import shutil

    from confluent_kafka.admin import AdminClient, NewTopic

    from analytics_assets.defs.ingest.kafka import ingest_range
    from analytics_assets.lib import kafka_source, lakehouse
    from analytics_assets.lib.kafka_source import OffsetRange
    from analytics_assets.producers.kafka import send_batch

    config = kafka_source.client_config(broker.bootstrap)
    admin = AdminClient(config)
    for future in admin.create_topics([NewTopic("bench", PARTITIONS, 1)]).values():
        future.result(timeout=30)
    frame = simulated(events)
    began = time.perf_counter()
    sent = send_batch(frame, "bench", config)
    produce_s = time.perf_counter() - began
    print(f"produced {sent:,} events in {produce_s:.1f}s")
    marks = kafka_source.partitions(config, "bench")
    ranges = [OffsetRange("bench", p, 0, high) for p, (_, high) in marks.items() if high]
    consume, ingest = [], []
    for round_ in range(ROUNDS):
        began = time.perf_counter()
        read = sum(len(kafka_source.read_range(config, r).records) for r in ranges)
        consume.append(time.perf_counter() - began)
        assert read == events, read
        folder = home / f"lakehouse-{round_}"
        began = time.perf_counter()
        with lakehouse.connect(where=lakehouse.Location.under(folder)) as conn:
            stored = sum(
                ingest_range(conn, r, partial(kafka_source.read_range, config)).result.clean
                for r in ranges
            )
        ingest.append(time.perf_counter() - began)
        assert stored == events, stored
        shutil.rmtree(folder)
        print(f"  round {round_ + 1}: consume {consume[-1]:.2f}s, ingest {ingest[-1]:.2f}s")
    consume_s, ingest_s = statistics.median(consume), statistics.median(ingest)
    return {
        "events": events,
        "partitions": PARTITIONS,
        "produce_events_per_s": round(events / produce_s),
        "consume_s": round(consume_s, 2),
        "ingest_s": round(ingest_s, 2),
        "consume_events_per_s": round(events / consume_s),
        "events_per_s": round(events / ingest_s),
        "ratio_to_consume": round(consume_s / ingest_s, 2),
    }


def latency(home: Path, broker, probes: int) -> dict:
    """Produce a batch with a new customer every SPACING_S seconds; time until it is scored."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from analytics_assets import settings
    from analytics_assets.lib import kafka_source
    from analytics_assets.lib.processes import stop
    from analytics_assets.producers import simulate
    from analytics_assets.testing.servers import bento_service

    config = kafka_source.client_config(broker.bootstrap)
    admin = AdminClient(config)  # kept alive until the topic exists
    for future in admin.create_topics([NewTopic("stream", 2, 1)]).values():
        future.result(timeout=30)
    prepare_serving(home)
    sim = simulate.SimulationConfig(customers=2_000, days=30, start=datetime(2024, 1, 1))
    parts = list(simulate.batches(simulate.simulate_events(sim), BATCH, sim))
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_TOPICS": "stream"}
    os.environ.update(env)
    daemon = start_daemon(home / "daemon.log", **env)
    scoring_env = {"BENTOML_HOME": str(settings.bentoml_home())}
    try:
        with bento_service("customer_scoring", home / "scoring.log", scoring_env) as url:
            latencies = probe(url, parts, config, probes)
    finally:
        stop(daemon)
    return {
        "probes": len(latencies),
        "p50_online_s": round(statistics.median(latencies), 2),
        "p95_online_s": round(percentile(latencies, 0.95), 2),
        "max_online_s": round(max(latencies), 2),
    }


def probe(url: str, parts: list, config: dict, probes: int) -> list[float]:
    """A batch with a new customer every SPACING_S seconds; seconds from each produce call's
    return to the first answer that knows the customer."""
    import httpx

    from analytics_assets.producers.kafka import send_batch

    # one batch first: the daemon's code server and its Celery worker start
    _, warm = probe_batch(parts[0][1], 999, datetime.now(UTC))
    send_batch(warm, "stream", config)
    time.sleep(20)
    latencies: list[float] = []
    produced: dict[str, float] = {}
    pending: set[str] = set()
    k, next_send, deadline = 0, time.monotonic(), None
    while k < probes or pending:
        if k < probes and time.monotonic() >= next_send:
            customer, batch = probe_batch(parts[1 + k % (len(parts) - 1)][1], k, datetime.now(UTC))
            send_batch(batch, "stream", config)
            produced[customer] = time.time()
            pending.add(customer)
            k += 1
            next_send = time.monotonic() + SPACING_S
            deadline = time.monotonic() + 300
        answer = httpx.post(f"{url}/churn", json={"customer_ids": sorted(pending) or ["none"]})
        for row in answer.json()["predictions"]:
            if row["known"] and row["customer_id"] in pending:
                latencies.append(time.time() - produced[row["customer_id"]])
                pending.discard(row["customer_id"])
                print(f"  {row['customer_id']}: scored after {latencies[-1]:.1f}s")
        if deadline and time.monotonic() > deadline:
            raise TimeoutError(f"never scored: {sorted(pending)}")
        time.sleep(0.5)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=12)
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100k events, 4 probes")
    args = parser.parse_args()
    if args.quick:
        args.events, args.probes = 100_000, 4
    from analytics_assets.testing.servers import temporary_home

    home = temporary_home("bench-kafka-")
    from analytics_assets import settings
    from analytics_assets.testing.servers import kafka_broker

    settings.ensure_dirs()
    with kafka_broker(home / "broker") as broker:
        result = throughput(home, broker, args.events)
        if not args.throughput_only:
            result.update(latency(home, broker, args.probes))
    result["machine"] = f"{os.cpu_count()} cores"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
