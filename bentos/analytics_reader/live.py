"""The live feed: one watcher per process notices each lakehouse commit and fans its figures
(:mod:`bentos.analytics_reader.pulse`) out to every subscriber as a Server-Sent Event.

- **Noticing a commit.** On a SQLite catalog a commit writes the catalog's WAL, so the watcher
  stats the catalog and its WAL every ``poll_s`` (microseconds) and reads the snapshot id (2.5
  ms) only when they changed; on PostgreSQL it reads the snapshot id every ``poll_s``. A new
  snapshot id is one event, its id the snapshot's: ``Last-Event-ID`` (the header a browser's
  ``EventSource`` sends on reconnecting, or ``?last_event_id=``) resumes after it, from the
  last :data:`HISTORY` events kept; a resume from further back gets the newest event.
- **Fan-out.** The watcher thread computes the figures once and hands the encoded event to the
  event loop, which puts it on each subscriber's queue without waiting: a subscriber whose
  queue is full (it stopped reading) is dropped, and the others never wait for it.
- **Heartbeats.** A comment line every ``heartbeat_s`` when nothing was committed, so proxies
  keep the connection and a client notices a dead one.
- **Limits.** At most ``max_subscribers`` per process: one more raises :class:`Full` (the
  route answers 503 with ``Retry-After``). A client that goes away is unsubscribed at once.

The watcher starts with the first subscriber and reads through the service's read-only,
fenced database (:class:`bentos.analytics_reader.sandbox.Sandbox`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from analytics_assets.lib import lake, lakehouse
from bentos.analytics_reader import pulse

_log = logging.getLogger("bentoml.analytics_reader.live")

HISTORY = 256
"""Events kept for ``Last-Event-ID`` resumes."""
QUEUE = 64
"""Events a subscriber may fall behind before it is dropped."""
WALK = 16
"""The most snapshots published after one look (a longer gap: the newest ones)."""


class Full(RuntimeError):
    """No room for another subscriber in this process."""


class Subscriber:
    def __init__(self, last_id: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
        self.last_id = last_id
        self.dropped = False


class Feed:
    def __init__(
        self,
        db: duckdb.DuckDBPyConnection,
        where: lakehouse.Location,
        poll_s: float,
        heartbeat_s: float,
        max_subscribers: int,
        online: Callable[[str | None], dict] = pulse.online,
        metrics=None,
    ) -> None:
        self.db = db
        self.where = where
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.max_subscribers = max_subscribers
        self.online = online
        self.metrics = metrics
        self.champions = pulse.Champions()
        self.subscribers: set[Subscriber] = set()
        self.history: deque[tuple[int, bytes]] = deque(maxlen=HISTORY)
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._watched = [Path(where.sqlite_path)] if where.sqlite_path else []
        if self._watched:
            self._watched.append(Path(f"{where.sqlite_path}-wal"))

    # ---- subscribers (on the event loop) -------------------------------------------------

    def subscribe(self, last_id: int | None) -> tuple[Subscriber, list[bytes]]:
        """A new subscriber and the events it gets first: those after ``last_id`` still kept,
        else the newest one. Raises :class:`Full`."""
        if len(self.subscribers) >= self.max_subscribers:
            raise Full(f"{len(self.subscribers)} live subscribers: the most this process serves")
        self._start()
        backlog: list[bytes] = []
        if self.history:
            oldest = self.history[0][0]
            if last_id is not None and last_id >= oldest:
                backlog = [data for i, data in self.history if i > last_id]
            elif last_id is None or last_id < self.history[-1][0]:
                backlog = [self.history[-1][1]]
        newest = self.history[-1][0] if self.history else -1
        subscriber = Subscriber(max(newest, last_id if last_id is not None else -1))
        self.subscribers.add(subscriber)
        self._count()
        return subscriber, backlog

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self._count()

    def _count(self) -> None:
        if self.metrics is not None:
            self.metrics.live_subscribers.set(len(self.subscribers))

    async def stream(self, subscriber: Subscriber, backlog: list[bytes]) -> AsyncIterator[bytes]:
        """The subscriber's bytes: its backlog, then each event, heartbeats in between."""
        try:
            for data in backlog:
                yield data
            yield b": connected\n\n"
            while True:
                try:
                    data = await asyncio.wait_for(subscriber.queue.get(), self.heartbeat_s)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if data is None:  # dropped: it fell too far behind
                    return
                yield data
        finally:
            self.unsubscribe(subscriber)

    def _fan_out(self, snapshot: int, data: bytes) -> None:
        self.history.append((snapshot, data))
        for subscriber in list(self.subscribers):
            if snapshot <= subscriber.last_id:
                continue
            subscriber.last_id = snapshot
            try:
                subscriber.queue.put_nowait(data)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        self.unsubscribe(subscriber)
        self.dropped += 1
        if self.metrics is not None:
            self.metrics.live_dropped.inc()
        subscriber.dropped = True
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)
        _log.warning("live feed: a subscriber fell %d events behind and was dropped", QUEUE)

    # ---- the watcher (its own thread) ----------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._watch, name="live-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _signature(self) -> tuple | None:
        if not self._watched:
            return None  # PostgreSQL: ask the catalog each time
        stamps = []
        for path in self._watched:
            try:
                stat = os.stat(path)
                stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)

    def _watch(self) -> None:
        cursor = lake.cursor(self.db)
        seen_signature: object = object()
        seen: int | None = None
        try:
            while not self._stop.is_set():
                signature = self._signature()
                if signature is None or signature != seen_signature:
                    seen_signature = signature
                    try:
                        seen = self._publish(cursor, seen)
                    except Exception:  # the lakehouse unreadable for a moment: try again
                        _log.exception("live feed: reading the lakehouse failed")
                        seen_signature = object()
                        self._stop.wait(1.0)
                self._stop.wait(self.poll_s)
        finally:
            cursor.close()

    def _publish(self, cursor, seen: int | None) -> int:
        """One event per snapshot committed since ``seen`` (each as of its own snapshot, so
        two commits between two looks are two events), at most :data:`WALK` of them (after a
        longer gap, the newest ones); returns the newest snapshot id."""
        current = pulse.snapshot_id(cursor)
        if current == seen:
            return current
        versions = [current] if seen is None else pulse.snapshots_after(cursor, seen, current)
        for version in versions[-WALK:]:
            data = self._event(version)
            self._loop.call_soon_threadsafe(self._fan_out, version, data)
        return current

    def _event(self, version: int) -> bytes:
        """The figures as of snapshot ``version``, encoded as one SSE event."""
        started = time.perf_counter()
        found = pulse.figures(self.db, version)
        found["online"] = self.online((found.get("last_batch") or {}).get("committed_at"))
        found["champions"] = self.champions.get()
        found["sent_at"] = datetime.now(UTC).isoformat()
        found["compute_ms"] = round((time.perf_counter() - started) * 1e3, 1)
        data = f"id: {version}\nevent: pulse\ndata: {json.dumps(found, default=str)}\n\n"
        return data.encode()
