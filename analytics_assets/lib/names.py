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

RUN_QUEUE_TAG = "dagster-celery/queue"
"""The run tag dagster-celery's launcher sends a run to a Celery queue by (runs without it go
to ``DEFAULT_QUEUE``): workers take the queues they are started on (``ANALYTICS_CELERY_QUEUES``),
so each workload can have workers of its own (docs/scaling-out.md)."""

STREAMING_QUEUE, TRAINING_QUEUE, DEFAULT_QUEUE = "streaming", "training", "dagster"
"""Batches from the landing zone and Kafka; ``retrain_models``; everything else (day rebuilds,
features, monitoring, maintenance)."""

SNAPSHOT_SOURCE = "customer_features_snapshots"
"""The Feast data source over the snapshot files (``feature_repo/data_sources.py``)."""

EXPERIMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""What an experiment's or a variant's name may be (exposure events, ``experiments.yaml``,
``analytics simulate --experiment``): it appears in URLs and file names."""
