"""Every prediction the service makes, with the model version and the features it saw, as
Parquet under ``$ANALYTICS_HOME/predictions/<model>/date=<day>/`` (what monitoring reads).

Requests only append one small record per request to a buffer (no per-row Python objects beyond
the ids); a daemon thread writes it out every few seconds (and at shutdown), one file per model
and feature set, renamed into place when complete, building the columns with vectorized
repeats and concatenations: the flush holds the interpreter lock for milliseconds, not the
event loop's hundreds (``BENCHMARKS.md``, serving). A write that
fails (a full disk, a permission) puts its rows back for the next flush; the buffer holds at
most ``max_buffer_rows`` and counts what it had to drop beyond that (``dropped_rows``, in
``/metrics``), so a disk that stays full costs log rows, never the service's memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np

logger = logging.getLogger("bentoml.customer_scoring")


class PredictionLog:
    def __init__(
        self,
        root: Path,
        flush_seconds: float = 5.0,
        max_rows: int = 50_000,
        max_buffer_rows: int = 1_000_000,
        on_drop=None,
    ) -> None:
        self.root = Path(root)
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.max_buffer_rows = max_buffer_rows
        self.dropped_rows = 0
        self._on_drop = on_drop
        self._pending: dict[tuple, list[dict]] = defaultdict(list)
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def record(
        self,
        *,
        endpoint: str,
        request_id: str,
        model,
        served: bool,
        customer_ids: list[str | None],
        known: np.ndarray,
        as_of: list[datetime | None],
        features: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        params: dict[str, object],
    ) -> None:
        n = len(customer_ids)
        chunk = _Chunk(
            n,
            time.time_ns() // 1000,
            (endpoint, request_id, model.name, model.version, model.role, served),
            model.feature_service,
            customer_ids,
            known,
            as_of,
            [features[name] for name in model.features],
            list(outputs.values()),
            list(params.values()),
        )
        key = (model.name, tuple(model.features), tuple(outputs), tuple(params))
        with self._lock:
            if self._rows + n > self.max_buffer_rows:
                self.dropped_rows += n
                dropped = True
            else:
                self._pending[key].append(chunk)
                self._rows += n
                dropped = False
            full = self._rows >= self.max_rows
        if dropped:
            if self._on_drop is not None:
                self._on_drop(n)
            logger.warning("prediction log buffer full (%d rows): dropped %d", self._rows, n)
        if full:
            self._wake.set()

    def flush(self) -> list[Path]:
        """Write what is buffered; returns the files written."""
        from analytics_assets.lib.atomic_files import write_parquet

        with self._lock:
            pending, self._pending, self._rows = self._pending, defaultdict(list), 0
        written = []
        failed: dict[tuple, list[_Chunk]] = {}
        error: Exception | None = None
        for key, chunks in pending.items():
            try:
                frame = _frame(key, chunks)
                day = frame["logged_at"][0].date().isoformat()
                self._seq += 1
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
                name = f"{stamp}-{os.getpid()}-{self._seq}.parquet"
                path = self.root / key[0] / f"date={day}" / name
                write_parquet(frame, path)
                written.append(path)
            except Exception as exc:  # kept for the next flush, in order
                failed[key] = chunks
                error = exc
        if failed:
            self._requeue(failed)
            raise OSError(f"prediction log not written, rows kept for the next try: {error}")
        return written

    def _requeue(self, failed: dict[tuple, list[dict]]) -> None:
        with self._lock:
            for key, chunks in failed.items():
                rows = sum(chunk.n for chunk in chunks)
                room = self.max_buffer_rows - self._rows
                if rows > room:  # the oldest go first: the buffer stays bounded
                    kept, dropped = [], 0
                    for chunk in reversed(chunks):
                        size = chunk.n
                        if size <= room:
                            kept.insert(0, chunk)
                            room -= size
                        else:
                            dropped += size
                    chunks, rows = kept, rows - dropped
                    self.dropped_rows += dropped
                    if self._on_drop is not None and dropped:
                        self._on_drop(dropped)
                self._pending[key] = chunks + self._pending.get(key, [])
                self._rows += rows

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
                try:
                    self.flush()
                except Exception:
                    logger.exception("could not write the prediction log")

        self._thread = threading.Thread(target=loop, name="prediction-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        except OSError:
            logger.exception("prediction log rows lost at shutdown")


class _Chunk(NamedTuple):
    """One request's rows for one model, as recorded."""

    n: int
    logged_at_us: int
    scalars: tuple
    """endpoint, request_id, model, model_version, role, served"""
    feature_service: str
    customer_ids: list
    known: np.ndarray
    as_of: list
    features: list[np.ndarray]
    outputs: list[np.ndarray]
    params: list


SCALARS = ("endpoint", "request_id", "model", "model_version", "role", "served")


def _frame(key: tuple, chunks: list[_Chunk]):
    """The log's columns for ``chunks`` (one key: same model, features, outputs, params)."""
    import polars as pl

    _, features, outputs, params = key
    lengths = np.fromiter((c.n for c in chunks), dtype=np.int64, count=len(chunks))
    index = pl.Series(np.repeat(np.arange(len(chunks)), lengths))

    def per_request(name: str, values: list, dtype=None) -> pl.Series:
        return pl.Series(name, values, dtype=dtype, strict=False).gather(index)

    columns = [
        per_request("logged_at", [c.logged_at_us for c in chunks], pl.Int64)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"),
        *(per_request(name, [c.scalars[i] for c in chunks]) for i, name in enumerate(SCALARS)),
        per_request("feature_service", [c.feature_service for c in chunks]),
        pl.Series(
            "customer_id",
            list(chain.from_iterable(c.customer_ids for c in chunks)),
            dtype=pl.String,
        ),
        pl.Series("known", np.concatenate([c.known for c in chunks]).astype(bool)),
        pl.Series(
            "features_as_of", list(chain.from_iterable(c.as_of for c in chunks)), strict=False
        ),
        *(
            pl.Series(name, np.concatenate([c.features[i] for c in chunks]))
            for i, name in enumerate(features)
        ),
        *(
            pl.Series(name, np.concatenate([c.outputs[i] for c in chunks]))
            for i, name in enumerate(outputs)
        ),
        *(per_request(name, [c.params[i] for c in chunks]) for i, name in enumerate(params)),
    ]
    return pl.DataFrame(columns)
