"""Where the platform keeps its state, and the knobs read from the environment.

Everything is read inside functions, never at import, so tests (and users) can point
``ANALYTICS_HOME`` somewhere else at any time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRST_DAY = "1990-01-01"
"""Oldest event day accepted by default, and the first daily partition of the analytics."""


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def analytics_home() -> Path:
    """Root folder of all local state: ``$ANALYTICS_HOME``, default ``<repo>/.analytics``."""
    return Path(_env("ANALYTICS_HOME") or REPO_ROOT / ".analytics").resolve()


def landing_dir() -> Path:
    """Where producers drop micro-batch files: ``$ANALYTICS_LANDING_DIR`` or ``<home>/landing``."""
    return Path(_env("ANALYTICS_LANDING_DIR") or analytics_home() / "landing").resolve()


def quarantine_dir() -> Path:
    """Where files that cannot be read at all are moved."""
    return Path(_env("ANALYTICS_QUARANTINE_DIR") or analytics_home() / "quarantine").resolve()


def archive_dir() -> Path:
    """Where committed files go, by day of commit (``$ANALYTICS_ARCHIVE_DIR`` or
    ``<home>/archive``): the landing zone holds only what is not ingested yet."""
    return Path(_env("ANALYTICS_ARCHIVE_DIR") or analytics_home() / "archive").resolve()


def retention() -> dict[str, int]:
    """What the daily ``apply_retention`` job keeps (0: keep everything), from the environment:

    - ``ANALYTICS_ARCHIVE_RETENTION_DAYS`` (30): archived landing files;
    - ``ANALYTICS_PREDICTIONS_RETENTION_DAYS`` (90): the scoring service's prediction log;
    - ``ANALYTICS_REPORTS_RETENTION_DAYS`` (90): drift and other reports under ``reports/``;
    - ``ANALYTICS_RUN_RETENTION_DAYS`` (30): training and monitoring runs (their plots are in
      the event log), except the runs of each asset's latest materialization;
    - ``ANALYTICS_KEEP_MODEL_VERSIONS`` (10): newest model versions kept in MLflow and in the
      BentoML store besides the champion, the challenger and the champion before it.
    """
    defaults = {
        "archive_days": ("ANALYTICS_ARCHIVE_RETENTION_DAYS", 30),
        "predictions_days": ("ANALYTICS_PREDICTIONS_RETENTION_DAYS", 90),
        "reports_days": ("ANALYTICS_REPORTS_RETENTION_DAYS", 90),
        "runs_days": ("ANALYTICS_RUN_RETENTION_DAYS", 30),
        "model_versions": ("ANALYTICS_KEEP_MODEL_VERSIONS", 10),
    }
    return {key: int(_env(name) or default) for key, (name, default) in defaults.items()}


def max_file_bytes() -> int:
    """Largest batch file read, and largest a compressed file may decompress to
    (``$ANALYTICS_MAX_FILE_BYTES``, default 1 GiB): larger files are quarantined whole."""
    return int(_env("ANALYTICS_MAX_FILE_BYTES") or 1 << 30)


def warehouse_path() -> Path:
    """The DuckDB file of the platform before the lakehouse (``$ANALYTICS_WAREHOUSE`` or
    ``<home>/warehouse.duckdb``): moved into the lakehouse once, on the first run after the
    upgrade (``lib/lakehouse_upgrade.py``)."""
    return Path(_env("ANALYTICS_WAREHOUSE") or analytics_home() / "warehouse.duckdb").resolve()


def lakehouse_catalog() -> str:
    """The lakehouse's catalog, as DuckLake names it after ``ducklake:``
    (``$ANALYTICS_LAKEHOUSE_CATALOG``): default ``sqlite:<home>/lakehouse/catalog.sqlite``
    (embedded, no server); ``postgres:dbname=lake host=... user=...`` (or
    ``postgres:postgresql://user@host:port/lake``) for many hosts."""
    configured = _env("ANALYTICS_LAKEHOUSE_CATALOG")
    if configured:
        return configured
    return f"sqlite:{analytics_home() / 'lakehouse' / 'catalog.sqlite'}"


def lakehouse_data() -> str:
    """Where the lakehouse's Parquet files go (``$ANALYTICS_LAKEHOUSE_DATA``): default
    ``<home>/lakehouse/data/``; an object store URL (``s3://bucket/prefix/``) through httpfs."""
    configured = _env("ANALYTICS_LAKEHOUSE_DATA")
    if configured:
        return configured if "://" in configured else str(Path(configured).resolve()) + "/"
    return str(analytics_home() / "lakehouse" / "data") + "/"


def snapshot_retention_days() -> float:
    """How long lakehouse snapshots are kept (``$ANALYTICS_SNAPSHOT_RETENTION_DAYS``, default
    7; 0 keeps all): a restore reaches back this far; the hourly ``maintain_lakehouse`` job
    expires older ones and deletes the files only they held."""
    return float(_env("ANALYTICS_SNAPSHOT_RETENTION_DAYS") or 7)


def commit_attempts() -> int:
    """How many times a commit that conflicts with another writer's is tried
    (``$ANALYTICS_COMMIT_ATTEMPTS``, default 12; the waits grow from 20 ms to 2 s)."""
    return max(1, int(_env("ANALYTICS_COMMIT_ATTEMPTS") or 12))


def dagster_home() -> Path:
    """``$DAGSTER_HOME`` if set, else ``<home>/dagster_home``."""
    return Path(_env("DAGSTER_HOME") or analytics_home() / "dagster_home").resolve()


def celery_broker() -> str | None:
    """The Celery broker runs are sent through (``$ANALYTICS_CELERY_BROKER``, e.g.
    ``redis://broker:6379/0``). Unset: the embedded default, a ``redis-server`` on a Unix socket
    and a worker on this machine, both started with the daemon and gone with it
    (``analytics_assets/celery_runs.py``)."""
    return _env("ANALYTICS_CELERY_BROKER")


def celery_backend() -> str | None:
    """Where workers keep task states (``$ANALYTICS_CELERY_BACKEND``), default the broker: run
    monitoring reads them, so it must be a shared store (Redis), never ``rpc://``."""
    return _env("ANALYTICS_CELERY_BACKEND") or celery_broker()


def celery_concurrency() -> int:
    """Runs one worker executes at once (``$ANALYTICS_CELERY_CONCURRENCY``, default 4, as
    ``max_concurrent_runs`` in dagster.yaml): one prefork process each."""
    return max(1, int(_env("ANALYTICS_CELERY_CONCURRENCY") or 4))


def celery_max_runs_per_process() -> int:
    """Runs a worker process executes before it is replaced by a fresh fork of the preloaded
    worker (``$ANALYTICS_CELERY_MAX_RUNS_PER_PROCESS``, default 20; 1: a new process per run)."""
    return max(1, int(_env("ANALYTICS_CELERY_MAX_RUNS_PER_PROCESS") or 20))


def celery_max_mib_per_process() -> int:
    """Resident MiB after which a worker process is replaced once its run ends
    (``$ANALYTICS_CELERY_MAX_MIB_PER_PROCESS``, default 2048)."""
    return max(64, int(_env("ANALYTICS_CELERY_MAX_MIB_PER_PROCESS") or 2048))


def celery_queues() -> list[str]:
    """The queues a worker started by ``analytics worker`` (or the embedded one) takes runs
    from (``$ANALYTICS_CELERY_QUEUES``, comma-separated, default all three: ``streaming``
    (batches), ``dagster`` (dagster-celery's queue for runs without a ``dagster-celery/queue``
    tag: rebuilds, monitoring) and ``training``; ``lib/names.py``)."""
    raw = _env("ANALYTICS_CELERY_QUEUES") or "streaming,dagster,training"
    return [q.strip() for q in raw.split(",") if q.strip()]


def sensor_interval_seconds() -> int:
    """Minimum seconds between ``landing_sensor`` ticks (``$ANALYTICS_SENSOR_INTERVAL_S``).

    Dagster's sensor daemon loops every 5 s; a minimum below that makes the sensor run on every
    loop, where 5 itself would skip a loop whenever one comes a few milliseconds early.
    """
    return int(_env("ANALYTICS_SENSOR_INTERVAL_S") or 2)


def analytics_interval_seconds() -> int:
    """Minimum seconds between ``events_sensor`` ticks (``$ANALYTICS_REBUILD_INTERVAL_S``):
    batches committed meanwhile are rebuilt together, so a busy stream is not a run per batch."""
    return int(_env("ANALYTICS_REBUILD_INTERVAL_S") or 60)


def sensor_max_files_per_tick() -> int:
    """Upper bound on files claimed by one sensor tick; the rest wait for the next tick."""
    return int(_env("ANALYTICS_SENSOR_MAX_FILES") or 200)


def files_per_run() -> int:
    """Most landed files one run ingests when the sensor finds a backlog
    (``$ANALYTICS_FILES_PER_RUN``, default 8): each file is still its own batch, ledger row and
    partition, but they share one run's start-up."""
    return max(1, int(_env("ANALYTICS_FILES_PER_RUN") or 8))


def plausible_event_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """Oldest and newest ``occurred_at`` accepted; anything outside is quarantined.

    ``$ANALYTICS_EARLIEST_EVENT`` (ISO date, default 1990-01-01: CDNOW starts in 1997) and
    ``$ANALYTICS_MAX_FUTURE_SKEW_S`` (default one day of producer clock skew).
    """
    now = now or datetime.now(UTC)
    earliest = datetime.fromisoformat(_env("ANALYTICS_EARLIEST_EVENT") or FIRST_DAY)
    if earliest.tzinfo is None:
        earliest = earliest.replace(tzinfo=UTC)
    skew = timedelta(seconds=float(_env("ANALYTICS_MAX_FUTURE_SKEW_S") or 86_400))
    return earliest, now + skew


def feature_repo_path() -> Path:
    """The Feast repo (``$FEAST_REPO_PATH``, default ``<repo>/feature_repo``)."""
    return Path(_env("FEAST_REPO_PATH") or REPO_ROOT / "feature_repo").resolve()


def feature_snapshots_dir() -> Path:
    """Daily customer feature snapshots, one Parquet file per as-of day: what Feast's offline
    store reads (``$ANALYTICS_FEATURES_DIR`` or ``<home>/features/customer_features``)."""
    default = analytics_home() / "features" / "customer_features"
    return Path(_env("ANALYTICS_FEATURES_DIR") or default).resolve()


def online_layout_path() -> Path:
    """The registered feature views' online layout, recorded at each ``feast apply``: what the
    streaming lane needs to write the online store without importing Feast."""
    return analytics_home() / "feast" / "online_layout.json"


def training_set_path() -> Path:
    """The latest point-in-time training set (Parquet)."""
    return analytics_home() / "features" / "training_set.parquet"


def mlflow_tracking_uri() -> str:
    """MLflow tracking and registry store: ``$MLFLOW_TRACKING_URI`` (a server such as
    ``http://mlflow:5000``, or ``postgresql://...``), default SQLite under ``<home>/mlflow``
    (``mlflow ui --backend-store-uri`` that URI opens it)."""
    default = f"sqlite:///{analytics_home() / 'mlflow' / 'mlflow.db'}"
    return _env("MLFLOW_TRACKING_URI") or default


def redacted(uri: str) -> str:
    """``uri`` with the password of ``scheme://user:password@host`` replaced by ``***``: what
    may be shown (metadata, logs, the UI)."""
    import re

    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", uri)


def mlflow_artifact_root() -> str | None:
    """Where experiments we create keep their artifacts: ``$ANALYTICS_MLFLOW_ARTIFACTS`` (e.g.
    ``s3://bucket/mlflow``); with the embedded store ``<home>/mlflow/artifacts``; with a
    tracking server of your own, ``None``: the server's default artifact root."""
    if explicit := _env("ANALYTICS_MLFLOW_ARTIFACTS"):
        return explicit
    if _env("MLFLOW_TRACKING_URI"):
        return None
    return (analytics_home() / "mlflow" / "artifacts").as_uri()


def bentoml_home() -> Path:
    """The BentoML home whose model store holds the promoted models (``$BENTOML_HOME``,
    default ``<home>/bentoml``); ``bentoml serve`` must run with the same ``BENTOML_HOME``."""
    return Path(_env("BENTOML_HOME") or analytics_home() / "bentoml").resolve()


def models_dir() -> Path:
    """Holdout sets and evaluation results of the latest training run."""
    return analytics_home() / "models"


def predictions_dir() -> Path:
    """The scoring service's prediction log: Parquet files per model and day
    (``$ANALYTICS_PREDICTIONS_DIR`` or ``<home>/predictions``)."""
    return Path(_env("ANALYTICS_PREDICTIONS_DIR") or analytics_home() / "predictions").resolve()


def serving_api_key() -> str | None:
    """The key clients of the scoring service must send (``$SCORING_API_KEY``); unset: no
    authentication, which is why the service binds to localhost by default."""
    return _env("SCORING_API_KEY")


def api_keys_path() -> Path:
    """The API keys file both services read (``$ANALYTICS_API_KEYS_FILE``, default
    ``<home>/api_keys.json``): hashed keys and their roles, reloaded when it changes. Managed
    with ``analytics api-key``."""
    return Path(_env("ANALYTICS_API_KEYS_FILE") or analytics_home() / "api_keys.json").resolve()


def admin_audit_log() -> Path:
    """Where admin actions over the APIs are recorded, a JSON line each
    (``$ANALYTICS_ADMIN_AUDIT_LOG``, default ``<home>/audit/admin.jsonl``)."""
    default = analytics_home() / "audit" / "admin.jsonl"
    return Path(_env("ANALYTICS_ADMIN_AUDIT_LOG") or default).resolve()


def erasures_dir() -> Path:
    """Erasure receipts (``analytics erase-customer``): ``<home>/erasures``."""
    return analytics_home() / "erasures"


def experiments_file() -> Path:
    """The experiments declared for analysis: variants, control, split, primary metric
    (``$ANALYTICS_EXPERIMENTS_FILE``, default ``<home>/experiments.yaml``)."""
    default = analytics_home() / "experiments.yaml"
    return Path(_env("ANALYTICS_EXPERIMENTS_FILE") or default).resolve()


def model_split_path() -> Path:
    """The champion/challenger split's realized outcomes (``model_split``), which the gate
    reads as evidence: ``<home>/experiments/model_split.json``."""
    return analytics_home() / "experiments" / "model_split.json"


def serving_host() -> str:
    """Where the scoring service listens (``$SCORING_HOST``, default ``127.0.0.1``; the bento's
    container image sets ``0.0.0.0``)."""
    return _env("SCORING_HOST") or "127.0.0.1"


def check_serving_exposure() -> None:
    """Refuse to listen beyond this host without an API key: a service on ``0.0.0.0`` (a
    container) needs ``SCORING_API_KEY``."""
    import ipaddress

    host = serving_host()
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local and not serving_api_key():
        raise RuntimeError(
            f"the scoring service would listen on {host} (SCORING_HOST) without "
            "authentication: set SCORING_API_KEY, or SCORING_HOST=127.0.0.1"
        )


def serving_challenger_share() -> float:
    """Share of customers (by a hash of the id) the challenger answers for
    (``$SCORING_CHALLENGER_SHARE``, 0 to 1, default 0)."""
    share = float(_env("SCORING_CHALLENGER_SHARE") or 0.0)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"SCORING_CHALLENGER_SHARE must be within [0, 1], not {share}")
    return share


