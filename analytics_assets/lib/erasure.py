"""Erasing customers: every row and value of theirs, from every store the platform writes, with
a receipt that can be verified again later.

What :func:`erase` does, each step safe to run again (a killed erasure is completed by running
it again; its receipt is written only once every store is clean):

1. **The lakehouse, one transaction**: the ids go on the suppression list
   (:mod:`suppression`: from this commit on, ingest keeps their events out), and their rows
   leave every table with a ``customer_id`` column (events, sessions, customer_daily) and the
   quarantine (rows whose record or detail names them).
2. **The lakehouse's history**: inlined rows are flushed to files, files with deleted rows are
   rewritten, the snapshots that could still show the customers (from their first commit to
   this erasure) are expired and the files only those read are deleted, and a SQLite catalog
   is vacuumed. Time travel and ``analytics restore`` can no longer reach those moments.
3. **Files under ANALYTICS_HOME**: every Parquet file with a ``customer_id`` column (feature
   snapshots, training sets, holdouts, the prediction log, reports) and every event file kept
   as it landed (archive, quarantine) is rewritten without their rows. Step 3 runs beside
   step 2 (in a thread, once step 1 committed): they share no store.
4. **The online store**: their keys, from SQLite (vacuumed) or Redis.
5. **A verification scan** (:func:`verify`), then the receipt in ``ANALYTICS_HOME/erasures/``.

Aggregates (KPIs, the audit) hold no ids; the days the customers' events touched are reported
so that the analytics runs rebuild them (``Receipt.days_touched``). Models already trained on
their data are not retrained here; the next training reads data without them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from analytics_assets import settings
from analytics_assets.lib import event_files, faults, lakehouse, suppression
from analytics_assets.lib.atomic_files import write_text

ID_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
"""A customer id as ingest accepts one: 1 to 128 characters, no control characters."""

ERASE_IN_COMMIT, ERASE_AFTER_COMMIT, ERASE_AFTER_HISTORY, ERASE_AFTER_FILES = faults.ERASURE_POINTS


class ErasureError(ValueError):
    """An erasure that cannot be done as asked (nothing was changed)."""


@dataclass
class Receipt:
    receipt_id: str
    reason: str
    started_at: str
    salt: str
    id_hashes: list[str]
    """SHA-256 of ``salt:id`` per customer: the receipt holds no id."""
    stores: dict[str, dict] = field(default_factory=dict)
    """Per store: ``rows`` and/or ``files`` removed or rewritten (summed over reruns)."""
    days_touched: list[str] = field(default_factory=list)
    history_from: str | None = None
    """The first commit that held any of them: snapshots from then to the erasure expired."""
    snapshots_expired: int = 0
    clean_from_snapshot: int | None = None
    """The first snapshot that reads no file of theirs (older ones, from ``history_from``, are
    expired)."""
    finished_at: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    """Time per step of the last run."""
    verified: bool = False
    findings: list[str] = field(default_factory=list)

    def count(self, store: str, rows: int = 0, files: int = 0) -> None:
        if not rows and not files:
            self.stores.setdefault(store, {"rows": 0, "files": 0})
            return
        entry = self.stores.setdefault(store, {"rows": 0, "files": 0})
        entry["rows"] += rows
        entry["files"] += files

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = round(time.perf_counter() - started, 2)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> Receipt:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ErasureError(f"{path} is not an erasure receipt: {exc}") from exc

    @property
    def found_anything(self) -> bool:
        return any(e["rows"] or e["files"] for e in self.stores.values())


def receipts_dir() -> Path:
    return settings.erasures_dir()


def check_ids(ids: list[str]) -> list[str]:
    """The ids, de-duplicated in order; :class:`ErasureError` for none or a malformed one."""
    if not ids:
        raise ErasureError("no customer id given: name at least one")
    bad = [i for i in ids if not isinstance(i, str) or not ID_PATTERN.match(i)]
    if bad:
        shown = ", ".join(repr(b)[:40] for b in bad[:3])
        raise ErasureError(
            f"not a customer id: {shown} (1 to 128 characters, no control characters)"
        )
    return list(dict.fromkeys(ids))


def erase(
    ids: list[str],
    reason: str,
    log: Callable[[str], None] = print,
    where: lakehouse.Location | None = None,
) -> tuple[Receipt, Path]:
    """Erase ``ids`` everywhere (see the module); the verified receipt and where it is."""
    ids = check_ids(ids)
    if not reason or not reason.strip():
        raise ErasureError("say why (--reason): the receipt records it")
    if any(i in reason for i in ids):
        raise ErasureError("the reason names a customer being erased: the receipt would keep it")
    started = time.perf_counter()
    with lakehouse.connect(where=where) as conn:
        salt = suppression.salt(conn)
        receipt, pending = _pending(salt, ids, reason)
        log(f"erasure {receipt.receipt_id}: {len(ids)} customer(s), pending at {pending}")
        with receipt.timed("lakehouse"):
            _erase_from_tables(conn, ids, receipt, log)
        _save(receipt, pending)
        faults.point(ERASE_AFTER_COMMIT)
        # The files (feature snapshots, training sets, the prediction log, archived batches)
        # beside the lakehouse's history: neither step reads the other's stores, and the
        # suppression list is committed, so nothing writes them back meanwhile. Each waits on
        # its own reads and writes much of the time (one customer: 23.3 s and 19.3 s one after
        # the other; BENCHMARKS.md, erasure).
        with ThreadPoolExecutor(1, thread_name_prefix="erasure-files") as pool:
            files = pool.submit(_erase_files_timed, set(ids), receipt, log)
            with receipt.timed("lakehouse history"):
                _erase_history(conn, receipt, log)
            faults.point(ERASE_AFTER_HISTORY)
            files.result()
        _save(receipt, pending)
        catalog = lakehouse.catalog_of(conn)
    if catalog.startswith("sqlite:"):  # DuckDB's attach is closed: Python's sqlite3 may open it
        from analytics_assets.lib.online_store import scrub_sqlite

        with receipt.timed("lakehouse catalog"), lakehouse.commit_lock(catalog):
            scrub_sqlite(Path(catalog.removeprefix("sqlite:")))
        receipt.count("lakehouse catalog (vacuumed)")
    with receipt.timed("online store"):
        _erase_online(ids, receipt, log)
    with receipt.timed("verify"):
        receipt.findings = verify(receipt, where=where, ids=ids)
    receipt.verified = not receipt.findings
    log(f"seconds per step: {receipt.seconds}")
    if not receipt.verified:
        _save(receipt, pending)
        raise ErasureError(
            "the erasure is not complete; run it again (it carries on). Found: "
            + "; ".join(receipt.findings)
        )
    receipt.finished_at = datetime.now(UTC).isoformat()
    final = receipts_dir() / f"{receipt.receipt_id}.json"
    write_text(final, receipt.to_json())
    pending.unlink(missing_ok=True)
    log(
        f"erasure {receipt.receipt_id}: clean in {time.perf_counter() - started:.1f}s; "
        f"receipt {final}"
    )
    return receipt, final


# ---- the receipt in progress ----------------------------------------------------------------


def _pending(salt: str, ids: list[str], reason: str) -> tuple[Receipt, Path]:
    """The receipt of an erasure of exactly these ids that was killed (carried on), or a new
    one. Named by a hash of the ids, so a rerun finds it and nothing in the name is an id."""
    hashes = sorted(suppression.id_hash(salt, i) for i in ids)
    key = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]
    path = receipts_dir() / ".pending" / f"{key}.json"
    if path.exists():
        try:
            return Receipt.load(path), path
        except ErasureError:
            path.unlink()
    now = datetime.now(UTC)
    receipt = Receipt(
        receipt_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        reason=reason.strip(),
        started_at=now.isoformat(),
        salt=salt,
        id_hashes=hashes,
    )
    _save(receipt, path)
    return receipt, path


def _save(receipt: Receipt, path: Path) -> None:
    write_text(path, receipt.to_json())


# ---- the lakehouse --------------------------------------------------------------------------


def _token(ids_param: str, column: str) -> str:
    """SQL: ``column`` names one of the ids as a whole token (not inside a longer id)."""
    return f"list_has_any(regexp_split_to_array({column}, '[^A-Za-z0-9_.@+-]+'), {ids_param})"


def _erase_from_tables(
    conn: duckdb.DuckDBPyConnection, ids: list[str], receipt: Receipt, log
) -> None:
    erased_at = datetime.fromisoformat(receipt.started_at)

    def body(conn: duckdb.DuckDBPyConnection) -> dict:
        conn.execute(
            f"CALL {lakehouse.ALIAS}.set_commit_message('analytics erase-customer', ?)",
            [f"erasure {receipt.receipt_id}: {len(ids)} customer(s)"],
        )
        tables = suppression.id_tables(conn)
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _erase_ids AS SELECT unnest(?::VARCHAR[]) AS id", [ids]
        )
        first, days = None, []
        if "events" in tables:
            first, days = conn.execute(
                "SELECT min(ingested_at), coalesce(list(DISTINCT (occurred_at AT TIME ZONE 'UTC')"
                "::DATE ORDER BY (occurred_at AT TIME ZONE 'UTC')::DATE), []) "
                "FROM events WHERE customer_id IN (SELECT id FROM _erase_ids)"
            ).fetchone()
        removed = {}
        for table, columns in tables.items():
            conditions = []
            if "customer_id" in columns:
                conditions.append("customer_id IN (SELECT id FROM _erase_ids)")
            if "raw" in columns:
                conditions.append(
                    f"{suppression.raw_customer('raw')} IN (SELECT id FROM _erase_ids)"
                )
                conditions.append(_token("$ids", "raw"))
            if "detail" in columns:
                conditions.append(_token("$ids", "detail"))
            where = " OR ".join(f"coalesce({c}, false)" for c in conditions)
            if "quarantined_at" in columns:  # the quarantine: its first row may be the earliest
                (q_first,) = conn.execute(
                    f'SELECT min(quarantined_at) FROM "{table}" WHERE {where}',
                    {"ids": ids} if "$ids" in where else {},
                ).fetchone()
                if q_first is not None and (first is None or q_first < first):
                    first = q_first
            params = {"ids": ids} if "$ids" in where else {}
            (count,) = conn.execute(f'DELETE FROM "{table}" WHERE {where}', params).fetchone()
            removed[table] = count
        suppression.create(conn)
        history = first or (
            datetime.fromisoformat(receipt.history_from) if receipt.history_from else None
        )
        suppression.add(
            conn, receipt.id_hashes, receipt.salt, erased_at, receipt.receipt_id, history, days
        )
        faults.point(ERASE_IN_COMMIT)
        # what an earlier, killed, run of this erasure found (its rows are gone now)
        before, before_days = conn.execute(
            f"SELECT min(history_from), flatten(list(days_touched)) FROM {suppression.TABLE} "
            "WHERE list_contains(?, id_hash)",
            [receipt.id_hashes],
        ).fetchone()
        if before is not None and (first is None or before < first):
            first = before
        days = sorted(set(days) | set(before_days or []))
        return {"removed": removed, "first": first, "days": days}

    suppression.ensure(conn)
    done = lakehouse.run_transaction(
        conn, body, f"erasure {receipt.receipt_id}", log=log, serialize=True
    )
    for table, count in done["removed"].items():
        receipt.count(f"lakehouse: {table}", rows=count)
    if done["first"] is not None:
        first = done["first"].astimezone(UTC).isoformat()
        if receipt.history_from is None or first < receipt.history_from:
            receipt.history_from = first
    receipt.days_touched = sorted(set(receipt.days_touched) | {d.isoformat() for d in done["days"]})
    log(
        "lakehouse: "
        + ", ".join(f"{t} {n:,}" for t, n in done["removed"].items() if n)
        + (" rows removed" if any(done["removed"].values()) else "no rows of theirs")
    )


def _erase_history(conn: duckdb.DuckDBPyConnection, receipt: Receipt, log) -> None:
    """Steps 2: no file, inlined row or snapshot that still holds them survives."""
    alias = lakehouse.ALIAS
    touched = sorted(suppression.id_tables(conn))

    def step(what: str, sql: str) -> list:
        return lakehouse.run_transaction(
            conn, lambda c: c.execute(sql).fetchall(), f"erasure: {what}", log=log
        )

    for table in touched:  # rows inlined in the catalog: into files, which are then rewritten
        step("flush", f"CALL ducklake_flush_inlined_data('{alias}', table_name => '{table}')")
        step(
            "rewrite",
            f"CALL ducklake_rewrite_data_files('{alias}', '{table}', delete_threshold => 0)",
        )
    if receipt.history_from is not None:
        since = datetime.fromisoformat(receipt.history_from)
        current = lakehouse.current_snapshot(conn)
        versions = [
            r[0]
            for r in conn.execute(
                f"SELECT snapshot_id FROM {alias}.snapshots() "
                "WHERE snapshot_time >= ? AND snapshot_id < ? ORDER BY 1",
                [since, current],
            ).fetchall()
        ]
        # the snapshot before the first commit that held them read no file of theirs; it
        # stays (a restore can still reach the moment before they arrived)
        if versions:
            step(
                "expire",
                f"CALL ducklake_expire_snapshots('{alias}', versions => "
                f"[{', '.join(str(int(v)) for v in versions)}])",
            )
            receipt.snapshots_expired += len(versions)
    receipt.clean_from_snapshot = lakehouse.current_snapshot(conn)
    deleted = step("clean", f"CALL ducklake_cleanup_old_files('{alias}', cleanup_all => true)")
    # files a killed writer left uncommitted (6 hours old: younger ones may be a commit in
    # progress, as the maintenance job counts them)
    orphans = step(
        "orphans",
        f"CALL ducklake_delete_orphaned_files('{alias}', older_than => now() - INTERVAL 6 HOUR)",
    )
    receipt.count("lakehouse history (files deleted)", files=len(deleted) + len(orphans))
    log(
        f"lakehouse history: {receipt.snapshots_expired} snapshots expired, "
        f"{len(deleted)} files deleted"
    )


# ---- files under ANALYTICS_HOME -------------------------------------------------------------


def _home_files(kind: str) -> list[Path]:
    """Files under ANALYTICS_HOME (and the folders settings may put elsewhere) of ``kind``
    (``parquet`` or ``events``), not the lakehouse's own data files or the receipts."""
    roots = {
        settings.analytics_home(),
        settings.feature_snapshots_dir(),
        settings.predictions_dir(),
        settings.archive_dir(),
        settings.quarantine_dir(),
    }
    skip = [receipts_dir()]
    data = settings.lakehouse_data()
    if "://" not in data:
        skip.append(Path(data).resolve())
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            if any(here == s or s in here.parents for s in skip):
                dirs[:] = []
                continue
            for name in names:
                path = here / name
                if name.startswith(".") or path in seen:
                    continue
                parquet = name.endswith(".parquet")
                if parquet if kind == "parquet" else event_files.is_event_file(path):
                    seen.add(path)
    return sorted(seen)


