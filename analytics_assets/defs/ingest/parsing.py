"""Reading a landed file: bounded decompression, JSON lines or Parquet into untyped event
columns, and the lines that cannot be parsed (polars in and out)."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analytics_assets.defs.ingest.schema import EVENT_COLUMNS, QUARANTINE_SCHEMA, Reason

RAW_LIMIT = 4_000
"""Longest raw text kept with a quarantined row."""

_RAW_SCHEMA = dict.fromkeys(EVENT_COLUMNS, pl.String)
# Fast path: numbers read as numbers. A file where any value does not fit is read again with
# _RAW_SCHEMA, so the bad values can be named row by row.
_NUMERIC_SCHEMA = {**_RAW_SCHEMA, "quantity": pl.Int64, "amount": pl.Float64}


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


def _no_records(unparseable: pl.DataFrame | None = None) -> RawBatch:
    frame = pl.DataFrame(schema={**_RAW_SCHEMA, "record_number": pl.Int64})
    return RawBatch(frame, _empty_quarantine() if unparseable is None else unparseable, [])


def _read_json_lines(data: bytes, whole: bool = True) -> RawBatch:
    if not data or data.isspace():  # isspace() stops at the first non-blank byte
        if not whole:
            return _no_records()
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
    if frame.height == 0 and not whole:
        return _no_records(unparseable)
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


def parse_batch(
    data: bytes, file_name: str, max_bytes: int | None = None, whole: bool = True
) -> RawBatch:
    """Parse the bytes of a batch file; the name's suffix says the format. A compressed file
    may decompress to ``max_bytes`` at most (:class:`FileTooLargeError`).

    With ``whole`` (a file), JSON lines of which no line is a JSON object, or nothing at all,
    are an unreadable file; without it (records of a stream, each its own), they are a batch
    of no events whose every line is quarantined on its own."""
    name = file_name.lower()
    if name.endswith(".gz"):
        data = _decompress(data, max_bytes)
    if name.endswith(".parquet"):
        return _read_parquet(data)
    return _read_json_lines(data, whole)