def serving_shadow() -> bool:
    """Shadow mode (``$SCORING_SHADOW=1``): the challenger scores every customer too, logged
    but never returned."""
    return (_env("SCORING_SHADOW") or "0").lower() in {"1", "true", "yes", "on"}


def serving_reload_seconds() -> float:
    """How often the scoring service looks for a newly promoted model
    (``$SCORING_RELOAD_INTERVAL_S``, default 5)."""
    return float(_env("SCORING_RELOAD_INTERVAL_S") or 5.0)


def serving_max_body_bytes() -> int:
    """Largest request body accepted (``$SCORING_MAX_BODY_BYTES``, default 1 MiB)."""
    return int(_env("SCORING_MAX_BODY_BYTES") or 1 << 20)


def serving_log_flush_seconds() -> float:
    """How often the scoring service writes its prediction log (``$SCORING_LOG_FLUSH_S``,
    default 5)."""
    return float(_env("SCORING_LOG_FLUSH_S") or 5.0)


def serving_workers() -> int:
    """Worker processes of the scoring service (``$SCORING_WORKERS``, default 2: on a 2-core
    host, with the load generator beside it, the second worker added about a fifth to the
    one-customer capacity and most of the bulk throughput; each costs its memory, about 0.5 GiB
    here; ``BENCHMARKS.md``, serving)."""
    workers = int(_env("SCORING_WORKERS") or 2)
    if workers < 1:
        raise ValueError(f"SCORING_WORKERS must be at least 1, not {workers}")
    return workers


