"""Monitoring: has what the champions see drifted from what they learnt on, and are they still
as good as when they were trained?"""

import tempfile
from datetime import timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from analytics_assets import settings
from analytics_assets.defs.monitoring import drift, predictions, windows
from analytics_assets.lib import churn_evaluation, feast_repo, model_registry, outcomes, snapshots
from analytics_assets.lib.atomic_files import write_parquet
from analytics_assets.lib.days import snapshot_instant
from analytics_assets.lib.names import CHURN_MODEL, MODELS
from analytics_assets.lib.plotting import markdown_image
from analytics_assets.lib.snapshots import file_for
from analytics_assets.metadata import preview
from analytics_assets.resources import FeastRepo, MlflowTracking

GROUP = "monitoring"
# after every promotion, and as new features come online: the monitoring automation sensor's
# interval ($ANALYTICS_MONITOR_INTERVAL_S) coalesces a stream of batches into one evaluation
AFTER_PROMOTION_OR_NEW_FEATURES = dg.AutomationCondition.eager().allow(
    dg.AssetSelection.assets("promoted_models", "online_features")
)
_PLOTS_PER_SERVICE = 6


class DriftConfig(dg.Config):
    psi_threshold: float | None = None
    """A feature drifts above this PSI (default ``$ANALYTICS_DRIFT_PSI``, 0.2)."""
    ks_threshold: float | None = None
    """... or above this Kolmogorov-Smirnov statistic (default ``$ANALYTICS_DRIFT_KS``, 0.1)."""
    min_drifted_features: int | None = None
    """Drifting features of one service that recommend retraining
    (default ``$ANALYTICS_DRIFT_MIN_FEATURES``, 3)."""
    sample_rows: int = 200_000
    """Rows sampled from each window."""

    def thresholds(self) -> drift.Thresholds:
        return drift.Thresholds(
            psi=self.psi_threshold
            if self.psi_threshold is not None
            else settings.drift_psi_threshold(),
            ks=self.ks_threshold
            if self.ks_threshold is not None
            else settings.drift_ks_threshold(),
        )

    def min_features(self) -> int:
        if self.min_drifted_features is not None:
            return self.min_drifted_features
        return settings.drift_min_features()


