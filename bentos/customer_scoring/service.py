"""The customer scoring service (BentoML): churn probability and lifetime value of customers,
from their latest features in Feast's online store (read in-process) and the promoted models.

``bentoml serve`` here (or ``make serve``) starts it on 127.0.0.1:3001 (Dagster's UI has 3000).
It loads the champions from the BentoML model store at start and swaps in newly promoted ones
without a restart.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from typing import Literal

import anyio.to_thread
import bentoml
import numpy as np
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from analytics_assets import settings
from analytics_assets.lib.names import CHURN_MODEL, CLV_MODEL
from bentos.customer_scoring.champions import LoadedModel, Models, model_store
from bentos.customer_scoring.prediction_log import PredictionLog
from bentos.customer_scoring.readiness import Workers
from bentos.customer_scoring.routing import to_challenger
from bentos.customer_scoring.schemas import (
    ChurnPrediction,
    ChurnResponse,
    CustomerIds,
    FeatureRows,
    HorizonDays,
    ModelsStatus,
    ScoreResponse,
    ServedModel,
    ValuePrediction,
    ValueResponse,
)
from bentos.errors import ApiError, ErrorShape
from bentos.guard import RequestGuard

logger = logging.getLogger("bentoml.customer_scoring")
MODEL_NAMES = {"churn": CHURN_MODEL, "clv": CLV_MODEL}
INLINE_MAX_ROWS = 100
"""A request for at most this many customers whose features are read from the local SQLite
store is scored on the event loop: at most about 3 ms of work (one customer: 0.1 ms, where a
thread hop costs more than the work; BentoML's sync endpoints cut capacity by 40 % and handing
100-customer requests to threads cut bulk throughput by a third here). A bigger request, and
any read over the network (Redis), runs in a worker thread, so that one slow request cannot
stall the others."""


@bentoml.service(
    name="customer_scoring",
    http={"host": settings.serving_host(), "port": 3001},
    # BentoML's timeout middleware keeps each request's context alive for the whole timeout
    # (a timer it never cancels): 10 s, not 30, and no tracing span in that context on the
    # scoring routes (the span, even unsampled, cost 35 % of capacity and the garbage
    # collector's pauses; BENCHMARKS.md, serving). Tracing still covers /reload and the probes.
    traffic={"timeout": 10},
    tracing={"excluded_urls": ["/churn", "/clv", "/score"]},
    workers=settings.serving_workers(),
    logging={"access": {"enabled": settings.serving_access_log()}},
)
class CustomerScoring:
    def __init__(self) -> None:
        settings.check_serving_exposure()
        from prometheus_client import Counter
        from threadpoolctl import threadpool_limits

        # one OpenMP thread: a request scores few rows, and idle OpenMP workers spin on the
        # core the server's other threads (and clients on the same host) need
        threadpool_limits(1, user_api="openmp")

        from analytics_assets.lib.feast_repo import open_store

        self.feature_store = open_store(settings.feature_repo_path())
        # several workers switch to a new model at one instant (see Models): the promotion
        # time plus time for every worker to notice it and load it
        self.workers = Workers()
        reload_s = settings.serving_reload_seconds()
        switch_after = reload_s + 5.0 if len(self.workers.workers()) > 1 else 0.0
        self.models = Models(model_store(), self.feature_store, switch_after=switch_after)
        self.models.refresh()
        self.models.watch(reload_s)
        self.share = settings.serving_challenger_share()
        self.shadow = settings.serving_shadow()
        dropped = Counter(
            "customer_scoring_prediction_log_dropped_rows",
            "Prediction log rows dropped because the buffer was full (writes failing)",
        )
        self.log = PredictionLog(
            settings.predictions_dir(),
            settings.serving_log_flush_seconds(),
            on_drop=dropped.inc,
        )
        self.log.start()
        self.predictions = Counter(
            "customer_scoring_predictions",
            "Customers scored, by model, version, role and whether the answer was served",
            ["model", "model_version", "role", "served"],
        )
        self.unknown = Counter(
            "customer_scoring_unknown_customers", "Customers without online features", ["model"]
        )
        # Everything loaded so far (Feast, MLflow, scikit-learn, the models: about 400,000
        # objects) is left out of the cyclic garbage collector's scans from now on: a full
        # collection scanned them all, a 250-500 ms pause of the event loop every few seconds
        # under load (BENCHMARKS.md, serving)
        import gc

        gc.collect()
        gc.freeze()
        self.workers.mark_loaded()
        logger.info("worker %d loaded", os.getpid())

    def __is_ready__(self) -> bool:
        """Ready once a champion of every model is loaded, and every worker of this server has
        loaded (``/readyz``; see :mod:`readiness`)."""
        return self.models.ready() and self.workers.all_loaded()

    @bentoml.on_shutdown
    def close(self) -> None:
        self.workers.close()
        self.models.stop()
        self.log.close()

    @bentoml.api(route="/churn")
    async def churn(self, customer_ids: CustomerIds) -> ChurnResponse:
        """Probability that each customer makes no purchase in the churn window."""
        champion, rows = await self._off_loop_if_slow(
            CHURN_MODEL, len(customer_ids), self._predict, "churn", CHURN_MODEL, customer_ids, {}
        )
        return ChurnResponse(
            model=CHURN_MODEL,
            feature_service=champion.feature_service,
            predictions=[ChurnPrediction(**row) for row in rows],
        )

    @bentoml.api(route="/clv")
    async def clv(
        self, customer_ids: CustomerIds, horizon_days: HorizonDays = 180
    ) -> ValueResponse:
        """Expected purchases, revenue and probability alive over the next ``horizon_days``."""
        params = {"horizon_days": horizon_days}
        champion, rows = await self._off_loop_if_slow(
            CLV_MODEL, len(customer_ids), self._predict, "clv", CLV_MODEL, customer_ids, params
        )
        return ValueResponse(
            model=CLV_MODEL,
            feature_service=champion.feature_service,
            horizon_days=horizon_days,
            predictions=[ValuePrediction(**row) for row in rows],
        )

    @bentoml.api(route="/score")
    async def score(
        self, model: Literal["churn", "clv"], rows: FeatureRows, horizon_days: HorizonDays = 180
    ) -> ScoreResponse:
        """What-if scoring of feature rows given in the request (no feature store lookup) by the
        champion; an absent or null feature is a missing value."""
        champion = self._champion(MODEL_NAMES[model])
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "unknown_feature",
                    "{name} is not an input of {model}; its inputs are {inputs}",
                    {"name": name, "model": champion.name, "inputs": champion.features},
                ),
                loc=("rows", i, name),
                input=row[name],
            )
            for i, row in enumerate(rows)
            for name in row
            if name not in champion.features
        ]
        if errors:
            raise ValidationError.from_exception_data("score", errors)
        columns = {
            name: np.array([np.nan if row.get(name) is None else row[name] for row in rows])
            for name in champion.features
        }
        params = {"horizon_days": horizon_days} if champion.name == CLV_MODEL else {}
        outputs = await self._off_loop_if_slow(None, len(rows), champion.score, columns, params)
        n = len(rows)
        self._record(
            "score",
            uuid.uuid4().hex,
            champion,
            True,
            [None] * n,
            np.ones(n, dtype=bool),
            [None] * n,
            columns,
            outputs,
            params,
        )
        return ScoreResponse(
            model=champion.name,
            model_version=champion.version,
            features=champion.features,
            predictions=[
                {name: _number(values[i]) for name, values in outputs.items()} for i in range(n)
            ],
        )

    @bentoml.api(route="/reload")
    async def reload(self) -> ModelsStatus:
        """Look for newly promoted models now (the service also looks every few seconds) and
        say which models are served."""
        changed = await anyio.to_thread.run_sync(self.models.refresh)
        return ModelsStatus(
            models=[
                ServedModel(
                    model=m.name,
                    role=m.role,
                    bentoml_tag=m.tag,
                    model_version=m.version,
                    feature_service=m.feature_service,
                    scorer=m.scorer,
                    loaded_at=m.loaded_at,
                )
                for m in self.models.served()
            ],
            changed=changed,
            errors=dict(self.models.errors),
        )

    async def _off_loop_if_slow(self, name: str | None, rows: int, work, *args):
        """``work(*args)`` on the event loop when it is small and local (see
        :data:`INLINE_MAX_ROWS`), else in a worker thread. ``name``: the model whose features
        are read (``None``: no read)."""
        if rows <= INLINE_MAX_ROWS:
            champion = self.models.slot(name).champion if name is not None else None
            if champion is None or champion.reader.reads_sqlite_directly:
                return work(*args)
        return await anyio.to_thread.run_sync(work, *args)

    def _champion(self, name: str) -> LoadedModel:
        champion = self.models.slot(name).champion
        if champion is None:
            raise ApiError(f"no {name} has been promoted to the model store yet", "no_model", 503)
        return champion

    def _predict(
        self, endpoint: str, name: str, customer_ids: list[str], params: dict
    ) -> tuple[LoadedModel, list[dict]]:
        """Score every customer with the model that answers for it (champion, or challenger for
        its share); in shadow mode the challenger scores everyone too, unanswered. Returns the
        champion and one answer per customer, in request order."""
        slot = self.models.slot(name)  # once: a reload meanwhile does not mix versions
        champion = slot.champion
        if champion is None:
            raise ApiError(f"no {name} has been promoted to the model store yet", "no_model", 503)
        everyone = np.ones(len(customer_ids), dtype=bool)
        plan = [(champion, everyone, True)]
        if slot.challenger is not None and self.shadow:
            plan.append((slot.challenger, everyone, False))
        elif slot.challenger is not None and self.share > 0:
            routed = to_challenger(customer_ids, self.share)
            plan = [(champion, ~routed, True), (slot.challenger, routed, True)]
        request_id = uuid.uuid4().hex
        answers: list[dict | None] = [None] * len(customer_ids)
        features = {}
        for model, mask, served in plan:
            if not mask.any():
                continue
            if model.feature_service not in features:
                features[model.feature_service] = model.reader.read(customer_ids)
            rows = features[model.feature_service]
            picked = np.flatnonzero(mask)
            whole = len(picked) == len(customer_ids)
            columns = {
                f: rows.columns[f] if whole else rows.columns[f][picked] for f in model.features
            }
            known = rows.known if whole else rows.known[picked]
            as_of = rows.as_of if whole else [rows.as_of[i] for i in picked]
            ids = customer_ids if whole else [customer_ids[i] for i in picked]
            outputs = {
                key: np.where(known, values, np.nan)
                for key, values in model.score(columns, params).items()
            }
            self._record(
                endpoint, request_id, model, served, ids, known, as_of, columns, outputs, params
            )
            if not served:
                continue
            for j, i in enumerate(picked):
                answers[i] = {
                    "customer_id": ids[j],
                    "known": bool(known[j]),
                    "model_version": model.version,
                    "role": model.role,
                    "features_as_of": as_of[j],
                    **{key: _number(values[j]) for key, values in outputs.items()},
                }
        return champion, answers

    def _record(
        self, endpoint, request_id, model, served, ids, known, as_of, columns, outputs, params
    ) -> None:
        self.log.record(
            endpoint=endpoint,
            request_id=request_id,
            model=model,
            served=served,
            customer_ids=ids,
            known=known,
            as_of=as_of,
            features=columns,
            outputs=outputs,
            params=params,
        )
        self.predictions.labels(model.name, model.version, model.role, str(served).lower()).inc(
            len(ids)
        )
        if served and not known.all():
            self.unknown.labels(model.name).inc(int((~known).sum()))


CustomerScoring.add_asgi_middleware(
    RequestGuard,
    roles={"/churn": "scorer", "/clv": "scorer", "/score": "scorer", "/reload": "admin"},
)
CustomerScoring.add_asgi_middleware(ErrorShape)


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
