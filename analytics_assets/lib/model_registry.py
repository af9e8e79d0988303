"""Registered model versions in MLflow: registering with a digest, aliases, verified loading."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from analytics_assets.lib.artifacts import directory_sha256, verify

CHALLENGER = "challenger"
CHAMPION = "champion"
SHA256_TAG = "artifact_sha256"
FEATURE_SERVICE_TAG = "feature_service"
PREVIOUS_CHAMPION_TAG = "previous_champion"
DECISION_TAG = "gate_decision"
AS_OF_DAYS_TAG = "as_of_days"
"""The feature snapshot days a version learnt from (comma-separated ISO days): what drift is
measured against."""


def as_of_days_tag(days) -> str:
    return ",".join(d.isoformat() for d in sorted(days))


def as_of_days(tags: dict[str, str]) -> list[date]:
    """The days of :data:`AS_OF_DAYS_TAG` (none when the version lacks it)."""
    value = tags.get(AS_OF_DAYS_TAG, "")
    return [date.fromisoformat(d) for d in value.split(",") if d]


@dataclass(frozen=True)
class Version:
    """A registered model version (MLflow's, with the version number as a string)."""

    name: str
    version: str
    run_id: str
    tags: dict[str, str]


def _version(entry) -> Version:
    return Version(entry.name, str(entry.version), entry.run_id or "", dict(entry.tags))


def get(client, name: str, version: str) -> Version:
    return _version(client.get_model_version(name, str(version)))


def artifact_digest(model_uri: str) -> str:
    """SHA-256 of a logged model's files, as the registry serves them."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        return directory_sha256(Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp)))


def register(client, name: str, model_uri: str, tags: dict[str, str]) -> Version:
    """A new version of ``name`` from a logged model, with its artifact digest recorded, and
    the ``challenger`` alias moved to it."""
    import mlflow

    digest = artifact_digest(model_uri)
    version = mlflow.register_model(model_uri, name, tags={**tags, SHA256_TAG: digest})
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return get(client, name, version.version)


def by_alias(client, name: str, alias: str) -> Version | None:
    """The version ``alias`` points to, or ``None`` (no such model or alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return _version(client.get_model_version_by_alias(name, alias))
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@dataclass(frozen=True)
class Fetched:
    name: str
    version: str
    path: Path
    sha256: str
    tags: dict[str, str]


def fetch(client, name: str, version: str, destination: Path) -> Fetched:
    """Download a registered version from our registry and check it against the digest recorded
    when it was logged; raises ``DigestMismatch`` otherwise. Nothing is loaded here."""
    import mlflow

    entry = get(client, name, version)
    target = Path(destination) / f"{name}-v{version}"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    path = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=target))
    digest = verify(path, entry.tags.get(SHA256_TAG), f"{name} version {version}")
    return Fetched(name, entry.version, path, digest, entry.tags)


def load_pyfunc(fetched: Fetched):
    """The verified model, through MLflow's generic interface."""
    import mlflow

    return mlflow.pyfunc.load_model(str(fetched.path))


def load_native(fetched: Fetched):
    """The verified model as its library's object (a scikit-learn estimator), or the pyfunc
    itself for a model that has none (a custom Python model)."""
    pyfunc = load_pyfunc(fetched)
    try:
        return pyfunc.get_raw_model()
    except NotImplementedError:
        return pyfunc
