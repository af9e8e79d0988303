"""The read API's GET routes, mounted into the BentoML service as a FastAPI app (BentoML merges
its OpenAPI paths into ``/docs.json``): the live feed, the live dashboard, exports and the
experiments.

The guard (:mod:`bentos.guard`) sits in front of these as of every other route: ``/live``,
``/export`` and ``/experiments`` need the ``analyst`` role. ``/dashboard`` is a page with no
data in it (the data comes through ``/live`` and ``/kpis`` with the key the page asks for), so
it needs no key.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import anyio.to_thread
import bentoml
from fastapi import FastAPI, Header, Query
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from analytics_assets import settings
from analytics_assets.lib import exports
from bentos import errors
from bentos.analytics_reader import reads
from bentos.analytics_reader.live import Full
from bentos.analytics_reader.schemas import ExperimentDetail, ExperimentList

app = FastAPI(
    title="analytics_reader: live feed, dashboard and exports",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)

DASHBOARD = Path(__file__).with_name("dashboard.html")


@app.exception_handler(RequestValidationError)
async def _invalid(request, exc: RequestValidationError) -> Response:
    """A parameter that did not validate: 400 in the services' one error shape, naming it."""
    found = [
        {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]} for e in exc.errors()
    ]
    message = "; ".join(f"{f['field']}: {f['message']}" for f in found)
    return Response(
        errors.body(400, message, "invalid_request", found),
        status_code=400,
        media_type="application/json",
    )


def _error(status: int, message: str, code: str, **headers: str) -> Response:
    return Response(
        errors.body(status, message, code),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


@app.get(
    "/live",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        503: {"description": "As many subscribers as the process serves: retry later"},
    },
)
async def live(
    last_event_id: Annotated[
        int | None, Query(description="Resume after this event id (a lakehouse snapshot id)")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
):
    """The live feed (Server-Sent Events, ``event: pulse``): within a second of each lakehouse
    commit, one event whose ``id`` is the commit's snapshot and whose ``data`` is JSON: events
    committed in the last minute and hour, the newest day's revenue, orders and active
    sessions, the last batch (source, events, quarantined, landed -> committed seconds), the
    online store's freshness and the champions' health. A comment line (heartbeat) every 15 s
    (``READ_API_LIVE_HEARTBEAT_S``) when nothing was committed. ``Last-Event-ID`` (header, as
    ``EventSource`` sends it) resumes after that event. At most
    ``READ_API_LIVE_MAX_SUBSCRIBERS`` per process (default 2,000); one more gets 503 with
    ``Retry-After``. A subscriber 64 events behind is dropped."""
    feed = bentoml.get_current_service().feed
    resume = last_event_id
    if resume is None and last_event_id_header and last_event_id_header.strip().isdigit():
        resume = int(last_event_id_header.strip())
    try:
        subscriber, backlog = feed.subscribe(resume)
    except Full as exc:
        return _error(503, str(exc), "too_many_subscribers", **{"Retry-After": "5"})
    return StreamingResponse(
        feed.stream(subscriber, backlog),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@app.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    """The live dashboard: one page, no build step, nothing fetched from elsewhere (its chart
    code is in the page). It subscribes to ``/live`` and reads ``/kpis`` with the analyst key
    it asks for (kept in the tab's session storage)."""
    return HTMLResponse(DASHBOARD.read_text(), headers={"Cache-Control": "no-cache"})


def _read(query, *args):
    """``query(cursor, *args)`` in one read transaction of the service's lakehouse view."""
    with reads.reading(bentoml.get_current_service().sandbox.db) as cursor:
        return query(cursor, *args)


@app.get("/experiments", response_model=ExperimentList)
async def list_experiments() -> ExperimentList:
    """Every experiment's newest look: its verdict (ship, stop, keep running) and the reason,
    whether the split is healthy (sample-ratio p-value), crossovers and exposures to unknown
    variants. Written by the ``experiment_looks`` asset, one look per day."""
    found = await anyio.to_thread.run_sync(_read, reads.experiments)
    return ExperimentList(experiments=found)


@app.get(
    "/experiments/{name}",
    response_model=ExperimentDetail,
    responses={404: {"description": "No look of an experiment of that name"}},
)
async def get_experiment(
    name: Annotated[str, PathParam(description="The experiment, as declared")],
):
    """One experiment's newest look: the verdict, every variant on conversion, orders and
    revenue per exposed customer with the 95 % interval, CUPED's and the always-valid one
    (the one to read at any look), and the primary metric at every daily look."""
    found = await anyio.to_thread.run_sync(_read, reads.experiment, name)
    if found is None:
        return _error(404, f"no experiment {name!r} has been looked at", "unknown_experiment")
    return ExperimentDetail(**found)


Format = Literal["csv", "json", "parquet", "arrow"]


@app.get(
    "/export/{table}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {media: {} for media in exports.MEDIA_TYPES.values()},
            "description": "The rows, streamed; X-Row-Count says how many",
        }
    },
)
async def export(
    table: Annotated[str, PathParam(description=", ".join(sorted(exports.TIME_COLUMNS)))],
    first_day: Annotated[date, Query(description="The first UTC day (included)")],
    last_day: Annotated[date, Query(description="The last UTC day (included)")],
    format: Annotated[
        Format, Query(description="csv, json (JSON lines), parquet or arrow")
    ] = "csv",
):
    """A table's rows whose time column (``occurred_at`` for events, ``day`` for sessions and
    customer_daily, ``window_start`` for KPIs, ...) falls on ``first_day`` .. ``last_day``
    (UTC), streamed in constant memory from one lakehouse snapshot (``X-Lakehouse-Snapshot``)
    in storage order. Limits: at most ``READ_API_EXPORT_MAX_DAYS`` days (default 400) and
    ``READ_API_EXPORT_MAX_ROWS`` rows (default 50,000,000; more: 413 before any byte), cut off
    after ``READ_API_EXPORT_TIMEOUT_S`` (default 600 s: the body then ends unfinished, short
    of ``X-Row-Count``). Unknown table: 404; inverted or too long range, unknown format: 400."""
    service = bentoml.get_current_service()
    try:
        opened = await anyio.to_thread.run_sync(
            lambda: exports.open_export(
                service.sandbox.db,
                table,
                first_day,
                last_day,
                format,
                settings.read_api_export_max_rows(),
                settings.read_api_export_max_days(),
                settings.read_api_export_timeout_s(),
            )
        )
    except exports.ExportError as exc:
        return _error(exc.status, str(exc), exc.code)
    service.metrics.export_rows.inc(opened.rows)
    return StreamingResponse(
        _streamed(opened, service.metrics.exports_streaming),
        media_type=opened.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{opened.filename}"',
            "X-Row-Count": str(opened.rows),
            "X-Lakehouse-Snapshot": str(opened.snapshot),
        },
    )


async def _streamed(opened: exports.Export, streaming):
    """The export's chunks, each encoded in a worker thread; the cursor is freed when the
    client goes away mid-stream as when it reads to the end."""
    chunks = opened.chunks()
    streaming.inc()
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                return
            if chunk:
                yield chunk
    finally:
        streaming.dec()
        chunks.close()  # here, not awaited: a cancelled scope would cancel the await again
        opened.close()
