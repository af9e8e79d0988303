"""The live feed's figures, read from one lakehouse snapshot: what a person watching the
platform wants to see move as batches land.

- ``events_last_minute`` / ``events_last_hour``: clean events committed in the last minute and
  hour (the ingest ledger, by commit time).
- ``day``, ``revenue``, ``orders``, ``active_sessions``: the newest day that has events (today,
  when events arrive live; the replay's current day when a history is replayed), its purchases
  and revenue, and the customers with an event in the session gap (30 min) before its newest
  event.
- ``last_batch``: the newest commit of the ledger: source (files or kafka), name, events,
  quarantined, landed -> committed seconds.
- ``online``: when the online store was last written (the SQLite file's time; Redis: not known
  here), and how long after the last commit.
- ``champions``: per model, the serving champion's version and when it was promoted (the BentoML
  model store), and the last drift report's verdict (features drifted of compared). Read at
  most every 30 s: they change on promotions and drift runs, not on commits.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from analytics_assets import settings
from analytics_assets.lib import lake, lakehouse
from analytics_assets.lib.names import MODELS

SESSION_GAP = timedelta(minutes=30)


def snapshot_id(cursor: duckdb.DuckDBPyConnection) -> int:
    return cursor.execute(f"SELECT id FROM {lakehouse.ALIAS}.current_snapshot()").fetchone()[0]


def snapshots_after(cursor: duckdb.DuckDBPyConnection, seen: int, upto: int) -> list[int]:
    """The snapshot ids after ``seen`` up to ``upto``, oldest first (expired ones are gone)."""
    return [
        row[0]
        for row in cursor.execute(
            f"SELECT snapshot_id FROM {lakehouse.ALIAS}.snapshots() "
            "WHERE snapshot_id > ? AND snapshot_id <= ? ORDER BY 1",
            [seen, upto],
        ).fetchall()
    ]


def figures(conn: duckdb.DuckDBPyConnection, version: int) -> dict:
    """The lakehouse figures as of snapshot ``version`` (DuckLake time travel: the same
    answer whenever it is asked)."""
    cursor = lake.cursor(conn)
    try:
        found: dict = {"snapshot": version}
        at = f"AT (VERSION => {int(version)})"
        try:
            found |= _ledger(cursor, at)
        except duckdb.CatalogException:  # no batch committed yet at that snapshot
            return found
        if found.get("day"):
            found |= _day(cursor, found["day"], at)
    finally:
        cursor.close()
    return found


def _ledger(cursor, at: str) -> dict:
    minute, hour, newest_day = cursor.execute(
        f"""
        SELECT coalesce(sum(clean) FILTER (WHERE committed_at >= now() - INTERVAL 1 MINUTE), 0),
               coalesce(sum(clean) FILTER (WHERE committed_at >= now() - INTERVAL 1 HOUR), 0),
               (SELECT max(list_max(days_touched)) FROM ingest_ledger {at} WHERE clean > 0)
        FROM ingest_ledger {at} WHERE committed_at >= now() - INTERVAL 1 HOUR
        """
    ).fetchone()
    last = cursor.execute(
        f"""
        SELECT batch_id, file_name, clean, quarantined, landed_at, committed_at
        FROM ingest_ledger {at} ORDER BY committed_at DESC LIMIT 1
        """
    ).fetchone()
    found: dict = {
        "events_last_minute": int(minute),
        "events_last_hour": int(hour),
        "day": newest_day.isoformat() if newest_day else None,
    }
    if last is not None:
        batch_id, name, clean, quarantined, landed_at, committed_at = last
        found["last_batch"] = {
            "batch_id": batch_id,
            "source": "kafka" if "]@" in name else "files",
            "name": name,
            "events": int(clean),
            "quarantined": int(quarantined),
            "landed_at": landed_at.isoformat() if landed_at else None,
            "committed_at": committed_at.isoformat(),
            "landed_to_committed_s": (
                round((committed_at - landed_at).total_seconds(), 3) if landed_at else None
            ),
        }
    return found


def _day(cursor, day: str, at: str) -> dict:
    orders, revenue, active = cursor.execute(
        f"""
        WITH d AS (
            SELECT customer_id, event_type, amount, occurred_at FROM events {at}
            WHERE occurred_at >= $day::TIMESTAMP AT TIME ZONE 'UTC'
              AND occurred_at < ($day::DATE + 1)::TIMESTAMP AT TIME ZONE 'UTC'
        )
        SELECT count(*) FILTER (WHERE event_type = 'purchase'),
               coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0),
               count(DISTINCT customer_id) FILTER (
                   WHERE occurred_at > (SELECT max(occurred_at) FROM d)
                                       - INTERVAL {int(SESSION_GAP.total_seconds())} SECOND)
        FROM d
        """,
        {"day": day},
    ).fetchone()
    return {"orders": int(orders), "revenue": round(float(revenue), 2), "active_sessions": active}


def online(committed_at: str | None) -> dict:
    """When the online store was last written (its SQLite file and WAL), and that against the
    last commit."""
    from analytics_assets.lib.online_store import online_store_config

    config = online_store_config()
    if config.get("type") != "sqlite":
        return {"store": config.get("type"), "updated_at": None, "behind_commit_s": None}
    path = Path(config["path"])
    stamps = [p.stat().st_mtime for p in (path, Path(f"{path}-wal")) if p.exists()]
    if not stamps:
        return {"store": "sqlite", "updated_at": None, "behind_commit_s": None}
    updated = datetime.fromtimestamp(max(stamps), UTC)
    behind = None
    if committed_at:
        behind = round(
            max(0.0, (datetime.fromisoformat(committed_at) - updated).total_seconds()), 3
        )
    return {"store": "sqlite", "updated_at": updated.isoformat(), "behind_commit_s": behind}


class Champions:
    """The champions' health, read again at most every ``every_s`` seconds."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self._at = -float("inf")
        self._value: dict = {}
        self._lock = threading.Lock()

    def get(self) -> dict:
        with self._lock:
            if time.monotonic() - self._at >= self.every_s:
                self._value = champions()
                self._at = time.monotonic()
            return self._value


def champions() -> dict:
    found = {}
    drift = _drift()
    try:
        from analytics_assets.lib import bento_store

        store = bento_store.open_store(settings.bentoml_home())
    except Exception as exc:  # a store that does not open: say so, never break the feed
        return {"error": f"model store: {exc}"}
    for name in MODELS:
        model = bento_store.current(store, name)
        labels = model.info.labels if model is not None else {}
        found[name] = {
            "version": labels.get("mlflow_version"),
            "promoted_at": labels.get("promoted_at"),
            "drift": drift.get(name),
        }
    return found


def _drift() -> dict:
    """Per model, the last drift report's verdict: features drifted of compared."""
    path = settings.reports_dir() / "drift" / "features.parquet"
    if not path.exists():
        return {}
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["model", "drifted"]).to_pylist()
    checked = datetime.fromtimestamp(os.stat(path).st_mtime, UTC).isoformat()
    verdicts: dict = {}
    for row in table:
        entry = verdicts.setdefault(
            row["model"], {"features_drifted": 0, "features_compared": 0, "checked_at": checked}
        )
        entry["features_compared"] += 1
        entry["features_drifted"] += int(bool(row["drifted"]))
    for entry in verdicts.values():
        entry["verdict"] = "drifted" if entry["features_drifted"] else "stable"
    return verdicts