def serving_access_log() -> bool:
    """Whether the scoring service logs every request (``$SCORING_ACCESS_LOG=1``; default off:
    it costs 10-15 % of capacity, and every prediction is in the prediction log and the
    request counts in ``/metrics``)."""
    return (_env("SCORING_ACCESS_LOG") or "0").lower() in {"1", "true", "yes", "on"}


def serving_fast_scorer() -> bool:
    """Score the churn model with its converted trees when the promotion saved them
    (``$SCORING_FAST_SCORER``, default on; ``0``: scikit-learn, as a baseline)."""
    return (_env("SCORING_FAST_SCORER") or "1").lower() not in {"0", "false", "no", "off"}


def drift_psi_threshold() -> float:
    """A feature (or prediction) drifts when its population stability index exceeds this
    (``$ANALYTICS_DRIFT_PSI``, default 0.2, the usual "significant shift" mark)."""
    return float(_env("ANALYTICS_DRIFT_PSI") or 0.2)


def drift_ks_threshold() -> float:
    """... or when its two-sample Kolmogorov-Smirnov statistic exceeds this
    (``$ANALYTICS_DRIFT_KS``, default 0.1)."""
    return float(_env("ANALYTICS_DRIFT_KS") or 0.1)


def drift_min_features() -> int:
    """Drifting features of one feature service that make the drift report recommend retraining
    (``$ANALYTICS_DRIFT_MIN_FEATURES``, default 3)."""
    return int(_env("ANALYTICS_DRIFT_MIN_FEATURES") or 3)


