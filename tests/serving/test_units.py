"""The service's parts without a server: traffic split, prediction log, the online reader."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl

from analytics_assets import settings
from analytics_assets.lib.feast_repo import open_store
from analytics_assets.lib.online_reader import OnlineReader
from analytics_assets.testing.feature_snapshot import customer_id
from bentos.customer_scoring.prediction_log import PredictionLog
from bentos.customer_scoring.routing import bucket, to_challenger
from tests.serving.conftest import home_env


def test_split_is_stable_and_proportional() -> None:
    ids = [f"customer-{i}" for i in range(20_000)]
    routed = to_challenger(ids, 0.2)
    assert abs(routed.mean() - 0.2) < 0.01
    assert (routed == to_challenger(ids, 0.2)).all()
    assert not to_challenger(ids, 0.0).any() and to_challenger(ids, 1.0).all()
    # a larger share keeps everyone the smaller one had
    assert (to_challenger(ids, 0.5) >= routed).all()
    assert 0.0 <= bucket("x") < 1.0


MODEL = SimpleNamespace(
    name="churn_model",
    version="4",
    role="champion",
    feature_service="churn_v1",
    features=["frequency"],
)


def test_prediction_log_writes_per_model_and_day(tmp_path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=60)
    for request in range(3):
        log.record(
            endpoint="churn",
            request_id=f"r{request}",
            model=MODEL,
            served=True,
            customer_ids=["a", "b"],
            known=np.array([True, False]),
            as_of=[None, None],
            features={"frequency": np.array([1.0, np.nan])},
            outputs={"churn_probability": np.array([0.2, np.nan])},
            params={},
        )
    (path,) = log.flush()
    assert path.parent.parent.name == "churn_model" and path.parent.name.startswith("date=")
    frame = pl.read_parquet(path)
    assert frame.height == 6 and frame["request_id"].n_unique() == 3
    assert frame["known"].to_list() == [True, False] * 3
    assert log.flush() == []  # nothing twice


def _record(log: PredictionLog, request: str) -> None:
    log.record(
        endpoint="churn",
        request_id=request,
        model=MODEL,
        served=True,
        customer_ids=["a", "b"],
        known=np.array([True, True]),
        as_of=[None, None],
        features={"frequency": np.array([1.0, 2.0])},
        outputs={"churn_probability": np.array([0.2, 0.3])},
        params={},
    )


def test_prediction_log_keeps_rows_a_failed_write_could_not_store(tmp_path) -> None:
    """A write fails (here the folder is a file; a full disk alike): the rows stay buffered
    and the next flush writes them; a buffer that would pass its cap drops and counts."""
    import pytest

    blocked = tmp_path / "log"
    blocked.write_text("not a folder")
    dropped = []
    log = PredictionLog(blocked, flush_seconds=60, max_buffer_rows=6, on_drop=dropped.append)
    _record(log, "r1")
    _record(log, "r2")
    with pytest.raises(OSError):
        log.flush()
    _record(log, "r3")
    _record(log, "r4")  # 8 rows > 6: these two are dropped and counted
    assert log.dropped_rows == 2 and dropped == [2]
    blocked.unlink()
    (path,) = log.flush()
    frame = pl.read_parquet(path)
    assert frame["request_id"].to_list() == ["r1", "r1", "r2", "r2", "r3", "r3"]


def test_reader_equals_feast(serving_home) -> None:
    with home_env(serving_home):
        store = open_store(settings.feature_repo_path())
    service = store.get_feature_service("churn_v1")
    views = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
    reader = OnlineReader(store, views)
    assert reader.reads_sqlite_directly
    ids = [customer_id(5), "nobody", customer_id(5), customer_id(77)]
    fast = reader.read(ids)
    reader._tables = None  # the same reader through Feast's get_online_features
    feast = reader.read(ids)
    assert fast.known.tolist() == feast.known.tolist() == [True, False, True, True]
    assert fast.as_of == feast.as_of
    for name in reader.names:
        np.testing.assert_array_equal(fast.columns[name], feast.columns[name])


def test_a_corrupt_store_entry_costs_that_model_only(serving_home, tmp_path) -> None:
    """One model's entry in the model store is broken: the others load, /reload's errors name
    the broken one, and nothing raises."""
    import shutil

    from analytics_assets.lib import bento_store
    from bentos.customer_scoring.champions import Models

    store_dir = tmp_path / "models"
    shutil.copytree(serving_home / "bentoml" / "models", store_dir)
    clv = store_dir / "clv_model"
    version = (clv / "latest").read_text().strip()
    (clv / version / "model.yaml").write_text("{ this is: [not a model")
    with home_env(serving_home):
        store = open_store(settings.feature_repo_path())
    models = Models(bento_store.open_store(tmp_path), store)
    models.refresh()
    assert models.slot("churn_model").champion is not None
    assert models.slot("clv_model").champion is None
    assert any(key.startswith("clv_model") for key in models.errors)
