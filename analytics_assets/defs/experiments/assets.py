"""Experiments read from the events: a daily look at every declared experiment (intervals,
CUPED, the sample-ratio check, the sequential verdict), and the page that shows them."""

from datetime import timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from analytics_assets import settings
from analytics_assets.defs.analytics import tables
from analytics_assets.defs.experiments import plots, report
from analytics_assets.lib.atomic_files import write_text
from analytics_assets.lib.plotting import markdown_image
from analytics_assets.metadata import preview
from analytics_assets.partitions import days

GROUP = "experiments"
LOOKS, VERDICTS = "experiment_looks", "experiment_verdicts"
SAMPLE_RATIO = "sample_ratio"


@dg.asset(
    deps=[dg.AssetDep("events", partition_mapping=dg.AllPartitionMapping())],
    partitions_def=days,
    group_name=GROUP,
    kinds={"duckdb"},
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            SAMPLE_RATIO,
            asset="experiment_looks",
            blocking=True,
            description=(
                "Each experiment's exposed customers per variant match its declared split "
                "(chi-square p >= 0.001 at the newest look): a broken split is not a result."
            ),
        )
    ],
)
def experiment_looks(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """Every experiment as of the end of each day: per variant and metric (conversion, orders,
    revenue per exposed customer after first exposure) the lift with its 95 % interval, CUPED,
    the always-valid interval, the sample-ratio check and the verdict (ship, stop, keep running,
    with the reason). Tables ``experiment_looks`` and ``experiment_verdicts``."""
    from analytics_assets.lib import experiments, lakehouse

    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    declared = experiments.load(settings.experiments_file())
    if declared.error:
        context.log.error(f"experiments not read: {declared.error}")
    for name, why in declared.invalid.items():
        context.log.warning(f"experiment {name}: {why}")
    looks, verdicts = [], []
    with warehouse.get_connection() as conn:
        with lakehouse.pinned(conn) as version:
            day = start
            while day < end:
                stats = experiments.arm_statistics(conn, experiments.look_cut(day), "events")
                look = experiments.analyse(stats, declared, day)
                looks.append(look.looks)
                verdicts.append(look.verdicts)
                context.log.info(f"look {day}: {look.verdicts.height} experiments")
                day += timedelta(days=1)
        looks_frame = pl.concat(looks) if looks else pl.DataFrame(schema=experiments.LOOK_SCHEMA)
        verdict_frame = (
            pl.concat(verdicts) if verdicts else pl.DataFrame(schema=experiments.VERDICT_SCHEMA)
        )
        rows = tables.replace_ranges(
            conn,
            {LOOKS: looks_frame.to_arrow(), VERDICTS: verdict_frame.to_arrow()},
            "day",
            start,
            end,
        )
    newest = verdict_frame.filter(pl.col("day") == pl.col("day").max())
    broken = newest.filter(~pl.col("srm_passed").fill_null(True))
    check = dg.AssetCheckResult(
        check_name=SAMPLE_RATIO,
        passed=broken.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "; ".join(broken["reason"].to_list()) if broken.height else "every split is healthy"
        ),
        metadata={
            "broken": broken["experiment"].to_list(),
            "srm_p_values": {
                r["experiment"]: r["srm_p_value"]
                for r in newest.iter_rows(named=True)
                if r["srm_p_value"] is not None
            },
        },
    )
    return dg.MaterializeResult(
        metadata={
            "lakehouse_snapshot": version,
            "days": f"{start} .. {end} (exclusive)",
            "experiments": newest.height,
            "declared": len(declared.valid),
            "declarations_invalid": declared.invalid,
            "verdicts": dg.MetadataValue.md(_verdict_table(newest)),
            "dagster/row_count": rows[LOOKS],
            "preview": preview(newest.drop("day")),
        },
        check_results=[check],
    )


def _verdict_table(verdicts: pl.DataFrame) -> str:
    lines = ["| experiment | verdict | reason |", "| --- | --- | --- |"]
    for r in verdicts.sort("experiment").iter_rows(named=True):
        reason = (r["reason"] or "").replace("|", "/")
        lines.append(f"| {r['experiment']} | {r['verdict']} | {reason} |")
    return "\n".join(lines)


@dg.asset(
    deps=[dg.AssetDep("experiment_looks", partition_mapping=dg.AllPartitionMapping())],
    group_name=GROUP,
    kinds={"duckdb", "matplotlib"},
    # as the audit: after new looks land, once their runs are done; most daily partitions of
    # experiment_looks never exist, which must not block it
    automation_condition=dg.AutomationCondition.eager().without(
        ~dg.AutomationCondition.any_deps_missing()
    ),
)
def experiment_report(
    context: dg.AssetExecutionContext, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """Each experiment's newest verdict, a plot of its lift over the daily looks (with the 95 %
    and the always-valid intervals), and the HTML page of them all (``GET /report/experiments``
    on the read API)."""
    from analytics_assets.lib import lakehouse

    with warehouse.get_connection() as conn:
        if not lakehouse.exists(conn, VERDICTS):
            verdicts = looks = None
        else:
            verdicts = conn.sql(
                f"SELECT * FROM {VERDICTS} QUALIFY day = max(day) OVER (PARTITION BY experiment)"
            ).pl()
            looks = conn.sql(
                f"SELECT l.* FROM {LOOKS} l JOIN {VERDICTS} v USING (day, experiment) "
                f"WHERE v.primary_metric = l.metric OR l.day = "
                f"(SELECT max(day) FROM {VERDICTS} w WHERE w.experiment = l.experiment) "
                "ORDER BY l.experiment, l.day"
            ).pl()
    folder = settings.reports_dir() / "experiments"
    folder.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, object] = {}
    images: dict[str, bytes] = {}
    if verdicts is None or verdicts.is_empty():
        write_text(folder / report.FILE, report.render(pl.DataFrame(), pl.DataFrame(), {}))
        return dg.MaterializeResult(metadata={"experiments": 0})
    newest_rows = looks.join(verdicts.select("experiment", "day"), on=["experiment", "day"])
    for v in verdicts.iter_rows(named=True):
        name, metric = v["experiment"], v["primary_metric"]
        if metric is None:  # not declared, or declared wrong: nothing to plot
            continue
        rows = looks.filter((pl.col("experiment") == name) & (pl.col("metric") == metric))
        images[name] = plots.lift_over_time(rows, name, metric, v["verdict"])
        (folder / f"{name}.png").write_bytes(images[name])
        metadata[name] = dg.MetadataValue.md(
            f"**{v['verdict']}**: {v['reason']}\n\n{markdown_image(images[name], name)}"
        )
    page = folder / report.FILE
    write_text(page, report.render(verdicts, newest_rows, images))
    context.log.info(f"{verdicts.height} experiments -> {page}")
    counts = verdicts["verdict"].value_counts()
    metadata.update(
        {
            "experiments": verdicts.height,
            "verdicts": dict(zip(counts["verdict"], counts["count"], strict=True)),
            "report": dg.MetadataValue.path(str(page)),
            "report_url": dg.MetadataValue.url(f"{settings.read_api_url()}/report/experiments"),
        }
    )
    return dg.MaterializeResult(metadata=metadata)
