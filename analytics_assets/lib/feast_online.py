"""Feast's online store as Feast names it: entity keys, table ids, versioned view names, the
layout :mod:`analytics_assets.lib.online_store` writes by, and the full refresh writer.

These take a ``FeatureStore`` and use Feast's own functions (Feast is imported where used);
the streaming lane needs none of them at run time, only the :class:`Layout` recorded here at
each ``feast apply``. Writes go through :mod:`~analytics_assets.lib.online_store`, which writes
the very bytes Feast's own writer does (tests compare them) a column at a time and keeps each
customer's newest row: Feast's own materialization turns every value into a protobuf and
writes SQLite one statement per value (about 8k customer rows/s here). Stores other than SQLite
and plain Redis get Feast's own ``write_to_online_store``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from analytics_assets.lib import online_store
from analytics_assets.lib.online_store import JOIN_KEY, Layout, ViewLayout

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

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


def sqlite_table(store: FeatureStore, view: FeatureView) -> str:
    from feast.infra.online_stores.helpers import compute_table_id

    config = store.config
    return compute_table_id(
        config.project, view, config.registry.enable_online_feature_view_versioning
    )


def sqlite_path(store: FeatureStore) -> Path:
    path = Path(store.config.online_store.path)
    return path if path.is_absolute() else Path(store.repo_path) / path


def plain_sqlite_table(store: FeatureStore, view: FeatureView) -> bool:
    """Whether the view's table has the layout written and read here (vector search and
    numeric-search layouts are left to Feast)."""
    config = store.config.online_store
    if config.vector_enabled or getattr(config, "enable_openai_compatible_store", False):
        return False
    return online_store.plain_sqlite_layout(sqlite_path(store), sqlite_table(store, view))


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
                sqlite_table=sqlite_table(store, view),
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
    store: FeatureStore, batches: list[tuple[FeatureView, pa.Table]], replace: bool = False
) -> dict[str, int]:
    """Write each view's rows (latest per customer: ``customer_id``, ``event_timestamp``,
    ``created_at`` and the view's features) into the online store, keeping any newer row the
    store already holds (``replace``: the rows become the store's content, after a restore);
    returns per view the customers whose values were written."""
    views = [view for view, _ in batches]
    layout = layout_of(store, views)
    config = store.config.online_store
    kind = config.type
    plain = kind != "sqlite" or all(plain_sqlite_table(store, view) for view in views)
    if layout is not None and plain:
        target = {"type": kind, **config.model_dump(exclude={"type"})}
        if kind == "sqlite":
            target["path"] = str(sqlite_path(store))
        try:
            return online_store.write(
                layout, target, {view.name: rows for view, rows in batches}, replace
            )
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
