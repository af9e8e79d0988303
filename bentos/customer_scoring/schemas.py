"""Request and response models of the scoring API (pydantic; BentoML turns a failed validation
into a 400 with the field and the reason)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

MAX_IDS = 1000
"""Most customer ids, or feature rows, in one request."""

CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=128, strict=True)]
CustomerIds = Annotated[
    list[CustomerId],
    Field(min_length=1, max_length=MAX_IDS, description=f"1 to {MAX_IDS} customer ids"),
]
HorizonDays = Annotated[
    int, Field(ge=1, le=3650, strict=True, description="Days ahead (1 to 3650)")
]
FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | None
"""A finite number, or null for a missing value (the models handle missing inputs)."""
FeatureRows = Annotated[
    list[dict[Annotated[str, StringConstraints(max_length=128)], FeatureValue]],
    Field(min_length=1, max_length=MAX_IDS),
]
Role = Literal["champion", "challenger"]


class Scored(BaseModel):
    customer_id: str
    known: bool = Field(description="Whether the feature store holds the customer")
    model_version: str = Field(description="MLflow version of the model that answered")
    role: Role
    features_as_of: datetime | None = Field(
        description="Timestamp of the oldest feature row used (UTC)"
    )


class ChurnPrediction(Scored):
    churn_probability: float | None = Field(
        description="Probability of no purchase in the model's label window (e.g. 90 days)"
    )


class ChurnResponse(BaseModel):
    model: str
    feature_service: str
    predictions: list[ChurnPrediction]


class ValuePrediction(Scored):
    expected_purchases: float | None
    expected_revenue: float | None
    probability_alive: float | None
    expected_average_spend: float | None


class ValueResponse(BaseModel):
    model: str
    feature_service: str
    horizon_days: int
    predictions: list[ValuePrediction]


class ScoreResponse(BaseModel):
    model: str
    model_version: str
    features: list[str]
    predictions: list[dict[str, float | None]]


class ServedModel(BaseModel):
    model: str
    role: Role
    bentoml_tag: str
    model_version: str
    feature_service: str
    scorer: str = Field(
        description="What computes the outputs: the churn model's converted trees (treelite "
        "GTIL), or scikit-learn with the reason it is the fallback"
    )
    loaded_at: datetime


class ModelsStatus(BaseModel):
    models: list[ServedModel]
    changed: list[str] = Field(description="Models swapped in by this call")
    errors: dict[str, str] = Field(description="Models that failed to load, and why")
