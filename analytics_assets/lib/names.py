"""Names shared by the pipeline, the Feast repo and the scoring service, defined once."""

CHURN_MODEL, CLV_MODEL = "churn_model", "clv_model"
"""Registered model names (MLflow), asset names and BentoML model names of the two models."""

MODELS = (CHURN_MODEL, CLV_MODEL)

CHALLENGER_SUFFIX = "_challenger"
"""BentoML model ``<name>_challenger`` holds the challenger the gate kept, for live traffic
splits; ``<name>`` itself is always the champion."""

CHURN_FEATURES, CLV_FEATURES = "churn_v1", "clv_v1"
"""The Feast feature services the models read (``feature_repo/feature_services.py``)."""

FEATURE_SERVICES = (CHURN_FEATURES, CLV_FEATURES)

SNAPSHOT_SOURCE = "customer_features_snapshots"
"""The Feast data source over the snapshot files (``feature_repo/data_sources.py``)."""