def auc_tolerance() -> float:
    """How far the champion's realized AUC may fall below its training-time AUC before the
    model counts as degraded (``$ANALYTICS_AUC_TOLERANCE``, default 0.05)."""
    return float(_env("ANALYTICS_AUC_TOLERANCE") or 0.05)


def retrain_cooldown_seconds() -> int:
    """Least time between two retraining runs the monitoring sensor requests, counted from the
    last ``retrain_models`` run of any origin (``$ANALYTICS_RETRAIN_COOLDOWN_S``, default 6 h)."""
    return int(_env("ANALYTICS_RETRAIN_COOLDOWN_S") or 6 * 3600)


def monitoring_interval_seconds() -> int:
    """Minimum seconds between evaluations of the monitoring assets' automation and the
    retraining sensor (``$ANALYTICS_MONITOR_INTERVAL_S``, default 300): drift is reported at
    most this often however fast batches arrive."""
    return int(_env("ANALYTICS_MONITOR_INTERVAL_S") or 300)


def alert_webhook_url() -> str | None:
    """Where run failures are posted as JSON (``$ANALYTICS_ALERT_WEBHOOK_URL``, e.g. a Slack
    incoming webhook); unset: failures are only recorded."""
    return _env("ANALYTICS_ALERT_WEBHOOK_URL")


