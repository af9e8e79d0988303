"""Models: the churn classifier and the customer value model, each a registered MLflow version
(alias ``challenger``); their evaluation against the ``champion``; and the promotion."""

import time

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from analytics_assets import settings
from analytics_assets.defs.training import churn, clv, plots, tracking
from analytics_assets.defs.training.evaluation import (
    EvaluationConfig,
    evaluate_model,
    evaluation_path,
    holdout_path,
    read_evaluation,
    write_evaluation,
)
from analytics_assets.defs.training.promotion import apply_verdict
from analytics_assets.lib import churn_evaluation, feast_repo, model_registry, outcomes, snapshots
from analytics_assets.lib.atomic_files import write_parquet
from analytics_assets.lib.days import snapshot_instant
from analytics_assets.lib.names import CHURN_FEATURES, CHURN_MODEL, CLV_FEATURES, CLV_MODEL, MODELS
from analytics_assets.lib.plotting import markdown_image
from analytics_assets.metadata import preview
from analytics_assets.resources import (
    MODEL_REGISTRY_POOL,
    BentoModelStore,
    FeastRepo,
    MlflowTracking,
)
from analytics_assets.scoring.customer_value import INPUTS as CLV_INPUTS
from analytics_assets.scoring.customer_value import OUTPUTS as CLV_OUTPUTS

GROUP = "training"


def _image(name: str, png: bytes) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_image(png, name))


def _round(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in metrics.items()}


class ChurnModelConfig(dg.Config):
    feature_service: str = CHURN_FEATURES
    """The Feast feature service whose features the model reads (and the service serves)."""
    label_days: int = 90
    """The churn label's window (``training_set``'s ``churn_days``): training rows whose window
    reaches into the holdout's as-of date are left out."""
    # the rest are HistGradientBoostingClassifier's own parameters
    max_iter: int = 200
    learning_rate: float = 0.08
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 100
    l2_regularization: float = 1.0
    random_state: int = 42


@dg.asset(deps=["training_set"], group_name=GROUP, kinds={"sklearn", "mlflow"})
def churn_model(
    context: dg.AssetExecutionContext,
    config: ChurnModelConfig,
    feast: FeastRepo,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult:
    """A gradient-boosted classifier of the probability that a customer makes no purchase in the
    next 90 days, from the ``churn_v1`` features; trained on older as-of dates, scored on the
    newest. Registered in MLflow as the ``challenger`` version of ``churn_model``."""
    frame = pl.read_parquet(settings.training_set_path())
    features = feast_repo.feature_names(feast.store(), config.feature_service)
    split = churn.time_split(frame, config.label_days)
    hyperparameters = config.model_dump(exclude={"feature_service", "label_days"})
    context.log.info(
        f"training on {split.train.height:,} rows ({split.train_start:%Y-%m-%d} .. "
        f"{split.train_end:%Y-%m-%d}), holdout {split.holdout.height:,} rows at "
        f"{split.holdout_at:%Y-%m-%d}"
    )
    started = time.perf_counter()
    model = churn.fit(split.train, features, hyperparameters)
    fit_seconds = time.perf_counter() - started
    x_holdout = churn_evaluation.matrix(split.holdout, features)
    y = split.holdout[churn_evaluation.LABEL].cast(pl.Int8).to_numpy()
    p = model.predict_proba(x_holdout)[:, 1]
    metrics = churn_evaluation.metrics(y, p)
    calibration = churn_evaluation.calibration_table(y, p)
    lift = churn_evaluation.decile_lift(y, p)
    plots_png = {
        "calibration.png": churn_evaluation.calibration_png(
            calibration, p, "Calibration on the holdout"
        ),
        "decile_lift.png": plots.lift(lift),
    }
    window = {
        "train_start": split.train_start.isoformat(),
        "train_end": split.train_end.isoformat(),
        "holdout_at": split.holdout_at.isoformat(),
    }
    report = tracking.Report(
        params={
            **hyperparameters,
            "feature_service": config.feature_service,
            "features": ",".join(features),
            "label_days": config.label_days,
            "train_rows": split.train.height,
            "holdout_rows": split.holdout.height,
            **window,
        },
        metrics={**metrics, "fit_seconds": fit_seconds},
        plots=plots_png,
        tables={"calibration": calibration, "decile_lift": lift},
    )
    tracked = tracking.track(
        mlflow,
        CHURN_MODEL,
        f"churn {split.holdout_at:%Y-%m-%d}",
        tracking.run_tags(context),
        report,
        lambda: tracking.log_classifier(model, x_holdout.head(5)),
        {
            model_registry.FEATURE_SERVICE_TAG: config.feature_service,
            model_registry.AS_OF_DAYS_TAG: model_registry.as_of_days_tag(split.as_of_days()),
            **window,
        },
    )
    write_parquet(split.holdout, holdout_path(CHURN_MODEL))
    context.log.info(
        f"registered {CHURN_MODEL} version {tracked.version.version}: {_round(metrics)}"
    )
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.float(v) for k, v in _round(metrics).items()},
            **tracked.metadata(config.feature_service, window),
            "fit_seconds": round(fit_seconds, 3),
            "features": features,
            "train_rows": split.train.height,
            "holdout_rows": split.holdout.height,
            "calibration": _image("calibration", plots_png["calibration.png"]),
            "decile_lift": _image("decile lift", plots_png["decile_lift.png"]),
            "decile_lift_table": preview(lift),
            "tracking_uri": settings.redacted(mlflow.tracking_uri),
        }
    )


