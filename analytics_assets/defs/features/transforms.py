"""Customer features as of an instant, and training labels (DuckDB SQL).

One SQL computes the features, parameterized by the as-of instants. As of instant t, the as-of
day is the UTC day t falls in (the day before, when t is a midnight) and a customer's features
read only activity of days up to it. A daily snapshot for day D is the instant ``D + 1 00:00 UTC``
(its ``event_timestamp``): activity up to the end of D. Labels look only at what happens after
that instant. Together they make the point-in-time join leak-free.

The SQL reads two relations shaped like ``customer_daily`` and ``sessions``: for the daily
snapshots those tables, built by the coalesced lane; for the streaming lane the same rows
computed, with the same analytics SQL, from just the touched customers' events
(:func:`customer_features_now`), so a streamed row equals the snapshot row of the same instant.

Rolling sums come from running totals: the sum over the last N days is the running total at D
minus the running total at D - N, each found with an ASOF join, so the cost is one pass over
customer-days with activity plus one over the snapshot grid.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa

from analytics_assets.defs.analytics import transforms as activity
from analytics_assets.lib.days import snapshot_instant
from analytics_assets.lib.warehouse import identifier

_RUNNING = ("page_views", "sessions", "cart_sessions", "abandoned", "mobile", "desktop", "tablet")

_FEATURES_SQL = f"""
WITH as_of_instants AS (
    SELECT instant, ((instant - INTERVAL 1 MICROSECOND) AT TIME ZONE 'UTC')::DATE AS as_of
    FROM (SELECT unnest($instants::TIMESTAMPTZ[]) AS instant)
),
activity AS (
    SELECT customer_id, day,
           sum(page_views) AS page_views, sum(purchases) AS purchases, sum(revenue) AS revenue,
           sum(sessions) AS sessions, sum(cart_sessions) AS cart_sessions,
           sum(abandoned) AS abandoned, sum(mobile) AS mobile, sum(desktop) AS desktop,
           sum(tablet) AS tablet
    FROM (
        SELECT customer_id, day, page_views, purchases, revenue,
               0 AS sessions, 0 AS cart_sessions, 0 AS abandoned,
               0 AS mobile, 0 AS desktop, 0 AS tablet
        FROM {{daily}} WHERE day <= (SELECT max(as_of) FROM as_of_instants)
        UNION ALL
        SELECT customer_id, day, 0, 0, 0,
               count(*),
               count(*) FILTER (WHERE carts > 0),
               count(*) FILTER (WHERE carts > 0 AND purchases = 0),
               count(*) FILTER (WHERE device = 'mobile'),
               count(*) FILTER (WHERE device = 'desktop'),
               count(*) FILTER (WHERE device = 'tablet')
        FROM {{sessions}} WHERE day <= (SELECT max(as_of) FROM as_of_instants)
        GROUP BY ALL
    )
    GROUP BY ALL
),
running AS (
    SELECT customer_id, day,
           {", ".join(f"sum({c}) OVER w AS {c}" for c in _RUNNING)},
           sum(purchases) OVER w AS orders,
           sum(revenue) OVER w AS revenue,
           count(*) FILTER (WHERE purchases > 0) OVER w AS purchase_days,
           min(day) FILTER (WHERE purchases > 0) OVER w AS first_purchase_day,
           max(day) FILTER (WHERE purchases > 0) OVER w AS last_purchase_day,
           first_value(CASE WHEN purchases > 0 THEN revenue END IGNORE NULLS) OVER w
               AS first_purchase_revenue,
           max(day) FILTER (WHERE sessions > 0) OVER w AS last_session_day
    FROM activity
    WINDOW w AS (PARTITION BY customer_id ORDER BY day ROWS UNBOUNDED PRECEDING)
),
shifted_7 AS (SELECT customer_id, day + 7 AS day, {", ".join(_RUNNING)} FROM running),
shifted_28 AS (SELECT customer_id, day + 28 AS day, {", ".join(_RUNNING)} FROM running),
customers AS (SELECT customer_id, min(day) AS first_day FROM activity GROUP BY ALL),
grid AS (
    SELECT c.customer_id, d.as_of, d.instant
    FROM customers c JOIN as_of_instants d ON c.first_day <= d.as_of
),
joined AS (
    SELECT g.customer_id, g.as_of, g.instant, r.*,
           {", ".join(f"coalesce(w7.{c}, 0) AS {c}_before_7" for c in _RUNNING)},
           {", ".join(f"coalesce(w28.{c}, 0) AS {c}_before_28" for c in _RUNNING)}
    FROM grid g
    ASOF LEFT JOIN running r ON g.customer_id = r.customer_id AND g.as_of >= r.day
    ASOF LEFT JOIN shifted_7 w7 ON g.customer_id = w7.customer_id AND g.as_of >= w7.day
    ASOF LEFT JOIN shifted_28 w28 ON g.customer_id = w28.customer_id AND g.as_of >= w28.day
)
SELECT
    customer_id,
    as_of,
    instant AS event_timestamp,
    $created_at::TIMESTAMPTZ AS created_at,
    greatest(purchase_days - 1, 0)::BIGINT AS frequency,
    (last_purchase_day - first_purchase_day)::DOUBLE AS recency_days,
    (as_of - first_purchase_day)::DOUBLE AS tenure_days,
    CASE WHEN purchase_days > 1
         THEN (revenue - first_purchase_revenue) / (purchase_days - 1) ELSE 0 END::DOUBLE
        AS monetary_value,
    orders::BIGINT AS orders,
    (revenue / nullif(orders, 0))::DOUBLE AS average_order_value,
    revenue::DOUBLE AS total_revenue,
    (as_of - last_purchase_day)::DOUBLE AS days_since_last_purchase,
    (sessions - sessions_before_7)::BIGINT AS sessions_7d,
    (sessions - sessions_before_28)::BIGINT AS sessions_28d,
    (page_views - page_views_before_7)::BIGINT AS page_views_7d,
    (page_views - page_views_before_28)::BIGINT AS page_views_28d,
    ((abandoned - abandoned_before_28)
        / nullif(cart_sessions - cart_sessions_before_28, 0))::DOUBLE
        AS cart_abandonment_rate_28d,
    (as_of - last_session_day)::DOUBLE AS days_since_last_session,
    ((mobile - mobile_before_28) / nullif(sessions - sessions_before_28, 0))::DOUBLE
        AS mobile_share_28d,
    ((desktop - desktop_before_28) / nullif(sessions - sessions_before_28, 0))::DOUBLE
        AS desktop_share_28d,
    ((tablet - tablet_before_28) / nullif(sessions - sessions_before_28, 0))::DOUBLE
        AS tablet_share_28d
