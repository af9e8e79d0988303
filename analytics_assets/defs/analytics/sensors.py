"""``events_sensor``: rebuilds exactly the days that new batches touched, coalesced."""

from datetime import date, timedelta

import dagster as dg

from analytics_assets import settings
from analytics_assets.defs.analytics.jobs import ANALYTICS_ASSETS, DAY_ASSETS, EXPERIMENT_LOOKS
from analytics_assets.defs.analytics.transforms import session_days_affected
from analytics_assets.metadata import RANGE_END_TAG, RANGE_START_TAG
from analytics_assets.partitions import days

MAX_RETRIES_TAG = "dagster/max_retries"

_PAGE = 1_000
DEFINITIONS_VERSION = "2"
"""Bumped when a day table's definition changes (2: conversion rate as a share of sessions):
a cursor of another version is read from the start, so the first tick after an upgrade
rebuilds every day once."""


def _read_cursor(stored: str | None) -> str | None:
    version, _, cursor = (stored or "").partition(":")
    return cursor or None if version == DEFINITIONS_VERSION else None


def contiguous_ranges(touched: set[date]) -> list[tuple[date, date]]:
    """Sorted days as inclusive ``(first, last)`` runs of consecutive days."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(touched):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def _days_of(record: dg.EventLogRecord) -> list[date]:
    materialization = record.asset_materialization
    entry = materialization.metadata.get("days_touched") if materialization else None
    return [date.fromisoformat(d) for d in (entry.value if entry else [])]


def _requests(
    instance: dg.DagsterInstance, affected: set[date], cursor: str | None
) -> list[dg.RunRequest]:
    """One run per range of affected days, for the day tables; and where experiments are
    declared (``experiments.yaml``), one for their looks from the first affected day to the
    newest look (a look counts every event before its day's end, so a late event moves every
    look after it). The looks run apart: their blocking ``sample_ratio`` check fails its run
    while a split is broken, which must not fail (or retry) the day tables. Not retried
    itself: a broken split fails again, and the next batch brings the next look."""
    requests = [
        dg.RunRequest(
            run_key=f"{start.isoformat()}..{end.isoformat()}@{cursor}",
            asset_selection=[dg.AssetKey(k) for k in DAY_ASSETS],
            tags={RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()},
        )
        for start, end in contiguous_ranges(affected)
    ]
    if settings.experiments_file().exists():
        looked = instance.get_materialized_partitions(dg.AssetKey("experiment_looks"))
        first, last = min(affected), max([max(affected), *map(date.fromisoformat, looked)])
        requests.append(
            dg.RunRequest(
                run_key=f"looks {first.isoformat()}..{last.isoformat()}@{cursor}",
                asset_selection=[dg.AssetKey("experiment_looks")],
                tags={
                    RANGE_START_TAG: first.isoformat(),
                    RANGE_END_TAG: last.isoformat(),
                    MAX_RETRIES_TAG: "0",
                },
            )
        )
    return requests


def build_events_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="events_sensor",
        target=ANALYTICS_ASSETS | EXPERIMENT_LOOKS,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Collects the days touched by batches committed since its last tick (from the "
            "events materializations) and rebuilds just those days (analytics tables and feature "
            "snapshots), one run per range of days."
        ),
    )
    def events_sensor(context: dg.SensorEvaluationContext):
        touched: set[date] = set()
        cursor = _read_cursor(context.cursor)
        while True:
            page = context.instance.fetch_materializations(
                dg.AssetKey("events"), limit=_PAGE, cursor=cursor, ascending=True
            )
            for record in page.records:
                touched.update(_days_of(record))
            cursor = page.cursor if page.records else cursor
            if not page.has_more:
                break
        stored = f"{DEFINITIONS_VERSION}:{cursor or ''}"
        if stored != context.cursor:
            context.update_cursor(stored)
        first_day = date.fromisoformat(settings.FIRST_DAY)
        last_day = date.fromisoformat(days.get_last_partition_key())
        affected = {d for d in session_days_affected(sorted(touched)) if first_day <= d <= last_day}
        if not affected:
            return dg.SkipReason("no new batches touched any day")
        return _requests(context.instance, affected, cursor)

    return events_sensor


@dg.definitions
def defs() -> dg.Definitions:
    interval = settings.analytics_interval_seconds()
    automation = dg.AutomationConditionSensorDefinition(
        "analytics_automation",
        target=dg.AssetSelection.groups("analytics"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval,
        description="Evaluates the analytics assets' automation conditions (the audit).",
    )
    return dg.Definitions(sensors=[build_events_sensor(interval), automation])
