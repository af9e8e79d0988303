# The two commands: `make demo` and `make test`. Both bootstrap uv and the locked environment.
SHELL := /bin/bash
# uv on PATH, else the one `pip install uv` puts beside python3 (no PATH rehash needed)
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
# empty counts as unset, as in analytics_assets/settings.py
ifeq ($(strip $(ANALYTICS_HOME)),)
ANALYTICS_HOME := $(CURDIR)/.analytics
endif
ifeq ($(strip $(DAGSTER_HOME)),)
DAGSTER_HOME := $(ANALYTICS_HOME)/dagster_home
endif
export ANALYTICS_HOME DAGSTER_HOME
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000
# one person reads it: each worker imports MLflow's server again (4, MLflow's default: 41 s to the first answer here, 1: 20 s)
MLFLOW_UI_WORKERS ?= 1
SERVING_PORT ?= 3001
READ_API_PORT ?= 3002
DEMO_CUSTOMERS ?= 2000
DEMO_DAYS ?= 90
DEMO_CDNOW_PERIOD_DAYS ?= 28
# the simulated clickstream shares CDNOW's calendar, so that labels mature for both; a stream
# simulated up to today, beside CDNOW's 1997-98, would read 28 silent years as churn
DEMO_SIM_START ?= 1997-01-01
# two experiments in the simulated stream, with known effects (docs/experiments.md)
DEMO_EXPERIMENTS ?= --experiment green_button=0.15 --experiment aa_check=0

.PHONY: env test lint format demo demo-check seed dagster-home mlflow-ui serve read-api bento bench-ingest bench-freshness bench-features bench-training bench-serving bench-lakehouse clean

env:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@# --compile-bytecode: every module's .pyc written once here. Where PYTHONDONTWRITEBYTECODE is
	@# set (this machine's images), nothing else writes them, and each process compiled what it
	@# imported from source: 0.4 s of a first batch's 0.84 s, 1.4 s of the first lakehouse attach
	$(UV) sync --locked --compile-bytecode
	@# where feature_repo/feature_store.yaml's defaults live, so `cd feature_repo && feast plan` works as it is
	@mkdir -p $(CURDIR)/.analytics/feast

lint: env
	$(UV) run --locked ruff format --check .
	$(UV) run --locked ruff check .

format: env
	$(UV) run --locked ruff format .
	$(UV) run --locked ruff check --fix .

test: lint
	$(UV) run --locked pytest -q

# $(DAGSTER_HOME)/dagster.yaml from dagster.yaml; PostgreSQL storage if DAGSTER_POSTGRES_URL is set
dagster-home: env
	$(UV) run --locked analytics dagster-home

seed: env
	$(UV) run --locked analytics simulate --customers $(DEMO_CUSTOMERS) --days $(DEMO_DAYS) --start $(DEMO_SIM_START) $(DEMO_EXPERIMENTS)
	$(UV) run --locked analytics replay cdnow --period-days $(DEMO_CDNOW_PERIOD_DAYS)

# the whole loop on this machine: seed the landing zone, start Dagster (webserver + daemon), let
# sensors and automation ingest, build features, train and promote, then serve; see scripts/demo.py
demo: env dagster-home seed
	$(UV) run --locked python scripts/demo.py --dagster-port $(DAGSTER_PORT) --scoring-port $(SERVING_PORT) --reader-port $(READ_API_PORT) --mlflow-port $(MLFLOW_PORT)

# checks a running demo from the outside: runs, assets, tables, online features, the endpoint
demo-check: env
	$(UV) run --locked python scripts/demo_check.py --dagster http://127.0.0.1:$(DAGSTER_PORT) --scoring http://127.0.0.1:$(SERVING_PORT) --reader http://127.0.0.1:$(READ_API_PORT)

mlflow-ui: env
	$(UV) run --locked mlflow ui --backend-store-uri "sqlite:///$(ANALYTICS_HOME)/mlflow/mlflow.db" -h 127.0.0.1 -p $(MLFLOW_PORT) --workers $(MLFLOW_UI_WORKERS)

# the scoring service on 127.0.0.1:$(SERVING_PORT), serving the champions the pipeline promoted
serve: env
	cd bentos/customer_scoring && BENTOML_HOME="$(ANALYTICS_HOME)/bentoml" $(UV) run --locked bentoml serve --port $(SERVING_PORT)

# the read API on 127.0.0.1:$(READ_API_PORT): KPIs, the audit, profiles, read-only SQL over the lakehouse
read-api: env
	cd bentos/analytics_reader && $(UV) run --locked bentoml serve --port $(READ_API_PORT)

# a bento (service, code, Feast repo, pinned requirements, current champions); offline
bento: env
	BENTOML_HOME="$(ANALYTICS_HOME)/bentoml" $(UV) run --locked bentoml build -f bentos/customer_scoring/bentofile.yaml .

bench-ingest: env
	$(UV) run --locked python benchmarks/ingest.py

bench-freshness: env
	$(UV) run --locked python benchmarks/freshness.py

bench-features: env
	$(UV) run --locked python benchmarks/feature_store.py

bench-training: env
	$(UV) run --locked python benchmarks/training.py

bench-serving: env
	$(UV) run --locked python benchmarks/serving.py

bench-lakehouse: env
	$(UV) run --locked python benchmarks/lakehouse.py

clean:
	rm -rf .analytics .pytest_cache .ruff_cache
