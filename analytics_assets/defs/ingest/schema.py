"""The one event model: a Pandera schema (polars backend) that every batch is checked against."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from analytics_assets import settings

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
)

TIMESTAMP = pl.Datetime(time_unit="us", time_zone="UTC")


class EventSchema(pa.DataFrameModel):
    """A customer event after typing; row-level failures become quarantine reasons."""

    event_id: str = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 128})
    event_type: str = pa.Field(nullable=False, isin=list(EVENT_TYPES))
    customer_id: str = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 128})
    session_id: str = pa.Field(nullable=True)
    occurred_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=False)
    product_id: str = pa.Field(nullable=True)
    quantity: pl.Int64 = pa.Field(nullable=True, ge=0)
    amount: pl.Float64 = pa.Field(nullable=True, ge=0)
    currency: str = pa.Field(nullable=True, str_length={"min_value": 3, "max_value": 3})
    device: str = pa.Field(nullable=True)
    properties: str = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = False

    @pa.check("occurred_at", name="plausible_timestamp")
    def plausible_timestamp(cls, data: pa.PolarsData) -> pl.LazyFrame:
        earliest, latest = settings.plausible_event_window()
        return data.lazyframe.select(
            pl.col(data.key).is_between(
                pl.lit(earliest, dtype=TIMESTAMP), pl.lit(latest, dtype=TIMESTAMP)
            )
        )

    @pa.dataframe_check(name="purchase_has_amount")
    def purchase_has_amount(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("event_type") != "purchase")
            | (pl.col("amount").is_not_null() & pl.col("currency").is_not_null())
        )


EVENT_COLUMNS: tuple[str, ...] = tuple(EventSchema.to_schema().columns)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    name for name, col in EventSchema.to_schema().columns.items() if not col.nullable
)


def event_dtypes() -> dict[str, pl.DataType]:
    """Column name -> polars dtype, as declared by :class:`EventSchema`."""
    return {name: column.dtype.type for name, column in EventSchema.to_schema().columns.items()}
