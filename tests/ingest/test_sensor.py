"""landing_sensor evaluated with real sensor contexts against a real (ephemeral) instance."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.defs.ingest.landing import batch_id_for
from analytics_assets.defs.ingest.partitions import batches
from analytics_assets.defs.ingest.sensors import BATCHES_TAG, Cursor, build_landing_sensor
from analytics_assets.metadata import RANGE_END_TAG, RANGE_START_TAG
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
    assert all(r.run_key == r.partition_key for r in requests)
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
    assert first.partition_key is None and first.run_key == "f0..f2"
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


def test_second_file_with_a_claimed_batch_id_is_skipped(ticker: Ticker, land) -> None:
    land("a.jsonl", jsonl([event(1)]))
    assert keys(ticker.tick()) == ["a"]
    time.sleep(0.01)
    land("a.parquet", b"x")
    assert ticker.tick() == []


def test_reset_cursor_does_not_rerun_claimed_batches(ticker: Ticker, land) -> None:
    land("a.jsonl", jsonl([event(1)]))
    ticker.tick()
    ticker.cursor = None
    assert ticker.tick() == []


def test_cursor_round_trip() -> None:
    cursor = Cursor(ctime_ns=5, names=["a.jsonl"], refused=["x"])
    assert Cursor.parse(cursor.dump()) == cursor
    assert Cursor.parse(None) == Cursor()
