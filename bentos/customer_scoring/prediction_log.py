"""Every prediction the service makes, with the model version and the features it saw, as
Parquet under ``$ANALYTICS_HOME/predictions/<model>/date=<day>/`` (what monitoring reads).

Requests only append to a buffer; a daemon thread writes it out every few seconds (and at
shutdown), one file per model and feature set, renamed into place when complete.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

logger = logging.getLogger("bentoml.customer_scoring")


class PredictionLog:
    def __init__(self, root: Path, flush_seconds: float = 5.0, max_rows: int = 50_000) -> None:
        self.root = Path(root)
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
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
        columns: dict[str, object] = {
            "logged_at": [datetime.now(UTC)] * n,
            "endpoint": [endpoint] * n,
            "request_id": [request_id] * n,
            "model": [model.name] * n,
            "model_version": [model.version] * n,
            "role": [model.role] * n,
            "served": [served] * n,
            "feature_service": [model.feature_service] * n,
            "customer_id": customer_ids,
            "known": known,
            "features_as_of": as_of,
            **{name: features[name] for name in model.features},
            **outputs,
            **{name: [value] * n for name, value in params.items()},
        }
        with self._lock:
            self._pending[(model.name, tuple(columns))].append(columns)
            self._rows += n
            full = self._rows >= self.max_rows
        if full:
            self._wake.set()

    def flush(self) -> list[Path]:
        """Write what is buffered; returns the files written."""
        import polars as pl

        from analytics_assets.lib.atomic_files import write_parquet

        with self._lock:
            pending, self._pending, self._rows = self._pending, defaultdict(list), 0
        written = []
        for (model, names), chunks in pending.items():
            frame = pl.DataFrame(
                {name: _concat([chunk[name] for chunk in chunks]) for name in names},
                strict=False,
            )
            day = frame["logged_at"][0].date().isoformat()
            self._seq += 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            path = self.root / model / f"date={day}" / f"{stamp}-{os.getpid()}-{self._seq}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(frame, path)
            written.append(path)
        return written

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
        self.flush()


def _concat(parts: list) -> list | np.ndarray:
    if all(isinstance(part, np.ndarray) for part in parts):
        return np.concatenate(parts)
    return [value for part in parts for value in part]
