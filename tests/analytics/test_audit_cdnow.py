"""The audit on the CDNOW replay, against figures computed straight from the source file."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.analytics.assets import AuditConfig, customer_base_audit, customer_daily
from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.lib import lakehouse
from analytics_assets.producers import cdnow
from analytics_assets.producers.files import write_batch
from analytics_assets.resources import warehouse_resource


def quarter_of(day: str) -> date:
    return date(int(day[:4]), (int(day[4:6]) - 1) // 3 * 3 + 1, 1)


@pytest.fixture(scope="module")
def source() -> dict[date, dict[str, Decimal]]:
    """Revenue per customer per quarter, read from CDNOW_master.txt with plain Python."""
    by_quarter: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    orders: dict[date, int] = defaultdict(int)
    for line in cdnow.dataset_path().read_text().splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            quarter = quarter_of(fields[1])
            by_quarter[quarter][fields[0]] += Decimal(fields[3])
            orders[quarter] += 1
    return {"revenue": by_quarter, "orders": orders}


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cdnow")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ANALYTICS_HOME", str(home))
        events = cdnow.to_events(cdnow.read_transactions(cdnow.dataset_path()))
        path = write_batch(events, home / "landing", "cdnow-all", "jsonl")
        warehouse = warehouse_resource()
        with lakehouse.connect() as conn:
            assert ingest_file(conn, path, "cdnow-all").result.clean == 69_659
        with dg.DagsterInstance.ephemeral() as instance:
            dg.materialize(
                [customer_daily],
                resources={"warehouse": warehouse},
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": "1997-01-01",
                    "dagster/asset_partition_range_end": "1998-06-30",
                },
            )
            result = dg.materialize(
                [customer_base_audit],
                resources={"warehouse": warehouse},
                instance=instance,
                run_config=dg.RunConfig({"customer_base_audit": AuditConfig(period="quarter")}),
            )
            assert result.success
            meta = result.get_asset_materialization_events()[0].materialization.metadata
            assert meta["customers"].value == 23_570
            assert "data:image/png;base64," in meta["lens5_layer_cake"].value
        reports = settings.analytics_home() / "reports" / "customer_base_audit"
        assert len(list(reports.glob("lens*.png"))) == 5
    return home


def query(home: Path, sql: str) -> list[tuple]:
    with lakehouse.connect(
        read_only=True, where=lakehouse.Location.under(home / "lakehouse")
    ) as conn:
        return conn.execute(sql).fetchall()


def test_quarter_summary_matches_the_source(audited, source) -> None:
    got = query(audited, "SELECT period, customers, orders, revenue FROM audit_summary ORDER BY 1")
    expected = [
        (q, len(customers), source["orders"][q], sum(customers.values()))
        for q, customers in sorted(source["revenue"].items())
    ]
    assert [(p, c, o) for p, c, o, _ in got] == [(q, c, o) for q, c, o, _ in expected]
    for (_, _, _, revenue), (_, _, _, want) in zip(got, expected, strict=True):
        assert revenue == pytest.approx(float(want), abs=0.01)


def test_top_decile_share_matches_the_source(audited, source) -> None:
    for quarter, customers in source["revenue"].items():
        ranked = sorted(customers.values(), reverse=True)
        top = sum(ranked[: math.ceil(len(ranked) * 0.1)]) / sum(ranked)
        got = query(audited, f"SELECT top10_share FROM audit_summary WHERE period = '{quarter}'")
        assert got[0][0] == pytest.approx(float(top), abs=1e-9)


def test_every_customer_was_acquired_in_the_first_quarter(audited) -> None:
    assert query(audited, "SELECT DISTINCT cohort FROM audit_layer_cake") == [(date(1997, 1, 1),)]
    assert query(audited, "SELECT sum(customers) FROM audit_layer_cake WHERE period = cohort") == [
        (23_570,)
    ]