class CustomerValueConfig(dg.Config):
    holdout_days: int = 273
    """Days after the calibration snapshot whose purchases the fit is checked against (39 weeks,
    as in Fader, Hardie and Lee, 2005: CDNOW calibrates on weeks 1-39, holds out 40-78)."""
    horizon_days: int = 180
    """The default horizon of the logged model's predictions (a request may ask another)."""
    feature_service: str = CLV_FEATURES


@dg.asset(
    deps=[
        dg.AssetDep("customer_features", partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep("events", partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name=GROUP,
    kinds={"mlflow", "duckdb"},
)
def clv_model(
    context: dg.AssetExecutionContext,
    config: CustomerValueConfig,
    warehouse: DuckDBResource,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult:
    """Customer lifetime value: BG/NBD (purchases, probability alive) and Gamma-Gamma (spend per
    purchase), fitted by maximum likelihood on the pipeline's own recency / frequency / tenure /
    monetary snapshot, checked on the purchases of the following 39 weeks. Registered in MLflow
    as the ``challenger`` version of ``clv_model``."""
    directory = settings.feature_snapshots_dir()
    with warehouse.get_connection() as conn:
        observed_until = outcomes.observed_until(conn)
        calibration_day = clv.calibration_day(directory, observed_until, config.holdout_days)
        if calibration_day is None:
            raise dg.Failure(
                f"no feature snapshot is {config.holdout_days} days older than the end of the "
                f"events ({observed_until:%Y-%m-%d}): nothing to calibrate on yet"
            )
        rfm = clv.summary(pl.read_parquet(snapshots.file_for(directory, calibration_day)))
        started = time.perf_counter()
        fitted = clv.fit(rfm)
        fit_seconds = time.perf_counter() - started
        holdout = clv.with_outcomes(conn, rfm, config.holdout_days)
    scored = clv.score(fitted.params, holdout, config.holdout_days)
    metrics = clv.holdout_metrics(scored)
    by_frequency = clv.by_frequency(scored)
    expectations_png = plots.conditional_expectations(by_frequency, config.holdout_days)
    estimates = {k: v for k, v in fitted.params.__dict__.items() if k != "period_days"}
    window = {
        "calibration_day": calibration_day.isoformat(),
        "holdout_start": snapshot_instant(calibration_day).isoformat(),
        "holdout_days": config.holdout_days,
    }
    models_dir = settings.models_dir()
    models_dir.mkdir(parents=True, exist_ok=True)
    params_file = models_dir / "clv_params.json"
    fitted.params.save(params_file)
    example = holdout.select(CLV_INPUTS).head(5).to_pandas()
    example_output = clv.score(fitted.params, holdout.head(5), config.horizon_days)
    report = tracking.Report(
        params={
            **window,
            "feature_service": config.feature_service,
            "customers": fitted.customers,
            "repeat_customers": fitted.repeat_customers,
            "period_days": fitted.params.period_days,
        },
        metrics={**estimates, **metrics, "fit_seconds": fit_seconds},
        plots={"conditional_expectations.png": expectations_png},
        tables={"conditional_expectations": by_frequency},
    )
    tracked = tracking.track(
        mlflow,
        CLV_MODEL,
        f"clv {calibration_day}",
        tracking.run_tags(context),
        report,
        lambda: tracking.log_customer_value(
            params_file,
            example,
            example_output.select(CLV_OUTPUTS).to_pandas(),
            config.horizon_days,
        ),
        {
            model_registry.FEATURE_SERVICE_TAG: config.feature_service,
            model_registry.AS_OF_DAYS_TAG: calibration_day.isoformat(),
            **{k: str(v) for k, v in window.items()},
        },
    )
    write_parquet(
        holdout.with_columns(pl.lit(config.holdout_days).alias("holdout_days")),
        holdout_path(CLV_MODEL),
    )
    context.log.info(
        f"registered {CLV_MODEL} version {tracked.version.version}: {estimates}; "
        f"holdout {_round(metrics)}"
    )
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.float(round(v, 4)) for k, v in estimates.items()},
            **{k: dg.MetadataValue.float(v) for k, v in _round(metrics).items()},
            **tracked.metadata(config.feature_service, window),
            "fit_seconds": round(fit_seconds, 3),
            "conditional_expectations": _image("conditional expectations", expectations_png),
            "conditional_expectations_table": preview(by_frequency),
            "tracking_uri": settings.redacted(mlflow.tracking_uri),
        }
    )


# the gate's blocking checks: a failed one stops promoted_models in the same run (and the
# promotion itself refuses a challenger that failed one)
GATE_CHECKS = {
    "predictions_valid": "Every challenger prediction on the holdout is finite and in range "
    "(probabilities in [0, 1], purchases and revenue non-negative).",
    "calibration_within_bounds": "Churn: expected calibration error within its bound. CLV: "
    "predicted / actual holdout purchases within bounds.",
    "metric_above_floor": "The deciding holdout metric (churn ROC AUC, CLV purchases "
    "correlation) is above its floor.",
    "fast_scorer_agrees": "Churn: the service's fast scorer (treelite GTIL) equals "
    "scikit-learn's probabilities to 1e-9 on the holdout, with missing values and on every "
    "split threshold.",
    "live_split_not_worse": "Churn: where the scoring service split live traffic between this "
    "challenger and the champion, the challenger's realized AUC is not worse (its interval "
    "against the champion's is not below 0; model_split). Passes while there is no such "
    "evidence.",
}


@dg.asset(
    # model_split: the live split's realized outcomes, read as evidence (not rebuilt here)
    deps=[CHURN_MODEL, CLV_MODEL, "model_split"],
    group_name=GROUP,
    kinds={"mlflow"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="model_evaluation", blocking=True, description=text)
        for name, text in GATE_CHECKS.items()
    ],
)
def model_evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    """The ``challenger`` and the ``champion`` of each model scored on the same (the
    challenger's) holdout, the blocking checks on the challenger's predictions, and the gate's
    verdict: promote or not, and why."""
    import tempfile

    mlflow.activate()
    client = mlflow.client()
    evaluation: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for model in MODELS:
            result = evaluate_model(model, client, config, workdir)
            if result is None:
                context.log.warning(f"{model}: no challenger registered yet")
                continue
            evaluation[model] = result
            context.log.info(f"{model}: {result['verdict']['reason']}")
    write_evaluation(evaluation)
    rows = [
        {
            "model": model,
            "role": role,
            "version": result[role]["version"],
            "metric": result["policy"]["metric"],
            "value": result[role]["metrics"].get(result["policy"]["metric"]),
            "valid": result[role]["valid"],
        }
        for model, result in evaluation.items()
        for role in ("challenger", "champion")
        if result[role]
    ]
    return dg.MaterializeResult(
        metadata={
            "comparison": preview(pl.DataFrame(rows) if rows else None),
            "verdicts": {m: r["verdict"] for m, r in evaluation.items()},
            "path": dg.MetadataValue.path(str(evaluation_path())),
        },
        check_results=[_gate_check(name, evaluation) for name in GATE_CHECKS],
    )


