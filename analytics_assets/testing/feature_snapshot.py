"""A synthetic customer feature snapshot (one as-of day, seeded), written where the
``customer_features`` asset writes its daily files: volume for the feature store and serving
benchmarks and the serving tests, without running the pipeline first."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

AS_OF = date(2024, 3, 10)


def customer_id(i: int) -> str:
    return f"c{i:07d}"


def write_snapshot(directory: Path, customers: int, seed: int = 7) -> Path:
    """``customers`` customers ``c0000000``... with every feature column; 5% of each float
    feature missing. Tenure covers recency, as in real histories. Returns the file."""
    from analytics_assets.lib.days import snapshot_instant
    from analytics_assets.lib.snapshots import FEATURE_COLUMNS

    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {
        "customer_id": [customer_id(i) for i in range(customers)],
        "as_of": [AS_OF] * customers,
        "event_timestamp": [snapshot_instant(AS_OF)] * customers,
        "created_at": [datetime(2024, 3, 11, 1, tzinfo=UTC)] * customers,
    }
    for name, kind in FEATURE_COLUMNS.items():
        if kind == "BIGINT":
            columns[name] = rng.poisson(3, customers).astype(np.int64)
        else:
            values = rng.gamma(2.0, 20.0, customers).round(2)
            values[rng.random(customers) < 0.05] = np.nan  # some customers lack a value
            columns[name] = values
    columns["tenure_days"] = columns["recency_days"] + np.nan_to_num(
        columns["days_since_last_purchase"]
    )
    frame = pl.DataFrame(columns).with_columns(pl.selectors.float().fill_nan(None))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{AS_OF.isoformat()}.parquet"
    frame.write_parquet(path)
    return path