def _store_of(path: Path) -> str:
    home = settings.analytics_home()
    for name, folder in (
        ("feature snapshots", settings.feature_snapshots_dir()),
        ("prediction log", settings.predictions_dir()),
        ("archive", settings.archive_dir()),
        ("quarantine files", settings.quarantine_dir()),
        ("training sets and holdouts", settings.models_dir()),
        ("training sets and holdouts", settings.training_set_path().parent),
        ("reports", settings.reports_dir()),
    ):
        if path.is_relative_to(folder):
            return name
    return f"files: {path.parent.relative_to(home)}" if path.is_relative_to(home) else "files"


def _parquet_with_ids() -> list[Path]:
    """Parquet files under the home with a ``customer_id`` column (footers only)."""
    import pyarrow.parquet as pq

    found = []
    for path in _home_files("parquet"):
        try:
            if "customer_id" in pq.read_schema(path).names:
                found.append(path)
        except (OSError, ValueError):
            continue  # not Parquet (a file being written); its bytes hold nothing of theirs
    return found


def _files_holding(files: list[Path], ids: list[str]) -> dict[Path, int]:
    """Which of ``files`` hold any of ``ids``, and how many of them: one DuckDB scan of every
    file's ``customer_id`` column (a semi-join: it keeps only their rows)."""
    if not files or not ids:
        return {}
    with duckdb.connect() as db:
        db.execute("SET enable_progress_bar = false")
        rows = db.execute(
            """
            SELECT filename, count(DISTINCT customer_id::VARCHAR)
            FROM read_parquet(?, filename = true, union_by_name = true)
            WHERE customer_id::VARCHAR IN (SELECT unnest(?::VARCHAR[]))
            GROUP BY filename
            """,
            [[str(f) for f in files], sorted(ids)],
        ).fetchall()
    return {Path(name): count for name, count in rows}


