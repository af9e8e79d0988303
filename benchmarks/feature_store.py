"""Feast materialization and online reads: this platform's bulk writer against Feast's stock
``materialize``, on the same data in the same run, into SQLite and into a real Redis.

One snapshot day of N customers (default 100,000) x 17 features (8 purchase-behaviour, 9
engagement; seeded random values) is written where the ``customer_features`` asset writes, the
repo is applied through the SDK, and then, interleaved:
  * ours: what the ``online_features`` asset runs (latest row per customer from the Parquet
    snapshots with DuckDB, encoded column-wise, one executemany / one pipeline);
  * stock: ``FeatureStore.materialize`` over the same window (what ``feast materialize`` runs).
Rows are entity rows per feature view (N customers x 2 views), as Feast counts them.
Online reads: ``get_online_features`` in-process, 1 and 100 customers, purchase_behaviour's 8
features (and the 10-feature ``churn_v1`` service over both views).

Usage: ``uv run python benchmarks/feature_store.py [--customers 100000] [--quick]``. Needs
``redis-server`` on PATH (Debian package redis-server).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from analytics_assets.lib.names import CHURN_FEATURES
from analytics_assets.testing.feature_snapshot import AS_OF, write_snapshot


def open_applied(kind: str, home: Path, redis_at: str, tag: str, db: int):
    """A store on its own registry and online store, with the repo applied."""
    from analytics_assets import settings
    from analytics_assets.lib.feast_repo import apply, open_store

    os.environ["FEAST_REGISTRY_PATH"] = f"sqlite:///{home}/feast/registry-{tag}.sqlite"
    if kind == "redis":
        os.environ["FEAST_ONLINE_STORE"] = (
            f'{{type: redis, connection_string: "{redis_at},db={db}"}}'
        )
    else:
        os.environ["FEAST_ONLINE_STORE"] = f"{{type: sqlite, path: '{home}/feast/{tag}.db'}}"
    store = open_store(settings.feature_repo_path())
    apply(store, settings.feature_repo_path())
    return store


def clear_online(kind: str, store, redis_at: str, db: int) -> None:
    if kind == "redis":
        import redis

        host, port = redis_at.split(":")
        redis.Redis(host=host, port=int(port), db=db).flushdb()
    else:
        import sqlite3

        with sqlite3.connect(store.config.online_store.path) as conn:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                conn.execute(f'DELETE FROM "{table}"')


def ours(store, directory: Path) -> int:
    from analytics_assets.defs.features import offline
    from analytics_assets.lib import feast_online, snapshots

    until = snapshots.newest_timestamp(directory) + timedelta(seconds=1)
    views = offline.views_over_snapshots(store)
    batches = offline.latest_rows_by_view(directory, views, until)
    return sum(feast_online.write_latest(store, batches).values())


def stock(store) -> None:
    from analytics_assets.lib.days import snapshot_instant

    end = snapshot_instant(AS_OF) + timedelta(seconds=1)
    store.materialize(start_date=end - timedelta(days=2), end_date=end)


def read_latencies(store, customers: int, batch: int, calls: int, features) -> list[float]:
    rng = np.random.default_rng(batch)
    ids = [f"c{i:07d}" for i in range(customers)]
    timings = []
    for n in range(calls + 20):
        rows = [{"customer_id": ids[i]} for i in rng.integers(0, customers, batch)]
        started = time.perf_counter()
        store.get_online_features(features=features, entity_rows=rows).to_dict()
        if n >= 20:  # warm-up
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def measure(kind: str, home: Path, redis_at: str, size: dict, figures: dict) -> None:
    """Ours against stock into one online store, then online read latencies; into ``figures``."""
    from analytics_assets import settings

    directory = settings.feature_snapshots_dir()
    customers, repeats, rows = size["customers"], size["repeats"], size["customers"] * 2
    calls_1, calls_100 = size["calls_1"], size["calls_100"]
    mine, theirs = [], []
    # separate registries, SQLite files and Redis databases: no shared state
    store_ours = open_applied(kind, home, redis_at, f"{kind}-ours", db=0)
    store_stock = open_applied(kind, home, redis_at, f"{kind}-stock", db=1)
    for _ in range(repeats):
        clear_online(kind, store_ours, redis_at, db=0)
        started = time.perf_counter()
        assert ours(store_ours, directory) == rows
        mine.append(time.perf_counter() - started)
        clear_online(kind, store_stock, redis_at, db=1)
        started = time.perf_counter()
        stock(store_stock)
        theirs.append(time.perf_counter() - started)
        print(f"{kind}: ours {mine[-1]:.2f} s, stock {theirs[-1]:.2f} s", flush=True)
    figures[f"{kind}_rows_per_s"] = round(rows / statistics.median(mine))
    figures[f"{kind}_stock_rows_per_s"] = round(rows / statistics.median(theirs))
    print(
        f"{kind}: ours {figures[f'{kind}_rows_per_s']:,} rows/s, "
        f"stock {figures[f'{kind}_stock_rows_per_s']:,} rows/s "
        f"(median of {repeats}; {rows:,} rows)"
    )
    # both paths must serve the same values
    check = [f"purchase_behaviour:{f}" for f in ("monetary_value", "frequency")]
    sample = [{"customer_id": f"c{i:07d}"} for i in range(0, customers, customers // 50)]
    a = store_ours.get_online_features(features=check, entity_rows=sample).to_dict()
    b = store_stock.get_online_features(features=check, entity_rows=sample).to_dict()
    assert a == b, f"{kind}: our writer and Feast's disagree"
    view = [
        f"purchase_behaviour:{f.name}"
        for f in store_ours.get_feature_view("purchase_behaviour").features
    ]
    service = store_ours.get_feature_service(CHURN_FEATURES)
    for label, features in (("", view), ("_churn_v1", service)):
        one = read_latencies(store_ours, customers, 1, calls_1, features)
        hundred = read_latencies(store_ours, customers, 100, calls_100, features)
        prefix = "online" if kind == "sqlite" else "redis_online"
        figures[f"{prefix}_p99_ms_1{label}"] = round(p99(one), 3)
        figures[f"{prefix}_p99_ms_100{label}"] = round(p99(hundred), 3)
        figures[f"{prefix}_p50_ms_1{label}"] = round(float(np.median(one)), 3)
        print(
            f"{kind} online read{label or ' (8 features)'}: 1 customer p50 "
            f"{np.median(one):.3f} ms p99 {p99(one):.3f} ms; 100 customers p99 "
            f"{p99(hundred):.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10k customers, fewer repeats")
    args = parser.parse_args()
    customers, repeats = (10_000, 2) if args.quick else (args.customers, args.repeats)
    calls_1, calls_100 = (500, 100) if args.quick else (3000, 500)

    home = Path(tempfile.mkdtemp(prefix="feature-store-bench-"))
    os.environ["ANALYTICS_HOME"] = str(home)
    os.environ.pop("ANALYTICS_FEATURES_DIR", None)
    from analytics_assets import settings
    from analytics_assets.testing import servers

    settings.ensure_dirs()
    directory = settings.feature_snapshots_dir()
    write_snapshot(directory, customers)
    rows = customers * 2
    redis_dir = home / "redis"
    redis_dir.mkdir()
    figures: dict[str, object] = {"bench": "feature_store", "customers": customers, "rows": rows}
    size = {"customers": customers, "repeats": repeats, "calls_1": calls_1, "calls_100": calls_100}
    try:
        with servers.redis_server(redis_dir) as redis_at:
            for kind in ("sqlite", "redis"):
                measure(kind, home, redis_at, size, figures)
        figures["stock_rows_per_s"] = figures["sqlite_stock_rows_per_s"]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
