"""Typing and validating a parsed batch against the event schema: clean events, and each bad
row quarantined under one reason with a detail (polars in and out)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from analytics_assets.defs.ingest.parsing import RawBatch
from analytics_assets.defs.ingest.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    QUARANTINE_SCHEMA,
    Reason,
    event_dtypes,
    event_schema,
)
from analytics_assets.lib.names import EXPERIMENT_NAME

# When a row fails several ways, the first reason here is the one it is filed under.
_PRIORITY = (
    Reason.WRONG_TYPE,
    Reason.MISSING_REQUIRED_FIELD,
    Reason.UNKNOWN_EVENT_TYPE,
    Reason.NEGATIVE_VALUE,
    Reason.IMPLAUSIBLE_TIMESTAMP,
    Reason.INVALID_EXPOSURE,
    Reason.INVALID_VALUE,
)

_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")


@dataclass
class ValidatedBatch:
    """``clean`` holds the event columns plus ``record_number`` (the row's place in the file)."""

    clean: pl.DataFrame
    quarantined: pl.DataFrame

    @property
    def rows_in(self) -> int:
        return self.clean.height + self.quarantined.height


def _typed(column: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Cast one column to its schema dtype without failing; unparseable values become null."""
    col = pl.col(column)
    if source == target:
        return col
    if isinstance(target, pl.Datetime):
        if isinstance(source, pl.Datetime):
            if source.time_zone is None:
                return col.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
            return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        if source == pl.Date:
            return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return col.cast(pl.String).str.to_datetime(
            "%+", time_unit="us", time_zone="UTC", strict=False
        )
    if target == pl.Int64 and source == pl.String:
        as_float = col.str.strip_chars().cast(pl.Float64, strict=False)
        whole = as_float.is_finite() & (as_float == as_float.round(0))
        return pl.when(whole).then(as_float).otherwise(None).cast(pl.Int64, strict=False)
    if target == pl.Float64 and source == pl.String:
        as_float = col.str.strip_chars().cast(pl.Float64, strict=False)
        return pl.when(as_float.is_finite()).then(as_float).otherwise(None)
    if target == pl.String and source.is_nested():
        return col.struct.json_encode() if isinstance(source, pl.Struct) else col.cast(pl.String)
    return col.cast(target, strict=False)


def _naive_timestamps(source: pl.Series, parsed: pl.Series) -> pl.Series:
    """Second chance where ``%+`` failed: padded text, or no offset (then taken as UTC)."""
    missed = parsed.is_null() & source.is_not_null()
    if not missed.any():
        return parsed
    text = pl.col("text")
    retry = (
        source.filter(missed)
        .cast(pl.String)
        .str.strip_chars()
        .to_frame("text")
        .select(
            pl.coalesce(
                text.str.to_datetime("%+", time_unit="us", time_zone="UTC", strict=False),
                *[
                    text.str.to_datetime(fmt, time_unit="us", strict=False).dt.replace_time_zone(
                        "UTC"
                    )
                    for fmt in _NAIVE_FORMATS
                ],
            )
        )
        .to_series()
    )
    return parsed.scatter(missed.arg_true(), retry)


def _cleaned(column: str, expr: pl.Expr) -> pl.Expr:
    """Normalizations that turn near-misses into valid values (never invent data)."""
    if column in ("event_id", "customer_id", "session_id", "product_id"):
        expr = expr.str.strip_chars()
        return pl.when(expr.str.len_chars() > 0).then(expr).otherwise(None)
    if column in ("event_type", "device"):
        return expr.str.strip_chars().str.to_lowercase()
    if column == "currency":
        return expr.str.strip_chars().str.to_uppercase()
    return expr


def _raw_json(frame: pl.DataFrame) -> pl.Expr:
    return pl.struct([pl.col(c).cast(pl.String) for c in EVENT_COLUMNS]).struct.json_encode()


def _reason_for(column: str, check: str) -> str:
    if check == "not_nullable" or check == "purchase_has_amount":
        return Reason.MISSING_REQUIRED_FIELD
    if column == "event_type" and check.startswith("isin"):
        return Reason.UNKNOWN_EVENT_TYPE
    if check.startswith("greater_than_or_equal_to"):
        return Reason.NEGATIVE_VALUE
    if check == "plausible_timestamp":
        return Reason.IMPLAUSIBLE_TIMESTAMP
    if check == "exposure_names_arm":
        return Reason.INVALID_EXPOSURE
    return Reason.INVALID_VALUE


def _detail(column: str, check: str, value: object) -> str:
    shown = "null" if value is None else str(value)[:200]
    if check == "not_nullable":
        return f"{column} is required"
    if check == "purchase_has_amount":
        return "a purchase needs amount and currency"
    if column == "event_type" and check.startswith("isin"):
        return f"unknown event_type {shown!r} (known: {', '.join(EVENT_TYPES)})"
    if check.startswith("greater_than_or_equal_to"):
        return f"{column} is negative: {shown}"
    if check == "exposure_names_arm":
        return (
            'an experiment_exposure needs properties {"experiment": NAME, "variant": NAME} '
            f"(names: {EXPERIMENT_NAME})"
        )
    if check == "plausible_timestamp":
        return f"occurred_at {shown} is outside the plausible window"
    return f"{column} fails {check}: {shown}"


def _schema_failures(typed: pl.DataFrame) -> pl.DataFrame:
    """Row-level failures of the event schema as ``(record_number, reason, detail)``."""
    import pandera.errors

    empty = pl.DataFrame(
        schema={"record_number": pl.Int64, "reason": pl.String, "detail": pl.String}
    )
    try:
        event_schema().validate(typed.select(EVENT_COLUMNS), lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        schema_level = cases.filter(pl.col("index").is_null())
        if schema_level.height:
            # Typing happens before validation, so a schema-level failure is a bug, not bad data.
            raise RuntimeError(
                f"event frame does not match the event schema:\n{schema_level}"
            ) from exc
        numbers = typed["record_number"]
        rows = [
            {
                "record_number": numbers[int(index)],
                "reason": _reason_for(column or "", check or ""),
                "detail": _detail(column or "", check or "", value),
            }
            for index, column, check, value in cases.select(
                "index", "column", "check", "failure_case"
            ).iter_rows()
        ]
        return pl.DataFrame(rows, schema=empty.schema)
    return empty


def validate_batch(raw: RawBatch) -> ValidatedBatch:
    """Type, clean, validate and de-duplicate a raw batch.

    Every input row ends up in exactly one of ``clean`` or ``quarantined``. Within the batch the
    first valid occurrence of an ``event_id`` wins.
    """
    frame = raw.frame
    targets = event_dtypes()
    typed = frame.select(
        pl.col("record_number"),
        *[_cleaned(c, _typed(c, frame.schema[c], targets[c])).alias(c) for c in EVENT_COLUMNS],
    )
    if frame.schema["occurred_at"] == pl.String:
        typed = typed.with_columns(_naive_timestamps(frame["occurred_at"], typed["occurred_at"]))
    wrong_type = [
        pl.when(frame[c].is_not_null() & typed[c].is_null()).then(pl.lit(c))
        for c in EVENT_COLUMNS
        if targets[c] != pl.String
    ]
    type_failures = (
        typed.select("record_number", pl.concat_list(wrong_type).list.drop_nulls().alias("cols"))
        .filter(pl.col("cols").list.len() > 0)
        .select(
            "record_number",
            pl.lit(Reason.WRONG_TYPE).alias("reason"),
            pl.lit("wrong type for ").add(pl.col("cols").list.join(", ")).alias("detail"),
        )
    )
    failures = pl.concat([type_failures, _schema_failures(typed)])
    rank = {reason: i for i, reason in enumerate(_PRIORITY)}
    per_row = (
        failures.with_columns(
            pl.col("reason").replace_strict(rank, return_dtype=pl.Int32).alias("_rank")
        )
        .sort("record_number", "_rank")
        .group_by("record_number", maintain_order=True)
        .agg(pl.col("reason").first(), pl.col("detail").unique(maintain_order=True).str.join("; "))
    )
    bad_numbers = per_row["record_number"]
    valid = typed.filter(~pl.col("record_number").is_in(bad_numbers.implode()))
    first = valid["event_id"].is_first_distinct()
    clean = valid.filter(first)
    duplicates = valid.filter(~first).select(
        "record_number",
        pl.lit(Reason.DUPLICATE_IN_BATCH).alias("reason"),
        pl.lit("event_id seen earlier in this batch: ").add(pl.col("event_id")).alias("detail"),
    )
    rejected_numbers = pl.concat([bad_numbers, duplicates["record_number"]])
    raw_text = frame.filter(pl.col("record_number").is_in(rejected_numbers.implode())).select(
        "record_number", _raw_json(frame).alias("raw")
    )
    quarantined = (
        pl.concat(
            [
                raw.unparseable,
                pl.concat([per_row, duplicates]).join(raw_text, on="record_number", how="left"),
            ],
            how="diagonal_relaxed",
        )
        .select(list(QUARANTINE_SCHEMA))
        .sort("record_number")
    )
    return ValidatedBatch(
        clean=clean.select(*EVENT_COLUMNS, "record_number"), quarantined=quarantined
    )