def alerts_path() -> Path:
    """Run failures, one JSON object per line (``<home>/alerts/run_failures.jsonl``)."""
    return analytics_home() / "alerts" / "run_failures.jsonl"


def kafka_bootstrap() -> str | None:
    """Kafka bootstrap servers (``$KAFKA_BOOTSTRAP_SERVERS``); unset: the Kafka source is off."""
    return _env("KAFKA_BOOTSTRAP_SERVERS")


def kafka_topics() -> list[str]:
    """Topics to ingest, comma-separated (``$KAFKA_TOPICS``); one sensor each."""
    return [t.strip() for t in (_env("KAFKA_TOPICS") or "").split(",") if t.strip()]


def kafka_group() -> str:
    """The consumer group offsets are committed under after each commit, for lag monitoring
    (``$KAFKA_GROUP_ID``, default ``analytics-platform``)."""
    return _env("KAFKA_GROUP_ID") or "analytics-platform"


def kafka_client_config() -> dict:
    """Further librdkafka settings as a JSON object (``$KAFKA_CLIENT_CONFIG``), passed as they
    are: security.protocol, sasl.mechanism, sasl.username, ssl.ca.location, ..."""
    import json

    raw = _env("KAFKA_CLIENT_CONFIG")
    value = json.loads(raw) if raw else {}
    if not isinstance(value, dict):
        raise ValueError("KAFKA_CLIENT_CONFIG must be a JSON object of librdkafka settings")
    return value


