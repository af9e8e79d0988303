"""What a sensor run does with the file it claimed: the claim checked, the ledger consulted,
committed files archived, re-sent names quarantined, oversized files refused, and events that
a re-ingest would have lost restored. Real ``dagster.materialize`` runs on small files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import dagster as dg

from analytics_assets import settings
from analytics_assets.defs.ingest.assets import ingest_batch
from analytics_assets.defs.ingest.landing import Claim, LandedFile, batch_id_for, claims_tag
from analytics_assets.defs.ingest.schema import Reason
from analytics_assets.lib import alerts
from analytics_assets.partitions import batches
from tests.conftest import event, jsonl
from tests.ingest.test_assets import CHECKS, checks_passed, metadata, query


def claim_of(path: Path) -> Claim:
    stat = path.stat()
    item = LandedFile(path, batch_id_for(path.name), stat.st_ctime_ns, stat.st_size)
    return Claim.of(item)


def run_claimed(path: Path, resources, instance, claim: Claim | None = None):
    """A run as the landing sensor launches it: the partition plus the claim in its tags."""
    claim = claim or claim_of(path)
    if claim.batch_id not in instance.get_dynamic_partitions(batches.name):
        instance.add_dynamic_partitions(batches.name, [claim.batch_id])
    return dg.materialize(
        [ingest_batch, *CHECKS],
        partition_key=claim.batch_id,
        resources=resources,
        instance=instance,
        tags=claims_tag([claim]),
    )


def archived(name: str, data: bytes) -> list[Path]:
    digest = hashlib.sha256(data).hexdigest()[:12]
    return list(settings.archive_dir().glob(f"*/{digest}__{name}"))


def test_a_committed_file_is_archived_and_a_rerun_changes_nothing(land, resources, instance):
    data = jsonl([event(1), event(2)])
    path = land("a.jsonl", data)
    claim = claim_of(path)
    run_claimed(path, resources, instance, claim)
    assert not path.exists() and len(archived("a.jsonl", data)) == 1
    (committed_at,) = query("SELECT committed_at FROM ingest_ledger")[0]
    # the same claimed run again (a retry after a crash past the archive step)
    result = run_claimed(path, resources, instance, claim)
    assert metadata(result, "raw_events")["status"] == "already_committed"
    assert query("SELECT committed_at FROM ingest_ledger") == [(committed_at,)]
    assert query("SELECT count(*) FROM events") == [(2,)]
    # the same file delivered again: nothing new, archived again
    land("a.jsonl", data)
    result = run_claimed(path, resources, instance)
    assert metadata(result, "raw_events")["status"] == "already_committed"
    assert not path.exists() and query("SELECT count(*) FROM events") == [(2,)]


def test_new_content_under_a_committed_name_is_quarantined_not_lost(land, resources, instance):
    first = jsonl([event(1), event(2)])
    run_claimed(land("sim-7-000000.jsonl", first), resources, instance)
    again = jsonl([event(10), event(11), event(12)])
    path = land("sim-7-000000.jsonl", again)
    result = run_claimed(path, resources, instance)
    assert metadata(result, "raw_events")["status"] == "file_quarantined"
    # the committed batch keeps its events; the new file is kept whole in quarantine
    assert query("SELECT event_id FROM events ORDER BY 1") == [("e1",), ("e2",)]
    digest = hashlib.sha256(again).hexdigest()
    ((batch_id, reason, detail),) = query("SELECT batch_id, reason, detail FROM quarantined_events")
    assert (batch_id, reason) == (f"sim-7-000000.resent-{digest[:12]}", Reason.BATCH_NAME_RESENT)
    assert "Rename the file" in detail
    assert (settings.quarantine_dir() / f"{digest[:12]}__sim-7-000000.jsonl").read_bytes() == again
    (alert,) = alerts.read(settings.alerts_path())
    assert alert["kind"] == "batch_name_resent" and "sim-7-000000" in alert["message"]


def test_a_fixed_file_replaces_a_quarantined_one(land, resources, instance) -> None:
    run_claimed(land("b.jsonl", b""), resources, instance)
    assert query("SELECT status FROM ingest_ledger") == [("file_quarantined",)]
    run_claimed(land("b.jsonl", jsonl([event(1)])), resources, instance)
    assert query("SELECT status, clean FROM ingest_ledger") == [("ingested", 1)]


def test_a_file_replaced_after_its_claim_is_read_as_it_is_and_said(land, resources, instance):
    path = land("c.jsonl", jsonl([event(1)]))
    claim = claim_of(path)
    land("c.jsonl", jsonl([event(1), event(2)]))  # replaced between the tick and the run
    now = claim_of(path)
    result = run_claimed(path, resources, instance, claim)
    assert metadata(result, "raw_events")["replaced_after_claim"].endswith(claim.sha256)
    assert query("SELECT file_sha256, clean FROM ingest_ledger") == [(now.sha256, 2)]
    # the sensor's claim of the new content finds it committed
    land("c.jsonl", jsonl([event(1), event(2)]))
    result = run_claimed(path, resources, instance, now)
    assert metadata(result, "raw_events")["status"] == "already_committed"


def test_the_run_reads_the_claimed_name_not_another_file_of_the_batch(
    land, resources, instance
) -> None:
    path = land("d.jsonl", jsonl([event(1)]))
    claim = claim_of(path)
    land("d.jsonl.gz", gzip.compress(jsonl([event(5), event(6)])))
    run_claimed(path, resources, instance, claim)
    assert query("SELECT file_name, clean FROM ingest_ledger") == [("d.jsonl", 1)]
    assert (settings.landing_dir() / "d.jsonl.gz").exists()


def test_a_gzip_over_the_limit_is_quarantined_unread(land, resources, instance, monkeypatch):
    monkeypatch.setenv("ANALYTICS_MAX_FILE_BYTES", str(64 * 1024))
    bomb = gzip.compress(b" " * (10 << 20))  # 10 MiB of spaces in ~10 KiB
    result = run_claimed(land("bomb.jsonl.gz", bomb), resources, instance)
    assert checks_passed(result)["file_readable"] is False
    ((reason, detail),) = query("SELECT reason, detail FROM quarantined_events")
    assert reason == Reason.FILE_TOO_LARGE and "ANALYTICS_MAX_FILE_BYTES" in detail
    big = jsonl([event(i) for i in range(3000)])
    assert len(big) > 64 * 1024
    run_claimed(land("big.jsonl", big), resources, instance)
    assert query("SELECT reason FROM quarantined_events WHERE batch_id = 'big'") == [
        (Reason.FILE_TOO_LARGE,)
    ]


def test_quarantine_names_are_unique_and_bounded(land, resources, instance) -> None:
    long_name = "x" * 240 + ".jsonl"
    run_claimed(land(long_name, b"not json\x00"), resources, instance)
    (moved,) = settings.quarantine_dir().iterdir()
    assert len(moved.name.encode()) <= 200 and moved.name.endswith(".jsonl")
    # the same name, other unreadable content: a second file, the first is kept
    run_claimed(land("e.jsonl", b""), resources, instance)
    run_claimed(land("e.jsonl", b"\x00\x01"), resources, instance)
    assert len([p for p in settings.quarantine_dir().iterdir() if p.name.endswith("e.jsonl")]) == 2


def test_reingesting_a_batch_restores_the_duplicates_others_quarantined(
    land, resources, instance
) -> None:
    """A{e1,e2}, B{e1,e3}: B's e1 is quarantined as a duplicate. A re-sent as {e2} (a person
    re-materializing A after fixing its file) no longer stores e1: B's e1 is restored."""
    from tests.ingest.test_assets import materialize

    land("A.jsonl", jsonl([event(1), event(2)]))
    materialize("A", resources, instance)
    land("B.jsonl", jsonl([event(1), event(3)]))
    materialize("B", resources, instance)
    assert query("SELECT batch_id, reason FROM quarantined_events") == [
        ("B", Reason.DUPLICATE_STORED)
    ]
    for old in settings.archive_dir().glob("*/*A.jsonl"):
        old.unlink()
    land("A.jsonl", jsonl([event(2)]))
    result = materialize("A", resources, instance)
    assert checks_passed(result)["rows_reconcile"]
    assert query("SELECT event_id, batch_id FROM events ORDER BY 1") == [
        ("e1", "B"),
        ("e2", "A"),
        ("e3", "B"),
    ]
    assert query("SELECT count(*) FROM quarantined_events") == [(0,)]
    assert query("SELECT batch_id, clean, quarantined FROM ingest_ledger ORDER BY 1") == [
        ("A", 1, 0),
        ("B", 2, 0),
    ]
    # the restored row keeps every column
    assert query("SELECT customer_id, occurred_at IS NOT NULL FROM events WHERE event_id = 'e1'")[
        0
    ] == (event(1)["customer_id"], True)


def test_a_batch_that_fails_its_last_attempt_is_quarantined_and_alerted(
    land, resources, instance, monkeypatch
) -> None:
    """An unexpected error on the last attempt (no retries left): the run fails (the failure
    alert fires) and the file is quarantined whole with the error, not left to be forgotten."""
    from analytics_assets.defs.ingest import batch

    def broken(raw):
        raise RuntimeError("validator crashed")

    monkeypatch.setattr(batch, "validate_batch", broken)
    data = jsonl([event(1)])
    path = land("f.jsonl", data)
    claim = claim_of(path)
    instance.add_dynamic_partitions(batches.name, ["f"])
    result = dg.materialize(
        [ingest_batch],
        partition_key="f",
        resources=resources,
        instance=instance,
        tags=claims_tag([claim]),
        raise_on_error=False,
    )
    assert not result.success
    ((reason, detail),) = query("SELECT reason, detail FROM quarantined_events")
    assert reason == Reason.INGEST_FAILED and "validator crashed" in detail
    assert not path.exists()
    assert (settings.quarantine_dir() / f"{claim.sha256[:12]}__f.jsonl").read_bytes() == data
