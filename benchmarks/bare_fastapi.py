"""The baseline of benchmarks/serving.py: the same churn champion and the same online feature
read behind a bare FastAPI app on uvicorn (no BentoML, no logging, no metrics, no auth).

Usage: ``ANALYTICS_HOME=... python benchmarks/bare_fastapi.py PORT``.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from analytics_assets import settings
from analytics_assets.lib.feast_repo import open_store
from analytics_assets.lib.names import CHURN_MODEL
from analytics_assets.lib.online_reader import OnlineReader
from bentos.customer_scoring.champions import churn_scorer, model_store


class Request(BaseModel):
    customer_ids: list[str]


def create_app() -> FastAPI:
    import bentoml

    model = bentoml.models.get(f"{CHURN_MODEL}:latest", _model_store=model_store())
    features, score, _ = churn_scorer(model)
    store = open_store(settings.feature_repo_path())
    service = store.get_feature_service(model.info.labels["feature_service"])
    reader = OnlineReader(
        store, {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
    )
    app = FastAPI()

    @app.post("/churn")
    async def churn(request: Request) -> dict:  # in the event loop, as the service does
        rows = reader.read(request.customer_ids)
        p = score({f: rows.columns[f] for f in features}, {})["churn_probability"]
        return {
            "predictions": [
                {"customer_id": c, "known": bool(k), "churn_probability": float(v) if k else None}
                for c, k, v in zip(request.customer_ids, rows.known, p, strict=True)
            ]
        }

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
