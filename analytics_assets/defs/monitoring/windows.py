"""Which feature snapshots a model was trained on, and which are the latest."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from analytics_assets.defs.features.snapshots import file_for

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


def read_snapshots(
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