def _ids_among_files(files: list[Path], receipt: Receipt) -> list[str]:
    """The ids in ``files`` whose salted hash is on ``receipt``: every distinct id hashed once."""
    if not files:
        return []
    salt = receipt.salt.replace("'", "''")
    hashed = suppression.sql_hash(f"'{salt}'", "c.id")
    with duckdb.connect() as db:
        db.execute("SET enable_progress_bar = false")
        return [
            r[0]
            for r in db.execute(
                f"""
                SELECT c.id FROM (
                    SELECT DISTINCT customer_id::VARCHAR AS id
                    FROM read_parquet(?, union_by_name = true)
                ) c WHERE {hashed} IN (SELECT unnest(?::VARCHAR[]))
                """,
                [[str(f) for f in files], receipt.id_hashes],
            ).fetchall()
        ]


def _rewrite_all(paths: list[Path], ids: set[str]) -> dict[Path, int]:
    """Parquet files rewritten without ``ids``' rows, a few at once (Arrow releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        done = pool.map(lambda p: event_files.rewrite_parquet_without(p, ids), paths)
        return dict(zip(paths, done, strict=True))


def _erase_files_timed(ids: set[str], receipt: Receipt, log) -> None:
    with receipt.timed("files"):
        _erase_files(ids, receipt, log)
    faults.point(ERASE_AFTER_FILES)


def _erase_files(ids: set[str], receipt: Receipt, log) -> None:
    """Parquet files with a customer_id column (landed Parquet batches among them), and the
    other event files as they landed (JSON lines, gzipped or not)."""
    # Parquet event files go the vectorized way too: as "event files" every Parquet file under
    # the home (feature snapshots, training sets) was rewritten one record at a time in Python
    # (one customer's 91 snapshot files: 23-27 s of the erasure)
    event_like = {p for p in _home_files("events") if not p.name.lower().endswith(".parquet")}
    holding = _files_holding(_parquet_with_ids(), sorted(ids))
    for path, rows in sorted(_rewrite_all(sorted(holding), ids).items()):
        receipt.count(_store_of(path), rows=rows, files=1)
    rewritten = len(holding)
    for path in sorted(event_like):
        try:
            rows = event_files.rewrite_without(path, lambda _n, c: c in ids)
        except (OSError, ValueError, EOFError) as exc:
            log(f"files: {path} could not be read ({exc}); skipped")
            continue
        if rows:
            receipt.count(_store_of(path), rows=rows, files=1)
            rewritten += 1
    log(f"files: {rewritten} rewritten without them")


# ---- the online store -----------------------------------------------------------------------


def _online() -> tuple[object, dict] | None:
    from analytics_assets.lib import online_store

    layout = online_store.Layout.load(settings.online_layout_path())
    if layout is None:
        return None
    return layout, online_store.online_store_config()


def _erase_online(ids: list[str], receipt: Receipt, log) -> None:
    from analytics_assets.lib import online_store

    found = _online()
    if found is None:
        receipt.count("online store")
        log("online store: nothing applied yet")
        return
    layout, config = found
    removed = online_store.remove(layout, config, ids)
    receipt.count(f"online store ({config.get('type')})", rows=removed)
    log(f"online store ({config.get('type')}): {removed} entries removed")


# ---- verification ---------------------------------------------------------------------------


def verify(
    receipt: Receipt, where: lakehouse.Location | None = None, ids: list[str] | None = None
) -> list[str]:
    """Scan every store again for the receipt's customers. ``--verify RECEIPT`` knows them only
    by their salted hashes: each id a store holds is hashed and looked up. The erasure itself
    passes ``ids`` (it has them): the same scan, as semi-joins on the ids. Empty: clean; else
    what was found, per store."""
    hashes = set(receipt.id_hashes)
    known = set(ids or [])

    def listed(values) -> int:
        if ids:
            return len(known & {str(v) for v in values})
        return sum(1 for v in values if suppression.id_hash(receipt.salt, str(v)) in hashes)

    findings: list[str] = []
    findings += _verify_lakehouse(receipt, where, ids)
    files = _parquet_with_ids()
    holding = _files_holding(files, list(known) if ids else _ids_among_files(files, receipt))
    for path, n in sorted(holding.items()):
        findings.append(f"{_store_of(path)}: {path} holds {n} of them")
    for path in _home_files("events"):
        if path.name.endswith(".parquet"):
            continue
        try:
            held = event_files.customers_in(path)
        except (OSError, ValueError, EOFError):
            continue
        if n := listed(held):
            findings.append(f"{_store_of(path)}: {path} holds {n} of them")
    online = _online()
    if online is not None:
        from analytics_assets.lib import online_store

        layout, config = online
        try:
            if n := listed(online_store.stored_customers(layout, config)):
                findings.append(f"online store ({config.get('type')}): {n} of them")
        except Exception as exc:  # a store this scan cannot read is a finding, not a pass
            findings.append(f"online store ({config.get('type')}): not scanned ({exc})")
    return findings


def _verify_lakehouse(
    receipt: Receipt, where: lakehouse.Location | None, ids: list[str] | None
) -> list[str]:
    found = []
    salt = receipt.salt.replace("'", "''")
    hashed = suppression.sql_hash(f"'{salt}'", "c.id")
    with lakehouse.connect(read_only=True, where=where) as conn:
        conn.execute(
            "CREATE TEMP TABLE _receipt AS SELECT unnest(?::VARCHAR[]) AS id_hash",
            [receipt.id_hashes],
        )
        if ids:  # the ids themselves: semi-joins, no hashing
            conn.execute("CREATE TEMP TABLE _ids AS SELECT unnest(?::VARCHAR[]) AS id", [ids])
            hashed = "c.id IN (SELECT id FROM _ids)"
        else:
            hashed = f"{hashed} IN (SELECT id_hash FROM _receipt)"
        for table, columns in suppression.id_tables(conn).items():
            sources = []
            if "customer_id" in columns:
                sources.append(f'SELECT customer_id AS id FROM "{table}"')
            if "raw" in columns:
                sources.append(f'SELECT {suppression.raw_customer("raw")} AS id FROM "{table}"')
            if not sources:
                continue
            if n := _count_held(conn, " UNION ALL ".join(sources), hashed):
                found.append(f"lakehouse: {table} holds {n} of them")
        found += _verify_inlined(conn, hashed)
        if receipt.history_from is not None and receipt.clean_from_snapshot is not None:
            (kept,) = conn.execute(
                f"SELECT count(*) FROM {lakehouse.ALIAS}.snapshots() "
                "WHERE snapshot_time >= ? AND snapshot_id < ?",
                [datetime.fromisoformat(receipt.history_from), receipt.clean_from_snapshot],
            ).fetchone()
            if kept:
                found.append(f"lakehouse: {kept} snapshots that held them are still kept")
    return found


def _verify_inlined(conn: duckdb.DuckDBPyConnection, hashed: str) -> list[str]:
    """Rows inlined in the catalog, deleted ones too (they stay until flushed)."""
    meta = f"__ducklake_metadata_{lakehouse.ALIAS}"
    found = []
    tables = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? "
        "AND table_name LIKE 'ducklake_inlined_data_%'",
        [meta],
    ).fetchall()
    for (name,) in tables:
        columns = {r[0] for r in conn.execute(f'DESCRIBE {meta}."{name}"').fetchall()}
        if "customer_id" not in columns:
            continue
        source = f'SELECT customer_id AS id FROM {meta}."{name}"'
        if n := _count_held(conn, source, hashed):
            found.append(f"lakehouse catalog: {n} of them inlined in {name}")
    return found


def _count_held(conn: duckdb.DuckDBPyConnection, source: str, held: str) -> int:
    """How many distinct ids of ``source`` (a query yielding ``id``) meet ``held`` (over
    ``c.id``)."""
    (n,) = conn.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT id FROM ({source}) WHERE id IS NOT NULL) c "
        f"WHERE {held}"
    ).fetchone()
    return n


def verify_file(path: Path, where: lakehouse.Location | None = None) -> tuple[Receipt, list[str]]:
    """``analytics erase-customer --verify RECEIPT``: the receipt and what a new scan found."""
    receipt = Receipt.load(path)
    return receipt, verify(receipt, where=where)


def days(receipt: Receipt) -> list[date]:
    return [date.fromisoformat(d) for d in receipt.days_touched]
