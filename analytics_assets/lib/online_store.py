"""Writing customer rows into Feast's online store without importing Feast, never back in time.

``import feast`` costs about 5 CPU-seconds here, which the streaming lane would pay in every run
that brings a batch's customers online. What a write needs from Feast is small and stable: the
table (SQLite) or hash field names (Redis) of each feature view, the serialized entity key of a
customer, and the protobuf encoding of a value and a timestamp. ``feast_definitions`` records the
first two in a :class:`Layout` file after each ``feast apply`` (built with Feast's own functions);
the encodings are the protobuf wire format, pinned against Feast's protobufs by tests.

Every write keeps the newest row: a row whose event timestamp is older than the one stored for
the customer and view is skipped, inside the store (an ``ON CONFLICT ... WHERE`` on SQLite, a
Lua script on Redis), so a late batch or a full refresh from an older snapshot cannot overwrite a
fresher streamed row, even when both write at once. Feast's SQLite store itself overwrites
whatever the event time; its Redis store skips older rows but reads and writes in two steps.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics_assets import settings

JOIN_KEY = "customer_id"
SQLITE_COLUMNS = ["entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts"]
DOUBLE_TAG = 0x29  # feast.types.Value field 5 (double_val), wire type 1 (64-bit)
INT64_TAG = 0x20  # field 4 (int64_val), varint
_STRING_TAG = 0x12  # field 2 (string_val), length-delimited
_BOOL_TAG = 0x38  # field 7 (bool_val), varint
_ROWS_PER_STATEMENT = 160  # x 6 parameters, under SQLite's 999-parameter floor
_REDIS_FLUSH = 10_000


class NotSupportedHere(Exception):
    """The configured online store is not one this writer handles (use Feast's writer)."""


@dataclass(frozen=True)
class ViewLayout:
    name: str
    sqlite_table: str
    """Feast's table id on SQLite (``<project>_<view>``, versioned when versioning is on)."""
    redis_name: str
    """The (versioned) view name Feast hashes field names with on Redis."""
    features: dict[str, str]
    """Feature name -> value kind (``double``, ``int64``, ``string``, ``bool``)."""


@dataclass(frozen=True)
class Layout:
    """What a write needs to know of the registered feature views, recorded at apply time."""

    project: str
    key_head: str
    """Hex of the serialized entity key up to the customer id's length (one string join key)."""
    views: list[ViewLayout] = field(default_factory=list)

    def save(self, path: Path) -> None:
        from analytics_assets.lib.atomic_files import write_text

        write_text(path, json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Layout | None:
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        views = [ViewLayout(**v) for v in data.pop("views")]
        return cls(**data, views=views)

    def feature_names(self) -> list[str]:
        return sorted({name for view in self.views for name in view.features})

    def entity_key(self, customer_id: str) -> bytes:
        raw = customer_id.encode()
        return bytes.fromhex(self.key_head) + len(raw).to_bytes(4, "little") + raw


def online_store_config() -> dict:
    """The online store the code location uses (:func:`feast_repo.config_dict`; no Feast
    import)."""
    from analytics_assets.lib.feast_repo import config_dict

    repo = settings.feature_repo_path()
    config = dict(config_dict(repo)["online_store"])
    if config.get("type") == "sqlite":
        path = Path(config.get("path", "data/online.db"))
        config["path"] = str(path if path.is_absolute() else repo / path)
    return config


def registry_may_exist() -> bool:
    """False only when the registry is a file (or a SQLite database) that does not exist:
    nothing applied yet."""
    env = settings.feast_environment()
    path = env["FEAST_REGISTRY_PATH"]
    if env["FEAST_REGISTRY_TYPE"] == "file":
        return Path(path).exists()
    if path.startswith("sqlite:///"):
        return Path(path.removeprefix("sqlite:///")).exists()
    return True


def _varint(value: int) -> bytes:
    value &= 0xFFFF_FFFF_FFFF_FFFF  # negative int64: ten bytes of two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_values(column: pa.ChunkedArray | pa.Array) -> list[bytes]:
    """Serialized ``feast.types.Value`` of every element; null (or NaN) is the empty Value."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_floating(column.type):
        values = column.cast(pa.float64())
        missing = pc.or_kleene(pc.is_null(values), pc.is_nan(values)).fill_null(True)
        raw = np.zeros(len(values), dtype="V9")
        view = raw.view(np.uint8).reshape(-1, 9)
        view[:, 0] = DOUBLE_TAG
        view[:, 1:] = (
            values.fill_null(0.0).to_numpy(zero_copy_only=False).astype("<f8").view(np.uint8)
        ).reshape(-1, 8)
        blob = raw.tobytes()
        out = [blob[i : i + 9] for i in range(0, len(blob), 9)]
        for i in np.flatnonzero(missing.to_numpy(zero_copy_only=False)):
            out[i] = b""
        return out
    if pa.types.is_boolean(column.type):
        return [b"" if v is None else bytes((_BOOL_TAG, int(v))) for v in column.to_pylist()]
    if pa.types.is_integer(column.type):
        cache: dict[int | None, bytes] = {None: b""}
        result = []
        for v in column.to_pylist():
            blob = cache.get(v)
            if blob is None:
                blob = cache[v] = bytes((INT64_TAG,)) + _varint(v)
            result.append(blob)
        return result
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return [
            b"" if v is None else bytes((_STRING_TAG,)) + _varint(len(b := v.encode())) + b
            for v in column.to_pylist()
        ]
    raise TypeError(f"no online encoding for {column.type}")


def encode_timestamp(instant: datetime) -> bytes:
    """A serialized ``google.protobuf.Timestamp`` (what Feast's Redis store keeps per view)."""
    aware = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    seconds = int(aware.timestamp() // 1)
    nanos = aware.microsecond * 1000
    out = b"\x08" + _varint(seconds) if seconds else b""
    return out + (b"\x10" + _varint(nanos) if nanos else b"")


def _texts(column: pa.ChunkedArray) -> list[str | None]:
    """``value_text`` as Feast fills it: ``str()`` of the Python value, null for null."""
    return [None if v is None or v != v else str(v) for v in column.to_pylist()]


def _stamps(rows: pa.Table) -> list[datetime]:
    """Each row's ``event_timestamp`` as an aware UTC datetime, converted once per distinct
    instant (a snapshot day has one)."""
    ts = rows.column("event_timestamp").cast(pa.timestamp("us", tz="UTC"))
    encoded = pc.dictionary_encode(ts).combine_chunks()
    instants = encoded.dictionary.to_pylist()
    return [instants[i] for i in encoded.indices.to_pylist()]


def write(
    layout: Layout,
    config: dict,
    rows: pa.Table | dict[str, pa.Table],
    replace: bool = False,
) -> dict[str, int]:
    """Write customer rows (``customer_id``, ``event_timestamp`` and the view's features) into
    the online store ``config`` names: one table for every view of the layout, or one per view
    name. Returns, per view, how many customers got the new values (the others already had a
    newer row).

    ``replace`` (after the lakehouse was restored to an earlier moment): the rows become the
    store's whole content, older or not; customers without a row are removed.

    On SQLite all views go in one transaction: readers see every view's new values or none.
    """
    by_view = rows if isinstance(rows, dict) else {view.name: rows for view in layout.views}
    kind = config.get("type")
    if kind == "sqlite":
        return _write_sqlite(layout, Path(config["path"]), by_view, replace)
    if kind == "redis" and config.get("redis_type", "redis") == "redis":
        return _write_redis(layout, config, by_view, replace)
    raise NotSupportedHere(f"online store {kind!r} is written through Feast")


def plain_sqlite_layout(path: Path, table: str) -> bool:
    """Whether the table has the layout written here (vector-search layouts are Feast's)."""
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    # vector_value exists in every table Feast creates; it is filled only with vector search on
    return [c for c in columns if c != "vector_value"] == SQLITE_COLUMNS


def _write_sqlite(
    layout: Layout, path: Path, by_view: dict[str, pa.Table], replace: bool = False
) -> dict[str, int]:
    created = int(datetime.now(UTC).timestamp())
    with sqlite3.connect(path, timeout=60) as conn:
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: no page spills mid-batch
        if replace:  # in the same transaction as the writes below
            for view in layout.views:
                conn.execute(f'DELETE FROM "{view.sqlite_table}"')
        return {
            view.name: _upsert_sqlite(conn, layout, view, by_view.get(view.name), created)
            for view in layout.views
        }


def _upsert_sqlite(
    conn: sqlite3.Connection, layout: Layout, view: ViewLayout, rows: pa.Table | None, created: int
) -> int:
    if rows is None or rows.num_rows == 0:
        return 0
    keys = [layout.entity_key(c) for c in rows.column(JOIN_KEY).to_pylist()]
    # stored the way Feast's sqlite module adapts datetimes: whole epoch seconds
    stamps = [int(t.timestamp()) for t in _stamps(rows)]
    order = sorted(range(len(keys)), key=keys.__getitem__)  # primary-key order: appends
    features = sorted(view.features)
    blobs = [encode_values(rows.column(name)) for name in features]
    texts = [_texts(rows.column(name)) for name in features]

    def values(customers: list[int]) -> list:
        flat: list = []
        for i in customers:
            key, ts = keys[i], stamps[i]
            for j, name in enumerate(features):
                flat += (key, name, blobs[j][i], texts[j][i], ts, created)
        return flat

    def statement(customers: int) -> str:
        rows_sql = ", ".join(["(?, ?, ?, ?, ?, ?)"] * (customers * len(features)))
        # the newest event time wins; on a tie (a day's snapshot rewritten by a later batch)
        # the later write does
        return (
            f'INSERT INTO "{view.sqlite_table}" ({", ".join(SQLITE_COLUMNS)}) VALUES {rows_sql} '
            "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
            "value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts WHERE excluded.event_ts >= event_ts"
        )

    before = conn.total_changes
    # many rows per statement: SQLite's per-statement cost is most of a one-row insert
    per = max(1, _ROWS_PER_STATEMENT // len(features))
    full = len(order) - len(order) % per
    if full:
        conn.executemany(statement(per), (values(order[i : i + per]) for i in range(0, full, per)))
    if full < len(order):
        conn.execute(statement(len(order) - full), values(order[full:]))
    return (conn.total_changes - before) // len(features)


# Sets the customer's hash only when the stored _ts of the view is not newer than the new one.
# KEYS[1] the hash; ARGV: ts field, new seconds, new nanos, new encoded ts, ttl, field/value...
_NEWER_ONLY = """
local function varint(s, i)
  local n, mult = 0, 1
  while i <= #s do
    local b = string.byte(s, i)
    i = i + 1
    n = n + (b % 128) * mult
    if b < 128 then return n, i end
    mult = mult * 128
  end
  return n, i
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local sec, nanos, i = 0, 0, 1
  while i <= #old do
    local tag = string.byte(old, i)
    local v
    v, i = varint(old, i + 1)
    if tag == 8 then sec = v elseif tag == 16 then nanos = v end
  end
  local new_sec, new_nanos = tonumber(ARGV[2]), tonumber(ARGV[3])
  if sec > new_sec or (sec == new_sec and nanos > new_nanos) then return 0 end
end
local args = {ARGV[1], ARGV[4]}
for j = 6, #ARGV do args[#args + 1] = ARGV[j] end
redis.call('HSET', KEYS[1], unpack(args))
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return 1
"""


def redis_client(config: dict):
    """A redis-py client for Feast's ``host:port,key=value,...`` connection string."""
    import redis

    nodes, params = [], {}
    for part in str(config.get("connection_string", "localhost:6379")).split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        else:
            nodes.append(part)
    host, _, port = nodes[0].partition(":")
    return redis.Redis(host=host, port=int(port or 6379), **params)


def _mmh3_field(name: str) -> bytes:
    """Feast's Redis hash field of a feature: murmur3 (32 bit, little endian) of its name."""
    import mmh3

    return struct.pack("<I", mmh3.hash(name, signed=False))


def _write_redis(
    layout: Layout, config: dict, by_view: dict[str, pa.Table], replace: bool = False
) -> dict[str, int]:
    client = redis_client(config)
    project = layout.project.encode()
    ttl = int(config.get("key_ttl_seconds") or 0)
    script = client.register_script(_NEWER_ONLY)
    written: dict[str, int] = {}
    if replace:
        # customers without a new row go; the others lose their views' event times, so the
        # guarded writes below take the new (possibly older) values
        keep = {
            layout.entity_key(c) + project
            for rows in by_view.values()
            if rows is not None
            for c in rows.column(JOIN_KEY).to_pylist()
        }
        stamps = [f"_ts:{view.redis_name}" for view in layout.views]
        with client.pipeline(transaction=False) as pipe:
            for key in client.scan_iter(match=b"*" + project, count=10_000):
                if key in keep:
                    pipe.hdel(key, *stamps)
                else:
                    pipe.delete(key)
            pipe.execute()
    for view in layout.views:
        rows = by_view.get(view.name)
        if rows is None or rows.num_rows == 0:
            written[view.name] = 0
            continue
        keys = [layout.entity_key(c) + project for c in rows.column(JOIN_KEY).to_pylist()]
        instants = _stamps(rows)
        stamps = {t: encode_timestamp(t) for t in set(instants)}
        fields = [_mmh3_field(f"{view.redis_name}:{name}") for name in view.features]
        columns = [encode_values(rows.column(name)) for name in view.features]
        ts_field = f"_ts:{view.redis_name}"
        applied = 0
        with client.pipeline(transaction=False) as pipe:
            for i, key in enumerate(keys):
                instant = instants[i]
                args: list = [
                    ts_field,
                    int(instant.timestamp() // 1),
                    instant.microsecond * 1000,
                    stamps[instant],
                    ttl,
                ]
                for name, column in zip(fields, columns, strict=True):
                    args += (name, column[i])
                script(keys=[key], args=args, client=pipe)
                if i % _REDIS_FLUSH == _REDIS_FLUSH - 1:
                    applied += sum(pipe.execute())
            applied += sum(pipe.execute())
        written[view.name] = applied
    return written


# ---- erasure ---------------------------------------------------------------------------------


def remove(layout: Layout, config: dict, customer_ids: list[str]) -> int:
    """Delete ``customer_ids`` from the online store, every view: on SQLite the rows, with
    ``secure_delete`` (SQLite zeroes what it deletes, in place: no ``VACUUM`` of the whole
    file, 6 s for 200,000 customers), then the write-ahead log is truncated, so no freed or
    logged page holds them; on Redis the keys. Returns rows (SQLite) or keys (Redis)
    deleted."""
    kind = config.get("type")
    if kind == "sqlite":
        path = Path(config["path"])
        if not path.exists():
            return 0
        keys = [layout.entity_key(c) for c in customer_ids]
        removed = 0
        with sqlite3.connect(path, timeout=60) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            for view in layout.views:
                if view.sqlite_table not in tables:
                    continue
                for start in range(0, len(keys), 900):
                    chunk = keys[start : start + 900]
                    marks = ",".join("?" * len(chunk))
                    removed += conn.execute(
                        f'DELETE FROM "{view.sqlite_table}" WHERE entity_key IN ({marks})', chunk
                    ).rowcount
        conn.close()
        scrub_sqlite(path, vacuum=False)
        return removed
    if kind == "redis" and config.get("redis_type", "redis") == "redis":
        client = redis_client(config)
        project = layout.project.encode()
        keys = [layout.entity_key(c) + project for c in customer_ids]
        return sum(client.delete(*keys[i : i + 1000]) for i in range(0, len(keys), 1000))
    raise NotSupportedHere(f"online store {kind!r}: erase its rows through its own tools")


def scrub_sqlite(path: Path, attempts: int = 50, vacuum: bool = True) -> None:
    """Rewrite a SQLite file so deleted rows leave no bytes behind: ``VACUUM`` copies the live
    rows into fresh pages (unless the rows were deleted with ``secure_delete``), and a
    ``TRUNCATE`` checkpoint empties the write-ahead log (waiting for readers that still hold
    old pages)."""
    import time

    if vacuum:
        with sqlite3.connect(path, timeout=60) as conn:
            conn.execute("VACUUM")
        conn.close()
    with sqlite3.connect(path, timeout=60) as conn:
        for _ in range(attempts):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
            time.sleep(0.1)
    conn.close()


def stored_customers(layout: Layout, config: dict) -> set[str]:
    """Every customer id the online store holds (for a verification scan)."""
    head = bytes.fromhex(layout.key_head)
    found: set[str] = set()

    def decode(key: bytes) -> str | None:
        if not key.startswith(head) or len(key) < len(head) + 4:
            return None
        size = int.from_bytes(key[len(head) : len(head) + 4], "little")
        return key[len(head) + 4 : len(head) + 4 + size].decode("utf-8", "replace")

    kind = config.get("type")
    if kind == "sqlite":
        path = Path(config["path"])
        if not path.exists():
            return found
        with sqlite3.connect(path, timeout=60) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            for view in layout.views:
                if view.sqlite_table in tables:
                    for (key,) in conn.execute(
                        f'SELECT DISTINCT entity_key FROM "{view.sqlite_table}"'
                    ):
                        if (cid := decode(bytes(key))) is not None:
                            found.add(cid)
        conn.close()
    elif kind == "redis":
        project = layout.project.encode()
        for key in redis_client(config).scan_iter(match=b"*" + project, count=10_000):
            if (cid := decode(key[: -len(project)])) is not None:
                found.add(cid)
    return found
