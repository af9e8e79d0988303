"""Shared fixtures: a temporary ANALYTICS_HOME, resources pointing into it, event files, and
the model stores (MLflow, BentoML, a Feast registry) with a synthetic training set."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.features.assets import feast_definitions
from analytics_assets.resources import (
    BentoModelStore,
    FeastRepo,
    LandingZone,
    MlflowTracking,
    warehouse_resource,
)
from analytics_assets.testing.training_set import synthetic_training_set


@pytest.fixture
def analytics_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "analytics"
    monkeypatch.setenv("ANALYTICS_HOME", str(home))
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI: forget the last test's store
    for name in (
        "ANALYTICS_LANDING_DIR",
        "ANALYTICS_QUARANTINE_DIR",
        "ANALYTICS_WAREHOUSE",
        "ANALYTICS_MLFLOW_ARTIFACTS",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "BENTOML_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    settings.ensure_dirs()
    return home


def quarantined(name: str, data: bytes) -> Path:
    """Where the run moves a landed file it quarantines whole: ``<digest>__<name>``."""
    import hashlib

    return settings.quarantine_dir() / f"{hashlib.sha256(data).hexdigest()[:12]}__{name}"


@pytest.fixture
def landing(analytics_home: Path) -> Path:
    return settings.landing_dir()


@pytest.fixture
def resources(analytics_home: Path) -> dict[str, object]:
    return {
        "warehouse": warehouse_resource(),
        "landing_zone": LandingZone(
            root=str(settings.landing_dir()), quarantine_root=str(settings.quarantine_dir())
        ),
    }


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def event(n: int, **overrides: object) -> dict:
    """A valid page view (or whatever ``overrides`` make of it)."""
    base = {
        "event_id": f"e{n}",
        "event_type": "page_view",
        "customer_id": f"c{n % 3}",
        "session_id": f"s{n % 5}",
        "occurred_at": f"2024-03-0{1 + n % 5}T10:{n % 60:02d}:00Z",
        "product_id": f"p{n}",
        "device": "mobile",
        "properties": {"page": f"/p/{n}"},
    }
    base.update(overrides)
    return base


def purchase(n: int, amount: float = 10.0, **overrides: object) -> dict:
    fields: dict[str, object] = {"quantity": 1, "amount": amount, "currency": "USD"}
    fields.update(overrides)
    return event(n, **{"event_type": "purchase", **fields})


def jsonl(records: list[dict | str]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


@pytest.fixture
def land(landing: Path) -> Callable[[str, bytes], Path]:
    def _land(name: str, data: bytes) -> Path:
        path = landing / name
        path.write_bytes(data)
        return path

    return _land


@pytest.fixture
def model_resources(resources: dict) -> dict:
    return {
        **resources,
        "feast": FeastRepo(repo_path=str(settings.feature_repo_path())),
        "mlflow": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri(),
            artifact_root=settings.mlflow_artifact_root(),
        ),
        "bento_store": BentoModelStore(home=str(settings.bentoml_home())),
    }


@pytest.fixture
def feast_registry(model_resources: dict) -> None:
    """The feature services registered, as ``feast_definitions`` does."""
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [feast_definitions], resources={"feast": model_resources["feast"]}, instance=instance
        ).success


@pytest.fixture
def training_set_file(analytics_home):
    frame = synthetic_training_set()
    path = settings.training_set_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return frame


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real Kafka-protocol broker (noida-db) on a loopback port, for the session."""
    from analytics_assets.testing.servers import kafka_broker

    with kafka_broker(tmp_path_factory.mktemp("kafka")) as running:
        yield running
