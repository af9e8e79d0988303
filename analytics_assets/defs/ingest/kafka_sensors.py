"""One sensor per configured Kafka topic: new offsets become runs of the streaming lane.

A tick reads the partitions' high watermarks and requests one run per new offset range
(partition key and run key = the range's batch id), at most ``KAFKA_MAX_RECORDS`` records each;
fewer wait up to ``KAFKA_MAX_WAIT_S`` for more. It commits nothing to the broker and never opens
the warehouse. Its cursor is where the last requested range ended; without one (a new sensor,
a reset) it starts where the lake's copy of the ledger (``kafka_ledger``) ends, not at the
broker's committed offsets. A range requested twice is harmless: the run finds it covered.
"""

from __future__ import annotations

import json
import re
import time

import dagster as dg

from analytics_assets import settings
from analytics_assets.lib import kafka_source
from analytics_assets.lib.kafka_source import OffsetRange
from analytics_assets.lib.names import RUN_QUEUE_TAG, STREAMING_QUEUE
from analytics_assets.partitions import batches

KAFKA_RANGE_TAG = "analytics/kafka_range"


def sensor_name(topic: str) -> str:
    return "kafka_" + re.sub(r"[^A-Za-z0-9_]", "_", topic)


def ledger_offsets(topic: str) -> dict[int, int]:
    """Per partition, where the committed ranges end, from the ledger in the lakehouse (read
    through this process's shared read-only connection: no lock, no attach per tick)."""
    from analytics_assets.lib import lake

    with lake.cursor(lake.shared()) as cursor:
        if not lake.has_table(cursor, "kafka_ledger"):
            return {}
        rows = cursor.execute(
            'SELECT "partition", max(end_offset) FROM kafka_ledger WHERE topic = ? GROUP BY 1',
            [topic],
        ).fetchall()
    return {int(p): int(end) for p, end in rows}


def plan(
    cursor: dict, watermarks: dict[int, tuple[int, int]], max_records: int, max_wait_s: float,
    now: float,
) -> tuple[list[OffsetRange], dict]:  # fmt: skip
    """The ranges to request now and the next cursor. A partition with fewer than
    ``max_records`` new records waits until its first unrequested record has waited
    ``max_wait_s`` (by this sensor's clock)."""
    next_offsets = {int(p): o for p, o in cursor.get("next", {}).items()}
    waiting = {int(p): t for p, t in cursor.get("waiting", {}).items()}
    ranges: list[OffsetRange] = []
    for partition, (_low, high) in sorted(watermarks.items()):
        start = next_offsets.get(partition, 0)
        pending = high - start
        if pending <= 0:
            waiting.pop(partition, None)
            continue
        since = waiting.setdefault(partition, now)
        if pending < max_records and now - since < max_wait_s:
            continue
        for p, s, e in kafka_source.plan_ranges(
            {partition: start}, {partition: (0, high)}, max_records
        ):
            ranges.append(OffsetRange("", p, s, e))
        next_offsets[partition] = high
        waiting.pop(partition, None)
    return ranges, {
        "next": {str(p): o for p, o in next_offsets.items()},
        "waiting": {str(p): t for p, t in waiting.items()},
    }


def build_kafka_sensor(topic: str, target, minimum_interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name=sensor_name(topic),
        target=target,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"New records of Kafka topic {topic!r}: one run per offset range (exactly once: the "
            "range is committed with the events; offsets are committed to the broker after)."
        ),
    )
    def kafka_sensor(context: dg.SensorEvaluationContext):
        config = kafka_source.client_config(
            settings.kafka_bootstrap(), settings.kafka_client_config()
        )
        cursor = json.loads(context.cursor) if context.cursor else None
        if cursor is None:
            resumed = ledger_offsets(topic)
            cursor = {"next": {str(p): o for p, o in resumed.items()}, "waiting": {}}
            context.log.info(
                f"{topic}: no cursor; resuming from the ledger at {resumed or 'the start'}"
            )
        watermarks = kafka_source.partitions(config, topic)
        found, next_cursor = plan(
            cursor,
            watermarks,
            settings.kafka_max_records(),
            settings.kafka_max_wait_s(),
            time.time(),
        )
        ranges = [OffsetRange(topic, r.partition, r.start, r.end) for r in found]
        lag = {
            p: high - int(next_cursor["next"].get(str(p), 0)) for p, (_, high) in watermarks.items()
        }
        committed = {
            p: high - int(cursor.get("next", {}).get(str(p), 0))
            for p, (_, high) in watermarks.items()
        }
        context.log.info(f"{topic}: lag before this tick {committed}, not yet requested {lag}")
        context.update_cursor(json.dumps(next_cursor))
        if not ranges:
            return dg.SkipReason(f"{topic}: no new records to request (lag {committed})")
        keys = [r.batch_id for r in ranges]
        known = set(context.instance.get_dynamic_partitions(batches.name))
        new_keys = [k for k in keys if k not in known]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=r.batch_id,
                    partition_key=r.batch_id,
                    tags={
                        KAFKA_RANGE_TAG: r.batch_id,
                        "analytics/kafka_topic": topic,
                        RUN_QUEUE_TAG: STREAMING_QUEUE,
                    },
                )
                for r in ranges
            ],
            dynamic_partitions_requests=[batches.build_add_request(new_keys)] if new_keys else [],
        )

    return kafka_sensor