FROM joined
"""


def features_at(
    conn: duckdb.DuckDBPyConnection,
    instants: list[datetime],
    created_at: datetime,
    daily: str = "customer_daily",
    sessions: str = "sessions",
) -> duckdb.DuckDBPyRelation:
    """One row per customer per as-of instant, for every customer with activity by then: the
    features, ``as_of`` (the day) and ``event_timestamp`` (the instant).

    Reads ``daily`` and ``sessions``, relations with the rows of ``customer_daily`` and
    ``sessions`` up to the last as-of day.
    """
    sql = _FEATURES_SQL.format(daily=identifier(daily), sessions=identifier(sessions))
    return conn.sql(sql, params={"instants": sorted(instants), "created_at": created_at})


def customer_snapshots(
    conn: duckdb.DuckDBPyConnection, days: list[date], created_at: datetime
) -> duckdb.DuckDBPyRelation:
    """The daily snapshots: every customer seen by each as-of day in ``days``, as of its end.

    Reads ``customer_daily`` and ``sessions`` (which must be built up to the last day).
    """
    return features_at(conn, [snapshot_instant(d) for d in days], created_at)


def touched_by(
    conn: duckdb.DuckDBPyConnection, batch_ids: list[str]
) -> tuple[list[str], datetime, datetime | None]:
    """The customers with events stored by ``batch_ids``, the instant the last of them was
    committed, and when the first of their files landed (from the ingestion ledger)."""
    customers = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT customer_id FROM events WHERE batch_id IN (SELECT unnest($b))",
            {"b": batch_ids},
        ).fetchall()
    ]
    ((committed, landed),) = conn.execute(
        "SELECT max(committed_at), min(landed_at) FROM ingest_ledger "
        "WHERE batch_id IN (SELECT unnest($b))",
        {"b": batch_ids},
    ).fetchall()
    if committed is None:
        raise ValueError(f"batches {batch_ids} have no ledger row: ingest them first")
    return sorted(customers), committed.astimezone(UTC), landed and landed.astimezone(UTC)


def streaming_instant(conn: duckdb.DuckDBPyConnection, committed_at: datetime) -> datetime:
    """The instant a batch's customers' features are computed as of: its commit, in a live
    stream; in a home whose events all lie more than a day before the commit (a replayed
    calendar, such as the demo's 1997-98), the end of its newest event day, the instant its
    daily snapshots are as of. Otherwise a batch added to that calendar would read decades of
    silence (a churn near 1 for a customer who bought last week) and, being newer, keep that
    row online over every snapshot."""
    since = committed_at - timedelta(days=1)
    recent = conn.execute(
        "SELECT 1 FROM events WHERE occurred_at >= $since LIMIT 1", {"since": since}
    ).fetchone()
    if recent is not None:  # the common case: row groups' min/max skip all older ones
        return committed_at
    (newest,) = conn.execute("SELECT max(occurred_at) FROM events").fetchone()
    if newest is None:
        return committed_at
    return snapshot_instant(newest.astimezone(UTC).date())


def customer_features_now(
    conn: duckdb.DuckDBPyConnection,
    customer_ids: list[str],
    instant: datetime,
    created_at: datetime,
    gap_minutes: int = activity.DEFAULT_GAP_MINUTES,
) -> pa.Table:
    """The features of ``customer_ids`` as of ``instant``, straight from ``events``.

    Their sessions and day activity are rebuilt from all their stored events with the analytics
    SQL (the coalesced lane may not have built the latest days yet), then :func:`features_at`
    reads those rows instead of the analytics tables. Customers without events get no row.
    """
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE _touched_events AS
        SELECT * FROM events WHERE customer_id IN (SELECT unnest($ids::VARCHAR[]))
        """,
        {"ids": customer_ids},
    )
    try:
        ((first, last),) = conn.execute(
            "SELECT min(occurred_at AT TIME ZONE 'UTC')::DATE, "
            "max(occurred_at AT TIME ZONE 'UTC')::DATE FROM _touched_events"
        ).fetchall()
        as_of = (instant - timedelta(microseconds=1)).astimezone(UTC).date()
        start = first or as_of
        end = max(as_of, last or as_of) + timedelta(days=1)
        rebuilt = {
            "_touched_sessions": activity.sessions(
                conn, start, end, gap_minutes, "_touched_events"
            ),
            "_touched_daily": activity.customer_daily(conn, start, end, "_touched_events"),
        }
        for name, relation in rebuilt.items():
            conn.register(name, relation.to_arrow_table())
        try:
            return features_at(
                conn, [instant], created_at, "_touched_daily", "_touched_sessions"
            ).to_arrow_table()
        finally:
            for name in rebuilt:
                conn.unregister(name)
    finally:
        conn.execute("DROP TABLE IF EXISTS _touched_events")
