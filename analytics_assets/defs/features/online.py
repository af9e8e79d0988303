"""Feast's online store: the layout the streaming writer needs (from the registry), the full
refresh writer, and the fast reader for scoring (:class:`OnlineReader`).

Writes go through :mod:`analytics_assets.lib.online_store`, which produces the very bytes Feast's
own writer does (tests compare them) a column at a time, keeps each customer's newest row, and
imports no Feast. Feast's own materialization turns every value into a protobuf and writes SQLite
one statement per value (about 8k customer rows/s here). Stores other than SQLite and plain Redis
get Feast's own ``write_to_online_store``.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from analytics_assets.lib import online_store
from analytics_assets.lib.online_store import JOIN_KEY, Layout, ViewLayout

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

_DOUBLE_TAG = 0x29  # field 5 (double_val), wire type 1 (64-bit)
_DOUBLE = struct.Struct("<d")
_INT64_TAG = 0x20  # field 4 (int64_val), wire type 0 (varint)
_KINDS = {"Float64": "double", "Float32": "double", "Int64": "int64", "Int32": "int64"}
_KINDS |= {"String": "string", "Bool": "bool"}


def key_encoder(version: int) -> Callable[[str], bytes]:
    """Feast's serialized entity key of a customer id (as its online stores key rows).

    For one string join key Feast's encoding is a fixed head, the value's length (4 bytes, little
    endian) and its UTF-8 bytes. The head is taken from Feast's own serializer and the layout
    checked against it; any other layout falls back to calling the serializer per key.
    """
    feast_key = _feast_key(version)
    head = _key_head(feast_key)
    if head is None:
        return feast_key
    return Layout(project="", key_head=head.hex()).entity_key


def _feast_key(version: int) -> Callable[[str], bytes]:
    """Feast's own serializer of a customer id's entity key."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    def feast_key(cid: str) -> bytes:
        proto = EntityKey(join_keys=[JOIN_KEY], entity_values=[Value(string_val=cid)])
        return serialize_entity_key(proto, entity_key_serialization_version=version)

    return feast_key


def _key_head(feast_key: Callable[[str], bytes]) -> bytes | None:
    """The fixed head of Feast's key when the layout is head + length + UTF-8, else ``None``."""
    empty = feast_key("")
    head = empty[:-4]
    layout = Layout(project="", key_head=head.hex())
    probes = ("a", "customer-00042", "\u00fc" * 40, "x" * 300)
    if empty[-4:] == b"\0\0\0\0" and all(layout.entity_key(c) == feast_key(c) for c in probes):
        return head
    return None


def entity_keys(customer_ids: pa.ChunkedArray | pa.Array, version: int) -> list[bytes]:
    """Feast's serialized entity key of each customer id."""
    encode = key_encoder(version)
    return [encode(cid) for cid in customer_ids.to_pylist()]


def _sqlite_table(store: FeatureStore, view: FeatureView) -> str:
    from feast.infra.online_stores.helpers import compute_table_id

    config = store.config
    return compute_table_id(
        config.project, view, config.registry.enable_online_feature_view_versioning
    )


def _sqlite_path(store: FeatureStore) -> Path:
    path = Path(store.config.online_store.path)
    return path if path.is_absolute() else Path(store.repo_path) / path


def _plain_sqlite_table(store: FeatureStore, view: FeatureView) -> bool:
    """Whether the view's table has the layout written and read here (vector search and
    numeric-search layouts are left to Feast)."""
    config = store.config.online_store
    if config.vector_enabled or getattr(config, "enable_openai_compatible_store", False):
        return False
    return online_store.plain_sqlite_layout(_sqlite_path(store), _sqlite_table(store, view))


