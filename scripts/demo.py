"""The demo: Dagster's webserver and daemon on the landing zone that ``make seed`` filled, the
loop left to the sensors and automation (ingest -> analytics -> features online -> first
champion -> drift report), then the scoring service; prints where to look and a ``curl``.

Run by ``make demo`` (after ``make seed``); Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import demo_check  # noqa: E402 (the scripts folder is not a package)

from analytics_assets.lib.processes import group_members, stop, stop_group  # noqa: E402

# quicker than the defaults, so the loop closes within minutes on a laptop (set ones win)
DEMO_ENV = {
    "ANALYTICS_REBUILD_INTERVAL_S": "20",
    "ANALYTICS_MONITOR_INTERVAL_S": "30",
}


def start(command: list[str], log: Path, cwd: Path = REPO, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**env, **os.environ},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def serve_bento(service: str, port: int, log: Path, **env: str) -> subprocess.Popen:
    """``bentoml serve`` of ``bentos/<service>`` on 127.0.0.1:``port``."""
    print(f"BentoML service {service}: http://127.0.0.1:{port} (log {log})", flush=True)
    bentoml = str(Path(sys.executable).parent / "bentoml")
    command = [bentoml, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return start(command, log, cwd=REPO / "bentos" / service, **env)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(what: str, ready, timeout: float, started: float, every: float = 5.0) -> None:
    """Poll ``ready()`` (returns a progress line, or ``None`` once done) until done."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        line = ready()
        if line is None:
            print(f"[{time.monotonic() - started:5.0f} s] {what}: done", flush=True)
            return
        if line != last:
            print(f"[{time.monotonic() - started:5.0f} s] {what}: {line}", flush=True)
            last = line
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s ({line})")
        time.sleep(every)


def loop_progress(dagster: str, landed: int, settings):
    """A function that says how far the loop has come (``None`` when a champion serves and
    the monitoring assets have run), read from Dagster's GraphQL API."""

    def progress() -> str | None:
        try:
            found = demo_check.runs(dagster)
            done = demo_check.materialized(dagster)
        except OSError:
            return "webserver starting"
        ingested = sum(  # a run ingests one batch, or a group of them under a backlog
            len((demo_check.tag_of(r, "analytics/batches") or "").split(","))
            for r in found
            if demo_check.sensor_of(r) == "landing_sensor" and r["status"] == "SUCCESS"
        )
        every = demo_check.outcomes(found)
        failed = sum(1 for o in every if o.status == "FAILURE")
        healed = sum(1 for o in every if o.status in ("HEALED", "RETRYING"))
        promoted = done.get("promoted_models", 0.0)
        monitored = [k for k in ("drift_report", "model_performance") if done.get(k, 0) > promoted]
        analytics = sum(1 for r in found if demo_check.sensor_of(r) == "events_sensor")
        retraining = [o.status.lower() for o in every if o.first["jobName"] == "retrain_models"]
        steps = [
            f"batches ingested {ingested}/{landed}",
            f"analytics runs {analytics}",
            f"features online: {'yes' if 'online_features' in done else 'no'}",
            f"retraining: {retraining[0] if retraining else 'not yet'}",
            f"champion: {'yes' if promoted else 'no'}",
            f"monitoring since: {', '.join(monitored) or 'not yet'}",
        ]
        if healed:
            steps.append(f"{healed} run(s) failed and retried by Dagster")
        if failed:
            steps.append(f"{failed} failed run(s): see the UI")
        if not promoted and retraining[:1] == ["failure"]:
            # the retraining sensor waits out its cool-down now; say why instead of waiting
            raise RuntimeError(
                "retrain_models failed, so there is no champion to serve; the errors are in "
                f"{settings.alerts_path()} and the run's page in the UI"
            )
        return None if promoted and len(monitored) == 2 else "; ".join(steps)

    return progress


