"""UTC days and instants, the one calendar every table, snapshot and model window uses.

A day's rows are ``[utc_midnight(day), utc_midnight(day + 1))``. The feature snapshot of day D
holds activity up to the end of D, so it becomes valid at ``snapshot_instant(D)``, the next
midnight; :func:`snapshot_day` is its inverse.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def utc_midnight(day: date) -> datetime:
    """The instant a UTC day starts (what ``day >= d`` means for a TIMESTAMPTZ column)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def snapshot_instant(as_of: date) -> datetime:
    """When the snapshot of ``as_of`` becomes valid: the end of that UTC day."""
    return utc_midnight(as_of + timedelta(days=1))


def snapshot_day(instant: datetime | str) -> date:
    """The snapshot day whose features are valid from ``instant`` (the end of that day)."""
    if isinstance(instant, str):
        instant = datetime.fromisoformat(instant)
    return instant.date() - timedelta(days=1)


def day_range(start: date, end: date) -> list[date]:
    """The days of ``[start, end)``."""
    return [start + timedelta(days=n) for n in range((end - start).days)]