def layout_of(store: FeatureStore, views: list[FeatureView]) -> Layout | None:
    """What :mod:`~analytics_assets.lib.online_store` needs to write ``views`` without Feast,
    from Feast's own naming functions; ``None`` when a key or value layout is not one it
    writes (then Feast's writer is used)."""
    from feast.infra.online_stores.helpers import compute_versioned_name

    config = store.config
    versioned = config.registry.enable_online_feature_view_versioning
    head = _key_head(_feast_key(config.entity_key_serialization_version))
    if head is None:
        return None
    layouts = []
    for view in views:
        kinds = {f.name: _KINDS.get(str(f.dtype)) for f in view.features}
        if None in kinds.values():
            return None
        layouts.append(
            ViewLayout(
                name=view.name,
                sqlite_table=_sqlite_table(store, view),
                redis_name=compute_versioned_name(view, versioned),
                features=kinds,
            )
        )
    return Layout(project=config.project, key_head=head.hex(), views=layouts)


def record_layout(store: FeatureStore, views: list[FeatureView], path: Path) -> Layout | None:
    """Save the layout of ``views`` where the streaming lane reads it (or remove a stale one
    when the views cannot be written without Feast)."""
    layout = layout_of(store, views) if views else None
    if layout is None:
        path.unlink(missing_ok=True)
    else:
        layout.save(path)
    return layout


def write_latest(
    store: FeatureStore, batches: list[tuple[FeatureView, pa.Table]]
) -> dict[str, int]:
    """Write each view's rows (latest per customer: ``customer_id``, ``event_timestamp``,
    ``created_at`` and the view's features) into the online store, keeping any newer row the
    store already holds; returns per view the customers whose values were written."""
    views = [view for view, _ in batches]
    layout = layout_of(store, views)
    config = store.config.online_store
    kind = config.type
    plain = kind != "sqlite" or all(_plain_sqlite_table(store, view) for view in views)
    if layout is not None and plain:
        target = {"type": kind, **config.model_dump(exclude={"type"})}
        if kind == "sqlite":
            target["path"] = str(_sqlite_path(store))
        try:
            return online_store.write(layout, target, {view.name: rows for view, rows in batches})
        except online_store.NotSupportedHere:
            pass
    for view, rows in batches:
        if rows.num_rows:
            _write_with_feast(store, view, rows)
    return {view.name: rows.num_rows for view, rows in batches}


def _write_with_feast(store: FeatureStore, view: FeatureView, rows: pa.Table) -> int:
    names = [JOIN_KEY, "event_timestamp", "created_at", *(f.name for f in view.features)]
    store.write_to_online_store(view.name, df=rows.select(names).to_pandas())
    return rows.num_rows


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

    On a SQLite online store laid out as :func:`write_latest` (and Feast) writes it, one
    ``SELECT`` per view with the doubles decoded from their fixed 9-byte encoding: Feast's own
    read parses a protobuf and a timestamp per value, about 6 ms for 100 customers of
    ``churn_v1`` here against the 10 ms a scoring request may take. Any other store is read
    through ``FeatureStore.get_online_features``.
    """

    def __init__(self, store: FeatureStore, features: dict[str, list[str]]) -> None:
        self.store = store
        self.features = features
        self.names = [name for names in features.values() for name in names]
        views = {name: store.get_feature_view(name) for name in features}
        self._tables: dict[str, str] | None = None
        if store.config.online_store.type == "sqlite" and all(
            _plain_sqlite_table(store, view) for view in views.values()
        ):
            self._tables = {name: _sqlite_table(store, view) for name, view in views.items()}
            self._conn = sqlite3.connect(_sqlite_path(store), check_same_thread=False)
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
    if len(blob) == 9 and blob[0] == _DOUBLE_TAG:
        return _DOUBLE.unpack_from(blob, 1)[0]
    if not blob:
        return np.nan
    if blob[0] == _INT64_TAG and len(blob) == 2:  # int64_val under 128: one varint byte
        return float(blob[1])
    from feast.protos.feast.types.Value_pb2 import Value

    value = Value.FromString(blob)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return np.nan
    return float(getattr(value, kind))
