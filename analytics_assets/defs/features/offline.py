"""The offline store as Feast reads it: the views over the snapshot files, what a
materialization reads, and which as-of days have matured labels."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from analytics_assets.lib.days import snapshot_instant
from analytics_assets.lib.names import SNAPSHOT_SOURCE
from analytics_assets.lib.snapshots import latest_rows, snapshot_days

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView


def latest_rows_by_view(
    directory: Path, views: list[FeatureView], until: datetime, changed_since: float | None = None
) -> list[tuple[FeatureView, pa.Table]]:
    """Each view's rows to materialize: the newest snapshot per customer since the view's last
    materialization, and from files rewritten since ``changed_since``. Views materialized up to
    the same instant share one read."""
    read: dict[datetime | None, pa.Table] = {}
    batches = []
    for view in views:
        since = view.most_recent_end_time
        if since not in read:
            names = sorted({f.name for v in views for f in v.features})
            read[since] = latest_rows(directory, since, until, names, changed_since)
        names = [f.name for f in view.features]
        rows = read[since]
        if rows.num_rows:
            rows = rows.select(["customer_id", "event_timestamp", "created_at", *names])
        batches.append((view, rows))
    return batches


def views_over_snapshots(store: FeatureStore) -> list[FeatureView]:
    """The registered feature views the snapshot files feed."""
    return [v for v in store.list_feature_views() if v.batch_source.name == SNAPSHOT_SOURCE]


def matured_as_of_days(
    directory: Path, observed_until: datetime, horizon_days: int, every_days: int
) -> list[date]:
    """Snapshot days whose label window (``horizon_days`` after the snapshot) has passed,
    every ``every_days`` counted back from the newest such day."""
    available = set(snapshot_days(directory))
    matured = [
        d for d in available if snapshot_instant(d) + timedelta(days=horizon_days) <= observed_until
    ]
    if not matured:
        return []
    newest, oldest = max(matured), min(matured)
    chosen = []
    day = newest
    while day >= oldest:
        if day in available:
            chosen.append(day)
        day -= timedelta(days=every_days)
    return sorted(chosen)
