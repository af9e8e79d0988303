"""MLflow tracking of a trained model, in one place: the run (params, metrics, plots, tables),
the logged model, and its registration as the ``challenger`` with its artifact digest.

Each trained model gets its own MLflow run in its model's experiment, tagged with the Dagster
run id and asset (``dagster_run_id``, ``dagster_asset``), so a run found in the MLflow UI leads
back to the Dagster run that made it; the asset's materialization names the MLflow run and
registered version the other way round.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from analytics_assets.lib import model_registry
from analytics_assets.resources import MlflowTracking

# the trees' node arrays, which skops will not load unless trusted; we load only artifacts whose
# sha256 we recorded (model_registry.fetch)
_SKOPS_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


@dataclass(frozen=True)
class Tracked:
    run_id: str
    version: model_registry.Version
    seconds: float
    """Time spent in MLflow: logging, the model, registration."""

    def metadata(self, feature_service: str, window: dict) -> dict:
        """Materialization metadata naming the MLflow run and the registered version."""
        return {
            "mlflow_run_id": self.run_id,
            "model_version": self.version.version,
            "feature_service": feature_service,
            "training_window": window,
            "mlflow_seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Report:
    """What a training run logs besides the model."""

    params: dict
    metrics: dict[str, float]
    plots: dict[str, bytes]
    """``plots/<name>`` PNGs."""
    tables: dict[str, pl.DataFrame]
    """``tables/<name>.csv``."""


def run_tags(context: dg.AssetExecutionContext) -> dict[str, str]:
    return {
        "dagster_run_id": context.run.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
    }


def track(
    mlflow: MlflowTracking,
    model: str,
    run_name: str,
    tags: dict[str, str],
    report: Report,
    log_model: Callable[[], object],
    version_tags: dict[str, str],
) -> Tracked:
    """One MLflow run in ``model``'s experiment: the report, the model ``log_model`` logs
    (it returns MLflow's ``ModelInfo``), and the new registered version (``challenger``)."""
    import mlflow as mlf

    started = time.perf_counter()
    with mlflow.start_run(model, run_name, tags) as run:
        mlf.log_params(report.params)
        mlf.log_metrics(report.metrics)
        for name, png in report.plots.items():
            _log_png(png, name)
        for name, table in report.tables.items():
            mlf.log_text(table.write_csv(), f"tables/{name}.csv")
        logged = log_model()
        version = model_registry.register(mlflow.client(), model, logged.model_uri, version_tags)
    return Tracked(run.info.run_id, version, time.perf_counter() - started)


def log_classifier(classifier, example) -> object:
    """A scikit-learn classifier, with its signature from ``example`` (a pandas frame)."""
    import mlflow as mlf
    from mlflow.models import infer_signature

    return mlf.sklearn.log_model(
        classifier,
        name="model",
        signature=infer_signature(example, classifier.predict_proba(example)),
        input_example=example,
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=_SKOPS_TRUSTED,
        pip_requirements=requirements("scikit-learn", "skops"),
    )


def log_customer_value(params_file: Path, example, example_output, horizon_days: float):
    """The customer value model as an MLflow pyfunc over its fitted parameters file."""
    import mlflow as mlf
    from mlflow.models import infer_signature

    from analytics_assets.scoring import clv_pyfunc

    return mlf.pyfunc.log_model(
        name="model",
        python_model=clv_pyfunc.__file__,
        artifacts={"params": str(params_file)},
        signature=infer_signature(
            example, example_output, params={"horizon_days": float(horizon_days)}
        ),
        input_example=example,
        pip_requirements=requirements("lifetimes", "pandas"),
    )


def _log_png(png: bytes, name: str) -> None:
    """A plot into the active MLflow run's ``plots/``."""
    import mlflow as mlf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(png)
        mlf.log_artifact(str(path), artifact_path="plots")


def requirements(*packages: str) -> list[str]:
    """Pinned requirements of a logged model, from the installed versions (MLflow would
    otherwise infer them by loading the model in a subprocess)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", *packages)]