@dg.asset(
    deps=[
        "promoted_models",
        "online_features",
        dg.AssetDep("customer_features", partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    automation_condition=AFTER_PROMOTION_OR_NEW_FEATURES,
)
def drift_report(
    context: dg.AssetExecutionContext, config: DriftConfig, feast: FeastRepo, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    """Per feature of each champion's feature service: PSI and Kolmogorov-Smirnov statistic of
    the latest feature snapshot against the snapshots the champion was trained on; and the
    champion's answers of the latest logged day against its earlier ones (prediction drift).
    ``retrain_recommended`` is what the retraining sensor acts on."""
    thresholds, min_features = config.thresholds(), config.min_features()
    directory = settings.feature_snapshots_dir()
    available = snapshots.snapshot_days(directory)
    client = mlflow.client()
    store = feast.store()
    tables, notes, reasons, images = [], {}, [], {}
    prediction_tables = []
    for model in MODELS:
        champion = model_registry.by_alias(client, model, model_registry.CHAMPION)
        if champion is None:
            notes[model] = "no champion yet"
            continue
        service = champion.tags.get(model_registry.FEATURE_SERVICE_TAG)
        reference_days = windows.training_days(champion.tags, available)
        if not service or not reference_days or not available:
            notes[model] = f"version {champion.version}: its training snapshots are gone"
            continue
        features = feast_repo.feature_names(store, service)
        current_day = available[-1]
        reference = snapshots.read_sample(directory, reference_days, features, config.sample_rows)
        current = snapshots.read_sample(directory, [current_day], features, config.sample_rows)
        table = drift.column_drift(reference, current, features, thresholds)
        drifted = table.filter("drifted")
        notes[model] = (
            f"version {champion.version} ({service}): {drifted.height} of {table.height} features "
            f"drifted; training snapshots {reference_days[0]} .. {reference_days[-1]} "
            f"({len(reference_days)} days) against {current_day}"
        )
        context.log.info(notes[model])
        if drifted.height >= min_features:
            reasons.append(f"{service}: {drifted.height} features drifted")
        for name in drifted.sort("psi", descending=True)["feature"][:_PLOTS_PER_SERVICE]:
            png = drift.histogram_png(reference[name], current[name], f"{service}: {name}")
            images[f"plot_{service}_{name}"] = dg.MetadataValue.md(markdown_image(png, name))
        tables.append(
            table.with_columns(
                pl.lit(service).alias("feature_service"),
                pl.lit(model).alias("model"),
                pl.lit(champion.version).alias("model_version"),
            )
        )
        outputs = predictions.MONITORED_OUTPUTS[model]
        served = predictions.served_predictions(
            settings.predictions_dir(), model, champion.version, outputs
        )
        baseline, latest, latest_day = predictions.latest_against_earlier(served)
        if baseline.is_empty() or latest.is_empty():
            notes[f"{model}_predictions"] = "fewer than two days of logged answers"
            continue
        answers = drift.column_drift(baseline, latest, outputs, thresholds)
        prediction_tables.append(
            answers.with_columns(pl.lit(model).alias("model"), pl.lit(latest_day).alias("day"))
        )
        for row in answers.filter("drifted").iter_rows(named=True):
            reasons.append(f"{model} predictions: {row['feature']} drifted on {latest_day}")
    report = pl.concat(tables) if tables else None
    answers_report = pl.concat(prediction_tables) if prediction_tables else None
    folder = settings.reports_dir() / "drift"
    if report is not None:
        write_parquet(report, folder / "features.parquet")
    if answers_report is not None:
        write_parquet(answers_report, folder / "predictions.parquet")
    drifted_total = int(report["drifted"].sum()) if report is not None else 0
    return dg.MaterializeResult(
        metadata={
            "retrain_recommended": bool(reasons),
            "reasons": reasons,
            "features_drifted": drifted_total,
            "features_compared": report.height if report is not None else 0,
            "summary": notes,
            "thresholds": {"psi": thresholds.psi, "ks": thresholds.ks, "min": min_features},
            "features": preview(report, rows=report.height if report is not None else 10),
            "predictions": preview(answers_report),
            "path": dg.MetadataValue.path(str(folder)),
            **images,
        }
    )


class PerformanceConfig(dg.Config):
    churn_days: int = 90
    """The churn label's window: a snapshot's labels are known this many days after it."""
    auc_tolerance: float | None = None
    """How far below its training-time AUC the realized AUC may fall
    (default ``$ANALYTICS_AUC_TOLERANCE``, 0.05)."""


@dg.asset(
    deps=[
        "promoted_models",
        dg.AssetDep("customer_features", partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("events", partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name=GROUP,
    kinds={"mlflow", "duckdb"},
    automation_condition=dg.AutomationCondition.eager().allow(
        dg.AssetSelection.assets("promoted_models")
    ),
)
def model_performance(
    context: dg.AssetExecutionContext,
    config: PerformanceConfig,
    mlflow: MlflowTracking,
    warehouse: DuckDBResource,
) -> dg.MaterializeResult:
    """The churn champion's realized AUC on the newest as-of day after its training whose
    90-day outcome is now known, against the AUC it had on its holdout when trained.
    ``degraded`` (more than the tolerance below) is what the retraining sensor acts on."""
    tolerance = (
        config.auc_tolerance if config.auc_tolerance is not None else settings.auc_tolerance()
    )
    mlflow.activate()  # model_registry.fetch downloads through MLflow's fluent API
    client = mlflow.client()
    champion = model_registry.by_alias(client, CHURN_MODEL, model_registry.CHAMPION)
    if champion is None:
        return dg.MaterializeResult(metadata={"status": "no champion yet", "degraded": False})
    training_auc = client.get_run(champion.run_id).data.metrics.get("roc_auc")
    trained_at = champion.tags.get("holdout_at")
    directory = settings.feature_snapshots_dir()
    horizon = timedelta(days=config.churn_days)
    with warehouse.get_connection() as conn:
        observed_until = outcomes.observed_until(conn)
        after = [
            d
            for d in snapshots.snapshot_days(directory)
            if trained_at is None or snapshot_instant(d).isoformat() > trained_at
        ]
        matured = [d for d in after if snapshot_instant(d) + horizon <= observed_until]
        base = {
            "model_version": champion.version,
            "training_auc": training_auc,
            "trained_on_holdout_at": trained_at,
            "observed_until": observed_until.isoformat(),
        }
        if not matured:
            waiting = (
                f"no as-of day after the training holdout has a complete {config.churn_days}-day "
                "window yet"
                + (
                    f"; the first matures on {(snapshot_instant(after[0]) + horizon).date()}"
                    if after
                    else ""
                )
            )
            context.log.info(waiting)
            return dg.MaterializeResult(metadata={**base, "status": waiting, "degraded": False})
        as_of = matured[-1]
        features = pl.read_parquet(file_for(directory, as_of))
        conn.register("performance_entities", features.select("customer_id", "event_timestamp"))
        try:
            outcome = pl.from_arrow(
                outcomes.labels(conn, "performance_entities", config.churn_days, 0).to_arrow_table()
            )
        finally:
            conn.unregister("performance_entities")
    frame = features.join(
        outcome.select("customer_id", churn_evaluation.LABEL), on="customer_id", how="inner"
    )
    with tempfile.TemporaryDirectory() as workdir:
        pyfunc = model_registry.load_pyfunc(
            model_registry.fetch(client, CHURN_MODEL, champion.version, workdir)
        )
        inputs = pyfunc.metadata.get_input_schema().input_names()
        p = churn_evaluation.positive_scores(pyfunc.predict(churn_evaluation.matrix(frame, inputs)))
    y = frame[churn_evaluation.LABEL].cast(pl.Int8).to_numpy()
    realized = churn_evaluation.metrics(y, p) if 0 < y.sum() < y.size else {}
    auc = realized.get("roc_auc")
    degraded = bool(auc is not None and training_auc is not None and auc < training_auc - tolerance)
    message = (
        f"version {champion.version}: realized AUC {auc:.4f} on {as_of} "
        f"(trained: {training_auc:.4f}, tolerance {tolerance})"
        if auc is not None and training_auc is not None
        else f"version {champion.version}: only one outcome on {as_of}; AUC undefined"
    )
    context.log.info(message)
    calibration_png = churn_evaluation.calibration_png(
        churn_evaluation.calibration_table(y, p), p, f"Realized calibration, as of {as_of}"
    )
    return dg.MaterializeResult(
        metadata={
            **base,
            "status": message,
            "degraded": degraded,
            "realized_auc": dg.MetadataValue.float(auc) if auc is not None else None,
            "auc_gap": round(training_auc - auc, 6) if auc is not None and training_auc else None,
            "as_of_day": as_of.isoformat(),
            "customers": frame.height,
            "realized_churn_rate": float(y.mean()) if y.size else None,
            "realized_metrics": {k: round(v, 6) for k, v in realized.items()},
            "calibration": dg.MetadataValue.md(markdown_image(calibration_png, "calibration")),
        }
    )
