"""A home the scoring service can serve from without running the pipeline: the Feast repo
applied, a synthetic snapshot in the online store, and champions of both models in the BentoML
model store, saved in the formats (MLflow model folders) and with the labels the promotion
writes. For the serving tests and benchmark."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from analytics_assets import settings
from analytics_assets.lib.artifacts import directory_sha256
from analytics_assets.lib.names import CHURN_FEATURES, CHURN_MODEL, CLV_FEATURES, CLV_MODEL

CDNOW_SAMPLE_PARAMS = dict(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)
"""BG/NBD (Fader, Hardie and Lee, 2005) and Gamma-Gamma parameters of the CDNOW sample."""


def online_features(customers: int, seed: int = 7) -> None:
    """Apply the Feast repo and write a synthetic snapshot of ``customers`` into its online
    store (what the ``online_features`` asset does with real snapshots)."""
    from analytics_assets.testing.feature_snapshot import write_snapshot

    settings.ensure_dirs()
    write_snapshot(settings.feature_snapshots_dir(), customers, seed)
    online_from_snapshots()


def online_from_snapshots() -> None:
    """Apply the Feast repo and write the newest rows of the snapshots in the snapshot folder
    into its online store."""
    from analytics_assets.defs.features import offline
    from analytics_assets.lib import feast_online, snapshots
    from analytics_assets.lib.feast_repo import apply, open_store

    directory = settings.feature_snapshots_dir()
    store = open_store(settings.feature_repo_path())
    apply(store, settings.feature_repo_path())
    views = offline.views_over_snapshots(store)
    feast_online.record_layout(store, views, settings.online_layout_path())
    until = snapshots.newest_timestamp(directory) + timedelta(seconds=1)
    feast_online.write_latest(store, offline.latest_rows_by_view(directory, views, until))


def churn_folder(
    destination: Path, seed: int = 42, max_iter: int = 200, pipeline: bool = False
) -> Path:
    """A churn classifier fitted on the synthetic training set, as an MLflow model folder
    (the Feast repo must be applied: its inputs are ``churn_v1``'s features). ``pipeline``:
    inside a scikit-learn ``Pipeline``, which treelite cannot convert (the service then scores
    it with scikit-learn)."""
    import mlflow.sklearn

    from analytics_assets.defs.training import churn
    from analytics_assets.lib.feast_repo import feature_names, open_store
    from analytics_assets.testing.training_set import synthetic_training_set

    frame = synthetic_training_set()
    features = feature_names(open_store(settings.feature_repo_path()), CHURN_FEATURES)
    split = churn.time_split(frame, 90)
    hyper = dict(max_iter=max_iter, learning_rate=0.08, max_leaf_nodes=31, random_state=seed)
    model = churn.fit(split.train, features, hyper)
    if pipeline:
        from sklearn.pipeline import Pipeline

        model = Pipeline([("classifier", model)])
    mlflow.sklearn.save_model(
        model,
        str(destination),
        serialization_format="skops",
        skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    )
    return destination


def value_folder(destination: Path, **params: float) -> Path:
    """The customer value pyfunc (models from code) with the given parameters."""
    import mlflow.pyfunc

    from analytics_assets.scoring import clv_pyfunc
    from analytics_assets.scoring.customer_value import CustomerValueParams

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.json"
        CustomerValueParams(**{**CDNOW_SAMPLE_PARAMS, **params}).save(path)
        mlflow.pyfunc.save_model(
            str(destination),
            python_model=clv_pyfunc.__file__,
            artifacts={"params": str(path)},
        )
    return destination


def promote(folder: Path, name: str, version: str, feature_service: str, challenger=False) -> str:
    """Save a model folder to the BentoML model store as promotion does (with the churn
    model's fast scorer beside it); returns the tag."""
    from analytics_assets.defs.training.promotion import fast_scorer
    from analytics_assets.lib import bento_store
    from analytics_assets.lib.model_registry import Fetched

    fetched = Fetched(name, version, folder, directory_sha256(folder), {})
    save = bento_store.save_challenger if challenger else bento_store.save_champion
    labels = {"feature_service": feature_service, "promotion": "fixture"}
    with tempfile.TemporaryDirectory() as workdir:
        extras, metadata = fast_scorer(fetched, workdir, champion=not challenger)
        store = bento_store.open_store(settings.bentoml_home())
        return save(store, fetched, labels, metadata, extras)


def prepare(customers: int, workdir: Path) -> None:
    """Online features for ``customers`` and version 1 of both models as champions."""
    online_features(customers)
    promote(churn_folder(workdir / "churn_v1"), CHURN_MODEL, "1", CHURN_FEATURES)
    promote(value_folder(workdir / "clv_v1"), CLV_MODEL, "1", CLV_FEATURES)