def say(text: str) -> None:
    """Print, surviving a reader that went away: Ctrl-C on ``make demo 2>&1 | tee demo.log``
    stops ``tee`` too, and the clean-up must still run. From the first broken pipe on, output
    goes nowhere."""
    try:
        print(text, flush=True)
    except OSError:  # BrokenPipeError, or the terminal closed
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the rest of the process)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _ignore_signals() -> None:
    """From here on a second Ctrl-C or SIGTERM (systemd and ``uv run`` send one to the whole
    group) cannot cut the clean-up short and leave Dagster running."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


PIDS_FILE = "demo.pids"
"""Process groups of a running demo, under ``<home>/logs``: the next demo stops leftovers."""


def stop_leftovers(logs: Path) -> None:
    """Stop what an earlier demo left running (it was killed before it could clean up): its
    process groups are in ``demo.pids``."""
    path = logs / PIDS_FILE
    if not path.exists():
        return
    for group in {int(line) for line in path.read_text().split() if line.isdigit()}:
        if group_members(group):
            say(f"An earlier demo left process group {group} running; stopping it.")
            stop_group(group)
    path.unlink()


def port_holder(port: int) -> str | None:
    """What listens on 127.0.0.1:``port`` already (``None``: free)."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return f"port {port} is in use (see: ss -ltnp 'sport = :{port}')"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--scoring-port", type=int, default=3001)
    parser.add_argument("--reader-port", type=int, default=3002)
    parser.add_argument(
        "--mlflow-port", type=int, default=5000, help="where `make mlflow-ui` serves (MLFLOW_PORT)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the whole loop")
    parser.add_argument("--exit", action="store_true", help="stop once the checks have run")
    args = parser.parse_args()

    from analytics_assets import settings

    # Ctrl-C (SIGINT) or SIGTERM (kill, docker stop): stop the services either way; SIGINT
    # even where a shell started this in the background with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    dagster = f"http://127.0.0.1:{args.dagster_port}"
    scoring = f"http://127.0.0.1:{args.scoring_port}"
    reader = f"http://127.0.0.1:{args.reader_port}"
    settings.ensure_dirs()
    if settings.celery_broker() is None and shutil.which("redis-server") is None:
        print(
            "Dagster's runs execute in a Celery worker whose broker is a local redis-server: "
            "install it (Debian: apt-get install redis-server), or point "
            "ANALYTICS_CELERY_BROKER at a Redis."
        )
        return 1
    # the home `make demo` uses (without it, `dagster dev` runs on a temporary one and forgets
    # every run when it stops), its storage created once before Dagster's processes start
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home())  # empty counts as unset
    if not (settings.dagster_home() / "dagster.yaml").exists():
        from analytics_assets.instance import prepare_instance

        prepare_instance()
    logs = settings.analytics_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stop_leftovers(logs)
    for port in (args.dagster_port, args.scoring_port, args.reader_port):
        if (busy := port_holder(port)) is not None:
            print(
                f"{busy}: stop what holds it, or pass --dagster-port/--scoring-port/--reader-port."
            )
            return 1
    landed = sum(1 for p in settings.landing_dir().iterdir() if not p.name.startswith("."))
    started = time.monotonic()
    bin_dir = Path(sys.executable).parent
    print(f"Dagster webserver + daemon: {dagster} (log {logs / 'dagster.log'})", flush=True)
    dagster_proc = start(
        [
            str(bin_dir / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(args.dagster_port),
        ],
        logs / "dagster.log",
        **DEMO_ENV,
    )
    serving_proc = reader_proc = None
    pids = logs / PIDS_FILE
    pids.write_text(f"{dagster_proc.pid}\n")
    try:
        wait_for("the loop", loop_progress(dagster, landed, settings), args.timeout, started)
        serving_proc = serve_bento(
            "customer_scoring",
            args.scoring_port,
            logs / "scoring.log",
            BENTOML_HOME=str(settings.bentoml_home()),
        )
        reader_proc = serve_bento("analytics_reader", args.reader_port, logs / "reader.log")
        pids.write_text(f"{dagster_proc.pid}\n{serving_proc.pid}\n{reader_proc.pid}\n")
        for what, url, doing in (
            ("scoring service", scoring, "loading the champions"),
            ("read API", reader, "starting"),
        ):
            probe = f"{url}/readyz"
            until = lambda p=probe, d=doing: None if answers(p) else d  # noqa: E731
            wait_for(f"{what} ready", until, 180, started, every=1)
        print("\nChecking every stage from the outside (scripts/demo_check.py):", flush=True)
        status = demo_check.main(["--dagster", dagster, "--scoring", scoring, "--reader", reader])
        customer = demo_check.sample_customer()
        report = settings.reports_dir() / "customer_base_audit" / "index.html"
        mlflow = f"http://127.0.0.1:{args.mlflow_port}"
        groups = demo_check.asset_groups(dagster)
        print(tour(dagster, champion_run_url(mlflow), groups, mlflow), flush=True)
        print(
            f"""
The loop closed in {time.monotonic() - started:.0f} s.
  Dagster UI      {dagster}   (Lineage, Catalog; Automation: sensors and schedules)
  Scoring service {scoring}   (OpenAPI docs at /docs; metrics at /metrics)
  Read API        {reader}   (KPIs, audit, profiles, SQL over the lakehouse; docs/lake.md)
  Audit report    {reader}/report/   (or the file {report})
  Experiments     {reader}/report/experiments   (seeded A/B and A/A; docs/experiments.md)
  MLflow          make mlflow-ui -> {mlflow}   (its first answer takes a while: docs/models.md)
  Drift report    {settings.reports_dir() / "drift"}   (plots on drift_report in the UI)
  SQL             uv run analytics sql   (the lakehouse, read-only, while this runs)
Score a customer:
  curl -s -X POST {scoring}/churn -H 'Content-Type: application/json' \\
       -d '{{"customer_ids": ["{customer}"]}}'
More data: uv run analytics simulate --customers 500 --days 7 --continue-calendar
  (500 new customers on the last 7 days of this calendar; the sensors pick them up).
Ctrl-C stops the webserver, the daemon and the two services.""",
            flush=True,
        )
        if args.exit:
            return status
        while all(p.poll() is None for p in (dagster_proc, serving_proc, reader_proc)):
            time.sleep(1)
        return 1
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    except (TimeoutError, RuntimeError) as error:
        say(f"{error}; logs in {logs}")
        return 1
    finally:
        _ignore_signals()
        say("Stopping the services and Dagster (further Ctrl-C are ignored) ...")
        for proc in (reader_proc, serving_proc, dagster_proc):
            if proc is not None:
                stop(proc, timeout_s=20)
        pids.unlink(missing_ok=True)
        say("Stopped.")


TOUR_ASSETS = ("customer_base_audit", "drift_report", "churn_model")
"""The assets the tour links to (tests/test_demo_script.py checks they exist)."""


def lineage_url(dagster: str, groups: list[str]) -> str:
    """The global asset lineage with every group expanded (Dagster's UI opens it collapsed, one
    box per group; its ``expanded`` query names the open ones, as ``global@global:<group>``)."""
    from urllib.parse import quote

    expanded = ",".join(f"global@global:{g}" for g in sorted(groups))
    return f"{dagster}/asset-groups?expanded={quote(expanded, safe=',')}" if groups else dagster


def tour(
    dagster: str,
    mlflow_run: str | None,
    groups: list[str] | None = None,
    mlflow: str = "http://127.0.0.1:5000",
) -> str:
    """What to click first, with this demo's URLs (the README's tour)."""
    run = mlflow_run or f"make mlflow-ui -> {mlflow}, experiment churn_model"
    return f"""
What to click first:
  1. The asset graph       {lineage_url(dagster, groups or [])}
                           (Lineage, every group open: raw events to scored customers)
  2. A lens of the audit   {dagster}/assets/customer_base_audit  (latest materialization:
                           revenue deciles, customer bridge, cohorts, retention, layer cake;
                           as one page: its report_url)
  3. The drift report      {dagster}/assets/drift_report  (PSI / KS per feature, histograms)
  4. The model's MLflow run {run}
                           (start it with: make mlflow-ui; its dagster_run_id tag leads back)
     and in Dagster        {dagster}/assets/churn_model
  5. A streamed batch      {dagster}/runs  (the newest landing_sensor run)"""


def champion_run_url(mlflow: str) -> str | None:
    """The MLflow UI's page of the churn champion's training run, when there is one."""
    import warnings

    try:
        warnings.simplefilter("ignore")  # MLflow's SQLAlchemy deprecations, at the very end
        from mlflow import MlflowClient

        from analytics_assets import settings
        from analytics_assets.lib.names import CHURN_MODEL

        uri = settings.mlflow_tracking_uri()
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        version = client.get_model_version_by_alias(CHURN_MODEL, "champion")
        run = client.get_run(version.run_id)
    except Exception:  # no champion yet, or MLflow unreachable: the tour says where to look
        return None
    return f"{mlflow}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


if __name__ == "__main__":
    sys.exit(main())