def _gate_check(name: str, evaluation: dict[str, dict]) -> dg.AssetCheckResult:
    results = {model: result["checks"][name] for model, result in evaluation.items()}
    return dg.AssetCheckResult(
        check_name=name,
        passed=all(r["passed"] for r in results.values()),
        metadata={model: r["detail"] for model, r in results.items()},
    )


@dg.asset(
    deps=["model_evaluation"],
    group_name=GROUP,
    pool=MODEL_REGISTRY_POOL,
    kinds={"mlflow", "bentoml"},
)
def promoted_models(
    context: dg.AssetExecutionContext, mlflow: MlflowTracking, bento_store: BentoModelStore
) -> dg.MaterializeResult:
    """The models the scoring service serves: each challenger that passed the gate becomes the
    ``champion`` (MLflow alias, and ``<model>:latest`` in the BentoML model store); a rejected
    one stays ``challenger``, with the reason, and is served to the share of traffic the
    service gives challengers (``<model>_challenger:latest``)."""
    import tempfile

    mlflow.activate()
    client = mlflow.client()
    with tempfile.TemporaryDirectory() as workdir:
        decisions = {
            model: apply_verdict(client, bento_store, model, result, workdir)
            for model, result in read_evaluation().items()
        }
    for model, decision in decisions.items():
        context.log.info(f"{model}: {decision}")
    champions = {
        m: getattr(model_registry.by_alias(client, m, model_registry.CHAMPION), "version", None)
        for m in MODELS
    }
    return dg.MaterializeResult(
        metadata={
            "decisions": decisions,
            "champions": {m: v for m, v in champions.items() if v},
            "bentoml_home": dg.MetadataValue.path(bento_store.home),
        }
    )
