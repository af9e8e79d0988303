"""The read API's queries over the lakehouse: KPI windows, audit lenses and one customer's
profile. Each runs on its own cursor of the sandbox's database, which has the lakehouse attached
read-only: one snapshot per query, while runs commit, with no copy and no lock.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb

from analytics_assets.lib import lake, lakehouse
from analytics_assets.scoring.customer_value import OUTPUTS

KPI_TABLES = {"hour": "kpis_hourly", "day": "kpis_daily"}
LAKE = f"{lakehouse.ALIAS}.main"
"""Where the tables are, named in full: a cursor then needs no ``USE`` and ``search_path``
(two statements that each read the catalog: 7.6 ms per request at 10M events)."""
PREDICTIONS = "memory.main.predictions"


class SnapshotCache:
    """Answers kept per lakehouse snapshot: the same request is computed once per snapshot (a
    commit makes a new one) and then answered from memory. Learning the current snapshot costs
    2.5 ms; a 90-day KPI query 35-45 ms (benchmarks/lakehouse.py). At most ``max_entries``,
    least recently used dropped."""

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, tuple[int, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conn, key: tuple, compute: Callable[[], object]):
        cursor = conn.cursor()
        try:
            snapshot = cursor.execute(
                f"SELECT id FROM {lakehouse.ALIAS}.current_snapshot()"
            ).fetchone()[0]
        finally:
            cursor.close()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] == snapshot:
                self._entries.move_to_end(key)
                return found[1]
        value = compute()
        with self._lock:
            self._entries[key] = (snapshot, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def kpis(conn, window: str, first: date, last: date) -> list[dict]:
    """The KPI windows of every day in ``[first, last]``, in time order."""
    return kpi_table(conn, window).between(first, last)


@dataclass(frozen=True)
class KpiTable:
    """Every KPI window of one table, in time order: what the read API keeps per snapshot, so
    each request for a range is a slice (a commit every few seconds, dozens of range requests
    between two: one query each cost 20 ms of CPU at 10M events)."""

    rows: list[dict]
    days: list[date]
    """Each row's ``window_start`` day (UTC, ascending): the ranges' bounds are days."""

    def between(self, first: date, last: date) -> list[dict]:
        return self.rows[
            bisect.bisect_left(self.days, first) : bisect.bisect_right(self.days, last)
        ]


def kpi_table(conn, window: str) -> KpiTable:
    table = KPI_TABLES[window]
    with reading(conn) as cursor:
        if not has_table(cursor, f"{LAKE}.{table}"):
            return KpiTable([], [])
        rows = (
            cursor.execute(f"SELECT * FROM {LAKE}.{table} ORDER BY window_start")
            .fetch_arrow_table()
            .to_pylist()
        )
    return KpiTable(rows, [r["window_start"].date() for r in rows])


def audit_lens(
    conn, lens: str, first: date | None, last: date | None
) -> tuple[str, list[str], list[dict], list[date]]:
    """One audit table's rows with ``period`` in ``[first, last]`` (either open), its columns,
    and every period it has."""
    name = f"audit_{lens}"
    table = f"{LAKE}.{name}"
    with reading(conn) as cursor:
        if not has_table(cursor, table):
            return name, [], [], []
        columns = [r[0] for r in cursor.execute(f"DESCRIBE {table}").fetchall()]
        if "period" not in columns:
            rows = cursor.execute(f"SELECT * FROM {table}").fetch_arrow_table().to_pylist()
            return name, columns, [_plain_row(r) for r in rows], []
        rows = (
            cursor.execute(
                f"SELECT * FROM {table} WHERE period IS NOT NULL "
                "AND ($first IS NULL OR period::DATE >= $first) "
                "AND ($last IS NULL OR period::DATE <= $last)",
                {"first": first, "last": last},
            )
            .fetch_arrow_table()
            .to_pylist()
        )
        periods = [
            r[0]
            for r in cursor.execute(
                f"SELECT DISTINCT period::DATE FROM {table} WHERE period IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
    return name, columns, [_plain_row(r) for r in rows], periods


def _plain_row(row: dict) -> dict:
    return {k: lake.plain(v) for k, v in row.items()}


def activity(conn, customer_id: str, recent: int = 10) -> dict | None:
    """The customer's activity from the lakehouse's ``customer_daily``: totals and the last active
    days (``None``: never active, or nothing published yet)."""
    with reading(conn) as cursor:
        if not has_table(cursor, f"{LAKE}.customer_daily"):
            return None
        found = cursor.execute(  # one scan: the totals ride along with the recent days
            f"""
            SELECT * EXCLUDE (customer_id),
                   min(day) OVER () AS _first, max(day) OVER () AS _last,
                   count(*) OVER () AS _active, sum(events) OVER () AS _events,
                   sum(purchases) OVER () AS _purchases, sum(revenue) OVER () AS _revenue
            FROM {LAKE}.customer_daily WHERE customer_id = ?
            ORDER BY day DESC LIMIT ?
            """,
            [customer_id, recent],
        )
        names = [d[0] for d in found.description]
        rows = found.fetchall()
    if not rows:
        return None
    width = len(names) - 6
    recent_days = [_plain_row(dict(zip(names[:width], r[:width], strict=True))) for r in rows]
    first, last, active, events, purchases, revenue = rows[0][width:]
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
    with reading(conn) as cursor:
        if not has_table(cursor, PREDICTIONS):
            return []
        names = {r[0] for r in cursor.execute(f"DESCRIBE {PREDICTIONS}").fetchall()}
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
            f"SELECT logged_at, {pick} FROM {PREDICTIONS} WHERE customer_id = ? {served} "
            "ORDER BY logged_at DESC LIMIT ?",
            [customer_id, limit],
        ).fetchall()
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


@contextlib.contextmanager
def reading(conn) -> Iterator:
    """A cursor of ``conn`` inside one read transaction: every query of a request sees the same
    snapshot, and the lakehouse's catalog is read once for them, not once per query."""
    cursor = conn.cursor()
    try:
        cursor.execute("BEGIN TRANSACTION")
        yield cursor
    finally:
        with contextlib.suppress(duckdb.Error):
            cursor.execute("ROLLBACK")
        cursor.close()


