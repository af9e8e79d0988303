"""Reading customers' latest features from Feast's online store, fast, for scoring."""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from analytics_assets.lib.feast_online import (
    key_encoder,
    plain_sqlite_table,
    sqlite_path,
    sqlite_table,
)
from analytics_assets.lib.online_store import DOUBLE_TAG, INT64_TAG, JOIN_KEY

if TYPE_CHECKING:
    from feast import FeatureStore

_DOUBLE = struct.Struct("<d")


@dataclass(frozen=True)
class OnlineRows:
    """Latest feature values of a list of customers, in request order."""

    columns: dict[str, np.ndarray]
    """Per feature, float64 values; NaN where the customer or the value is missing."""
    known: np.ndarray
    """Whether the store holds any row of the customer."""
    as_of: list[datetime | None]
    """Per customer, the oldest event timestamp among the views read (UTC)."""


class OnlineReader:
    """Reads features of several views for a list of customers, as ``get_online_features``
    would return them.

    On a SQLite online store laid out as Feast (and :mod:`~analytics_assets.lib.online_store`)
    writes it, one ``SELECT`` per view with the doubles decoded from their fixed 9-byte encoding:
    Feast's own read parses a protobuf and a timestamp per value, most of a scoring request's
    budget for 100 customers (BENCHMARKS.md, "Feature store"). Any other store is read
    through ``FeatureStore.get_online_features``.
    """

    def __init__(self, store: FeatureStore, features: dict[str, list[str]]) -> None:
        self.store = store
        self.features = features
        self.names = [name for names in features.values() for name in names]
        views = {name: store.get_feature_view(name) for name in features}
        self._tables: dict[str, str] | None = None
        if store.config.online_store.type == "sqlite" and all(
            plain_sqlite_table(store, view) for view in views.values()
        ):
            self._tables = {name: sqlite_table(store, view) for name, view in views.items()}
            self._conn = sqlite3.connect(sqlite_path(store), check_same_thread=False)
            # reads map the file instead of copying pages through read() calls
            self._conn.execute("PRAGMA mmap_size = 1073741824")
            self._conn.execute("PRAGMA cache_size = -65536")
        self._key = key_encoder(store.config.entity_key_serialization_version)

    @property
    def reads_sqlite_directly(self) -> bool:
        return self._tables is not None

    def read(self, customer_ids: list[str]) -> OnlineRows:
        if self._tables is None:
            return self._read_with_feast(customer_ids)
        position: dict[bytes, list[int]] = {}
        for i, cid in enumerate(customer_ids):
            position.setdefault(self._key(cid), []).append(i)
        distinct = list(position)
        n = len(customer_ids)
        columns: dict[str, list[float]] = {name: [np.nan] * n for name in self.names}
        oldest: dict[bytes, int] = {}
        marks = ",".join("?" * len(distinct))
        for view, names in self.features.items():
            found = self._conn.execute(
                f'SELECT entity_key, feature_name, value, event_ts FROM "{self._tables[view]}" '
                f"WHERE entity_key IN ({marks}) AND feature_name IN ({','.join('?' * len(names))})",
                [*distinct, *names],
            ).fetchall()
            for key, name, blob, ts in found:
                value = _decode(blob)
                column = columns[name]
                for i in position[key]:
                    column[i] = value
                if ts < oldest.get(key, ts + 1):
                    oldest[key] = ts
        known = np.zeros(n, dtype=bool)
        as_of: list[datetime | None] = [None] * n
        for key, ts in oldest.items():
            stamp = datetime.fromtimestamp(int(ts), UTC)
            for i in position[key]:
                known[i] = True
                as_of[i] = stamp
        arrays = {name: np.array(values, dtype=float) for name, values in columns.items()}
        return OnlineRows(arrays, known, as_of)

    def _read_with_feast(self, customer_ids: list[str]) -> OnlineRows:
        refs = [f"{view}:{name}" for view, names in self.features.items() for name in names]
        response = self.store.get_online_features(
            features=refs, entity_rows=[{JOIN_KEY: c} for c in customer_ids]
        ).to_dict(include_event_timestamps=True)
        n = len(customer_ids)
        columns = {
            name: np.array([np.nan if v is None else v for v in response[name]], dtype=float)
            for name in self.names
        }
        known = np.zeros(n, dtype=bool)
        as_of: list[datetime | None] = [None] * n
        for name in self.names:
            for i, (value, ts) in enumerate(
                zip(response[name], response[f"{name}__ts"], strict=True)
            ):
                if value is None:
                    continue
                known[i] = True
                stamp = datetime.fromtimestamp(ts, UTC)  # epoch seconds
                as_of[i] = stamp if as_of[i] is None else min(as_of[i], stamp)
        return OnlineRows(columns, known, as_of)


def _decode(blob: bytes) -> float:
    """A serialized ``feast.types.Value`` as a float (NaN when empty)."""
    if len(blob) == 9 and blob[0] == DOUBLE_TAG:
        return _DOUBLE.unpack_from(blob, 1)[0]
    if not blob:
        return np.nan
    if blob[0] == INT64_TAG and len(blob) == 2:  # int64_val under 128: one varint byte
        return float(blob[1])
    from feast.protos.feast.types.Value_pb2 import Value

    value = Value.FromString(blob)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return np.nan
    return float(getattr(value, kind))
