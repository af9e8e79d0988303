"""The live feed's fan-out in one process, on the real lakehouse of ``lake_home``: a subscriber
that stops reading is dropped and the others get every event; resumes; the subscriber limit;
heartbeats; figures as of a snapshot."""

from __future__ import annotations

import asyncio

import pytest

from analytics_assets.lib import lake, lakehouse
from bentos.analytics_reader import pulse
from bentos.analytics_reader.live import HISTORY, QUEUE, Feed, Full

FIRST_ID = 10_000  # above any real snapshot id of the test lakehouse


@pytest.fixture
def feed(lake_home):
    where = lakehouse.Location.under(lake_home / "lakehouse")
    db = lake.connect(where=where)
    made = Feed(db, where, poll_s=0.05, heartbeat_s=0.2, max_subscribers=3)
    yield made
    made.stop()
    db.close()


def event(i: int) -> bytes:
    return f"id: {i}\nevent: pulse\ndata: {{}}\n\n".encode()


async def collect(feed: Feed, subscriber, backlog, until: int, into: list) -> None:
    async for chunk in feed.stream(subscriber, backlog):
        into.append(chunk)
        if chunk == event(until):
            return


def test_a_subscriber_that_stops_reading_is_dropped_and_slows_no_one(feed) -> None:
    async def main() -> None:
        slow, _ = feed.subscribe(None)
        fast, backlog = feed.subscribe(None)
        got: list[bytes] = []
        last = FIRST_ID + QUEUE + 10
        reading = asyncio.create_task(collect(feed, fast, backlog, last, got))
        for i in range(FIRST_ID, last + 1):
            feed._fan_out(i, event(i))
            await asyncio.sleep(0)
        await asyncio.wait_for(reading, 5)
        assert slow.dropped and slow not in feed.subscribers and feed.dropped == 1
        assert [c for c in got if c.startswith(b"id: 1")] == [
            event(i) for i in range(FIRST_ID, last + 1)
        ]
        assert fast not in feed.subscribers  # its stream ended: unsubscribed

    asyncio.run(main())


def test_resume_limit_and_heartbeats(feed) -> None:
    async def main() -> None:
        for i in range(FIRST_ID, FIRST_ID + 5):
            feed._fan_out(i, event(i))
        _, backlog = feed.subscribe(FIRST_ID + 2)
        assert backlog == [event(FIRST_ID + 3), event(FIRST_ID + 4)]
        _, newest_only = feed.subscribe(None)
        assert newest_only == [event(FIRST_ID + 4)]
        third, nothing = feed.subscribe(FIRST_ID + 4)
        assert nothing == []
        with pytest.raises(Full):
            feed.subscribe(None)
        chunks = []
        stream = feed.stream(third, nothing)
        for _ in range(3):
            chunks.append(await asyncio.wait_for(anext(stream), 2))
        assert chunks[0] == b": connected\n\n" and b": heartbeat\n\n" in chunks[1:]
        await stream.aclose()
        assert third not in feed.subscribers
        feed.subscribe(None)  # room again
        for i in range(FIRST_ID + 5, FIRST_ID + 5 + HISTORY + 1):
            feed._fan_out(i, event(i))
        _, too_old = feed.subscribe(FIRST_ID)  # further back than kept: the newest
        assert too_old == [event(FIRST_ID + 5 + HISTORY)]

    asyncio.run(main())


def test_figures_are_those_of_their_snapshot(lake_home) -> None:
    where = lakehouse.Location.under(lake_home / "lakehouse")
    with lake.connect(where=where) as db:
        cursor = lake.cursor(db)
        current = pulse.snapshot_id(cursor)
        found = pulse.figures(db, current)
        first = pulse.snapshots_after(cursor, 0, current)[0]
        before = pulse.figures(db, first)  # before any batch
        assert before["snapshot"] == first and "last_batch" not in before
        (clean,) = cursor.execute(
            "SELECT clean FROM ingest_ledger ORDER BY committed_at DESC LIMIT 1"
        ).fetchone()
        day = cursor.execute(
            "SELECT max(occurred_at AT TIME ZONE 'UTC')::DATE FROM events"
        ).fetchone()[0]
        orders, revenue = cursor.execute(
            "SELECT count(*), sum(amount) FROM events WHERE event_type = 'purchase' "
            "AND (occurred_at AT TIME ZONE 'UTC')::DATE = ?",
            [day],
        ).fetchone()
    assert found["day"] == day.isoformat()
    assert found["orders"] == orders and found["revenue"] == round(revenue, 2)
    assert found["last_batch"]["events"] == clean and found["last_batch"]["source"] == "files"
    assert found["active_sessions"] >= 1
