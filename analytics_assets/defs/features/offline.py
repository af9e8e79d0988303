"""Reading the snapshot files: what is newest, the latest row per customer, training entities.

A snapshot file's name is its as-of day, so windows are chosen by name before any file is read.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from analytics_assets.defs.analytics.transforms import utc_midnight
from analytics_assets.defs.features.snapshots import file_for
from analytics_assets.defs.features.transforms import snapshot_instant

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

SNAPSHOT_SOURCE = "customer_features_snapshots"
"""The Feast data source over the snapshot files (``feature_repo/data_sources.py``)."""


def snapshot_days(directory: Path) -> list[date]:
    days = []
    for path in directory.glob("*.parquet"):
        try:
            days.append(date.fromisoformat(path.stem))
        except ValueError:
            continue
    return sorted(days)


def newest_timestamp(directory: Path) -> datetime | None:
    found = snapshot_days(directory)
    return snapshot_instant(found[-1]) if found else None


def oldest_timestamp(directory: Path) -> datetime | None:
    found = snapshot_days(directory)
    return snapshot_instant(found[0]) if found else None


def _read(files: list[Path], columns: list[str]) -> pa.Table:
    quoted = ", ".join(f'"{c}"' for c in columns)
    with duckdb.connect() as conn:
        return conn.sql(
            f"SELECT {quoted} FROM read_parquet($files)",
            params={"files": [str(f) for f in files]},
        ).to_arrow_table()


def latest_rows(
    directory: Path,
    since: datetime | None,
    until: datetime,
    features: list[str],
    changed_since: float | None = None,
) -> pa.Table:
    """Each customer's newest snapshot with ``since <= event_timestamp < until``, counting
    also older snapshot files rewritten at or after ``changed_since`` (epoch seconds): a batch
    landing later the same day rewrites that day's file, whose timestamp does not move, and a
    late batch rewrites every later file too."""

    def wanted(day: date) -> bool:
        instant = snapshot_instant(day)
        if instant >= until:
            return False
        if since is None or instant >= since:
            return True
        return changed_since is not None and file_for(directory, day).stat().st_mtime >= (
            changed_since
        )

    files = [file_for(directory, d) for d in snapshot_days(directory) if wanted(d)]
    if not files:
        return pa.table({"customer_id": pa.array([], pa.string())})
    quoted = ", ".join(f'"{c}"' for c in features)
    with duckdb.connect() as conn:
        return conn.sql(
            f"""
            SELECT customer_id, event_timestamp, created_at, {quoted}
            FROM read_parquet($files)
            QUALIFY row_number() OVER (
                PARTITION BY customer_id ORDER BY event_timestamp DESC, created_at DESC
            ) = 1
            """,
            params={"files": [str(f) for f in files]},
        ).to_arrow_table()


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


def observed_until(conn: duckdb.DuckDBPyConnection) -> datetime:
    """End of the last day with events: labels can only be known up to here."""
    (last,) = conn.execute("SELECT max(day) FROM customer_daily").fetchall()[0]
    if last is None:
        raise ValueError("customer_daily is empty: nothing to label")
    return utc_midnight(last + timedelta(days=1))


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


def entities_at(directory: Path, as_of_days: list[date]) -> pa.Table:
    """``(customer_id, event_timestamp)`` of every customer snapshotted on those days."""
    return _read([file_for(directory, d) for d in as_of_days], ["customer_id", "event_timestamp"])


def feature_refs(store: FeatureStore, services: list[str]) -> list[str]:
    """``view:feature`` references of the named feature services, each once, in order."""
    refs: dict[str, None] = {}
    for name in services:
        for projection in store.get_feature_service(name).feature_view_projections:
            for feature in projection.features:
                refs[f"{projection.name_to_use()}:{feature.name}"] = None
    return list(refs)


def feature_names(store: FeatureStore, service: str) -> list[str]:
    """The feature names a feature service serves, in order (the columns a model reads)."""
    return [ref.split(":", 1)[1] for ref in feature_refs(store, [service])]
