"""The ingest assets materialized for real with dagster.materialize on small files."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.ingest import checks
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.defs.ingest.schema import Reason
from analytics_assets.lib import lakehouse
from analytics_assets.partitions import batches
from tests.conftest import event, jsonl, purchase, quarantined

CHECKS = [
    checks.rows_reconcile,
    checks.unique_event_ids,
    checks.required_columns_not_null,
    checks.file_readable,
]


def materialize(batch_id: str, resources, instance, raise_on_error: bool = True):
    if batch_id not in instance.get_dynamic_partitions(batches.name):
        instance.add_dynamic_partitions(batches.name, [batch_id])
    return dg.materialize(
        [ingest_batch, *CHECKS],
        partition_key=batch_id,
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def query(sql: str, *params):
    with lakehouse.connect(read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()


def checks_passed(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def metadata(result, key: str) -> dict:
    for m in result.get_asset_materialization_events():
        if m.asset_key == dg.AssetKey(key):
            return {k: v.value for k, v in m.materialization.metadata.items()}
    raise KeyError(key)


def test_batch_lands_in_events_and_quarantine(land, resources, instance) -> None:
    land("b1.jsonl", jsonl([event(1), purchase(2), event(3, event_type="nope"), "{bad"]))
    result = materialize("b1", resources, instance)
    assert result.success
    assert checks_passed(result) == {
        "rows_reconcile": True,
        "unique_event_ids": True,
        "required_columns_not_null": True,
        "file_readable": True,
        "data_files_present": True,
    }
    assert query("SELECT event_id FROM events ORDER BY 1") == [("e1",), ("e2",)]
    assert sorted(query("SELECT reason FROM quarantined_events")) == [
        (Reason.UNKNOWN_EVENT_TYPE,),
        (Reason.UNPARSEABLE_LINE,),
    ]
    ledger = query("SELECT rows_in, clean, quarantined, days_touched, status FROM ingest_ledger")
    assert ledger == [(4, 2, 2, [date(2024, 3, 2), date(2024, 3, 3)], "ingested")]
    raw_meta = metadata(result, "raw_events")
    assert raw_meta["rows"] == 4 and raw_meta["file"] == "b1.jsonl"
    assert metadata(result, "quarantined_events")["by_reason"] == {
        Reason.UNKNOWN_EVENT_TYPE: 1,
        Reason.UNPARSEABLE_LINE: 1,
    }
    assert metadata(result, "events")["landed_to_commit_s"] >= 0


def test_rematerializing_a_batch_changes_nothing(land, resources, instance) -> None:
    land("b1.jsonl", jsonl([event(i) for i in range(20)] + ["nope"]))
    materialize("b1", resources, instance)
    before = query("SELECT * EXCLUDE (ingested_at) FROM events ORDER BY event_id")
    materialize("b1", resources, instance)
    assert query("SELECT * EXCLUDE (ingested_at) FROM events ORDER BY event_id") == before
    assert query("SELECT count(*) FROM quarantined_events") == [(1,)]
    assert query("SELECT count(*) FROM ingest_ledger") == [(1,)]


def test_same_events_in_another_file_are_quarantined_as_duplicates(land, resources, instance):
    land("b1.jsonl", jsonl([event(1), event(2)]))
    land("b2.jsonl", jsonl([event(2), event(3)]))
    materialize("b1", resources, instance)
    result = materialize("b2", resources, instance)
    assert checks_passed(result)["unique_event_ids"]
    assert query("SELECT event_id, batch_id FROM events ORDER BY 1") == [
        ("e1", "b1"),
        ("e2", "b1"),
        ("e3", "b2"),
    ]
    assert query("SELECT reason, detail FROM quarantined_events") == [
        (Reason.DUPLICATE_STORED, "event_id already stored by batch b1")
    ]


MALFORMED = {
    "empty.jsonl": b"",
    "latin1.jsonl": "événement".encode("latin-1") * 10 + b"\n",
    "truncated.jsonl.gz": gzip.compress(jsonl([event(i) for i in range(30)]))[:-20],
    "prose.jsonl": b"this is a letter, not events\n",
    "fake.parquet": b"PAR1 not really",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_unreadable_file_is_quarantined_and_moved(name, land, resources, instance) -> None:
    land(name, MALFORMED[name])
    batch_id = name.split(".")[0]
    result = materialize(batch_id, resources, instance)
    assert result.success
    assert checks_passed(result)["file_readable"] is False
    assert checks_passed(result)["rows_reconcile"] is True
    assert not (settings.landing_dir() / name).exists()
    assert quarantined(name, MALFORMED[name]).exists()
    rows = query("SELECT reason, detail FROM quarantined_events")
    assert len(rows) == 1 and rows[0][0] == Reason.FILE_UNREADABLE and rows[0][1]
    assert query("SELECT status FROM ingest_ledger") == [("file_quarantined",)]
    assert metadata(result, "raw_events")["status"] == "file_quarantined"


def test_good_file_after_bad_ones_still_lands(land, resources, instance) -> None:
    land("bad.jsonl", b"")
    land("good.jsonl", jsonl([event(1)]))
    materialize("bad", resources, instance)
    materialize("good", resources, instance)
    assert query("SELECT count(*) FROM events") == [(1,)]


def test_missing_file_fails_clearly(resources, instance) -> None:
    result = materialize("ghost", resources, instance, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "No file for batch 'ghost'" in failure.event_specific_data.error.message


KILLER = textwrap.dedent(
    """
    import sys, time
    import polars as pl
    from analytics_assets.lib import lakehouse
    from analytics_assets.defs.ingest import tables
    from analytics_assets.defs.ingest.parsing import parse_batch
    from analytics_assets.defs.ingest.validation import validate_batch

    class PausingConnection:
        '''Pauses forever right after the batch's events are inserted, before COMMIT.'''
        def __init__(self, conn):
            self._conn = conn
        def __getattr__(self, name):
            return getattr(self._conn, name)
        def execute(self, sql, *args):
            result = self._conn.execute(sql, *args)
            if sql.lstrip().startswith("INSERT INTO events"):
                print("inserted", flush=True)
                time.sleep(600)
            return result

    path = sys.argv[2]
    batch = validate_batch(parse_batch(open(path, "rb").read(), path))
    conn = PausingConnection(lakehouse.connect())
    info = tables.BatchFile("b1", "b1.jsonl", None, None, None)
    tables.commit_batch(conn, info, batch.clean, batch.quarantined, batch.clean.height)
    """
)


def test_run_killed_mid_commit_then_rerun_leaves_exact_rows(land, resources, instance) -> None:
    path = land("b1.jsonl", jsonl([event(i) for i in range(100)] + ["x"]))
    materialize("b1", resources, instance)
    path.write_bytes(jsonl([event(i) for i in range(50, 250)]))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(settings.warehouse_path()), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout.readline().strip() == "inserted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the killed transaction left the previous state intact
    assert query("SELECT count(*), min(event_id) FROM events") == [(100, "e0")]
    assert query("SELECT count(*) FROM quarantined_events") == [(1,)]
    result = materialize("b1", resources, instance)
    assert all(checks_passed(result).values())
    assert query("SELECT count(*), count(DISTINCT event_id) FROM events") == [(200, 200)]
    assert query("SELECT count(*) FROM quarantined_events") == [(0,)]
    assert query("SELECT rows_in, clean FROM ingest_ledger") == [(200, 200)]
