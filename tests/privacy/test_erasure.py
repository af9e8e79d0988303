"""Erasing a customer: a history with them in every store, built by the real assets; the real
``analytics erase-customer``; then every file under ANALYTICS_HOME scanned byte by byte (Parquet
decoded too) and every Redis key, ``--verify``, a new event of theirs, and restores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.features.assets import (
    TrainingSetConfig,
    customer_features,
    feast_definitions,
    online_features,
    training_set,
)
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.defs.ingest.schema import Reason
from analytics_assets.lib import erasure, faults, lakehouse, restore
from analytics_assets.partitions import batches
from analytics_assets.resources import FeastRepo
from analytics_assets.testing.trace_scan import files_with, redis_with
from tests.conftest import event, jsonl, purchase
from tests.features.conftest import FIRST, LAST, range_tags, roll_up
from tests.lake.conftest import log_predictions

ERASED = "erase-me-7f3a9c"
KEPT = ("keep-a1", "keep-b2")


def history(first_id: int, customers: tuple[str, ...]) -> list[dict]:
    records = []
    for i, customer in enumerate(customers):
        for day in range(1, 10, 2):
            n = first_id + i * 100 + day
            records.append(
                event(n, customer_id=customer, occurred_at=f"2024-03-{day:02d}T09:00:00Z")
            )
            records.append(
                purchase(
                    n + 50, 12.5, customer_id=customer, occurred_at=f"2024-03-{day:02d}T09:05:00Z"
                )
            )
    return records


def land_and_ingest(
    name: str, records: list, resources: dict, instance
) -> dg.ExecuteInMemoryResult:
    """A file in the landing zone, ingested by the real asset (which archives it)."""
    (settings.landing_dir() / f"{name}.jsonl").write_bytes(jsonl(records))
    instance.add_dynamic_partitions(batches.name, [name])
    result = dg.materialize(
        [ingest_batch], partition_key=name, resources=resources, instance=instance
    )
    assert result.success
    return result


def analytics(*args: str, env: dict | None = None, check: bool = True):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "analytics"), *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=300,
    )
    assert not check or done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def build_history(resources: dict, instance) -> datetime:
    """The customer in every store; returns an instant after everything was stored."""
    # a row of theirs that fails validation: quarantined with its raw record
    bad = event(999, customer_id=ERASED, event_type="teleport", occurred_at="2024-03-02T10:00:00Z")
    land_and_ingest("first", [*history(1, (ERASED, KEPT[0])), bad], resources, instance)
    land_and_ingest("second", history(5000, (KEPT[1],)), resources, instance)  # a later snapshot
    roll_up(resources)
    features = {**resources, "feast": FeastRepo(repo_path=str(settings.feature_repo_path()))}
    for assets, tags, config in (
        ([customer_features], range_tags(FIRST, LAST), None),
        ([feast_definitions], {}, None),
        ([online_features], {}, None),
        (
            [training_set],
            {},
            dg.RunConfig(
                ops={"training_set": TrainingSetConfig(churn_days=2, value_days=3, every_days=3)}
            ),
        ),
    ):
        assert dg.materialize(
            assets, resources=features, instance=instance, tags=tags, run_config=config
        ).success
    log_predictions(ERASED)
    log_predictions(KEPT[0])
    time.sleep(0.05)
    return datetime.now(UTC)


def stored(sql: str) -> list:
    with lakehouse.connect(read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def dagster_home(analytics_home: Path) -> Path:
    analytics("dagster-home")
    return settings.dagster_home()


def test_erased_everywhere_verified_kept_out_and_never_restored(
    analytics_home, resources, instance, dagster_home, tmp_path, monkeypatch
) -> None:
    from analytics_assets.defs.ingest import tables

    with lakehouse.connect() as conn:  # the lakehouse, before they arrive
        tables.ensure_tables(conn)
    time.sleep(0.05)
    before_all = datetime.now(UTC)
    time.sleep(0.05)
    stored_at = build_history(resources, instance)
    assert len(files_with(analytics_home, ERASED)) > 5  # archive, snapshots, online, ...
    assert stored(f"SELECT count(*) FROM quarantined_events WHERE raw LIKE '%{ERASED}%'") == [(1,)]
    backup = tmp_path / "backup"
    analytics("backup", str(backup))

    done = analytics("erase-customer", ERASED, "never-seen-9", "--reason", "request 42", "--json")
    receipt = json.loads(done.stdout.strip().splitlines()[-1])
    assert receipt["verified"] and ERASED not in json.dumps(receipt)
    assert receipt["stores"]["lakehouse: events"]["rows"] == 10
    assert receipt["stores"]["lakehouse: quarantined_events"]["rows"] == 1
    for store in ("archive", "feature snapshots", "online store (sqlite)", "prediction log"):
        assert receipt["stores"][store]["rows"] > 0, store
    assert receipt["stores"]["training sets and holdouts"]["files"] == 1
    assert receipt["snapshots_expired"] > 0 and receipt["days_touched"]

    # no trace anywhere under the home, raw bytes or decoded Parquet
    assert files_with(analytics_home, ERASED) == []
    assert files_with(analytics_home, KEPT[0])  # and the others are all still there
    assert stored(f"SELECT count(*) FROM events WHERE customer_id = '{KEPT[0]}'") == [(10,)]
    check = analytics("erase-customer", "--verify", receipt["path"])
    assert check.stdout.startswith("clean")

    # Dagster shows it, and rebuilds the days their events touched
    with dg.DagsterInstance.from_config(str(dagster_home)) as dagster:
        shown = dagster.get_latest_materialization_event(dg.AssetKey("customer_erasures"))
        assert shown.asset_materialization.metadata["verified"].value is True
        days = dagster.get_latest_materialization_event(dg.AssetKey("events"))
        assert days.asset_materialization.metadata["days_touched"].value == receipt["days_touched"]

    # their next event is kept out, quarantined with no record; the archive keeps none of it
    later = [event(7001, customer_id=ERASED), event(7002, customer_id=KEPT[0])]
    result = land_and_ingest("third", later, resources, instance)
    quarantine = stored(
        "SELECT reason, detail, raw FROM quarantined_events WHERE batch_id = 'third'"
    )
    assert quarantine == [(Reason.ERASED_CUSTOMER, None, None)]
    assert stored("SELECT customer_id FROM events WHERE batch_id = 'third'") == [(KEPT[0],)]
    assert result.success and files_with(analytics_home, ERASED) == []

    # a restore to a moment their history was expired from: refused, by name
    with lakehouse.connect() as conn, pytest.raises(restore.RestoreError, match="erasure"):
        restore.restore_to(conn, stored_at)
    # to the moment before they arrived: nothing of theirs (nothing at all, then)
    with lakehouse.connect() as conn:
        back = restore.restore_to(conn, before_all, log=lambda _m: None)
    assert back.tables.get("events", 0) == 0
    # a backup from before the erasure, loaded into an empty lakehouse: kept out again
    monkeypatch.setenv(
        "ANALYTICS_LAKEHOUSE_CATALOG", f"sqlite:{tmp_path / 'new' / 'catalog.sqlite'}"
    )
    monkeypatch.setenv("ANALYTICS_LAKEHOUSE_DATA", str(tmp_path / "new" / "data"))
    loaded = analytics("restore", "--from", str(backup))
    assert "erased customers kept out" in loaded.stdout
    assert stored(f"SELECT count(*) FROM events WHERE customer_id = '{ERASED}'") == [(0,)]
    assert stored("SELECT count(*) FROM quarantined_events WHERE raw LIKE '%erase-me%'") == [(0,)]
    assert stored(f"SELECT count(*) FROM events WHERE customer_id = '{KEPT[0]}'") == [(10,)]
    assert files_with(tmp_path / "new", ERASED) == []


@pytest.mark.parametrize("point", faults.ERASURE_POINTS)
def test_a_killed_erasure_is_completed_by_running_it_again(
    analytics_home, resources, instance, point, tmp_path
) -> None:
    land_and_ingest("first", history(1, (ERASED, KEPT[0])), resources, instance)
    land_and_ingest("second", history(5000, (KEPT[1],)), resources, instance)
    fault = tmp_path / "fault"
    faults.arm(fault, point)
    env = {**os.environ, faults.ENV: str(fault)}
    killed = analytics("erase-customer", ERASED, "--reason", "r", env=env, check=False)
    assert killed.returncode == -9 and (tmp_path / "fault.fired").exists()
    assert not list(settings.erasures_dir().glob("*.json"))  # no receipt until it is clean
    analytics("erase-customer", ERASED, "--reason", "r")
    (receipt,) = settings.erasures_dir().glob("*.json")
    assert erasure.verify_file(receipt)[1] == []
    assert files_with(analytics_home, ERASED) == []
    assert stored(f"SELECT count(*) FROM events WHERE customer_id = '{KEPT[0]}'") == [(10,)]


def test_bad_input_is_named_and_an_unknown_id_gets_a_receipt(
    analytics_home, resources, instance
) -> None:
    land_and_ingest("first", history(1, KEPT), resources, instance)
    empty = analytics("erase-customer", "--reason", "r", check=False)
    assert empty.returncode != 0 and "no customer id" in empty.stderr
    bad = analytics("erase-customer", "a\x01b", "--reason", "r", check=False)
    assert bad.returncode != 0 and "not a customer id" in bad.stderr
    reasonless = analytics("erase-customer", "x", check=False)
    assert reasonless.returncode != 0 and "--reason" in reasonless.stderr
    naming = analytics("erase-customer", "keep-a1", "--reason", "keep-a1 asked", check=False)
    assert naming.returncode != 0 and "the receipt would keep it" in naming.stderr
    unknown = analytics("erase-customer", "nobody-at-all", "--reason", "r")
    assert "nothing found for 1 customer(s)" in unknown.stdout
    assert stored("SELECT count(*) FROM events") == [(20,)]


def test_the_online_store_on_redis(analytics_home, redis_online) -> None:
    """Their keys leave a real Redis; the others stay."""
    import redis

    from analytics_assets.testing import serving
    from analytics_assets.testing.feature_snapshot import customer_id

    serving.online_features(30)
    host, port = redis_online.split(":")
    client = redis.Redis(host=host, port=int(port))
    gone, kept = customer_id(3), customer_id(4)
    assert redis_with(client, gone) and redis_with(client, kept)
    receipt, _ = erasure.erase([gone], "r", log=lambda _m: None)
    assert receipt.stores["online store (redis)"]["rows"] == 1
    assert redis_with(client, gone) == [] and redis_with(client, kept)
    assert files_with(analytics_home, gone) == []
