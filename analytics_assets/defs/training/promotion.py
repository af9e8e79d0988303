"""Moving the ``champion``: MLflow alias and BentoML model store together (gate or rollback)."""

from pathlib import Path

from analytics_assets.defs.training.evaluation import holdout_path
from analytics_assets.lib import bento_store, model_registry
from analytics_assets.lib.names import CHURN_MODEL
from analytics_assets.resources import BentoModelStore
from analytics_assets.scoring import churn_trees


def promote(
    client,
    models: BentoModelStore,
    name: str,
    version: str,
    workdir,
    labels: dict[str, str],
    reason: str,
) -> str:
    """Point ``champion`` at ``version`` in MLflow and in the BentoML model store (verified
    copy); returns the BentoML tag. Remembers the champion it replaces, for rollbacks."""
    previous = model_registry.by_alias(client, name, model_registry.CHAMPION)
    tag = _to_store(
        bento_store.save_champion, client, models, name, version, workdir, labels, reason, True
    )
    client.set_registered_model_alias(name, model_registry.CHAMPION, version)
    # the store serves as challenger only what MLflow's alias points at now, and never the
    # champion itself (v3 rejected, then v4 promoted: v3 challenges nothing any more)
    challenger = model_registry.by_alias(client, name, model_registry.CHALLENGER)
    keep = challenger.version if challenger is not None and challenger.version != version else None
    bento_store.drop_challengers(models.store(), name, keep=keep)
    if previous is not None and previous.version != version:
        client.set_model_version_tag(
            name, version, model_registry.PREVIOUS_CHAMPION_TAG, previous.version
        )
    client.set_model_version_tag(name, version, model_registry.DECISION_TAG, f"promoted: {reason}")
    return tag


def keep_challenger(
    client, models: BentoModelStore, name: str, version: str, workdir, reason: str
) -> str:
    """Record the gate's rejection in MLflow and put the challenger beside the champion in the
    BentoML model store (verified copy), where the scoring service can send it a share of the
    traffic; returns the BentoML tag."""
    labels = {
        **window_labels(model_registry.get(client, name, version).tags),
        "promotion": "challenger",
    }
    tag = _to_store(
        bento_store.save_challenger, client, models, name, version, workdir, labels, reason, False
    )
    client.set_model_version_tag(name, version, model_registry.DECISION_TAG, f"rejected: {reason}")
    return tag


def fast_scorer(
    fetched: model_registry.Fetched, workdir, champion: bool
) -> tuple[dict[str, Path], dict[str, str]]:
    """The folders to save beside a model for the service's fast scorer, and what the metadata
    says of it. Churn: its trees converted by treelite, checked against scikit-learn on the
    holdout, missing values and every split threshold. A champion whose conversion disagrees
    raises :class:`churn_trees.Disagrees` (not promoted); a model treelite cannot convert, or
    a challenger whose conversion disagrees, is saved without one (served by scikit-learn)."""
    if fetched.name != CHURN_MODEL:
        return {}, {}
    import polars as pl

    classifier = model_registry.load_native(fetched)
    path = holdout_path(CHURN_MODEL)
    holdout = pl.read_parquet(path) if path.exists() else None
    folder = Path(workdir) / f"{churn_trees.FOLDER}-{fetched.version}"
    try:
        found = churn_trees.build(classifier, holdout, folder)
    except churn_trees.Unconvertible as error:
        return {}, {"fast_scorer_unavailable": str(error)}
    except churn_trees.Disagrees as error:
        if champion:
            raise
        return {}, {"fast_scorer_unavailable": f"disagrees with scikit-learn: {error}"}
    return {churn_trees.FOLDER: folder}, {
        "fast_scorer": churn_trees.engine(),
        "fast_scorer_check": found.detail(),
    }


def _to_store(save, client, models, name, version, workdir, labels, reason, champion) -> str:
    """Fetch a registered version (verified) and ``save`` it into the BentoML model store with
    its MLflow run and feature service among the labels, and its fast scorer beside it;
    returns the BentoML tag."""
    fetched = model_registry.fetch(client, name, version, workdir)
    extras, fast = fast_scorer(fetched, workdir, champion)
    entry = model_registry.get(client, name, version)
    labels = {
        "mlflow_run_id": entry.run_id,
        model_registry.FEATURE_SERVICE_TAG: fetched.tags.get(
            model_registry.FEATURE_SERVICE_TAG, ""
        ),
        **labels,
    }
    metadata = {"mlflow_run_id": entry.run_id, "reason": reason, **fast}
    return save(models.store(), fetched, labels, metadata, extras)


def apply_verdict(client, models: BentoModelStore, name: str, result: dict, workdir) -> dict:
    """Carry out the gate's verdict on one model's evaluated challenger: promote it, or keep it
    as challenger with the reason; nothing if the challenger moved since the evaluation.
    Returns the decision, as the materialization shows it."""
    version, verdict = result["challenger"]["version"], result["verdict"]
    current = model_registry.by_alias(client, name, model_registry.CHALLENGER)
    if current is None or current.version != version:
        return {
            "promoted": False,
            "reason": "challenger moved since the evaluation; evaluate again",
        }
    if not verdict["promote"]:
        tag = keep_challenger(client, models, name, version, workdir, verdict["reason"])
        return {
            "promoted": False,
            "version": version,
            "bentoml_tag": tag,
            "reason": verdict["reason"],
        }
    metric = result["policy"]["metric"]
    labels = {
        **window_labels(model_registry.get(client, name, version).tags),
        metric: f"{result['challenger']['metrics'][metric]:.4f}",
        "promotion": "gate",
    }
    try:
        tag = promote(client, models, name, version, workdir, labels, verdict["reason"])
    except churn_trees.Disagrees as error:  # the gate's check saw other rows; never serve it
        reason = f"fast scorer disagrees with scikit-learn: {error}"
        tag = keep_challenger(client, models, name, version, workdir, reason)
        return {"promoted": False, "version": version, "bentoml_tag": tag, "reason": reason}
    return {"promoted": True, "version": version, "bentoml_tag": tag, "reason": verdict["reason"]}


def window_labels(tags: dict[str, str]) -> dict[str, str]:
    keys = ("train_start", "train_end", "holdout_at", "calibration_day", "holdout_days")
    return {k: tags[k] for k in keys if k in tags}
