"""The one event model: every column's type and rules, declared once, and the Pandera schema
(polars backend) built from them that every batch is checked against; and beside it, the
reasons a row or a file is quarantined for, and the quarantine's columns.

The declaration is plain data so that the code location does not import Pandera (which imports
pandas, a cost in every run process: BENCHMARKS.md, "Figures the code's choices rest on");
:func:`event_schema` builds the schema the first time a batch is validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import polars as pl

from analytics_assets import settings
from analytics_assets.lib.names import EXPERIMENT_NAME

if TYPE_CHECKING:
    import pandera.polars as pa

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "experiment_exposure",
)

EXPOSURE = "experiment_exposure"
"""A customer saw one variant of an experiment: ``properties`` names both, as
``{"experiment": "...", "variant": "..."}`` (the shape PostHog's ``$feature_flag_called``
and Segment's "Experiment Viewed" use)."""
EXPOSURE_FIELDS = ("experiment", "variant")

TIMESTAMP = pl.Datetime(time_unit="us", time_zone="UTC")


@dataclass(frozen=True)
class Rule:
    """One column of the event model: its type and what a valid value is."""

    dtype: pl.DataType
    nullable: bool = True
    length: tuple[int, int] | None = None
    """Inclusive bounds on a string's length."""
    one_of: tuple[str, ...] | None = None
    at_least: float | None = None


EVENT_MODEL: dict[str, Rule] = {
    "event_id": Rule(pl.String(), nullable=False, length=(1, 128)),
    "event_type": Rule(pl.String(), nullable=False, one_of=EVENT_TYPES),
    "customer_id": Rule(pl.String(), nullable=False, length=(1, 128)),
    "session_id": Rule(pl.String()),
    "occurred_at": Rule(TIMESTAMP, nullable=False),
    "product_id": Rule(pl.String()),
    "quantity": Rule(pl.Int64(), at_least=0),
    "amount": Rule(pl.Float64(), at_least=0),
    "currency": Rule(pl.String(), length=(3, 3)),
    "device": Rule(pl.String()),
    "properties": Rule(pl.String()),
}
"""A customer event after typing; ``occurred_at`` must also fall in the plausible window and a
purchase needs amount and currency, an exposure its experiment and variant. Row-level failures
become quarantine reasons."""

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_MODEL)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(n for n, r in EVENT_MODEL.items() if not r.nullable)


def event_dtypes() -> dict[str, pl.DataType]:
    """Column name -> polars dtype, as the event model declares it."""
    return {name: rule.dtype for name, rule in EVENT_MODEL.items()}


def _plausible_timestamp(data: pa.PolarsData) -> pl.LazyFrame:
    earliest, latest = settings.plausible_event_window()
    return data.lazyframe.select(
        pl.col(data.key).is_between(
            pl.lit(earliest, dtype=TIMESTAMP), pl.lit(latest, dtype=TIMESTAMP)
        )
    )


def exposure_names_arm(properties: pl.Expr) -> pl.Expr:
    """Whether ``properties`` name an experiment and a variant by ``EXPERIMENT_NAME``."""
    return pl.all_horizontal(
        properties.str.json_path_match(f"$.{field}").str.contains(EXPERIMENT_NAME).fill_null(False)
        for field in EXPOSURE_FIELDS
    )


def _exposure_names_arm(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(
        (pl.col("event_type") != EXPOSURE) | exposure_names_arm(pl.col("properties"))
    )


def _purchase_has_amount(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(
        (pl.col("event_type") != "purchase")
        | (pl.col("amount").is_not_null() & pl.col("currency").is_not_null())
    )


@cache
def event_schema() -> pa.DataFrameSchema:
    """The Pandera schema of :data:`EVENT_MODEL` (strict: no other columns; no coercion)."""
    import pandera.polars as pa

    def checks(rule: Rule) -> list[pa.Check]:
        found = []
        if rule.length is not None:
            found.append(pa.Check.str_length(min_value=rule.length[0], max_value=rule.length[1]))
        if rule.one_of is not None:
            found.append(pa.Check.isin(list(rule.one_of)))
        if rule.at_least is not None:
            found.append(pa.Check.ge(rule.at_least))
        return found

    columns = {
        name: pa.Column(rule.dtype, checks=checks(rule), nullable=rule.nullable)
        for name, rule in EVENT_MODEL.items()
    }
    columns["occurred_at"].checks.append(pa.Check(_plausible_timestamp, name="plausible_timestamp"))
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(_purchase_has_amount, name="purchase_has_amount"),
            pa.Check(_exposure_names_arm, name="exposure_names_arm"),
        ],
        strict=True,
        coerce=False,
        name="EventSchema",
    )


class Reason:
    """Quarantine reason codes: stable strings that users filter on."""

    FILE_UNREADABLE = "file_unreadable"
    UNPARSEABLE_LINE = "unparseable_line"
    MISSING_REQUIRED_FIELD = "missing_required_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    NEGATIVE_VALUE = "negative_value"
    IMPLAUSIBLE_TIMESTAMP = "implausible_timestamp"
    INVALID_VALUE = "invalid_value"
    DUPLICATE_IN_BATCH = "duplicate_event_id_in_batch"
    DUPLICATE_STORED = "duplicate_event_id_already_stored"
    FILE_TOO_LARGE = "file_too_large"
    BATCH_NAME_RESENT = "batch_name_resent"
    INGEST_FAILED = "ingest_failed"
    KAFKA_RECORDS_MISSING = "kafka_records_missing"
    """Offsets of a Kafka range the broker no longer had (retention, compaction)."""
    INVALID_EXPOSURE = "invalid_exposure"
    """An ``experiment_exposure`` whose properties do not name its experiment and variant."""
    ERASED_CUSTOMER = "erased_customer"
    """An event of a customer who was erased (``analytics erase-customer``): kept out, and
    quarantined without its record or a detail, so nothing of it is stored."""

    FILE_LEVEL = (FILE_UNREADABLE, FILE_TOO_LARGE, BATCH_NAME_RESENT, INGEST_FAILED)
    """Reasons that quarantine a whole file (one record, the file moved to quarantine)."""


QUARANTINE_SCHEMA = {
    "record_number": pl.Int64,
    "reason": pl.String,
    "detail": pl.String,
    "raw": pl.String,
}
