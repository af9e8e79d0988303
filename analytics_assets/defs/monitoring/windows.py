"""Which feature snapshots a model was trained on, and which are the latest."""

from __future__ import annotations

from datetime import date, datetime, timedelta

# training_set's default spacing of as-of dates (TrainingSetConfig.every_days)
AS_OF_SPACING_DAYS = 28


def _snapshot_day(instant: str) -> date:
    """The snapshot day whose features are valid from ``instant`` (the end of that day)."""
    return datetime.fromisoformat(instant).date() - timedelta(days=1)


def training_days(tags: dict[str, str], available: list[date]) -> list[date]:
    """The snapshot days a registered version learnt from, by its window tags: the churn
    model's as-of dates (``train_start`` .. ``train_end``, every 28 days back from the end),
    or the customer value model's ``calibration_day``; only days whose file exists."""
    present = set(available)
    if "train_start" in tags and "train_end" in tags:
        first, day = _snapshot_day(tags["train_start"]), _snapshot_day(tags["train_end"])
        chosen = []
        while day >= first:
            if day in present:
                chosen.append(day)
            day -= timedelta(days=AS_OF_SPACING_DAYS)
        return sorted(chosen)
    if "calibration_day" in tags:
        day = date.fromisoformat(tags["calibration_day"])
        return [day] if day in present else []
    return []
