"""Customer features: daily snapshots, the Feast registry, the online store, training sets."""

import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from analytics_assets import settings
from analytics_assets.defs.features import offline, transforms
from analytics_assets.lib import feast_online, feast_repo, online_store, outcomes, snapshots
from analytics_assets.lib.atomic_files import write_parquet
from analytics_assets.lib.days import day_range
from analytics_assets.lib.names import FEATURE_SERVICES
from analytics_assets.metadata import preview
from analytics_assets.partitions import batches, days
from analytics_assets.resources import FEAST_REGISTRY_POOL, FeastRepo

GROUP = "features"
# a snapshot of day D reads every day up to D
EVERY_DAY = dg.AllPartitionMapping()
LISTED_AT = "snapshots_listed_at"
APPLY_WHEN_MISSING_OR_CHANGED = (
    (dg.AutomationCondition.missing() & dg.AutomationCondition.any_deps_updated())
    | dg.AutomationCondition.code_version_changed()
) & ~dg.AutomationCondition.in_progress()
AFTER_NEW_FEATURES = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)


@dg.asset(
    deps=[
        dg.AssetDep("customer_daily", partition_mapping=EVERY_DAY),
        dg.AssetDep("sessions", partition_mapping=EVERY_DAY),
    ],
    partitions_def=days,
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def customer_features(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """One row per customer per as-of day: purchase behaviour (RFM, tenure, AOV) and engagement
    (7/28-day sessions and page views, cart abandonment, device mix), from activity up to the end
    of that day only. Parquet file per day; Feast's offline store reads them."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    directory = settings.feature_snapshots_dir()
    # later snapshots sum over these days too: rewrite the ones already written (not the gaps)
    later = [d for d in snapshots.snapshot_days(directory) if d >= end]
    as_of_days = day_range(start, end) + later
    with warehouse.get_connection() as conn:
        relation = transforms.customer_snapshots(conn, as_of_days, datetime.now(UTC))
        written = snapshots.replace_days(relation, directory, as_of_days)
    rows = sum(written.values())
    context.log.info(
        f"{rows:,} snapshot rows for {len(written)} days into {directory} "
        f"({len(later)} later days refreshed)"
    )
    latest = max(written, default=None)
    sample = (
        pl.read_parquet(snapshots.file_for(directory, date.fromisoformat(latest)), n_rows=5)
        if latest
        else pl.DataFrame()
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "days": f"{start.isoformat()} .. {end.isoformat()} (exclusive)",
            "days_written": len(written),
            "later_days_refreshed": len(later),
            "customers_latest_day": written.get(latest, 0) if latest else 0,
            "path": dg.MetadataValue.path(str(directory)),
            "preview": preview(sample),
        }
    )


@dg.asset(
    deps=["customer_features"],
    group_name=GROUP,
    pool=FEAST_REGISTRY_POOL,
    kinds={"feast"},
    code_version=feast_repo.repo_digest(settings.feature_repo_path()),
    # applied once snapshots exist, then whenever feature_repo/ changes (and by the daily
    # schedule): not after every new snapshot, which would put `feast apply` on the path of
    # every micro-batch to the online store
    automation_condition=APPLY_WHEN_MISSING_OR_CHANGED,
)
def feast_definitions(context: dg.AssetExecutionContext, feast: FeastRepo) -> dg.MaterializeResult:
    """The Feast registry: entity ``customer``, feature views ``purchase_behaviour`` and
    ``engagement``, feature services ``churn_v1`` and ``clv_v1``, as ``feature_repo/`` defines
    them (what ``feast apply`` registers)."""
    store = feast.store()
    applied = feast_repo.apply(store, feast.path)
    layout = feast_online.record_layout(
        store, offline.views_over_snapshots(store), settings.online_layout_path()
    )
    diff = applied.registry_diff or "no changes"
    context.log.info(f"registry diff:\n{diff}")
    contents = applied.contents
    return dg.MaterializeResult(
        metadata={
            "registry_diff": dg.MetadataValue.md(f"```\n{diff}\n```"),
            "infra_diff": dg.MetadataValue.md(f"```\n{applied.infra_diff or 'no changes'}\n```"),
            "entities": [e.name for e in contents.entities if not e.name.startswith("__")],
            "feature_views": [v.name for v in contents.feature_views],
            "feature_services": [s.name for s in contents.feature_services],
            "project": store.project,
            "streaming_writes_without_feast": layout is not None,
        }
    )


def _restored_since(listed_at: float | None) -> datetime | None:
    """When the lakehouse was restored, if after ``listed_at`` (the last online write)."""
    from analytics_assets.lib import lake, restore

    if listed_at is None:
        return None
    with lake.cursor(lake.shared()) as cursor:
        restored = restore.last_restore(cursor)
    if restored is None or restored.timestamp() <= listed_at:
        return None
    return restored


@dg.asset(
    deps=["feast_definitions", "customer_features"],
    group_name=GROUP,
    pool=FEAST_REGISTRY_POOL,
    kinds={"feast"},
    automation_condition=AFTER_NEW_FEATURES,
)
def online_features(context: dg.AssetExecutionContext, feast: FeastRepo) -> dg.MaterializeResult:
    """Each customer's latest daily snapshot in Feast's online store (what the scoring service
    reads), written incrementally: only snapshots newer than the last materialization, and
    never over a newer row that ``streamed_features`` wrote."""
    store = feast.store()
    directory = settings.feature_snapshots_dir()
    # files rewritten since the last run listed them are read again (same-day batches)
    listed_at = time.time()
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    mark = previous.asset_materialization.metadata.get(LISTED_AT) if previous else None
    restored = _restored_since(mark.value if mark else None)
    if restored is not None:  # every customer's latest snapshot, over whatever is online
        context.log.warning(
            f"the lakehouse was restored at {restored.isoformat()}: rewriting the online store "
            "from the restored snapshots"
        )
        mark = None
    end = snapshots.newest_timestamp(directory)
    if end is None:
        return dg.MaterializeResult(metadata={"rows_written": 0, "note": "no snapshots yet"})
    until = end + timedelta(seconds=1)  # Feast's windows are [start, end)
    started = time.perf_counter()
    views = offline.views_over_snapshots(store)
    feast_online.record_layout(store, views, settings.online_layout_path())
    batches = offline.latest_rows_by_view(directory, views, until, mark.value if mark else None)
    written = feast_online.write_latest(store, batches, replace=restored is not None)
    for view in views:
        since = view.most_recent_end_time
        store.registry.apply_materialization(
            view, store.project, since or snapshots.oldest_timestamp(directory), until
        )
        context.log.info(f"{view.name}: {written[view.name]:,} customers since {since}")
    seconds = time.perf_counter() - started
    rows = max(written.values(), default=0)
    return dg.MaterializeResult(
        metadata={
            "rows_written": written,
            "rows_offered": {view.name: rows.num_rows for view, rows in batches},
            "materialized_until": until.isoformat(),
            "seconds": round(seconds, 3),
            "rows_per_s": round(sum(written.values()) / seconds) if seconds else 0,
            "online_store": store.config.online_store.type,
            "after_restore": restored.isoformat() if restored else "",
            "dagster/row_count": rows,
            LISTED_AT: dg.MetadataValue.float(listed_at),
        }
    )


# The streaming lane is an asset in the batch partitions, downstream of events, so that the run
# landing_sensor starts for a batch (Dagster runs carry one partitions definition) takes it all
# the way online, and the UI shows per batch: file -> events -> the customers it brought online.
# The day-partitioned snapshots stay on the coalesced lane: Feast's offline store and training
# read those, never these rows. The write is lib/online_store's, not Feast's PushSource +
# store.push(to=PushMode.ONLINE): a push needs `import feast` in every run process (its cost
# is in BENCHMARKS.md, "Figures the code's choices rest on") and Feast's SQLite store
# overwrites a newer row with an older one.
@dg.asset(
    deps=["events"],
    partitions_def=batches,
    group_name=GROUP,
    kinds={"duckdb", "feast"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def streamed_features(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource, feast: FeastRepo
) -> dg.MaterializeResult:
    """The customers a batch touched, with their features as of the moment it was committed
    (in a replayed calendar: as of its newest day's end), in Feast's online store: what the
    scoring service reads seconds after the file landed. Same definitions as
    ``customer_features``; never overwrites a newer online row."""
    keys = context.partition_keys
    started = time.perf_counter()
    with warehouse.get_connection() as conn:
        customers, committed_at, landed_at = transforms.touched_by(conn, keys)
        as_of = transforms.streaming_instant(conn, committed_at) if customers else committed_at
        rows = (
            transforms.customer_features_now(conn, customers, as_of, datetime.now(UTC))
            if customers
            else None
        )
    computed = time.perf_counter() - started
    if rows is None or rows.num_rows == 0:
        return dg.MaterializeResult(metadata={"customers": 0, "note": "the batch stored no events"})
    written, how = _write_online(context, feast, rows)
    online_at = datetime.now(UTC)
    context.log.info(
        f"{rows.num_rows:,} customers as of {as_of.isoformat()} -> online store ({how}): {written}"
    )
    return dg.MaterializeResult(
        metadata={
            "customers": rows.num_rows,
            "as_of": as_of.isoformat(),
            "committed_at": committed_at.isoformat(),
            "written": written,
            "kept_newer_online": {v: rows.num_rows - n for v, n in written.items()},
            "writer": how,
            "compute_seconds": round(computed, 3),
            "write_seconds": round(time.perf_counter() - started - computed, 3),
            "landed_to_online_s": (
                round((online_at - landed_at).total_seconds(), 3) if landed_at else None
            ),
            "preview": preview(pl.from_arrow(rows.slice(0, 5))),
        }
    )


def _write_online(context: dg.AssetExecutionContext, feast: FeastRepo, rows) -> tuple[dict, str]:
    """Write without Feast when the layout recorded at the last apply allows it; else (first
    run after an apply from the CLI, or a store only Feast writes) through the Feast SDK."""
    layout = online_store.Layout.load(settings.online_layout_path())
    if layout is not None:
        try:
            return online_store.write(layout, online_store.online_store_config(), rows), "direct"
        except online_store.NotSupportedHere:
            pass
    elif not online_store.registry_may_exist():
        context.log.info("the Feast repo is not applied yet: feast_definitions will bring these")
        return {}, "none"
    context.log.info("no usable online layout recorded: writing through the Feast SDK")
    store = feast.store()
    views = offline.views_over_snapshots(store)
    feast_online.record_layout(store, views, settings.online_layout_path())
    if not views:
        context.log.warning("no feature views registered yet: feast_definitions has not run")
        return {}, "none"
    batches = [(view, rows) for view in views]
    return feast_online.write_latest(store, batches), "feast"


class TrainingSetConfig(dg.Config):
    churn_days: int = 90
    """Churn label: no purchase within this many days after the as-of date."""
    value_days: int = 180
    """Future value label: revenue within this many days after the as-of date."""
    every_days: int = 28
    """Spacing of the as-of dates, counted back from the newest one whose labels are complete."""
    feature_services: list[str] = list(FEATURE_SERVICES)


@dg.asset(
    deps=[
        "feast_definitions",
        dg.AssetDep("customer_features", partition_mapping=EVERY_DAY),
        dg.AssetDep("events", partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name=GROUP,
    kinds={"feast", "duckdb", "parquet"},
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    feast: FeastRepo,
    warehouse: DuckDBResource,
) -> dg.MaterializeResult:
    """Customers at past as-of dates with their features as of then (Feast point-in-time join)
    and what happened next: ``churned`` (no purchase in 90 days) and ``future_value`` (revenue
    in 180 days). Only as-of dates whose label windows have fully passed."""
    store = feast.store()
    directory = settings.feature_snapshots_dir()
    with warehouse.get_connection() as conn:
        observed_until = outcomes.observed_until(conn)
        as_of_days = offline.matured_as_of_days(
            directory, observed_until, max(config.churn_days, config.value_days), config.every_days
        )
        if not as_of_days:
            raise dg.Failure(
                "no as-of day has a complete label window yet: need "
                f"{max(config.churn_days, config.value_days)} days of events after a snapshot "
                f"(events end {observed_until})"
            )
        entities = snapshots.entities_at(directory, as_of_days)
        conn.register("training_entities", entities)
        try:
            labelled = outcomes.labels(
                conn, "training_entities", config.churn_days, config.value_days
            ).to_arrow_table()
        finally:
            conn.unregister("training_entities")
    features = feast_repo.feature_refs(store, config.feature_services)
    context.log.info(
        f"point-in-time join: {labelled.num_rows:,} rows x {len(features)} features, "
        f"{len(as_of_days)} as-of days"
    )
    frame = store.get_historical_features(
        entity_df=labelled.to_pandas(), features=features, full_feature_names=False
    ).to_arrow()
    result = pl.from_arrow(frame).sort("event_timestamp", "customer_id")
    path = settings.training_set_path()
    write_parquet(result, path)
    by_day = (
        result.group_by(pl.col("event_timestamp").dt.date().alias("as_of_end"))
        .agg(
            pl.len().alias("customers"),
            pl.col("churned").mean().alias("churn_rate"),
            pl.col("future_value").mean().alias("mean_future_value"),
        )
        .sort("as_of_end")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.height,
            "path": dg.MetadataValue.path(str(path)),
            "as_of_days": [d.isoformat() for d in as_of_days],
            "observed_until": observed_until.isoformat(),
            "churn_rate": float(result["churned"].mean()),
            "feature_services": config.feature_services,
            "labels_by_as_of_day": preview(by_day, rows=len(as_of_days)),
            "null_share": preview(result.select(pl.all().null_count() / result.height)),
        }
    )
