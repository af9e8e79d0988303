"""Request and response models of the read API (pydantic: validated, and in the OpenAPI)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

Window = Literal["hour", "day"]
Lens = Literal[
    "summary",
    "purchase_distribution",
    "revenue_deciles",
    "lorenz",
    "period_comparison",
    "cohort_evolution",
    "cohort_comparison",
    "layer_cake",
]
MAX_DAYS = {"hour": 366, "day": 3_660}
"""The longest range one KPI request may ask for, per window."""

Scalar = float | int | str | bool | None


class DayRange(BaseModel):
    first_day: date = Field(description="First day of the range (UTC), included.")
    last_day: date = Field(description="Last day of the range (UTC), included.")

    @model_validator(mode="after")
    def _ordered(self) -> DayRange:
        if self.last_day < self.first_day:
            raise ValueError(f"last_day {self.last_day} is before first_day {self.first_day}")
        return self

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


class KpiRow(BaseModel):
    window_start: datetime = Field(description="Start of the window (UTC).")
    events: int = Field(description="Events that occurred in the window.")
    active_customers: int = Field(description="Distinct customers with an event in the window.")
    sessions: int | None = Field(description="Sessions started in the window.")
    purchases: int = Field(description="Purchase events in the window.")
    revenue: float = Field(description="Sum of the purchases' amounts.")
    conversion_rate: float | None = Field(
        description="Share of the sessions started in the window with at least one purchase "
        "(0 to 1; null without sessions)."
    )
    average_order_value: float | None = Field(
        description="Revenue per purchase (null without purchases)."
    )


class KpiResponse(BaseModel):
    window: Window
    first_day: date
    last_day: date
    rows: list[KpiRow]


class AuditResponse(BaseModel):
    lens: Lens
    table: str
    columns: list[str]
    rows: list[dict[str, Scalar]]
    periods: list[date] = Field(description="Every period the audit has, for this lens.")


class Activity(BaseModel):
    first_day: date
    last_day: date
    active_days: int
    events: int
    purchases: int
    revenue: float
    recent_days: list[dict[str, Scalar]] = Field(description="The last active days, newest first.")


class Prediction(BaseModel):
    logged_at: datetime
    model: str
    model_version: str | None
    role: str | None
    endpoint: str | None
    outputs: dict[str, float | None]


class CustomerProfile(BaseModel):
    customer_id: str
    features: dict[str, float | None] | None = Field(
        description="Latest features in the online store (null when it has none)."
    )
    features_as_of: datetime | None
    activity: Activity | None
    predictions: list[Prediction] = Field(description="The last predictions, newest first.")


CustomerId = Annotated[str, Field(min_length=1, max_length=200)]
Query = Annotated[str, Field(min_length=1, max_length=20_000)]


class SqlResult(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Scalar | list | dict]]
    row_count: int
    elapsed_ms: float


class LakeTables(BaseModel):
    tables: dict[str, str] = Field(
        description="Every table the SQL endpoint can read, by name, with its SELECT."
    )


class StoreCounts(BaseModel):
    rows: int = Field(description="Rows (or online entries) removed from the store.")
    files: int = Field(description="Files rewritten or deleted.")


class ErasureResult(BaseModel):
    receipt_id: str
    receipt: str = Field(description="The receipt's path under ANALYTICS_HOME/erasures.")
    customers: int = Field(description="Customers erased (the receipt holds salted hashes only).")
    found: bool = Field(description="Whether any store held any of them.")
    verified: bool = Field(description="A new scan of every store found none of them.")
    stores: dict[str, StoreCounts]
    snapshots_expired: int
    days_touched: int = Field(description="Days whose analytics are rebuilt without them.")


class ApiKeys(BaseModel):
    keys: list[dict[str, Scalar | list[str]]] = Field(
        description="Each key's name, roles and creation time (never the key)."
    )


Verdict = Literal["ship", "stop", "keep_running"]


class ExperimentSummary(BaseModel):
    """An experiment's newest look (table ``experiment_verdicts``)."""

    experiment: str
    day: date = Field(description="The look: events before the end of this UTC day.")
    verdict: Verdict
    valid: bool = Field(description="False: the split is broken, or it is not declared right.")
    reason: str
    primary_metric: str | None = None
    best_variant: str | None = None
    customers: int | None = Field(None, description="Exposed customers in declared variants.")
    srm_p_value: float | None = Field(None, description="Sample-ratio chi-square p-value.")
    srm_passed: bool | None = None
    crossovers: int | None = Field(
        None, description="Customers exposed to more than one variant (kept in their first)."
    )
    unknown_variant_customers: int | None = None
    days_running: int | None = None
    horizon_days: int | None = None
    start: date | None = None


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]


class ArmResult(BaseModel):
    """One variant on one metric at one look: against control for a treatment, with the 95 %
    interval (one planned look), CUPED's, and the always-valid one (any look)."""

    day: date
    variant: str
    is_control: bool
    metric: Literal["conversion", "orders", "revenue"]
    customers: int
    mean: float | None = None
    control_mean: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    lift: float | None = Field(None, description="mean / control mean - 1")
    lift_low: float | None = None
    lift_high: float | None = None
    cuped_diff: float | None = None
    cuped_low: float | None = None
    cuped_high: float | None = None
    cuped_variance_ratio: float | None = None
    seq_low: float | None = None
    seq_high: float | None = None
    seq_p_value: float | None = None


class ExperimentDetail(ExperimentSummary):
    results: list[ArmResult] = Field(description="Every variant and metric at the newest look.")
    history: list[ArmResult] = Field(
        description="The primary metric at every daily look, oldest first."
    )
