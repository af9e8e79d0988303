"""Sessions, customer-day activity and KPI windows: daily partitions rebuilt from ``events``."""

from datetime import date

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from analytics_assets import settings
from analytics_assets.defs.analytics import audit, plots, report, tables, transforms
from analytics_assets.defs.analytics.checks import SNAPSHOT
from analytics_assets.lib import lake, lakehouse
from analytics_assets.lib.atomic_files import write_text
from analytics_assets.lib.plotting import markdown_image
from analytics_assets.metadata import files_check, files_check_spec, preview
from analytics_assets.partitions import days

GROUP = "analytics"
# any batch can carry events of any day: each day depends on all of them
EVENTS = dg.AssetDep("events", partition_mapping=dg.AllPartitionMapping())
COMMON = {
    "partitions_def": days,
    "group_name": GROUP,
    "kinds": {"duckdb"},
    # a late batch that touches many days is one run over the range, not one run per day
    "backfill_policy": dg.BackfillPolicy.single_run(),
}


class SessionsConfig(dg.Config):
    gap_minutes: int = transforms.DEFAULT_GAP_MINUTES
    """Inactivity after which a customer's next event starts a new session."""


def _day_range(context: dg.AssetExecutionContext) -> tuple[date, date]:
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def _written(
    table: str, rows: int, start: date, end: date, written: pl.DataFrame, version: int
) -> dict:
    return {
        SNAPSHOT: version,
        "dagster/row_count": rows,
        "dagster/table_name": table,
        "days": f"{start.isoformat()} .. {end.isoformat()} (exclusive)",
        "preview": preview(written),
    }


@dg.asset(deps=[EVENTS], check_specs=[files_check_spec("sessions")], **COMMON)
def sessions(
    context: dg.AssetExecutionContext, config: SessionsConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """Customer sessions (a new one after 30 minutes of inactivity), on the day they start:
    duration, events, page views, carts, purchases, revenue and device."""
    start, end = _day_range(context)
    with warehouse.get_connection() as conn:
        with lakehouse.pinned(conn) as version:  # one snapshot of events, named for the checks
            data = transforms.sessions(conn, start, end, config.gap_minutes).fetch_arrow_table()
        rows = tables.replace_range(conn, "sessions", data, "day", start, end)
        check = files_check(conn, "sessions")
    return dg.MaterializeResult(
        metadata=_written("sessions", rows, start, end, pl.from_arrow(data), version),
        check_results=[check],
    )


@dg.asset(deps=[EVENTS], check_specs=[files_check_spec("customer_daily")], **COMMON)
def customer_daily(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per customer per day with activity: events, page views, carts, purchases, units
    and revenue. The view ``customer_daily_rolling`` adds 7- and 28-day rolling sums."""
    start, end = _day_range(context)
    with warehouse.get_connection() as conn:
        with lakehouse.pinned(conn) as version:
            data = transforms.customer_daily(conn, start, end).fetch_arrow_table()
        rows = tables.replace_range(conn, "customer_daily", data, "day", start, end)
        transforms.create_rolling_view(conn)
        check = files_check(conn, "customer_daily")
    return dg.MaterializeResult(
        metadata=_written("customer_daily", rows, start, end, pl.from_arrow(data), version),
        check_results=[check],
    )


def _kpi_asset(grain: str) -> dg.AssetsDefinition:
    name = f"kpis_{grain}ly" if grain == "hour" else "kpis_daily"

    @dg.asset(name=name, deps=[EVENTS, "sessions"], check_specs=[files_check_spec(name)], **COMMON)
    def kpi_windows(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        start, end = _day_range(context)
        with warehouse.get_connection() as conn:
            with lakehouse.pinned(conn) as version:
                data = transforms.kpis(conn, start, end, grain).fetch_arrow_table()
            rows = tables.replace_range(conn, name, data, "window_start", start, end)
            check = files_check(conn, name)
        return dg.MaterializeResult(
            metadata=_written(name, rows, start, end, pl.from_arrow(data), version),
            check_results=[check],
        )

    kpi_windows.__doc__ = (
        f"Tumbling {grain} windows: events, active customers, sessions, purchases, revenue, "
        "conversion rate (share of sessions with a purchase) and average order value."
    )
    return kpi_windows


kpis_hourly = _kpi_asset("hour")
kpis_daily = _kpi_asset("day")


class AuditConfig(dg.Config):
    period: str = "month"
    """Audit period: month, quarter or year."""


@dg.asset(
    deps=[dg.AssetDep("customer_daily", partition_mapping=dg.AllPartitionMapping())],
    group_name=GROUP,
    kinds={"duckdb", "matplotlib"},
    check_specs=[files_check_spec("customer_base_audit")],
    # After new days land; waits while their runs are in progress, so a burst is one audit.
    # Eager minus "any dependency missing": most of the ~13,000 daily partitions of
    # customer_daily never have data, which would block it for ever.
    automation_condition=dg.AutomationCondition.eager().without(
        ~dg.AutomationCondition.any_deps_missing()
    ),
)
def customer_base_audit(
    context: dg.AssetExecutionContext, config: AuditConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """The customer-base audit's five lenses: period summary with deciles and Lorenz curve,
    period-to-period comparison with a revenue bridge, one cohort's evolution, cohorts compared,
    and revenue by acquisition cohort (the layer cake). Tables ``audit_*``; plots below."""
    with warehouse.get_connection() as conn:
        purchases = conn.sql(
            "SELECT customer_id, day, purchases AS orders, revenue FROM customer_daily "
            "WHERE purchases > 0"
        ).pl()
        result = audit.audit(purchases, config.period)
        tables.replace_all(
            conn, {name: frame.to_arrow() for name, frame in result.tables().items()}
        )
        check = files_check(conn, lake.AUDIT_TABLES, asset="customer_base_audit")
    reports = settings.reports_dir() / "customer_base_audit"
    reports.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, object] = {}
    images: dict[str, bytes] = {}
    for name, draw in plots.LENSES.items():
        image = images[name] = draw(result) if result.summary.height else plots.no_purchases(name)
        (reports / f"{name}.png").write_bytes(image)
        metadata[name] = dg.MetadataValue.md(markdown_image(image, name))
    customers = purchases["customer_id"].n_unique()
    page = reports / report.FILE
    write_text(page, report.render(result, images, config.period, customers))
    latest = result.summary.row(-1, named=True) if result.summary.height else {}
    metadata.update(
        {
            "period": config.period,
            "customers": customers,
            "periods": result.summary.height,
            "latest_period": str(latest.get("period")),
            "latest_top10_share": latest.get("top10_share"),
            "latest_top20_share": latest.get("top20_share"),
            "tables": sorted(result.tables()),
            "reports": dg.MetadataValue.path(str(reports)),
            "report": dg.MetadataValue.path(str(page)),
            "report_url": dg.MetadataValue.url(f"{settings.read_api_url()}/report/"),
        }
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