def kafka_max_records() -> int:
    """Most records of one partition one run ingests (``$KAFKA_MAX_RECORDS``, default 50,000):
    a busy topic is not one run per message."""
    return int(_env("KAFKA_MAX_RECORDS") or 50_000)


def kafka_max_wait_s() -> float:
    """How long fewer than ``KAFKA_MAX_RECORDS`` new records wait for more before they are a
    run anyway (``$KAFKA_MAX_WAIT_S``, default 1): a quiet topic still flows. At 5 s, 2,000
    events every 5 s took p95 17.3 s from produce to a score (benchmarks/kafka.py)."""
    return float(_env("KAFKA_MAX_WAIT_S") or 1.0)


def read_api_sql_max_rows() -> int:
    """The most rows the read API's SQL endpoint returns; a bigger result is refused
    (``$READ_API_SQL_MAX_ROWS``, default 10,000)."""
    return int(_env("READ_API_SQL_MAX_ROWS") or 10_000)


def read_api_sql_timeout_s() -> float:
    """How long one query of the read API's SQL endpoint may run (``$READ_API_SQL_TIMEOUT_S``,
    default 5 s)."""
    return float(_env("READ_API_SQL_TIMEOUT_S") or 5.0)


def read_api_workers() -> int:
    """Worker processes of the read API (``$READ_API_WORKERS``, default 1). Each has its own
    DuckDB (2 threads, 1 GB), answer cache and live-feed watcher; see ``BENCHMARKS.md``,
    read API load, for what a second one changes on 2 cores."""
    workers = int(_env("READ_API_WORKERS") or 1)
    if workers < 1:
        raise ValueError(f"READ_API_WORKERS must be at least 1, not {workers}")
    return workers


def read_api_threads() -> int:
    """Threads per read API worker for its synchronous endpoints (KPIs, audit, tables;
    ``$READ_API_THREADS``, default 8). BentoML's default is one: every KPI and audit request
    of a process then waited for the one before, 10 s at p95 with 100 users (BENCHMARKS.md)."""
    threads = int(_env("READ_API_THREADS") or 8)
    if threads < 1:
        raise ValueError(f"READ_API_THREADS must be at least 1, not {threads}")
    return threads


def read_api_duckdb_threads() -> int:
    """Threads of each read API worker's DuckDB (``$READ_API_DUCKDB_THREADS``, default 1). The
    server's parallelism is its concurrent requests; a second thread inside one query cut little
    of its time and cost CPU every other request waited for: a 14-day distinct count over
    ``customer_daily`` took 177 ms and 330 CPU-ms on two threads, 189 ms and 189 CPU-ms on one
    (BENCHMARKS.md, read API load)."""
    threads = int(_env("READ_API_DUCKDB_THREADS") or 1)
    if threads < 1:
        raise ValueError(f"READ_API_DUCKDB_THREADS must be at least 1, not {threads}")
    return threads


def read_api_access_log() -> bool:
    """Whether the read API logs every request (``$READ_API_ACCESS_LOG=1``; default off, as for
    the scoring service: the log line costs CPU on every request of a CPU-bound server, and the
    request counts are in ``/metrics``; admin calls are in the audit log either way)."""
    return (_env("READ_API_ACCESS_LOG") or "0").lower() in {"1", "true", "yes", "on"}


