"""landing_sensor evaluated with real sensor contexts against a real (ephemeral) instance."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import settings
from analytics_assets.defs.ingest.landing import LandedFile, batch_id_for, claims_from_tags, scan
from analytics_assets.defs.ingest.sensors import (
    BATCHES_TAG,
    Cursor,
    build_landing_sensor,
    plan_claims,
)
from analytics_assets.metadata import RANGE_END_TAG, RANGE_START_TAG
from analytics_assets.partitions import batches
from tests.conftest import event, jsonl


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor and partitions like the daemon."""

    def __init__(self, instance: dg.DagsterInstance, resources: dict) -> None:
        self.instance = instance
        self.resources = resources
        self.sensor = build_landing_sensor(minimum_interval_seconds=1)
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"landing_zone": self.resources["landing_zone"]},
        )
        result = self.sensor(context)
        self.cursor = context.cursor
        if isinstance(result, dg.SkipReason):
            return []
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(batches.name, list(request.partition_keys))
        return list(result.run_requests)


@pytest.fixture
def ticker(instance, resources) -> Ticker:
    return Ticker(instance, resources)


def keys(requests: list[dg.RunRequest]) -> list[str]:
    """The batches the runs cover, in order (a group run names its range in a tag)."""
    return [key for r in requests for key in r.tags[BATCHES_TAG].split(",")]


def test_no_files_skips(ticker: Ticker) -> None:
    assert ticker.tick() == []


def test_new_files_become_partitions_and_runs(ticker: Ticker, land, monkeypatch) -> None:
    monkeypatch.setenv("ANALYTICS_FILES_PER_RUN", "1")
    land("a.jsonl", jsonl([event(1)]))
    land("b.parquet", b"x")
    requests = ticker.tick()
    assert sorted(keys(requests)) == ["a", "b"]
    assert all(r.run_key.startswith(f"{r.partition_key}@") for r in requests)
    claims = [claims_from_tags(r.tags)[r.partition_key] for r in requests]
    assert sorted(c.file_name for c in claims) == ["a.jsonl", "b.parquet"]
    a = next(c for c in claims if c.batch_id == "a")
    assert (a.size, a.sha256) == (
        len(jsonl([event(1)])),
        hashlib.sha256(jsonl([event(1)])).hexdigest(),
    )
    assert sorted(ticker.instance.get_dynamic_partitions(batches.name)) == ["a", "b"]


def test_a_backlog_is_claimed_in_groups_of_batches(ticker: Ticker, land, monkeypatch) -> None:
    """Five files found at once with three per run: a run over the range of the first three
    batches (in claim order, as they were added), then one over the last two."""
    monkeypatch.setenv("ANALYTICS_FILES_PER_RUN", "3")
    for n in range(5):
        land(f"f{n}.jsonl", jsonl([event(n)]))
        time.sleep(0.01)
    first, second = ticker.tick()
    assert keys([first]) == ["f0", "f1", "f2"] and keys([second]) == ["f3", "f4"]
    assert first.partition_key is None and first.run_key.startswith("f0..f2@")
    assert sorted(claims_from_tags(first.tags)) == ["f0", "f1", "f2"]
    assert (first.tags[RANGE_START_TAG], first.tags[RANGE_END_TAG]) == ("f0", "f2")
    partitions = ticker.instance.get_dynamic_partitions(batches.name)
    assert partitions == ["f0", "f1", "f2", "f3", "f4"]


def test_cursor_claims_each_file_once(ticker: Ticker, land) -> None:
    land("a.jsonl", jsonl([event(1)]))
    assert keys(ticker.tick()) == ["a"]
    assert ticker.tick() == []
    time.sleep(0.01)
    land("b.jsonl", jsonl([event(2)]))
    assert keys(ticker.tick()) == ["b"]
    assert ticker.tick() == []


