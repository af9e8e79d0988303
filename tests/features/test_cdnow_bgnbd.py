"""The pipeline's own features on real data: the CDNOW sample customers (Fader, Hardie and Lee,
2005) replayed through ingest -> sessions/customer_daily -> customer_features, and the BG/NBD
model fitted by maximum likelihood on the 39-week calibration snapshot reproduces the paper's
published estimates. (Modelling proper is the training layer's; this pins the features.)"""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from analytics_assets import settings
from analytics_assets.defs.features import transforms
from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.producers import cdnow
from analytics_assets.producers.files import write_batch
from tests.features.conftest import roll_up

CALIBRATION_END = date(1997, 9, 30)  # 39 weeks after 1997-01-01
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def test_bgnbd_on_our_snapshot_reproduces_the_paper(resources) -> None:
    from lifetimes import BetaGeoFitter

    transactions = cdnow.read_transactions(cdnow.dataset_path(cdnow.SAMPLE))
    path = write_batch(cdnow.to_events(transactions), settings.landing_dir(), "sample", "jsonl")
    with duckdb.connect(str(settings.warehouse_path())) as conn:
        assert ingest_file(conn, path, "sample").result.quarantined == 0
    roll_up(resources, date(1997, 1, 1), CALIBRATION_END)
    with duckdb.connect(str(settings.warehouse_path())) as conn:
        snapshot = transforms.customer_snapshots(conn, [CALIBRATION_END], datetime.now(UTC)).df()
    assert len(snapshot) == 2_357
    # the paper measures time in weeks; the snapshot in days
    fitted = BetaGeoFitter().fit(
        snapshot["frequency"], snapshot["recency_days"] / 7, snapshot["tenure_days"] / 7
    )
    for name, value in PUBLISHED.items():
        assert fitted.params_[name] == pytest.approx(value, abs=0.0005), name
