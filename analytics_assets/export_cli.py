"""``analytics export``: a lakehouse table's day range as CSV, JSON lines, Parquet or Arrow,
streamed in constant memory (:mod:`analytics_assets.lib.exports`, as ``GET /export/{table}``
on the read API, with the same limits)."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from analytics_assets import settings


@click.command("export")
@click.argument("table")
@click.option(
    "--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First UTC day."
)
@click.option(
    "--to",
    "last",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last UTC day (included).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "parquet", "arrow"]),
    default="csv",
    show_default=True,
    help="json: one object per line; arrow: the Arrow IPC stream.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write (whole or not at all); standard output if not given.",
)
def export(table: str, first: datetime, last: datetime, fmt: str, out: Path | None) -> None:
    """Export TABLE's rows whose time column falls on the UTC days --from .. --to (events by
    occurred_at, sessions and customer_daily by day, the KPI tables by window_start,
    quarantined_events by quarantined_at, ingest_ledger by committed_at), from one lakehouse
    snapshot, in storage order. At most READ_API_EXPORT_MAX_DAYS days and
    READ_API_EXPORT_MAX_ROWS rows."""
    from analytics_assets.lib import exports, lake
    from analytics_assets.lib.atomic_files import temporary_beside

    conn = lake.connect()
    try:
        try:
            opened = exports.open_export(
                conn,
                table,
                first.date(),
                last.date(),
                fmt,
                settings.read_api_export_max_rows(),
                settings.read_api_export_max_days(),
                settings.read_api_export_timeout_s(),
            )
        except exports.ExportError as exc:
            raise click.ClickException(str(exc)) from exc
        started = time.perf_counter()
        written = 0
        if out is None:
            for chunk in opened.chunks():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        with temporary_beside(out) as tmp:
            with tmp.open("wb") as handle:
                for chunk in opened.chunks():
                    handle.write(chunk)
                    written += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(out)
        seconds = time.perf_counter() - started
        click.echo(
            f"{opened.rows:,} rows of {table} ({first.date()} .. {last.date()}, snapshot "
            f"{opened.snapshot}) -> {out} ({written / 2**20:.1f} MiB {fmt}, {seconds:.1f} s)",
            err=True,
        )
    finally:
        conn.close()