def test_late_rename_of_an_old_file_is_still_claimed(ticker: Ticker, land, landing: Path) -> None:
    """A producer that wrote long ago but renames now: ctime is the rename, so it is new."""
    tmp = landing / ".slow.jsonl.tmp"
    tmp.write_bytes(jsonl([event(1)]))
    os.utime(tmp, (1_000_000, 1_000_000))
    land("fast.jsonl", jsonl([event(2)]))
    assert keys(ticker.tick()) == ["fast"]
    time.sleep(0.01)
    tmp.rename(landing / "slow.jsonl")
    assert keys(ticker.tick()) == ["slow"]


def test_many_files_are_spread_over_ticks(ticker: Ticker, land, monkeypatch) -> None:
    monkeypatch.setenv("ANALYTICS_SENSOR_MAX_FILES", "40")
    for i in range(100):
        land(f"f{i:03d}.jsonl", jsonl([event(i)]))
    seen: list[str] = []
    for _ in range(3):
        seen += keys(ticker.tick())
    assert sorted(seen) == [f"f{i:03d}" for i in range(100)]
    assert ticker.tick() == []


def test_temporary_files_are_ignored_until_renamed(ticker: Ticker, land, landing) -> None:
    land(".c.jsonl.tmp", jsonl([event(1)]))
    land("c.jsonl.part", jsonl([event(1)]))
    assert ticker.tick() == []
    (landing / ".c.jsonl.tmp").rename(landing / "c.jsonl")
    assert keys(ticker.tick()) == ["c"]


