"""Pure functions from a landed file to clean events and quarantined rows (polars in and out)."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analytics_assets.defs.ingest.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    REQUIRED_COLUMNS,
    event_dtypes,
    event_schema,
)

RAW_LIMIT = 4_000
"""Longest raw text kept with a quarantined row."""


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

    FILE_LEVEL = (FILE_UNREADABLE, FILE_TOO_LARGE, BATCH_NAME_RESENT, INGEST_FAILED)
    """Reasons that quarantine a whole file (one record, the file moved to quarantine)."""


# When a row fails several ways, the first reason here is the one it is filed under.
_PRIORITY = (
    Reason.WRONG_TYPE,
    Reason.MISSING_REQUIRED_FIELD,
    Reason.UNKNOWN_EVENT_TYPE,
    Reason.NEGATIVE_VALUE,
    Reason.IMPLAUSIBLE_TIMESTAMP,
    Reason.INVALID_VALUE,
)

QUARANTINE_SCHEMA = {
    "record_number": pl.Int64,
    "reason": pl.String,
    "detail": pl.String,
    "raw": pl.String,
}

_RAW_SCHEMA = dict.fromkeys(EVENT_COLUMNS, pl.String)
# Fast path: numbers read as numbers. A file where any value does not fit is read again with
# _RAW_SCHEMA, so the bad values can be named row by row.
_NUMERIC_SCHEMA = {**_RAW_SCHEMA, "quantity": pl.Int64, "amount": pl.Float64}
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")


class UnreadableFileError(Exception):
    """The file as a whole cannot be read; it is quarantined with this reason."""

    reason = Reason.FILE_UNREADABLE


class FileTooLargeError(UnreadableFileError):
    """The file, or what it decompresses to, is over ``ANALYTICS_MAX_FILE_BYTES``."""

    reason = Reason.FILE_TOO_LARGE


@dataclass
class RawBatch:
    """A batch as read: every event column, untyped where the format allows, plus rejects."""

    frame: pl.DataFrame
    unparseable: pl.DataFrame
    extra_columns: list[str]

    @property
    def records(self) -> int:
        """Records read from the file: parsed rows plus lines that could not be parsed."""
        return self.frame.height + self.unparseable.height


@dataclass
class ValidatedBatch:
    """``clean`` holds the event columns plus ``record_number`` (the row's place in the file)."""

    clean: pl.DataFrame
    quarantined: pl.DataFrame

    @property
    def rows_in(self) -> int:
        return self.clean.height + self.quarantined.height


def _decompress(data: bytes, limit: int | None = None) -> bytes:
    """gzip (one or more members) decompressed, never more than ``limit`` bytes of output: a
    small file that inflates past it (a "zip bomb" or just a huge batch) is refused before it
    is held in memory."""
    if limit is None:
        try:
            return gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise UnreadableFileError(f"truncated or corrupt gzip: {exc}") from exc
    parts: list[bytes] = []
    total = 0
    pending = data
    try:
        while pending:
            inflater = zlib.decompressobj(wbits=31)  # a gzip member
            while True:
                chunk = inflater.decompress(pending, limit + 1 - total)
                total += len(chunk)
                parts.append(chunk)
                if total > limit:
                    raise FileTooLargeError(
                        f"decompresses to more than {limit:,} bytes "
                        "(ANALYTICS_MAX_FILE_BYTES); not read"
                    )
                if inflater.eof:
                    pending = inflater.unused_data.lstrip(b"\0")  # gzip's trailing padding
                    break
                if not inflater.unconsumed_tail:
                    raise UnreadableFileError("truncated gzip: the file ends inside a member")
                pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise UnreadableFileError(f"corrupt gzip: {exc}") from exc
    return b"".join(parts)


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def _clip(text: str) -> str:
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "..."


def _parse_lines_one_by_one(data: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Slow path for files with broken lines: keep every good line, quarantine the others."""
    good: list[bytes] = []
    numbers: list[int] = []
    bad: list[dict] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(_bad_line(number, "not UTF-8", line.decode("utf-8", "replace")))
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            bad.append(_bad_line(number, f"not JSON: {exc}", text))
            continue
        if not isinstance(record, dict):
            bad.append(_bad_line(number, "not a JSON object", text))
            continue
        good.append(line)
        numbers.append(number)
    if good:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(good)), schema=_RAW_SCHEMA)
        frame = frame.with_columns(record_number=pl.Series(numbers, dtype=pl.Int64))
    else:
        frame = pl.DataFrame(schema={**_RAW_SCHEMA, "record_number": pl.Int64})
    unparseable = pl.DataFrame(bad, schema=QUARANTINE_SCHEMA) if bad else _empty_quarantine()
    return frame, unparseable


def _bad_line(number: int, detail: str, raw: str) -> dict:
    return {
        "record_number": number,
        "reason": Reason.UNPARSEABLE_LINE,
        "detail": detail,
        "raw": _clip(raw),
    }


def _read_json_lines(data: bytes) -> RawBatch:
    if not data or data.isspace():  # isspace() stops at the first non-blank byte
        raise UnreadableFileError("empty file")
    try:
        try:
            frame = pl.read_ndjson(io.BytesIO(data), schema=_NUMERIC_SCHEMA)
        except pl.exceptions.ComputeError:
            frame = pl.read_ndjson(io.BytesIO(data), schema=_RAW_SCHEMA)
        unparseable = _empty_quarantine()
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if frame.height == lines:  # no blank lines: record n is line n
            frame = frame.with_row_index("record_number", offset=1).with_columns(
                pl.col("record_number").cast(pl.Int64)
            )
            frame = frame.select(*EVENT_COLUMNS, "record_number")
        else:
            numbers = [i for i, line in enumerate(data.split(b"\n"), 1) if line.strip()]
            frame = frame.with_columns(record_number=pl.Series(numbers, dtype=pl.Int64))
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, ValueError):
        frame, unparseable = _parse_lines_one_by_one(data)
    if frame.height == 0:
        reasons = unparseable["detail"].unique().sort().to_list()
        if any(r == "not UTF-8" for r in reasons):
            raise UnreadableFileError("not UTF-8 text")
        raise UnreadableFileError("no line is a JSON object (not JSON lines)")
    return RawBatch(frame=frame, unparseable=unparseable, extra_columns=[])


def _read_parquet(data: bytes) -> RawBatch:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several error types for corrupt files
        raise UnreadableFileError(f"not a readable Parquet file: {exc}") from exc
    if frame.height == 0:
        raise UnreadableFileError("empty file")
    extra = [c for c in frame.columns if c not in EVENT_COLUMNS]
    missing = [pl.lit(None, dtype=pl.String).alias(c) for c in EVENT_COLUMNS if c not in frame]
    frame = frame.with_columns(missing).select(EVENT_COLUMNS)
    frame = frame.with_row_index("record_number", offset=1).with_columns(
        pl.col("record_number").cast(pl.Int64)
    )
    return RawBatch(frame=frame, unparseable=_empty_quarantine(), extra_columns=extra)


def read_batch(path: Path) -> RawBatch:
    """Read a landed file schema-on-read. Raises :class:`UnreadableFileError` for a bad file."""
    return parse_batch(path.read_bytes(), path.name)


def parse_batch(data: bytes, file_name: str, max_bytes: int | None = None) -> RawBatch:
    """Parse the bytes of a batch file; the name's suffix says the format. A compressed file
    may decompress to ``max_bytes`` at most (:class:`FileTooLargeError`)."""
    name = file_name.lower()
    if name.endswith(".gz"):
        data = _decompress(data, max_bytes)
    if name.endswith(".parquet"):
        return _read_parquet(data)
    return _read_json_lines(data)


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


__all__ = [
    "EVENT_TYPES",
    "REQUIRED_COLUMNS",
    "RawBatch",
    "Reason",
    "UnreadableFileError",
    "ValidatedBatch",
    "parse_batch",
    "read_batch",
    "validate_batch",
]
