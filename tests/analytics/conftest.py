"""A hand-computed two-customer fixture, ingested through the real ingest path."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from analytics_assets.defs.ingest.batch import ingest_file
from analytics_assets.lib import lakehouse
from tests.conftest import event, jsonl, purchase

D1, D2, D3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)

# Customer a: three events 10:00-10:20 (one session, a $30 purchase of 2 units), then 11:00
# after a 40-minute gap (a second session). Customer b: 23:50 on D1 and a $5 purchase at 00:10
# on D2: one session across midnight, which belongs to D1.
RECORDS = [
    event(1, customer_id="a", occurred_at="2024-03-01T10:00:00Z", device="mobile"),
    event(2, customer_id="a", event_type="add_to_cart", occurred_at="2024-03-01T10:10:00Z"),
    purchase(3, 30.0, customer_id="a", occurred_at="2024-03-01T10:20:00Z", quantity=2),
    event(4, customer_id="a", occurred_at="2024-03-01T11:00:00Z", device="desktop"),
    event(5, customer_id="b", occurred_at="2024-03-01T23:50:00Z", device="tablet"),
    purchase(6, 5.0, customer_id="b", occurred_at="2024-03-02T00:10:00Z", device="tablet"),
]


def ingest(beside: Path, batch_id: str, records: list[dict]) -> None:
    """Ingest ``records`` as batch ``batch_id`` into the home's lakehouse (the file is written
    beside ``beside``)."""
    path = beside.parent / f"{batch_id}.jsonl"
    path.write_bytes(jsonl(records))
    with lakehouse.connect() as conn:
        assert ingest_file(conn, path, batch_id).result.quarantined == 0
