"""One writer process of the concurrency tests: ``python -m tests.lake.writers KIND N SEED``.

``ingest``: commits N batches of 200 events through the real ingest path (``ingest_file``);
batch ``k`` of writer ``w`` shares 20 event ids with the batch of the next writer, so two
commits racing each other must store those once. ``rebuild``: rebuilds the ``sessions`` days
N times while the others ingest. Prints one JSON line: what it committed and how many
conflicts it retried.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from analytics_assets import settings
from analytics_assets.lib import lakehouse

PER_BATCH = 200
SHARED = 20


def records(writer: int, k: int) -> list[dict]:
    """Batch ``k`` of ``writer``: its own ids, plus ``SHARED`` ids it shares with writer+1."""
    own = [f"w{writer}-b{k}-{i}" for i in range(PER_BATCH - SHARED)]
    shared = [f"s{writer}-b{k}-{i}" for i in range(SHARED)]
    shared_prev = [f"s{writer - 1}-b{k}-{i}" for i in range(SHARED)] if writer else []
    ids = own + shared + shared_prev
    return [
        {
            "event_id": event_id,
            "event_type": "page_view",
            "customer_id": f"c{n % 17}",
            "session_id": f"s{n % 5}",
            "occurred_at": f"2024-03-0{1 + n % 3}T1{n % 10}:00:00Z",
            "device": "mobile",
        }
        for n, event_id in enumerate(ids)
    ]


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "conflict with another writer" in record.getMessage():
            self.retries += 1


def ingest(writer: int, batches: int) -> dict:
    from analytics_assets.defs.ingest.batch import ingest_file

    folder = settings.analytics_home() / f"writer{writer}"
    folder.mkdir(parents=True, exist_ok=True)
    committed = 0
    with lakehouse.connect() as conn:
        for k in range(batches):
            path = folder / f"w{writer}-b{k}.jsonl"
            path.write_text("\n".join(json.dumps(r) for r in records(writer, k)) + "\n")
            outcome = ingest_file(conn, Path(path), f"w{writer}-b{k}")
            committed += outcome.result.clean
    return {"writer": writer, "committed": committed}


def rebuild(times: int) -> dict:
    from datetime import date

    from analytics_assets.defs.analytics import tables, transforms

    start, end = date(2024, 3, 1), date(2024, 3, 4)
    with lakehouse.connect() as conn:
        while not lakehouse.exists(conn, "events"):  # the ingesting writers create it
            time.sleep(0.05)
        for _ in range(times):
            data = transforms.sessions(conn, start, end).fetch_arrow_table()
            tables.replace_range(conn, "sessions", data, "day", start, end)
            time.sleep(0.05)
    return {"rebuilds": times}


if __name__ == "__main__":
    counter = Counter()
    logging.getLogger("analytics_assets.lib.lakehouse").addHandler(counter)
    kind, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    started = time.perf_counter()
    result = ingest(seed, n) if kind == "ingest" else rebuild(n)
    result.update(retries=counter.retries, seconds=round(time.perf_counter() - started, 2))
    sys.stdout.write(json.dumps(result) + "\n")
