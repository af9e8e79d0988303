"""Jobs: retrain and re-gate the models; roll a champion back to an earlier version."""

import tempfile

import dagster as dg

from analytics_assets.defs.training.promotion import promote
from analytics_assets.lib import model_registry
from analytics_assets.lib.names import CHURN_MODEL, MODELS, RUN_QUEUE_TAG, TRAINING_QUEUE
from analytics_assets.resources import MODEL_REGISTRY_POOL, BentoModelStore, MlflowTracking

EXCLUSIVE_TAG = "analytics/exclusive"
"""Runs with the same value of this tag run one at a time (``tag_concurrency_limits``)."""

retrain_models = dg.define_asset_job(
    "retrain_models",
    selection=dg.AssetSelection.assets(
        "training_set", *MODELS, "model_evaluation", "promoted_models"
    ),
    description="A fresh training set, both models retrained, evaluated against their "
    "champions, and promoted where they pass the gate. One run at a time (dagster.yaml).",
    # the run queue runs one at a time: they share the training set, holdouts and aliases
    tags={EXCLUSIVE_TAG: "retrain_models", RUN_QUEUE_TAG: TRAINING_QUEUE},
)


class RollbackConfig(dg.Config):
    model: str = CHURN_MODEL
    """One of :data:`~analytics_assets.lib.names.MODELS`."""
    version: str | None = None
    """The registered version to make champion again; default: the champion the current one
    replaced."""


@dg.op(pool=MODEL_REGISTRY_POOL)
def rollback(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    mlflow: MlflowTracking,
    bento_store: BentoModelStore,
):
    """Re-point ``champion`` (MLflow alias and BentoML ``latest``) to an earlier version."""
    if config.model not in MODELS:
        raise dg.Failure(f"unknown model {config.model!r}: one of {list(MODELS)}")
    mlflow.activate()
    client = mlflow.client()
    current = model_registry.by_alias(client, config.model, model_registry.CHAMPION)
    target = config.version
    if target is None:
        if current is None or model_registry.PREVIOUS_CHAMPION_TAG not in current.tags:
            raise dg.Failure(
                f"{config.model} has no earlier champion to roll back to; name a version"
            )
        target = current.tags[model_registry.PREVIOUS_CHAMPION_TAG]
    if current is not None and current.version == target:
        raise dg.Failure(f"{config.model} version {target} is already the champion")
    reason = f"rollback from version {current.version if current else None}"
    with tempfile.TemporaryDirectory() as workdir:
        tag = promote(
            client, bento_store, config.model, target, workdir, {"promotion": "rollback"}, reason
        )
    context.log.info(f"{config.model}: champion is version {target} again ({tag})")
    yield dg.AssetMaterialization(
        asset_key="promoted_models",
        description=f"{config.model} rolled back to version {target}",
        metadata={
            "model": config.model,
            "champion": target,
            "bentoml_tag": tag,
            "replaced": current.version if current else None,
        },
    )
    yield dg.Output(target)


@dg.job(description="Roll a model's champion back to an earlier registered version.")
def rollback_champion():
    rollback()
