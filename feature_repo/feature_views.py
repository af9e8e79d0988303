"""Customer feature views over the daily snapshots.

TTL: snapshots are written once a day and recency-like features (T, days since ...) move every
day, so a value more than two days old (one missed snapshot) is stale: past the TTL a
point-in-time join returns null rather than an old value.
"""

from datetime import timedelta

from data_sources import customer_features_source
from entities import customer
from feast import FeatureView, Field
from feast.types import Float64, Int64

SNAPSHOT_TTL = timedelta(days=2)

purchase_behaviour = FeatureView(
    name="purchase_behaviour",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="frequency", dtype=Int64, description="Repeat purchase days (BG/NBD x)."),
        Field(name="recency_days", dtype=Float64, description="First to last purchase day."),
        Field(name="tenure_days", dtype=Float64, description="First purchase day to as-of (T)."),
        Field(name="monetary_value", dtype=Float64, description="Mean repeat purchase-day value."),
        Field(name="orders", dtype=Int64, description="Purchase events so far."),
        Field(name="average_order_value", dtype=Float64, description="Revenue per order."),
        Field(name="total_revenue", dtype=Float64, description="Revenue so far."),
        Field(name="days_since_last_purchase", dtype=Float64, description="As-of minus last."),
    ],
    source=customer_features_source,
    online=True,
    tags={"owner": "analytics", "grain": "customer x as-of day"},
    description="What and when a customer bought, up to the as-of day (RFM, tenure, AOV).",
)

engagement = FeatureView(
    name="engagement",
    entities=[customer],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="sessions_7d", dtype=Int64),
        Field(name="sessions_28d", dtype=Int64),
        Field(name="page_views_7d", dtype=Int64),
        Field(name="page_views_28d", dtype=Int64),
        Field(
            name="cart_abandonment_rate_28d",
            dtype=Float64,
            description="Share of sessions with a cart and no purchase, of sessions with a cart.",
        ),
        Field(name="days_since_last_session", dtype=Float64),
        Field(name="mobile_share_28d", dtype=Float64, description="Share of sessions on mobile."),
        Field(name="desktop_share_28d", dtype=Float64),
        Field(name="tablet_share_28d", dtype=Float64),
    ],
    source=customer_features_source,
    online=True,
    tags={"owner": "analytics", "grain": "customer x as-of day"},
    description="How a customer used the site in the last 7 and 28 days, and on what device.",
)
