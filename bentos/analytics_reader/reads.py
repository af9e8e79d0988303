"""The read API's queries over the lake: KPI windows, audit lenses and one customer's profile.

KPIs are read partition by partition through a cache of the lake's small day files, each
entry checked against the file's identity (inode, size, modification time) on every read: a
request for 90 days is 90 ``stat`` calls and a concatenation, a few milliseconds, while a
republished day is read again at once. Nothing here opens the warehouse.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analytics_assets.lib import lake
from analytics_assets.scoring.customer_value import OUTPUTS

KPI_TABLES = {"hour": "kpis_hourly", "day": "kpis_daily"}


class FileCache:
    """Parquet files read once per version: ``{path: ((inode, size, mtime_ns), table)}``, the
    least recently used dropped beyond ``max_files``."""

    def __init__(self, max_files: int = 20_000) -> None:
        self.max_files = max_files
        self._tables: OrderedDict[str, tuple[tuple[int, int, int], pa.Table]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: Path) -> pa.Table | None:
        """The file's table, or ``None`` when there is no such file."""
        key = str(path)
        try:
            st = os.stat(key)
        except FileNotFoundError:
            return None
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._tables.get(key)
            if cached is not None and cached[0] == identity:
                self._tables.move_to_end(key)
                return cached[1]
        table = pq.read_table(key)  # a rename swaps whole files: this one is complete
        with self._lock:
            self._tables[key] = (identity, table)
            self._tables.move_to_end(key)
            while len(self._tables) > self.max_files:
                self._tables.popitem(last=False)
        return table


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def kpis(cache: FileCache, root: Path, window: str, first: date, last: date) -> list[dict]:
    """The KPI windows of every day in ``[first, last]``, in time order (days with no file have
    no windows)."""
    table = KPI_TABLES[window]
    parts = [
        t
        for day in days(first, last)
        if (t := cache.read(lake.partition_path(root, table, day))) is not None and t.num_rows
    ]
    if not parts:
        return []
    rows = pa.concat_tables(parts, promote_options="permissive").sort_by("window_start")
    return rows.to_pylist()


def audit_lens(
    cache: FileCache, root: Path, lens: str, first: date | None, last: date | None
) -> tuple[str, list[str], list[dict], list[date]]:
    """One audit table's rows with ``period`` in ``[first, last]`` (either open), its columns,
    and every period it has."""
    name = f"audit_{lens}"
    table = cache.read(lake.partition_path(root, name, None))
    if table is None:
        return name, [], [], []
    periods: list[date] = []
    if "period" in table.column_names:
        import pyarrow.compute as pc

        periods = sorted({_day(p) for p in table.column("period").to_pylist() if p is not None})
        keep = pc.is_valid(table.column("period"))
        period = pc.cast(table.column("period"), pa.date32())
        if first is not None:
            keep = pc.and_(keep, pc.greater_equal(period, pa.scalar(first, pa.date32())))
        if last is not None:
            keep = pc.and_(keep, pc.less_equal(period, pa.scalar(last, pa.date32())))
        table = table.filter(keep)
    return name, table.column_names, [_plain_row(r) for r in table.to_pylist()], periods


def _day(value) -> date:
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def _plain_row(row: dict) -> dict:
    return {k: lake.plain(v) for k, v in row.items()}


def activity(conn, customer_id: str, recent: int = 10) -> dict | None:
    """The customer's activity from the lake's ``customer_daily``: totals and the last active
    days (``None``: never active, or nothing published yet)."""
    cursor = conn.cursor()
    try:
        if not _has_view(cursor, "customer_daily"):
            return None
        totals = cursor.execute(
            """
            SELECT min(day), max(day), count(*), sum(events), sum(purchases), sum(revenue)
            FROM customer_daily WHERE customer_id = ?
            """,
            [customer_id],
        ).fetchall()[0]
        if totals[2] == 0:
            return None
        recent_cursor = cursor.execute(
            "SELECT * EXCLUDE (customer_id) FROM customer_daily WHERE customer_id = ? "
            "ORDER BY day DESC LIMIT ?",
            [customer_id, recent],
        )
        names = [d[0] for d in recent_cursor.description]
        recent_days = [
            _plain_row(dict(zip(names, r, strict=True))) for r in recent_cursor.fetchall()
        ]
    finally:
        cursor.close()
    first, last, active, events, purchases, revenue = totals
    return {
        "first_day": first,
        "last_day": last,
        "active_days": active,
        "events": int(events or 0),
        "purchases": int(purchases or 0),
        "revenue": float(revenue or 0.0),
        "recent_days": recent_days,
    }


OUTPUT_COLUMNS = ("churn_probability", *OUTPUTS)
"""What the scoring service logs as a model's answer (churn, then CLV's outputs)."""


def predictions(conn, customer_id: str, limit: int = 10) -> list[dict]:
    """The customer's last answered predictions from the prediction log, newest first."""
    cursor = conn.cursor()
    try:
        if not _has_view(cursor, "predictions"):
            return []
        names = {r[0] for r in cursor.execute("DESCRIBE predictions").fetchall()}
        outputs = [c for c in OUTPUT_COLUMNS if c in names]
        pick = ", ".join(
            [
                c if c in names else f"NULL AS {c}"
                for c in ("model", "model_version", "role", "endpoint")
            ]
            + outputs
        )
        served = "AND served" if "served" in names else ""
        result = cursor.execute(
            f"SELECT logged_at, {pick} FROM predictions WHERE customer_id = ? {served} "
            "ORDER BY logged_at DESC LIMIT ?",
            [customer_id, limit],
        ).fetchall()
    finally:
        cursor.close()
    found = []
    for row in result:
        logged_at, model, version, role, endpoint, *values = row
        found.append(
            {
                "logged_at": logged_at,
                "model": model,
                "model_version": None if version is None else str(version),
                "role": role,
                "endpoint": endpoint,
                "outputs": {
                    name: _finite(v)
                    for name, v in zip(outputs, values, strict=True)
                    if v is not None
                },
            }
        )
    return found


def _finite(value) -> float | None:
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _has_view(cursor, name: str) -> bool:
    return bool(
        cursor.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [name]
        ).fetchall()[0][0]
    )