def test_symlinks_are_refused(ticker: Ticker, land, landing: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(jsonl([event(1)]))
    (landing / "evil.jsonl").symlink_to(outside)
    (landing / "loop.jsonl").symlink_to(landing / "evil.jsonl")
    land("good.jsonl", jsonl([event(1)]))
    assert keys(ticker.tick()) == ["good"]
    assert ticker.tick() == []


def test_traversal_names_never_escape(ticker: Ticker, land, landing: Path) -> None:
    sub = landing / "sub"
    sub.mkdir()
    (sub / "inner.jsonl").write_bytes(jsonl([event(1)]))
    (landing / "..jsonl").write_bytes(jsonl([event(1)]))
    requests = ticker.tick()
    assert "inner" not in keys(requests)
    for key in keys(requests):
        assert "/" not in key and ".." not in key


def test_odd_names_get_safe_partition_keys(ticker: Ticker, land) -> None:
    names = ["my events.jsonl", "x';drop table events;--.jsonl", "naïve.jsonl"]
    for name in names:
        land(name, jsonl([event(1)]))
    requests = ticker.tick()
    assert sorted(keys(requests)) == sorted(batch_id_for(n) for n in names)
    for key in keys(requests):
        assert all(c.isalnum() or c in "-_" for c in key)


def test_second_file_with_a_claimed_batch_id_is_claimed_by_name(ticker: Ticker, land) -> None:
    """x.jsonl claimed, then x.parquet: the second is claimed under its own name (its run finds
    the batch in the ledger with other content and quarantines it), never silently dropped."""
    land("a.jsonl", jsonl([event(1)]))
    assert keys(ticker.tick()) == ["a"]
    land("a.parquet", b"x")
    (request,) = ticker.tick()
    assert claims_from_tags(request.tags)["a"].file_name == "a.parquet"
    assert ticker.tick() == []


def test_a_replaced_file_is_claimed_again(ticker: Ticker, land, landing: Path) -> None:
    land("a.jsonl", jsonl([event(1)]))
    (first,) = ticker.tick()
    land("a.jsonl", jsonl([event(1), event(2)]))  # same name, new content
    (second,) = ticker.tick()
    assert second.run_key != first.run_key
    assert (
        claims_from_tags(second.tags)["a"].sha256
        == hashlib.sha256((landing / "a.jsonl").read_bytes()).hexdigest()
    )


def test_a_tick_that_died_is_claimed_again_with_the_same_run_key(ticker: Ticker, land) -> None:
    """The daemon died after adding the partitions and before the cursor was saved: the next
    tick asks again with the same run key (Dagster drops it when the run exists), instead of
    taking the existing partition as proof of a run."""
    land("a.jsonl", jsonl([event(1)]))
    (first,) = ticker.tick()
    ticker.cursor = None
    (again,) = ticker.tick()
    assert again.run_key == first.run_key


def test_an_orphan_partition_is_not_taken_for_a_claim(ticker: Ticker, instance, land) -> None:
    instance.add_dynamic_partitions(batches.name, ["a"])  # a tick that never launched its run
    land("a.jsonl", jsonl([event(1)]))
    assert keys(ticker.tick()) == ["a"]


def test_claims_do_not_depend_on_ctime(instance, land) -> None:
    """A file whose ctime is older than everything claimed (clock stepped back, a mount) is
    claimed: only the batch id and the file's fingerprint count."""
    land("new.jsonl", jsonl([event(1)]))
    land("old.jsonl", jsonl([event(2)]))
    items = [i for i in scan(settings.landing_dir())]
    new = next(i for i in items if i.batch_id == "new")
    old = next(i for i in items if i.batch_id == "old")
    aged = LandedFile(old.path, old.batch_id, ctime_ns=1, size=old.size, mtime_ns=old.mtime_ns)
    plan = plan_claims([new], Cursor(), set(), 10)
    plan = plan_claims([new, aged], plan.cursor, {"new"}, 10)
    assert [c.batch_id for c in plan.claims] == ["old"]


def test_the_cursor_forgets_batches_whose_files_left(ticker: Ticker, land, landing: Path) -> None:
    land("a.jsonl", jsonl([event(1)]))
    ticker.tick()
    (landing / "a.jsonl").unlink()  # archived by its run
    assert ticker.tick() == []
    assert Cursor.parse(ticker.cursor).claimed == {}


def test_cursor_round_trip() -> None:
    cursor = Cursor(claimed={"a.jsonl": "0123456789ab"}, refused=["x"])
    assert Cursor.parse(cursor.dump()) == cursor
    assert Cursor.parse(None) == Cursor()
    # the ctime watermark of older versions reads as "nothing claimed"
    assert Cursor.parse('{"ctime_ns": 5, "names": ["a.jsonl"], "refused": []}') == Cursor()


def test_a_claim_whose_promised_retry_never_came_is_requested_again(
    ticker: Ticker, land, monkeypatch
) -> None:
    """The run failed, Dagster tagged it "will retry", and no retry came (the retry daemon
    missed it): the sensor requests the file again, under a run key of its own, twice at most."""
    from analytics_assets.definitions import defs
    from analytics_assets.defs.ingest import sensors

    monkeypatch.setattr(sensors, "LOST_RETRY_S", 0.0)
    land("a.jsonl", jsonl([event(1)]))
    (first,) = ticker.tick()
    job = defs.resolve_job_def("retrain_models")  # any job: the run only carries the tags
    run = ticker.instance.create_run_for_job(job_def=job, tags={"dagster/run_key": first.run_key})
    ticker.instance.report_run_failed(run)
    # as Dagster tags a failed run it means to retry (run_retries on in dagster.yaml)
    ticker.instance.add_run_tags(run.run_id, {"dagster/will_retry": "true"})
    (again,) = ticker.tick()
    assert again.run_key == f"{first.run_key}~again1"
    assert claims_from_tags(again.tags)["a"].file_name == "a.jsonl"
    assert ticker.instance.get_run_by_id(run.run_id).tags["dagster/will_retry"] == "false"
    # the second request ran and succeeded: nothing more
    second = ticker.instance.create_run_for_job(
        job_def=job, tags={"dagster/run_key": again.run_key}
    )
    ticker.instance.report_run_failed(second)  # failed without a promised retry: alerted, kept
    assert ticker.tick() == []
