"""Champions in the BentoML model store: one BentoML model per promoted MLflow version, and
``<name>:latest`` is always the current champion (what the scoring service loads). The
challenger the gate kept is ``<name>_challenger:latest``, for the service's traffic split."""

from __future__ import annotations

import contextlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

from analytics_assets.artifacts import BENTO_MODEL_FOLDER, CHALLENGER_SUFFIX, verify
from analytics_assets.defs.training.registry import Fetched
from analytics_assets.resources import BentoModelStore


def save_champion(
    models: BentoModelStore, fetched: Fetched, labels: dict[str, str], metadata: dict
) -> str:
    """Save a verified MLflow model folder as ``<name>:v<version>``, replacing an earlier copy
    of the same version (a rollback re-promotes it), so that it becomes ``<name>:latest``.
    Returns the tag."""
    return _save(models, fetched.name, fetched, labels, metadata)


def drop_challengers(models: BentoModelStore, name: str, keep: str | None = None) -> list[str]:
    """Delete every ``<name>_challenger`` version but ``keep`` (an MLflow version) from the
    store; returns their tags."""
    import bentoml
    from bentoml.exceptions import NotFound

    store = models.store()
    try:
        found = store.list(f"{name}{CHALLENGER_SUFFIX}")
    except NotFound:
        return []
    dropped = []
    for model in found:
        if keep is not None and model.info.labels.get("mlflow_version") == keep:
            continue
        with contextlib.suppress(NotFound):
            bentoml.models.delete(model.tag, _model_store=store)
            dropped.append(str(model.tag))
    return dropped


def save_challenger(
    models: BentoModelStore, fetched: Fetched, labels: dict[str, str], metadata: dict
) -> str:
    """Save the challenger the gate kept as ``<name>_challenger:v<version>`` (its latest)."""
    return _save(models, fetched.name + CHALLENGER_SUFFIX, fetched, labels, metadata)


def _save(
    models: BentoModelStore, name: str, fetched: Fetched, labels: dict[str, str], metadata: dict
) -> str:
    import bentoml
    from bentoml.exceptions import NotFound

    store = models.store()
    tag = f"{name}:v{fetched.version}"
    with contextlib.suppress(NotFound):
        bentoml.models.delete(tag, _model_store=store)
    labels = {**labels, "mlflow_version": fetched.version, "promoted_at": _now()}
    metadata = {**metadata, "sha256": fetched.sha256}
    with bentoml.models.create(tag, labels=labels, metadata=metadata, _model_store=store) as model:
        shutil.copytree(fetched.path, model.path_of(BENTO_MODEL_FOLDER))
    saved = bentoml.models.get(tag, _model_store=store)
    verify(Path(saved.path_of(BENTO_MODEL_FOLDER)), fetched.sha256, f"BentoML model {tag}")
    return str(saved.tag)


def current(models: BentoModelStore, name: str):
    """The BentoML model ``<name>:latest`` (the serving champion), or ``None``."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(f"{name}:latest", _model_store=models.store())
    except NotFound:
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
