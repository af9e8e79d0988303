"""A home with a lakehouse built by the real assets from simulated events, a prediction
log written by the scoring service's own writer, online features, and the real read API
(``bentoml serve`` in ``bentos/analytics_reader``) on a free loopback port."""

from __future__ import annotations

import types
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analytics_assets import settings
from analytics_assets.lib import lakehouse
from tests.serving.conftest import Server, home_env, run_server

READER_DIR = settings.REPO_ROOT / "bentos" / "analytics_reader"
FIRST_DAY = "2024-01-01"
DAYS = 120
API_KEY = "reader-test-key"
ACTIVE_CUSTOMER = "cust-0000129"
EXPERIMENT = "checkout_copy"


def build_lake(home: Path) -> None:
    """Simulated events ingested, then the analytics and the audit, as runs
    would: through the real assets, on an ephemeral Dagster instance
    (``testing.large_home.materialize_analytics``, as the read API's benchmark)."""
    from analytics_assets.defs.ingest.batch import ingest_file
    from analytics_assets.producers import simulate
    from analytics_assets.producers.files import write_batch
    from analytics_assets.testing import large_home

    settings.ensure_dirs()
    config = simulate.SimulationConfig(
        customers=400, days=DAYS, seed=5, start=datetime.fromisoformat(FIRST_DAY)
    )
    events = simulate.simulate_events(config)
    path = write_batch(events, home / "work", "sim", "parquet")
    with lakehouse.connect() as conn:
        ingest_file(conn, Path(path), "sim")
    last = events["occurred_at"].max().date()
    large_home.materialize_analytics(date.fromisoformat(FIRST_DAY), last)
    expose(home, last)


def expose(home: Path, last: date) -> None:
    """Experiment ``checkout_copy``: every customer exposed on day 60, alternately to control and
    treatment, declared; its looks of the last three days and its report, by the real assets."""
    import dagster as dg
    import polars as pl

    from analytics_assets.defs.experiments.assets import experiment_looks, experiment_report
    from analytics_assets.defs.ingest.batch import ingest_file
    from analytics_assets.lib import experiments
    from analytics_assets.producers.files import write_batch
    from analytics_assets.resources import warehouse_resource
    from analytics_assets.testing import large_home

    exposures = pl.DataFrame(
        {
            "event_id": [f"exp-{i}" for i in range(400)],
            "event_type": "experiment_exposure",
            "customer_id": [f"cust-{i:07d}" for i in range(400)],
            "occurred_at": datetime.fromisoformat("2024-03-01T08:00:00+00:00"),
            "properties": [
                f'{{"experiment": "{EXPERIMENT}", "variant": "{("control", "treatment")[i % 2]}"}}'
                for i in range(400)
            ],
        }
    )
    path = write_batch(exposures, home / "work", "exposures", "parquet")
    with lakehouse.connect() as conn:
        ingest_file(conn, Path(path), "exposures")
    experiments.save(
        settings.experiments_file(),
        [experiments.declaration(EXPERIMENT, {"variants": ["control", "treatment"]})],
    )
    large_home.materialize_days([experiment_looks], last - timedelta(days=2), last)
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [experiment_report], resources={"warehouse": warehouse_resource()}, instance=instance
        ).success


def log_predictions(customer_id: str) -> None:
    """Two answers for ``customer_id`` through the scoring service's prediction log writer."""
    from analytics_assets.lib.names import CHURN_FEATURES, CHURN_MODEL
    from bentos.customer_scoring.prediction_log import PredictionLog

    log = PredictionLog(settings.predictions_dir(), 60)
    model = types.SimpleNamespace(
        name=CHURN_MODEL,
        version="3",
        role="champion",
        feature_service=CHURN_FEATURES,
        features=["recency_days"],
    )
    for value in (0.25, 0.75):
        log.record(
            endpoint="churn",
            request_id=f"r{value}",
            model=model,
            served=True,
            customer_ids=[customer_id],
            known=np.array([True]),
            as_of=[None],
            features={"recency_days": np.array([3.0])},
            outputs={"churn_probability": np.array([value])},
            params={},
        )
        log.flush()


@pytest.fixture(scope="session")
def lake_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("lake") / "analytics"
    with home_env(home):
        (home / "work").mkdir(parents=True)
        build_lake(home)
        log_predictions(ACTIVE_CUSTOMER)
        from analytics_assets.testing import serving

        serving.online_features(50)
    return home


@pytest.fixture(scope="session")
def role_keys(lake_home: Path) -> dict[str, str]:
    """A key per role in the home's keys file (``analytics api-key add``'s writer)."""
    from analytics_assets.lib import api_keys

    path = lake_home / "api_keys.json"
    return {role: api_keys.add(path, f"{role}-key", [role]) for role in api_keys.ROLES}


@pytest.fixture(scope="session")
def reader(lake_home: Path, role_keys: dict, tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("reader-logs") / "reader.log"
    with run_server(
        lake_home,
        log,
        service_dir=READER_DIR,
        SCORING_API_KEY=API_KEY,
        ANALYTICS_API_KEYS_FILE=str(lake_home / "api_keys.json"),
        READ_API_SQL_MAX_ROWS="1000",
        READ_API_SQL_TIMEOUT_S="2",
    ) as server:
        yield server