def has_table(cursor, name: str) -> bool:
    """Whether a reader sees table ``name`` (named in full): one lookup in the transaction's
    catalog (not ``duckdb_tables()``, which lists every table)."""
    try:
        cursor.execute(f"SELECT * FROM {name} LIMIT 0")
    except duckdb.CatalogException:
        return False
    return True


def experiments(cursor) -> list[dict]:
    """Each experiment's newest verdict (``experiment_verdicts``); none before the first look."""
    if not has_table(cursor, f"{LAKE}.experiment_verdicts"):
        return []
    return _dicts(
        cursor.execute(
            f"SELECT * FROM {LAKE}.experiment_verdicts "
            "QUALIFY day = max(day) OVER (PARTITION BY experiment) ORDER BY experiment"
        )
    )


def experiment(cursor, name: str) -> dict | None:
    """``name``'s newest verdict, every variant and metric of that look, and the primary
    metric's every look; ``None`` when it has no look."""
    if not has_table(cursor, f"{LAKE}.experiment_verdicts"):
        return None
    found = _dicts(
        cursor.execute(
            f"SELECT * FROM {LAKE}.experiment_verdicts WHERE experiment = $n "
            "ORDER BY day DESC LIMIT 1",
            {"n": name},
        )
    )
    if not found:
        return None
    verdict = found[0]
    looks = _dicts(
        cursor.execute(
            f"SELECT * EXCLUDE (experiment) FROM {LAKE}.experiment_looks WHERE experiment = $n "
            "AND (day = $day OR metric = $metric) ORDER BY day, variant, metric",
            {"n": name, "day": verdict["day"], "metric": verdict["primary_metric"] or ""},
        )
    )
    return {
        **verdict,
        "results": [r for r in looks if r["day"] == verdict["day"]],
        "history": [r for r in looks if r["metric"] == verdict["primary_metric"]],
    }


def _dicts(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
