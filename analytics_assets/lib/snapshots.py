"""The offline feature store's files: one Parquet file per as-of day, named for the day and
replaced atomically, so windows are chosen by name before any file is read."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from analytics_assets.lib.days import snapshot_instant

FEATURE_COLUMNS: dict[str, str] = {
    "frequency": "BIGINT",
    "recency_days": "DOUBLE",
    "tenure_days": "DOUBLE",
    "monetary_value": "DOUBLE",
    "orders": "BIGINT",
    "average_order_value": "DOUBLE",
    "total_revenue": "DOUBLE",
    "days_since_last_purchase": "DOUBLE",
    "sessions_7d": "BIGINT",
    "sessions_28d": "BIGINT",
    "page_views_7d": "BIGINT",
    "page_views_28d": "BIGINT",
    "cart_abandonment_rate_28d": "DOUBLE",
    "days_since_last_session": "DOUBLE",
    "mobile_share_28d": "DOUBLE",
    "desktop_share_28d": "DOUBLE",
    "tablet_share_28d": "DOUBLE",
}
"""Every feature column of a snapshot, with its DuckDB type (the Feast views' schema)."""


def file_for(directory: Path, as_of: date) -> Path:
    return directory / f"{as_of.isoformat()}.parquet"


def replace_days(
    relation: duckdb.DuckDBPyRelation, directory: Path, days: list[date]
) -> dict[str, int]:
    """Make the files of ``days`` hold exactly ``relation``'s rows of those days.

    The rows are written to a staging folder first, then each day's file is renamed into
    place, so a reader sees a day's old file or its new one, never half of one; re-running
    replaces, never appends. Days without rows lose their file. Returns rows per day.
    """
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".staging-{uuid.uuid4().hex}"
    try:
        relation.write_parquet(
            str(staging),
            partition_by=["as_of"],
            write_partition_columns=True,
            filename_pattern="part",
            compression="zstd",
        )
        written: dict[str, int] = {}
        for part in sorted(staging.glob("as_of=*")):
            day = date.fromisoformat(part.name.removeprefix("as_of="))
            files = sorted(part.glob("*.parquet"))
            if len(files) > 1:  # DuckDB 1.5 writes a partition from several threads
                files = [_merged(files, part / "merged.parquet")]
            written[day.isoformat()] = pq.ParquetFile(files[0]).metadata.num_rows
            os.replace(files[0], file_for(directory, day))
        for day in days:
            if day.isoformat() not in written:
                file_for(directory, day).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dict(sorted(written.items()))


def _merged(files: list[Path], target: Path) -> Path:
    """One Parquet file holding the rows of ``files``."""
    with duckdb.connect() as conn:
        conn.execute(
            f"COPY (SELECT * FROM read_parquet($files)) TO '{str(target).replace(chr(39), '')}' "
            "(FORMAT parquet, COMPRESSION zstd)",
            {"files": [str(f) for f in files]},
        )
    return target


def snapshot_days(directory: Path) -> list[date]:
    """The as-of days that have a file, oldest first."""
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


def entities_at(directory: Path, as_of_days: list[date]) -> pa.Table:
    """``(customer_id, event_timestamp)`` of every customer snapshotted on those days."""
    with duckdb.connect() as conn:
        return conn.sql(
            "SELECT customer_id, event_timestamp FROM read_parquet($files)",
            params={"files": [str(file_for(directory, d)) for d in as_of_days]},
        ).to_arrow_table()


def read_sample(
    directory: Path, days: list[date], columns: list[str], sample_rows: int, seed: int = 42
) -> pl.DataFrame:
    """``columns`` of the snapshots of ``days``, a reservoir sample of at most ``sample_rows``."""
    files = [str(file_for(directory, d)) for d in days]
    selected = ", ".join(f'"{c}"' for c in columns)
    with duckdb.connect() as conn:
        relation = conn.sql(
            f"SELECT {selected} FROM read_parquet($files, union_by_name = true) "
            f"USING SAMPLE reservoir({int(sample_rows)} ROWS) REPEATABLE ({int(seed)})",
            params={"files": files},
        )
        return pl.from_arrow(relation.to_arrow_table())
