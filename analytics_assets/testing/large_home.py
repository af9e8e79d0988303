"""A large home built fast, for benchmarks: generated events committed straight into the
lakehouse, one commit (one snapshot) per day, then day tables built by the real assets (as
the read API's test home builds its own)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

FIRST_DAY = date(2024, 1, 1)


def insert_events(events: int, days: int, customers: int, first: date = FIRST_DAY) -> None:
    """``events`` events over ``days`` days from ``first`` (one commit per day, batch
    ``day-<n>``) of ``customers`` customers ``cust-0000000``...: page views, carts and
    purchases (every 7th and 13th event), amounts up to 90."""
    from analytics_assets.defs.ingest import tables
    from analytics_assets.lib import lakehouse

    per_day = events // days
    with lakehouse.connect() as conn:
        tables.ensure_tables(conn)
        for d in range(days):
            offset = d * per_day
            conn.execute(
                f"""
                INSERT INTO events
                SELECT 'ev-' || i, ['page_view', 'add_to_cart', 'purchase'][
                           1 + (i % 7 = 0)::INT + (i % 13 = 0)::INT],
                       'cust-' || lpad((hash(i) % {customers})::VARCHAR, 7, '0'),
                       'sess-' || (i // 6),
                       TIMESTAMPTZ '{first.isoformat()} 00:00:00+00' + INTERVAL {d} DAY
                           + INTERVAL (i * 7 % 86400) SECOND,
                       'p' || (i % 500), 1, (i % 9000) / 100.0, 'USD', 'mobile', NULL,
                       'day-{d}', now()
                FROM range({offset}, {offset + per_day}) t(i)
                """
            )


def insert_exposures(
    experiments: int,
    per_experiment: int,
    customers: int,
    start_day: int,
    span_days: int,
    first: date = FIRST_DAY,
) -> list[str]:
    """``per_experiment`` customers (distinct, of ``customers``) exposed to each of
    ``experiments`` experiments ``exp_00``..., half to control and half to treatment by a hash,
    spread over ``span_days`` days from day ``start_day``; one commit per experiment. Returns
    the experiments' names."""
    from analytics_assets.lib import lakehouse

    if per_experiment > customers:
        raise ValueError("more exposed customers than customers")
    names = [f"exp_{e:02d}" for e in range(experiments)]
    seconds = span_days * 86_400
    with lakehouse.connect() as conn:
        for e, name in enumerate(names):
            conn.execute(
                f"""
                INSERT INTO events
                SELECT 'x-{e}-' || i, 'experiment_exposure',
                       -- i -> (i * 7919 + offset) mod customers: distinct customers
                       'cust-' || lpad(((i * 7919 + {e * 104_729}) % {customers})::VARCHAR,
                                       7, '0'),
                       NULL,
                       TIMESTAMPTZ '{first.isoformat()} 00:00:00+00'
                           + INTERVAL {start_day} DAY
                           + INTERVAL (i * {seconds} // {per_experiment}) SECOND,
                       NULL, NULL, NULL, NULL, 'mobile',
                       '{{"experiment": "{name}", "variant": "'
                           || ['control', 'treatment'][1 + (hash(i, {e}) % 2)::INT]
                           || '"}}',
                       'exposures-{e}', now()
                FROM range({per_experiment}) t(i)
                """
            )
    return names


def materialize_days(assets: Sequence, first: date, last: date) -> None:
    """``assets`` (day-partitioned) over ``first`` .. ``last`` in one run, on an ephemeral
    instance, with the real warehouse resource."""
    import dagster as dg

    from analytics_assets.resources import warehouse_resource

    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            list(assets),
            resources={"warehouse": warehouse_resource()},
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
        ).success


def materialize_analytics(first: date, last: date) -> None:
    """Sessions, customer_daily and both KPI tables over ``first`` .. ``last``, then the
    customer-base audit over them: what the read API reads."""
    from analytics_assets.defs.analytics.assets import (
        customer_base_audit,
        customer_daily,
        kpis_daily,
        kpis_hourly,
        sessions,
    )

    materialize_days([sessions, customer_daily, kpis_hourly, kpis_daily], first, last)
    materialize_days([customer_base_audit], first, last)


def last_day(days: int, first: date = FIRST_DAY) -> date:
    return first + timedelta(days=days - 1)
