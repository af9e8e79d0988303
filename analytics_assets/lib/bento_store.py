"""Champions in the BentoML model store: one BentoML model per promoted MLflow version, and
``<name>:latest`` is always the current champion (what the scoring service loads). The
challenger the gate kept is ``<name>_challenger:latest``, for the service's traffic split.

The only module that touches BentoML's private ``bentoml._internal`` (the model store class and
its container): BentoML's public functions take a ``_model_store`` but offer no public way to
open one at a chosen folder, and ``BENTOML_HOME`` is read once per process. ``bentoml<1.5`` in
``pyproject.toml`` covers it; ``tests/lib/test_bento_store.py`` shows a change at once."""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from analytics_assets.lib.artifacts import (
    BENTO_MODEL_FOLDER,
    DigestMismatch,
    directory_sha256,
    verify,
)
from analytics_assets.lib.model_registry import Fetched
from analytics_assets.lib.names import CHALLENGER_SUFFIX

if TYPE_CHECKING:
    from bentoml._internal.models import ModelStore


def open_store(home: str | Path) -> ModelStore:
    """The model store under ``<home>/models`` (a ``BENTOML_HOME`` layout)."""
    from bentoml._internal.models import ModelStore

    return ModelStore(str(Path(home) / "models"))


def serving_store(default_home: Path) -> ModelStore:
    """BentoML's own store when ``$BENTOML_HOME`` is set (inside a built bento, its models),
    else the one under ``default_home``, where the pipeline promotes to."""
    if os.environ.get("BENTOML_HOME"):
        from bentoml._internal.container import BentoMLContainer

        return BentoMLContainer.model_store.get()
    return open_store(default_home)


def save_champion(
    store: ModelStore,
    fetched: Fetched,
    labels: dict[str, str],
    metadata: dict,
    extras: dict[str, Path] | None = None,
) -> str:
    """Save a verified MLflow model folder as ``<name>:v<version>``, replacing an earlier copy
    of the same version (a rollback re-promotes it), so that it becomes ``<name>:latest``.
    ``extras`` are folders saved beside it under their names (a converted form of the model),
    each with its own sha256 in the metadata (``<name>_sha256``). Returns the tag."""
    return _save(store, fetched.name, fetched, labels, metadata, extras)


def drop_challengers(store: ModelStore, name: str, keep: str | None = None) -> list[str]:
    """Delete every ``<name>_challenger`` version but ``keep`` (an MLflow version) from the
    store; returns their tags."""
    import bentoml
    from bentoml.exceptions import NotFound

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
    store: ModelStore,
    fetched: Fetched,
    labels: dict[str, str],
    metadata: dict,
    extras: dict[str, Path] | None = None,
) -> str:
    """Save the challenger the gate kept as ``<name>_challenger:v<version>`` (its latest)."""
    return _save(store, fetched.name + CHALLENGER_SUFFIX, fetched, labels, metadata, extras)


def extra_digest_key(folder: str) -> str:
    """The metadata key of the sha256 of an extra folder saved beside the model."""
    return f"{folder}_sha256"


def _save(
    store: ModelStore,
    name: str,
    fetched: Fetched,
    labels: dict[str, str],
    metadata: dict,
    extras: dict[str, Path] | None = None,
) -> str:
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{name}:v{fetched.version}"
    with contextlib.suppress(NotFound):
        bentoml.models.delete(tag, _model_store=store)
    labels = {**labels, "mlflow_version": fetched.version, "promoted_at": _now()}
    extras = extras or {}
    metadata = {
        **metadata,
        "sha256": fetched.sha256,
        **{extra_digest_key(folder): directory_sha256(path) for folder, path in extras.items()},
    }
    with bentoml.models.create(tag, labels=labels, metadata=metadata, _model_store=store) as model:
        shutil.copytree(fetched.path, model.path_of(BENTO_MODEL_FOLDER))
        for folder, path in extras.items():
            shutil.copytree(path, model.path_of(folder))
    saved = bentoml.models.get(tag, _model_store=store)
    try:
        verify(Path(saved.path_of(BENTO_MODEL_FOLDER)), fetched.sha256, f"BentoML model {tag}")
        for folder in extras:
            expected = metadata[extra_digest_key(folder)]
            verify(Path(saved.path_of(folder)), expected, f"{folder} of BentoML model {tag}")
    except DigestMismatch:
        # never leave a copy that fails its digest as anyone's :latest
        bentoml.models.delete(tag, _model_store=store)
        raise
    return str(saved.tag)


def current(store: ModelStore, name: str):
    """The BentoML model ``<name>:latest`` (the serving champion), or ``None``."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(f"{name}:latest", _model_store=store)
    except NotFound:
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
