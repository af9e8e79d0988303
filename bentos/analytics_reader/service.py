"""The read API (BentoML): KPIs, the customer-base audit, customer profiles and read-only SQL
over the lakehouse, attached read-only while runs write (one copy, no lock, one snapshot per
query).

``make read-api`` starts it on 127.0.0.1:3002 (scoring has 3001, Dagster's UI 3000).

A service of its own, not routes on the scoring service: a SQL query or a long KPI range may
take a core for seconds, which would stall scoring requests that answer in 3 ms (scoring runs
small requests on its event loop); the two scale apart (scoring by workers, reads by
DuckDB threads and memory); scoring loads Feast, MLflow and the models (about 0.5 GiB per
worker), which reads need only for one profile field. Both share the same guard
(:mod:`bentos.guard`: the API key and the body limit) and settings.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import date
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

import anyio.to_thread
import bentoml
import duckdb
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse
from starlette.routing import Route

from analytics_assets import settings
from analytics_assets.lib import lakehouse
from bentos.analytics_reader import metrics, reads, web
from bentos.analytics_reader.live import Feed
from bentos.analytics_reader.sandbox import Refused, Sandbox, TooBig, TooSlow
from bentos.analytics_reader.schemas import (
    MAX_DAYS,
    ApiKeys,
    AuditResponse,
    CustomerId,
    CustomerProfile,
    DayRange,
    ErasureResult,
    KpiResponse,
    LakeTables,
    Lens,
    Query,
    SqlResult,
    Window,
)
from bentos.errors import ApiError, ErrorShape
from bentos.guard import KEY_SCOPE, RequestGuard

logger = logging.getLogger("bentoml.analytics_reader")

AUDIT_REPORT = Path("customer_base_audit") / "index.html"
EXPERIMENTS_REPORT = Path("experiments") / "index.html"


def _page(relative: Path, asset: str):
    def serve(request: Request):
        page = settings.reports_dir() / relative
        if not page.is_file():
            return PlainTextResponse(f"no report yet: materialize {asset}", status_code=404)
        return FileResponse(page, media_type="text/html; charset=utf-8")

    return serve


# the customer-base audit's and the experiments' HTML pages, as their assets last wrote them
report_app = Starlette(
    routes=[
        Route("/", _page(AUDIT_REPORT, "customer_base_audit"), methods=["GET"]),
        Route("/experiments", _page(EXPERIMENTS_REPORT, "experiment_report"), methods=["GET"]),
    ]
)


@bentoml.service(
    name="analytics_reader",
    http={"host": settings.serving_host(), "port": 3002},
    # a backstop: SQL has its own timeout (READ_API_SQL_TIMEOUT_S) and KPI ranges a bound;
    # an erasure (/admin/erase) rewrites stores for up to a minute or so
    traffic={"timeout": 300},
    workers=settings.read_api_workers(),
    threads=settings.read_api_threads(),  # for the sync endpoints; BentoML's default is 1
    logging={"access": {"enabled": settings.read_api_access_log()}},
)
@bentoml.asgi_app(report_app, path="/report")
@bentoml.asgi_app(web.app, path="/")  # /live, /dashboard, /export/{table} (bentos/.../web.py)
class AnalyticsReader:
    def __init__(self) -> None:
        settings.check_serving_exposure()
        self.predictions = settings.predictions_dir()
        self.sandbox = Sandbox(self.predictions)
        self.cache = reads.SnapshotCache()
        self.max_rows = settings.read_api_sql_max_rows()
        self.timeout_s = settings.read_api_sql_timeout_s()
        self._online = None
        self._online_lock = threading.Lock()
        self.metrics = metrics.make()
        self.feed = Feed(
            self.sandbox.db,
            lakehouse.location(),
            poll_s=settings.read_api_live_poll_s(),
            heartbeat_s=settings.read_api_live_heartbeat_s(),
            max_subscribers=settings.read_api_live_max_subscribers(),
            metrics=self.metrics,
        )

    @bentoml.on_shutdown
    def close(self) -> None:
        self.feed.stop()
        self.sandbox.close()

    @bentoml.api(route="/kpis")
    def kpis(self, window: Window, first_day: date, last_day: date) -> KpiResponse:
        """KPI windows (``hour`` or ``day``) of every day from ``first_day`` to ``last_day``
        (UTC, both included): events, active customers, sessions, purchases, revenue,
        conversion rate and average order value."""
        span = _range(first_day, last_day)
        if span.days > MAX_DAYS[window]:
            raise ApiError(
                f"at most {MAX_DAYS[window]} days of {window} windows per request, not {span.days}",
                "range_too_long",
            )
        table = self.cache.get(
            self.sandbox.db, ("kpis", window), lambda: reads.kpi_table(self.sandbox.db, window)
        )
        rows = table.between(first_day, last_day)
        return KpiResponse(window=window, first_day=first_day, last_day=last_day, rows=rows)

    @bentoml.api(route="/audit")
    def audit(
        self, lens: Lens, first_period: date | None = None, last_period: date | None = None
    ) -> AuditResponse:
        """One table of the customer-base audit (``summary``, ``period_comparison``,
        ``cohort_evolution``, ...), for the periods (their first days) from ``first_period`` to
        ``last_period``, either open. A period the audit does not have gives no rows."""
        if first_period and last_period:
            _range(first_period, last_period)
        name, columns, rows, periods = self.cache.get(
            self.sandbox.db,
            ("audit", lens, first_period, last_period),
            lambda: reads.audit_lens(self.sandbox.db, lens, first_period, last_period),
        )
        if not columns:
            raise ApiError(
                "no audit published yet: materialize customer_base_audit", "no_audit", 404
            )
        return AuditResponse(lens=lens, table=name, columns=columns, rows=rows, periods=periods)

    @bentoml.api(route="/customer")
    async def customer(self, customer_id: CustomerId) -> CustomerProfile:
        """One customer: latest online features, activity from the lakehouse, last predictions."""
        return await anyio.to_thread.run_sync(self._profile, customer_id)

    @bentoml.api(route="/sql")
    async def sql(self, query: Query, max_rows: int | None = None) -> SqlResult:
        """A read-only SQL query (one SELECT) over the lakehouse's tables (``/tables`` lists them),
        with a row limit and a time limit. Refused with a 4xx and the reason: anything but a
        SELECT, files outside the lakehouse, a query over the time limit, a result over the row
        limit."""
        limit = min(max_rows or self.max_rows, self.max_rows)
        try:
            result = await anyio.to_thread.run_sync(self.sandbox.run, query, limit, self.timeout_s)
        except Refused as exc:
            raise ApiError(str(exc), "sql_refused") from exc
        except TooSlow as exc:
            raise ApiError(str(exc), "sql_timeout", HTTPStatus.REQUEST_TIMEOUT) from exc
        except TooBig as exc:
            raise ApiError(
                str(exc), "result_too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            ) from exc
        except duckdb.PermissionException as exc:
            raise ApiError(
                f"only the lakehouse can be read here: {exc}", "outside_lake", 403
            ) from exc
        except duckdb.OutOfMemoryException as exc:
            raise ApiError(f"the query needs too much memory: {exc}", "sql_out_of_memory") from exc
        except duckdb.Error as exc:  # the query itself is wrong: unknown table, bad types, ...
            raise ApiError(str(exc), "sql_error") from exc
        return SqlResult(
            columns=result.columns,
            types=result.types,
            rows=result.rows,
            row_count=len(result.rows),
            elapsed_ms=result.elapsed_ms,
        )

    @bentoml.api(route="/tables")
    def tables(self) -> LakeTables:
        """The tables the SQL endpoint reads, with the SELECT behind each."""
        self.sandbox.ensure_predictions()  # the prediction log's view: not in a snapshot
        tables = self.cache.get(
            self.sandbox.db, ("tables", self.sandbox.has_predictions), self.sandbox.refresh
        )
        return LakeTables(tables=tables)

    @bentoml.api(route="/admin/erase")
    async def erase(
        self,
        customer_ids: list[CustomerId],
        reason: Annotated[str, Field(min_length=1, max_length=500)],
        ctx: bentoml.Context,
    ) -> ErasureResult:
        """Erase customers from every store (admin): ``analytics erase-customer`` in its own
        process, answered with its receipt once every store is clean. An unknown id is not an
        error: the receipt says nothing was found."""
        if not customer_ids:
            raise ApiError("name at least one customer id", "no_customers")
        who = ctx.request.scope.get(KEY_SCOPE) or "(no keys configured)"
        command = [
            sys.executable, "-m", "analytics_assets.privacy_cli",
            "--reason", f"{reason} (requested by {who} over the read API)",
            "--from-file", "-", "--json",
        ]  # fmt: skip
        done = await anyio.run_process(command, input="\n".join(customer_ids).encode(), check=False)
        out = done.stdout.decode(errors="replace").strip().splitlines()
        if done.returncode != 0 or not out:
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise ApiError(message[-1] if message else "the erasure failed", "erasure_failed", 500)
        receipt = json.loads(out[-1])
        self.cache = reads.SnapshotCache()  # nothing cached may still show them
        return ErasureResult(
            receipt_id=receipt["receipt_id"],
            receipt=receipt["path"],
            customers=len(receipt["id_hashes"]),
            found=any(s["rows"] or s["files"] for s in receipt["stores"].values()),
            verified=receipt["verified"],
            stores=receipt["stores"],
            snapshots_expired=receipt["snapshots_expired"],
            days_touched=len(receipt["days_touched"]),
        )

    @bentoml.api(route="/admin/keys")
    def keys(self) -> ApiKeys:
        """The API keys' names and roles (admin); never the keys."""
        from analytics_assets.lib.api_keys import KeyRing

        ring = KeyRing(settings.api_keys_path(), legacy=settings.serving_api_key())
        return ApiKeys(keys=ring.names())

    def _profile(self, customer_id: str) -> CustomerProfile:
        self.sandbox.ensure_predictions()
        activity = reads.activity(self.sandbox.db, customer_id)
        predictions = reads.predictions(self.sandbox.db, customer_id)
        features, as_of = self._features(customer_id)
        if activity is None and features is None and not predictions:
            raise ApiError(
                f"customer {customer_id!r} is not known to the lakehouse, the online store or the "
                "prediction log",
                "unknown_customer",
                404,
            )
        return CustomerProfile(
            customer_id=customer_id,
            features=features,
            features_as_of=as_of,
            activity=activity,
            predictions=predictions,
        )

    def _features(self, customer_id: str):
        reader = self._online_reader()
        if reader is None:
            return None, None
        rows = reader.read([customer_id])
        if not rows.known[0]:
            return None, None
        values = {
            name: (None if value != value else float(value))
            for name, column in rows.columns.items()
            for value in [column[0]]
        }
        return values, rows.as_of[0]

    def _online_reader(self):
        """Every feature view's features from the online store (Feast loaded at first use:
        reads that need no features do not pay for it)."""
        with self._online_lock:
            if self._online is None:
                if not settings.online_layout_path().exists():
                    return None
                from analytics_assets.lib.feast_repo import open_store
                from analytics_assets.lib.online_reader import OnlineReader

                store = open_store(settings.feature_repo_path())
                views = {v.name: [f.name for f in v.features] for v in store.list_feature_views()}
                if not views:
                    return None
                self._online = OnlineReader(store, views)
            return self._online


def _range(first: date, last: date) -> DayRange:
    try:
        return DayRange(first_day=first, last_day=last)
    except ValueError as exc:
        raise ApiError(f"last day {last} is before first day {first}", "invalid_range") from exc


AnalyticsReader.add_asgi_middleware(
    RequestGuard,
    public=("/dashboard",),  # a page with no data: it asks for the key its reads need
    roles={
        **dict.fromkeys(
            (
                "/kpis",
                "/audit",
                "/customer",
                "/sql",
                "/tables",
                "/report",
                "/live",
                "/export",
                "/experiments",
            ),
            "analyst",
        ),
        **dict.fromkeys(("/admin/erase", "/admin/keys"), "admin"),
    },
)
AnalyticsReader.add_asgi_middleware(ErrorShape)
