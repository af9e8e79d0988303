"""The production profile on a real PostgreSQL (Debian's server, started on a loopback port):
Dagster's run, event log and schedule storage, and MLflow's tracking and registry store."""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest

from analytics_assets import settings
from analytics_assets.instance import POSTGRES_URL_ENV, write_instance
from analytics_assets.lib import model_registry
from analytics_assets.resources import MlflowTracking
from analytics_assets.testing.servers import postgres_server
from tests.conftest import event, jsonl, purchase
from tests.ingest.test_assets import materialize
from tests.ingest.test_sensor import Ticker
from tests.training.test_gate import train_and_gate

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def postgres() -> str:
    with postgres_server(("dagster", "mlflow")) as url:
        yield url


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy 2.1 defaults ``postgresql://`` to psycopg 3; dagster-postgres ships psycopg2."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def count(url: str, sql: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_dagster_storage_on_postgres(postgres, analytics_home, resources, land, monkeypatch):
    url = f"{postgres}/dagster"
    monkeypatch.setenv(POSTGRES_URL_ENV, sqlalchemy_url(url))
    path = write_instance()
    assert url not in path.read_text()  # the file names the variable, not the secret
    with dg.DagsterInstance.from_config(str(settings.dagster_home())) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        land("b1.jsonl", jsonl([event(1), purchase(2, amount=12.5)]))
        (request,) = Ticker(instance, resources).tick()
        assert request.partition_key == "b1"
        result = materialize("b1", resources, instance)
        assert result.success
        assert instance.get_latest_materialization_event(dg.AssetKey("events")) is not None
    assert count(url, "SELECT count(*) FROM runs") >= 1
    assert count(url, "SELECT count(*) FROM dynamic_partitions WHERE partition = 'b1'") == 1
    assert count(url, "SELECT count(*) FROM event_logs WHERE asset_key LIKE '%events%'") >= 1


def test_mlflow_tracking_and_registry_on_postgres(
    postgres, model_resources, feast_registry, training_set_file
):
    url = f"{postgres}/mlflow"
    tracking = MlflowTracking(
        tracking_uri=sqlalchemy_url(url), artifact_root=settings.mlflow_artifact_root()
    )
    assert train_and_gate({**model_resources, "mlflow": tracking}).success
    champion = model_registry.by_alias(tracking.client(), "churn_model", model_registry.CHAMPION)
    assert champion is not None and champion.version == "1"
    assert count(url, "SELECT count(*) FROM registered_models WHERE name = 'churn_model'") == 1
    assert count(url, "SELECT count(*) FROM runs") == 1
