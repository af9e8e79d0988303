"""Experiments read from the events: a daily look at every declared experiment (intervals,
CUPED, the sample-ratio check, the sequential verdict), and the page that shows them."""

import json
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
            last = end - timedelta(days=1)
            stats = experiments.arm_statistics(conn, start, last, "events")
        day = start
        while day < end:
            look = experiments.analyse(stats.filter(pl.col("day") == day), declared, day)
            looks.append(look.looks)
            verdicts.append(look.verdicts)
            day += timedelta(days=1)
        context.log.info(f"{len(looks)} looks ({start} .. {last}): {stats.height} arm rows")
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
            "declarations_error": declared.error,
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


class ModelSplitConfig(dg.Config):
    churn_days: int = 90
    """The churn label's window (the training set's): an answer's outcome is known this many
    days after its features' as-of time."""


@dg.asset(
    deps=[dg.AssetDep("events", partition_mapping=dg.AllPartitionMapping()), "customer_daily"],
    group_name=GROUP,
    kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.on_cron("30 2 * * *"),
)
def model_split(
    context: dg.AssetExecutionContext, config: ModelSplitConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """The scoring service's champion/challenger split read as an experiment: per arm, the
    customers its model answered and what then happened (realized AUC, calibration and
    top-decile lift, with 95 % intervals), and the challenger against the champion. The
    promotion gate (``model_evaluation``) reads it as evidence beside the offline holdout."""
    import duckdb

    from analytics_assets.lib import model_split as split
    from analytics_assets.lib import outcomes

    answers = split.first_answers(settings.predictions_dir())
    arms: dict[str, dict] = {}
    status = "no answers from the scoring service's log yet"
    if answers.height:
        with warehouse.get_connection() as conn:
            try:  # outcomes are known up to the last day with events
                until = outcomes.observed_until(conn)
            except (ValueError, duckdb.CatalogException):  # no day built yet
                until = None
            matured = (
                answers.filter(pl.col("as_of") + pl.duration(days=config.churn_days) <= until)
                if until
                else answers.head(0)
            )
            status = f"{answers.height:,} answers, {matured.height:,} with a known outcome"
            if matured.height:
                entities = matured.select("customer_id", event_timestamp="as_of").unique()
                conn.register("split_entities", entities)
                try:
                    labels = pl.from_arrow(
                        outcomes.labels(
                            conn, "split_entities", config.churn_days, 0
                        ).to_arrow_table()
                    )
                finally:
                    conn.unregister("split_entities")
                joined = matured.join(
                    labels.select(
                        "customer_id",
                        pl.col("event_timestamp").dt.convert_time_zone("UTC").alias("as_of"),
                        "churned",
                    ),
                    on=["customer_id", "as_of"],
                )
                for (role,), rows in joined.group_by("role"):
                    y = rows["churned"].cast(pl.Int8).to_numpy()
                    p = rows["churn_probability"].to_numpy()
                    arms[role] = {
                        "model_version": rows["model_version"].mode().first(),
                        **split.arm_metrics(y, p),
                    }
    comparison = (
        split.compare(arms["challenger"], arms["champion"])
        if {"challenger", "champion"} <= set(arms)
        else None
    )
    worse, reason = split.verdict(comparison)
    evidence = {
        "status": status,
        "churn_days": config.churn_days,
        "arms": arms,
        "comparison": comparison,
        "challenger_worse": worse,
        "reason": reason,
    }
    path = settings.model_split_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(evidence, indent=2, default=float))
    context.log.info(f"{status}: {reason}")
    table = pl.DataFrame([{"role": role, **values} for role, values in arms.items()] or None)
    return dg.MaterializeResult(
        metadata={
            "status": status,
            "reason": reason,
            "challenger_worse": worse,
            "arms": preview(table) if arms else None,
            "path": dg.MetadataValue.path(str(path)),
        }
    )
