"""What happened after a snapshot: training labels, realized outcomes, and how far they are
known (DuckDB SQL over ``events``). Used by the training set, the CLV holdout and the realized
performance of a champion, so the three agree on what "churned" and "bought" mean."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from analytics_assets.lib.days import utc_midnight
from analytics_assets.lib.warehouse import identifier


def observed_until(conn: duckdb.DuckDBPyConnection) -> datetime:
    """End of the last day with events: labels can only be known up to here."""
    (last,) = conn.execute("SELECT max(day) FROM customer_daily").fetchall()[0]
    if last is None:
        raise ValueError("customer_daily is empty: nothing to label")
    return utc_midnight(last + timedelta(days=1))


def labels(
    conn: duckdb.DuckDBPyConnection,
    entities: str,
    churn_days: int,
    value_days: int,
) -> duckdb.DuckDBPyRelation:
    """Labels for each ``(customer_id, event_timestamp)`` row of the relation named ``entities``.

    ``churned``: no purchase in ``[t, t + churn_days)``; ``future_value``: revenue in
    ``[t, t + value_days)``. A snapshot valid from ``t`` holds only events before ``t``, so
    features and labels never share an event, and none falls between them.
    """
    identifier(entities)
    churn, value = int(churn_days), int(value_days)
    return conn.sql(
        f"""
        SELECT e.customer_id, e.event_timestamp,
               count(p.occurred_at) FILTER (
                   WHERE p.occurred_at < e.event_timestamp + INTERVAL {churn} DAY
               ) = 0 AS churned,
               coalesce(sum(p.amount) FILTER (
                   WHERE p.occurred_at < e.event_timestamp + INTERVAL {value} DAY
               ), 0)::DOUBLE AS future_value
        FROM {entities} e
        LEFT JOIN events p
          ON p.customer_id = e.customer_id
         AND p.event_type = 'purchase'
         AND p.occurred_at >= e.event_timestamp
         AND p.occurred_at < e.event_timestamp + INTERVAL {max(churn, value)} DAY
        GROUP BY ALL
        """
    )


def future_purchases(
    conn: duckdb.DuckDBPyConnection, entities: str, days: int
) -> duckdb.DuckDBPyRelation:
    """For each ``(customer_id, event_timestamp)`` row of ``entities``: purchase days and revenue
    in ``[t, t + days)``. Purchase days, because the snapshot's ``frequency`` counts repeat
    purchase days (several orders on one day are one transaction, as in the BG/NBD paper)."""
    identifier(entities)
    horizon = int(days)
    return conn.sql(
        f"""
        SELECT e.customer_id, e.event_timestamp,
               count(DISTINCT (p.occurred_at AT TIME ZONE 'UTC')::DATE)::BIGINT
                   AS purchase_days,
               coalesce(sum(p.amount), 0)::DOUBLE AS revenue
        FROM {entities} e
        LEFT JOIN events p
          ON p.customer_id = e.customer_id
         AND p.event_type = 'purchase'
         AND p.occurred_at >= e.event_timestamp
         AND p.occurred_at < e.event_timestamp + INTERVAL {horizon} DAY
        GROUP BY ALL
        """
    )
