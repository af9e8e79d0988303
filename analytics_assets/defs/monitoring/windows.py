"""Which feature snapshots a model was trained on."""

from __future__ import annotations

from datetime import date

from analytics_assets.lib import model_registry


def training_days(tags: dict[str, str], available: list[date]) -> list[date]:
    """The snapshot days a registered version learnt from, as its ``as_of_days`` tag records
    them (the churn model's training as-of days, the customer value model's calibration day);
    only days whose file still exists."""
    present = set(available)
    return [d for d in model_registry.as_of_days(tags) if d in present]