def read_api_export_max_rows() -> int:
    """The most rows one export (``GET /export/{table}``, ``analytics export``) streams; a range
    with more is refused before the first byte (``$READ_API_EXPORT_MAX_ROWS``, default 50M)."""
    return int(_env("READ_API_EXPORT_MAX_ROWS") or 50_000_000)


def read_api_export_max_days() -> int:
    """The longest day range one export covers (``$READ_API_EXPORT_MAX_DAYS``, default 400)."""
    return int(_env("READ_API_EXPORT_MAX_DAYS") or 400)


def read_api_export_timeout_s() -> float:
    """How long one export may stream before it is cut off, unfinished
    (``$READ_API_EXPORT_TIMEOUT_S``, default 600 s)."""
    return float(_env("READ_API_EXPORT_TIMEOUT_S") or 600.0)


def read_api_live_max_subscribers() -> int:
    """The most live-feed subscribers (``GET /live``) one read API process serves; one more is
    answered 503 with ``Retry-After`` (``$READ_API_LIVE_MAX_SUBSCRIBERS``, default 2,000)."""
    return int(_env("READ_API_LIVE_MAX_SUBSCRIBERS") or 2_000)


def read_api_live_poll_s() -> float:
    """How often the live feed's watcher looks for a new lakehouse commit
    (``$READ_API_LIVE_POLL_S``, default 0.1 s: a stat of the SQLite catalog; on PostgreSQL a
    catalog query)."""
    return float(_env("READ_API_LIVE_POLL_S") or 0.1)


def read_api_live_heartbeat_s() -> float:
    """Seconds between the live feed's heartbeats (SSE comments) when nothing was committed
    (``$READ_API_LIVE_HEARTBEAT_S``, default 15 s)."""
    return float(_env("READ_API_LIVE_HEARTBEAT_S") or 15.0)


def read_api_url() -> str:
    """Where the read API answers (``$READ_API_URL``, default ``http://127.0.0.1:3002``)."""
    return (_env("READ_API_URL") or "http://127.0.0.1:3002").rstrip("/")


def reports_dir() -> Path:
    """Plots and reports written beside their materializations (``<home>/reports``)."""
    return analytics_home() / "reports"


def feast_environment() -> dict[str, str]:
    """The Feast stores the code location uses, from the environment with embedded defaults
    (Feast's SQL registry on a SQLite file and the SQLite online store under ``<home>/feast``,
    which is what ``feature_repo/feature_store.yaml`` names as it is); set ones win.

    The registry is SQL by default, not Feast's file registry: several processes use it (the
    code location, the ``feast`` CLI, the scoring service), and the file registry is rewritten
    in place (truncate, then write), so a reader during an apply saw an empty registry
    (``tests/features/test_registry_writers.py``). Transactions in SQLite make each change
    atomic.

    ``FEAST_REGISTRY_TYPE`` (``file`` or ``sql``), ``FEAST_REGISTRY_PATH`` (a file, or a
    SQLAlchemy URL such as ``postgresql+psycopg://...``), ``FEAST_ONLINE_STORE`` (a YAML
    mapping, e.g. ``{type: redis, connection_string: "localhost:6379"}``).
    """
    feast_home = analytics_home() / "feast"
    defaults = {
        "FEAST_REGISTRY_TYPE": "sql",
        "FEAST_REGISTRY_PATH": f"sqlite:///{feast_home / 'registry.sqlite'}",
        "FEAST_ONLINE_STORE": f'{{type: sqlite, path: "{feast_home / "online.db"}"}}',
    }
    return {name: _env(name) or default for name, default in defaults.items()}


def ensure_dirs() -> None:
    """Create the local state folders (idempotent)."""
    for path in (
        analytics_home(),
        landing_dir(),
        quarantine_dir(),
        warehouse_path().parent,
        feature_snapshots_dir(),
        analytics_home() / "feast",
        analytics_home() / "mlflow",
        models_dir(),
        predictions_dir(),
    ):
        path.mkdir(parents=True, exist_ok=True)
