"""The CDNOW replay: every transaction of the source file arrives, once, with its value."""

from __future__ import annotations

from decimal import Decimal

import pytest

from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.lib import lakehouse
from analytics_assets.producers import cdnow
from analytics_assets.producers.files import write_batch


def source_totals(name: str) -> tuple[int, int, Decimal, int]:
    """Rows, customers, revenue and CDs computed straight from the text file."""
    rows = [
        line.split()
        for line in cdnow.dataset_path(name).read_text().splitlines()
        if line.split() and line.split()[0].isdigit()
    ]
    value, qty = (3, 2) if len(rows[0]) == 4 else (4, 3)
    return (
        len(rows),
        len({r[0] for r in rows}),
        sum(Decimal(r[value]) for r in rows),
        sum(int(r[qty]) for r in rows),
    )


@pytest.fixture(scope="module")
def master_events():
    return cdnow.to_events(cdnow.read_transactions(cdnow.dataset_path(cdnow.MASTER)))


def test_source_file_is_the_published_one() -> None:
    rows, customers, _, _ = source_totals(cdnow.MASTER)
    assert (rows, customers) == (69_659, 23_570)
    assert source_totals(cdnow.SAMPLE)[1] == 2_357


def test_event_ids_are_unique_and_deterministic(master_events) -> None:
    assert master_events["event_id"].n_unique() == master_events.height
    again = cdnow.to_events(cdnow.read_transactions(cdnow.dataset_path(cdnow.MASTER)))
    assert again.equals(master_events)


def test_weekly_batches_cover_every_event_once(master_events) -> None:
    parts = list(cdnow.batches(master_events, 7))
    assert len(parts) == 78
    assert parts[0][0] == "cdnow-1997-01-01"
    assert sum(p.height for _, p in parts) == master_events.height
    for batch_id, part in parts:
        start = part["occurred_at"].min().date().isoformat()
        assert batch_id <= f"cdnow-{start}"


def test_replay_through_ingest_reproduces_the_source(tmp_path, master_events) -> None:
    rows, customers, revenue, cds = source_totals(cdnow.MASTER)
    conn = lakehouse.connect(where=lakehouse.Location.under(tmp_path))
    for batch_id, part in cdnow.batches(master_events, 7):
        path = write_batch(part, tmp_path / "landing", batch_id, "jsonl")
        assert ingest_file(conn, path, batch_id).result.quarantined == 0
    got = conn.execute(
        "SELECT count(*), count(DISTINCT customer_id), sum(amount::DECIMAL(18,2)), sum(quantity) "
        "FROM events"
    ).fetchone()
    assert got == (rows, customers, revenue, cds)
    assert conn.execute("SELECT count(*) FROM quarantined_events").fetchone() == (0,)
