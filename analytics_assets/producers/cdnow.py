"""Replay the CDNOW transaction log (shipped in the ``lifetimes`` package) as purchase events.

Each line of ``CDNOW_master.txt`` is one customer's purchases on one day: customer id, date,
number of CDs, dollar value. Each becomes one ``purchase`` event; event ids are derived from
the content, so replaying twice yields exactly the same events.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl

MASTER = "CDNOW_master.txt"
SAMPLE = "CDNOW_sample.txt"
EPOCH = date(1997, 1, 1)


def dataset_path(name: str = MASTER) -> Path:
    """Path of a file in ``lifetimes/datasets`` (found without importing lifetimes)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'lifetimes' package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / name
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def read_transactions(path: Path) -> pl.DataFrame:
    """The log as ``customer_id, date, quantity, amount`` in file order.

    ``CDNOW_master.txt`` has four columns; ``CDNOW_sample.txt`` has a second id column (the
    customer's number within the sample) that is dropped, keeping the master id.
    """
    lines = (line.split() for line in path.read_text().splitlines())
    rows = [fields for fields in lines if fields and fields[0].isdigit()]  # skips the header
    width = len(rows[0])
    if width not in (4, 5):
        raise ValueError(f"{path}: expected 4 or 5 columns, found {width}")
    customer, day, qty, value = (0, 1, 2, 3) if width == 4 else (0, 2, 3, 4)
    return pl.DataFrame(
        {
            "customer_id": [r[customer] for r in rows],
            "date": [r[day] for r in rows],
            "quantity": [int(r[qty]) for r in rows],
            "amount": [float(r[value]) for r in rows],
        }
    ).with_columns(pl.col("date").str.to_date("%Y%m%d"))


def to_events(transactions: pl.DataFrame) -> pl.DataFrame:
    """Purchase events in the platform's event model; the occurrence number keeps ids unique."""
    occurrence = pl.int_range(pl.len()).over("customer_id", "date")
    return transactions.select(
        pl.format(
            "cdnow-{}-{}-{}", "customer_id", pl.col("date").dt.strftime("%Y%m%d"), occurrence
        ).alias("event_id"),
        pl.lit("purchase").alias("event_type"),
        "customer_id",
        pl.lit(None, dtype=pl.String).alias("session_id"),
        pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("occurred_at"),
        pl.lit("cd").alias("product_id"),
        "quantity",
        "amount",
        pl.lit("USD").alias("currency"),
        pl.lit(None, dtype=pl.String).alias("device"),
        pl.lit(None, dtype=pl.String).alias("properties"),
    )


def batches(
    events: pl.DataFrame, period_days: int = 7, prefix: str = "cdnow"
) -> Iterator[tuple[str, pl.DataFrame]]:
    """``(batch_id, events)`` per period of ``period_days`` from 1997-01-01, in time order."""
    period = (
        (pl.col("occurred_at").dt.date() - pl.lit(EPOCH)).dt.total_days() // period_days
    ).alias("_period")
    keyed = events.with_columns(period)
    for (index,), part in keyed.sort("_period", maintain_order=True).group_by(
        "_period", maintain_order=True
    ):
        start = EPOCH + timedelta(days=int(index) * period_days)
        yield f"{prefix}-{start.isoformat()}", part.drop("_period")
