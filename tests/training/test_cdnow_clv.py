"""Correctness on real data: the CDNOW sample customers (the 2,357 of Fader, Hardie and Lee,
2005) replayed through ingest -> sessions/customer_daily -> customer_features -> clv_model.
Calibrated on the first 39 weeks, the model reproduces the paper's maximum-likelihood estimates,
and its forecast of weeks 40-78 is compared with what the customers actually bought."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.features.assets import customer_features
from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.defs.training.assets import clv_model
from analytics_assets.lib import lakehouse
from analytics_assets.producers import cdnow
from analytics_assets.producers.files import write_batch
from tests.features.conftest import roll_up

CALIBRATION_END = date(1997, 9, 30)  # 39 weeks after 1997-01-01
LAST_DAY = date(1998, 6, 30)  # week 78
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
# Fader and Hardie, "The Gamma-Gamma model of monetary value" (2013), same 2,357 customers
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}


def significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def test_clv_model_reproduces_the_bgnbd_paper(model_resources: dict) -> None:
    transactions = cdnow.read_transactions(cdnow.dataset_path(cdnow.SAMPLE))
    path = write_batch(cdnow.to_events(transactions), settings.landing_dir(), "sample", "jsonl")
    with lakehouse.connect() as conn:
        assert ingest_file(conn, path, "sample").result.quarantined == 0
    roll_up(model_resources, date(1997, 1, 1), LAST_DAY)
    resources = {k: model_resources[k] for k in ("warehouse", "mlflow")}
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [customer_features],
            partition_key=CALIBRATION_END.isoformat(),
            resources={"warehouse": resources["warehouse"]},
            instance=instance,
        ).success
        result = dg.materialize([clv_model], resources=resources, instance=instance)
    metadata = result.asset_materializations_for_node("clv_model")[0].metadata
    assert metadata["training_window"].value["calibration_day"] == CALIBRATION_END.isoformat()
    assert metadata["customers"].value == 2_357
    for name, published in PUBLISHED_BGNBD.items():
        assert significant(metadata[name].value) == significant(published), name
    for name, published in PUBLISHED_GAMMA_GAMMA.items():
        assert metadata[name].value == pytest.approx(published, rel=0.01), name

    predicted = metadata["predicted_purchases"].value
    actual = metadata["actual_purchases"].value
    print(
        f"\nCDNOW sample, weeks 40-78: {predicted:,.0f} repeat transactions predicted by BG/NBD, "
        f"{actual:,.0f} actual ({predicted / actual - 1:+.1%})"
    )
    # 1,882 repeat purchase days in weeks 40-78 (after 2,457 in weeks 1-39); BG/NBD forecasts
    # 1,653 of them: it under-forecasts this sample's holdout by about 12%
    assert actual == 1_882
    assert 0.85 < predicted / actual < 1.0
    assert metadata["purchases_corr"].value > 0.5

    # the same figures, logged to MLflow with the registered challenger
    run = model_resources["mlflow"].client().get_run(metadata["mlflow_run_id"].value)
    for name, published in PUBLISHED_BGNBD.items():
        assert significant(run.data.metrics[name]) == significant(published), name
    assert run.data.params["calibration_day"] == CALIBRATION_END.isoformat()
    assert metadata["model_version"].value == "1"
