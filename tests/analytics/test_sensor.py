"""events_sensor against real events materializations in an ephemeral instance."""

from __future__ import annotations

from datetime import date

import dagster as dg

from analytics_assets.defs.analytics.sensors import (
    DEFINITIONS_VERSION,
    RANGE_END_TAG,
    RANGE_START_TAG,
    build_events_sensor,
    contiguous_ranges,
)
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.partitions import batches
from tests.conftest import event, jsonl


def ingest(land, resources, instance, batch_id: str, days: list[str]) -> None:
    records = [
        event(i, event_id=f"{batch_id}-{i}", occurred_at=f"{day}T12:00:00Z")
        for i, day in enumerate(days)
    ]
    land(f"{batch_id}.jsonl", jsonl(records))
    instance.add_dynamic_partitions(batches.name, [batch_id])
    dg.materialize([ingest_batch], partition_key=batch_id, resources=resources, instance=instance)


class Ticker:
    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.sensor = build_events_sensor(minimum_interval_seconds=1)
        self.cursor: str | None = None

    def requests(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        result = self.sensor(context)
        self.cursor = context.cursor
        return [] if isinstance(result, dg.SkipReason) else list(result)

    def ranges(self, selects: str = "sessions") -> list[tuple[str, str]]:
        return [
            (r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG])
            for r in self.requests()
            if dg.AssetKey(selects) in r.asset_selection
        ]


def test_contiguous_ranges() -> None:
    d = date.fromisoformat
    days = {d("2024-01-01"), d("2024-01-02"), d("2024-01-04"), d("2023-12-31")}
    assert contiguous_ranges(days) == [
        (d("2023-12-31"), d("2024-01-02")),
        (d("2024-01-04"), d("2024-01-04")),
    ]


def test_new_batches_are_coalesced_into_day_ranges(land, resources, instance) -> None:
    ticker = Ticker(instance)
    assert ticker.ranges() == []
    ingest(land, resources, instance, "b1", ["2024-03-01", "2024-03-02"])
    ingest(land, resources, instance, "b2", ["2024-03-02", "2024-03-10"])
    # one tick, two batches: days touched plus the day before (sessions across midnight)
    assert ticker.ranges() == [("2024-02-29", "2024-03-02"), ("2024-03-09", "2024-03-10")]
    assert ticker.ranges() == []


def test_late_batch_rebuilds_only_the_old_days(land, resources, instance) -> None:
    ticker = Ticker(instance)
    ingest(land, resources, instance, "b1", ["2024-03-10"])
    ticker.ranges()
    ingest(land, resources, instance, "late", ["2023-06-15"])
    assert ticker.ranges() == [("2023-06-14", "2023-06-15")]


def test_unreadable_batch_requests_nothing(land, resources, instance) -> None:
    ticker = Ticker(instance)
    land("bad.jsonl", b"")
    instance.add_dynamic_partitions(batches.name, ["bad"])
    dg.materialize([ingest_batch], partition_key="bad", resources=resources, instance=instance)
    assert ticker.ranges() == []


def test_a_cursor_of_older_definitions_rebuilds_every_day_once(land, resources, instance) -> None:
    """After an upgrade that changes a day table's definition (the cursor's version), the first
    tick reads every batch again, so no day keeps a value of the old definition."""
    ticker = Ticker(instance)
    ingest(land, resources, instance, "b1", ["2024-03-10"])
    assert ticker.ranges() == [("2024-03-09", "2024-03-10")]
    assert ticker.ranges() == []
    version, _, position = ticker.cursor.partition(":")
    assert version == DEFINITIONS_VERSION and position
    ticker.cursor = position  # what a sensor of the older definitions stored
    assert ticker.ranges() == [("2024-03-09", "2024-03-10")]
    assert ticker.ranges() == []


def test_experiment_looks_run_from_the_first_touched_day_to_the_newest_look(
    land, resources, instance
) -> None:
    """A look counts every event before its day's end: a late event moves every later look.
    The looks run apart from the day tables, unretried. Only where experiments are declared."""
    from analytics_assets import settings
    from analytics_assets.defs.experiments.assets import experiment_looks

    ticker = Ticker(instance)
    ingest(land, resources, instance, "b1", ["2024-03-01"])
    assert ticker.ranges("experiment_looks") == []  # nothing declared
    settings.experiments_file().write_text("green: {variants: [control, green]}\n")
    ingest(land, resources, instance, "b2", ["2024-03-05"])
    days, looks = ticker.requests()
    assert dg.AssetKey("experiment_looks") not in days.asset_selection
    assert looks.asset_selection == [dg.AssetKey("experiment_looks")]
    assert (looks.tags[RANGE_START_TAG], looks.tags[RANGE_END_TAG]) == ("2024-03-04", "2024-03-05")
    assert looks.tags["dagster/max_retries"] == "0"
    dg.materialize(
        [experiment_looks],
        resources={"warehouse": resources["warehouse"]},
        instance=instance,
        tags={RANGE_START_TAG: "2024-03-04", RANGE_END_TAG: "2024-03-05"},
    )
    ingest(land, resources, instance, "late", ["2024-03-02"])
    assert ticker.ranges("experiment_looks") == [("2024-03-01", "2024-03-05")]
    assert ticker.ranges("sessions") == []
