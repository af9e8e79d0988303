"""What each model reads: a model version pins its service, so changing a model's inputs means a
new service version, never an edit of one in use."""

from feast import FeatureService
from feature_views import engagement, purchase_behaviour

from analytics_assets.lib.names import CHURN_FEATURES, CLV_FEATURES

churn_v1 = FeatureService(
    name=CHURN_FEATURES,
    features=[
        purchase_behaviour[
            [
                "frequency",
                "recency_days",
                "tenure_days",
                "monetary_value",
                "days_since_last_purchase",
            ]
        ],
        engagement[
            [
                "sessions_7d",
                "sessions_28d",
                "page_views_28d",
                "cart_abandonment_rate_28d",
                "days_since_last_session",
            ]
        ],
    ],
    tags={"model": "churn"},
    description="Inputs of the churn classifier (no purchase in the next 90 days).",
)

clv_v1 = FeatureService(
    name=CLV_FEATURES,
    features=[
        purchase_behaviour[
            [
                "frequency",
                "recency_days",
                "tenure_days",
                "monetary_value",
                "average_order_value",
                "total_revenue",
            ]
        ]
    ],
    tags={"model": "clv"},
    description="Inputs of the lifetime value models (BG/NBD + Gamma-Gamma, 180-day value).",
)
