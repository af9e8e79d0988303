"""Freshness, with the real daemon running: a file lands -> its events are committed to the
lakehouse; and a file lands -> its customer's features are online -> the scoring service's answer
reflects them.

Phase 1 starts ``dagster-daemon`` on a temporary ANALYTICS_HOME / DAGSTER_HOME with the repo's
dagster.yaml, warms it up with one file, then drops FILES micro-batches about SPACING seconds
apart (a stream, as producers would) and reads landing and commit times back from the ingestion
ledger and the run records.

Phase 2 restarts the daemon (the coalesced lane on its default rebuild interval), starts the
BentoML scoring service on champions of both models, and drops PROBES files ONLINE_SPACING
seconds apart, each a stream batch moved to today with one new customer's page view and purchase
in it; it asks ``/churn`` for every pending new customer twice a second, and a probe is fresh
when the answer says ``known`` (its features, computed from the new events by the batch's own
run, are in the online store the service reads). Meanwhile it samples the CPU time of the
daemon's whole process tree (code server, sensors, every run process): ``cpu_s_per_batch``.
``--sweep`` repeats phase 2 at faster rates while p95 stays within the goal, for
``max_files_per_min``; ``--baseline`` repeats it with Dagster's default run launcher (a new
process per run) in the same run. The import cost of the code location is measured against ``import
dagster`` alone, interleaved in fresh interpreters. Usage:
``uv run python benchmarks/freshness.py [--files 20] [--spacing 5] [--probes 24]
[--online-spacing 5] [--sweep] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics_assets.lib import lakehouse
from analytics_assets.lib.processes import stop

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def batches_of(run) -> list[str]:
    """The batches a landing_sensor run ingests (one, or a group under a backlog)."""
    tag = run.tags.get("analytics/batches")
    return tag.split(",") if tag else []


def wait_for(instance, batch_ids: set[str], timeout: float) -> None:
    import dagster as dg

    deadline = time.monotonic() + timeout
    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    while time.monotonic() < deadline:
        runs = [r for r in instance.get_runs() if set(batches_of(r)) & batch_ids]
        covered = {b for r in runs for b in batches_of(r)}
        if batch_ids <= covered and all(r.status in done for r in runs):
            failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            if failed:
                raise RuntimeError(f"runs failed: {failed}")
            return
        time.sleep(0.2)
    raise TimeoutError(f"batches {sorted(batch_ids)} not committed within {timeout}s")


def start_daemon(log_path: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def probe_batch(part, k: int, now: datetime):
    """A stream batch moved to the last minutes before ``now``, with one new customer
    (``probe-<k>``) who views a page and buys."""
    import polars as pl

    span = part["occurred_at"].max() - part["occurred_at"].min()
    shift = now - timedelta(seconds=60) - part["occurred_at"].max()
    moved = part.with_columns(
        (pl.col("occurred_at") + shift).clip(lower_bound=now - min(span, timedelta(hours=1))),
        ("p" + str(k) + "-" + pl.col("event_id")).alias("event_id"),
    )
    customer = f"probe-{k:03d}"
    newcomer = moved.head(2).with_columns(
        pl.Series("event_id", [f"{customer}-view", f"{customer}-buy"]),
        pl.Series("event_type", ["page_view", "purchase"]),
        pl.lit(customer).alias("customer_id"),
        pl.lit(f"{customer}-s").alias("session_id"),
        pl.Series("occurred_at", [now - timedelta(seconds=50), now - timedelta(seconds=40)]),
        pl.Series("quantity", [None, 1], dtype=pl.Int64),
        pl.Series("amount", [None, 25.0]),
        pl.Series("currency", [None, "USD"]),
    )
    return customer, pl.concat([moved, newcomer])


GOAL_P95_S = 15.0


class TreeCpu:
    """CPU seconds (user + system) of a process and all its descendants, sampled in a thread:
    a process's last value is kept after it exits (at most one interval of it is missed)."""

    def __init__(self, root: subprocess.Popen, interval: float = 0.2) -> None:
        import threading

        import psutil

        self._psutil = psutil
        self._root = psutil.Process(root.pid)
        self._seen: dict[tuple[int, float], float] = {}
        self._kind: dict[tuple[int, float], str] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            processes = [self._root, *self._root.children(recursive=True)]
        except self._psutil.Error:
            return
        for proc in processes:
            try:
                key = (proc.pid, proc.create_time())
                times = proc.cpu_times()
                self._seen[key] = times.user + times.system
                if key not in self._kind:
                    self._kind[key] = self._classify(proc)
            except self._psutil.Error:
                continue

    def _classify(self, proc) -> str:
        if proc.pid == self._root.pid:
            return "daemon"
        line = " ".join(proc.cmdline())
        if "api grpc" in line or "code-server" in line:
            return "code server"
        if "celery_worker" in line:
            return "celery worker" if proc.ppid() == self._root.pid else "runs (celery)"
        if "local_redis" in line or "redis-server" in line:
            return "broker"
        if "multiprocessing.spawn" in line or "execute_run" in line:
            return "runs (new process)"  # the default launcher: the code server spawns them
        return "other"

    def by_kind(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for key, seconds in self._seen.items():
            kind = self._kind.get(key, "other")
            totals[kind] = totals.get(kind, 0.0) + seconds
        return totals

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def total(self) -> float:
        self._sample()
        return sum(self._seen.values())

    def close(self) -> float:
        total = self.total()
        self._stop.set()
        self._thread.join()
        return total


def import_cost(repeats: int = 5) -> dict:
    """CPU seconds of ``import dagster`` and of the code location in fresh interpreters,
    interleaved; medians and their ratio."""
    import resource

    def cpu(code: str) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    dagster, location = [], []
    for _ in range(repeats):
        dagster.append(cpu("import dagster"))
        location.append(cpu("import analytics_assets.definitions"))
    d, loc = statistics.median(dagster), statistics.median(location)
    print(
        f"import CPU: dagster {d:.2f}s, code location {loc:.2f}s (x{loc / d:.2f}), "
        f"median of {repeats}"
    )
    return {
        "import_dagster_cpu_s": round(d, 2),
        "import_location_cpu_s": round(loc, 2),
        "import_ratio_to_dagster": round(loc / d, 2),
    }


LAUNCHERS = {
    "celery": None,  # the repo's dagster.yaml as it is
    "default": {},  # no run_launcher block: Dagster's default, a new process per run
}


def use_launcher(kind: str) -> None:
    """$DAGSTER_HOME/dagster.yaml from the repo's, with another run launcher for a baseline in
    the same run (``LAUNCHERS``)."""
    from analytics_assets.instance import prepare_instance, repo_config

    config = repo_config()
    if LAUNCHERS[kind] == {}:
        config.pop("run_launcher", None)
    elif LAUNCHERS[kind]:
        config["run_launcher"] = LAUNCHERS[kind]
    prepare_instance(Path(os.environ["DAGSTER_HOME"]), config)


def prepare_serving(home: Path) -> None:
    """The Feast repo applied (with the layout the streaming lane writes by) and champions of
    both models in the BentoML store, as feast_definitions and a promotion leave them."""
    import dagster as dg

    from analytics_assets import settings
    from analytics_assets.defs.features import offline
    from analytics_assets.lib import feast_online, feast_repo
    from analytics_assets.lib.names import CHURN_FEATURES, CHURN_MODEL, CLV_FEATURES, CLV_MODEL
    from analytics_assets.testing import serving

    store = feast_repo.open_store(settings.feature_repo_path())
    feast_repo.apply(store, settings.feature_repo_path())
    views = offline.views_over_snapshots(store)
    feast_online.record_layout(store, views, settings.online_layout_path())
    models = home / "fixture-models"
    serving.promote(serving.churn_folder(models / "churn"), CHURN_MODEL, "1", CHURN_FEATURES)
    serving.promote(serving.value_folder(models / "clv"), CLV_MODEL, "1", CLV_FEATURES)
    # say so in Dagster too, or model_health_sensor would ask for a first champion meanwhile
    dg.DagsterInstance.get().report_runless_asset_event(
        dg.AssetMaterialization(
            "promoted_models",
            description="fixture champions for the freshness benchmark",
            metadata={"champions": {CHURN_MODEL: "1", CLV_MODEL: "1"}},
        )
    )


def online_phase(args, home: Path, parts: list, spacing: float, first: int) -> dict:
    """Landed -> features online -> a score that knows the new customer (phase 2), one file
    every ``spacing`` seconds; probe numbers start at ``first``."""
    import httpx

    from analytics_assets import settings
    from analytics_assets.producers.files import write_batch
    from analytics_assets.testing.servers import free_port

    daemon = start_daemon(home / f"daemon-online-{first}.log")
    cpu = TreeCpu(daemon)
    port = free_port()
    service = subprocess.Popen(
        [str(Path(sys.executable).parent / "bentoml"), "serve", "--port", str(port)],
        cwd=REPO / "bentos" / "customer_scoring",
        env={**os.environ, "BENTOML_HOME": str(settings.bentoml_home())},
        stdout=(home / "scoring.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 180
        while not _ready(httpx, url):
            if time.monotonic() > deadline:
                raise TimeoutError("the scoring service did not become ready")
            time.sleep(0.5)
        landed: dict[str, float] = {}
        pending: set[str] = set()
        cpu_before = cpu.total()  # the daemon's start-up is not a batch's cost
        kinds_before = cpu.by_kind()
        next_drop = time.monotonic()
        k = first
        deadline = None
        while k < first + args.probes or pending:
            if k < first + args.probes and time.monotonic() >= next_drop:
                customer, batch = probe_batch(parts[k % len(parts)][1], k, datetime.now(UTC))
                path = write_batch(batch, settings.landing_dir(), f"probe-{k:03d}", "jsonl")
                landed[customer] = path.stat().st_ctime
                pending.add(customer)
                k += 1
                next_drop = time.monotonic() + spacing
                deadline = time.monotonic() + 300
            answer = httpx.post(
                f"{url}/churn", json={"customer_ids": sorted(pending) or ["probe-none"]}
            ).json()
            for row in answer["predictions"]:
                if row["known"] and row["customer_id"] in pending:
                    latencies.append(time.time() - landed[row["customer_id"]])
                    pending.discard(row["customer_id"])
                    print(
                        f"  {row['customer_id']}: scored with its features after "
                        f"{latencies[-1]:.1f}s (churn {row['churn_probability']:.3f})"
                    )
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"never online: {sorted(pending)}")
            time.sleep(0.5)
        # the stream's own runs finish; the coalesced lane's are counted while they overlap
        wait_for_partitions({f"probe-{n:03d}" for n in range(first, k)}, timeout=120)
        cpu_s = cpu.total() - cpu_before
        kinds = {k: v - kinds_before.get(k, 0.0) for k, v in cpu.by_kind().items()}
    finally:
        cpu.close()
        stop(service)
        stop(daemon)
    print_timeline(min(landed.values(), default=time.time()))
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    per_batch = cpu_s / len(latencies)
    print(
        "CPU-s per file by process: "
        + ", ".join(
            f"{kind} {seconds / len(latencies):.2f}" for kind, seconds in sorted(kinds.items())
        )
    )
    print(
        f"landed -> features online -> scored: p50 {p50:.2f}s  p95 {p95:.2f}s  "
        f"max {max(latencies):.2f}s ({len(latencies)} files, one every {spacing}s); "
        f"daemon + runs {cpu_s:.1f} CPU-s = {per_batch:.2f} per file"
    )
    return {
        "probes": len(latencies),
        "files_per_min": round(60 / spacing, 1),
        "p50_online_s": round(p50, 2),
        "p95_online_s": round(p95, 2),
        "max_online_s": round(max(latencies), 2),
        "cpu_s_per_batch": round(per_batch, 2),
    }


def wait_for_partitions(keys: set[str], timeout: float) -> None:
    import dagster as dg

    instance = dg.DagsterInstance.get()
    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in instance.get_runs() if set(batches_of(r)) & keys]
        covered = {b for r in runs for b in batches_of(r)}
        if keys <= covered and all(r.status in done for r in runs):
            return
        time.sleep(0.5)


def wait_for_quiet(timeout: float) -> None:
    import dagster as dg

    instance = dg.DagsterInstance.get()
    busy = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    deadline = time.monotonic() + timeout
    while instance.get_runs_count(dg.RunsFilter(statuses=busy)) and time.monotonic() < deadline:
        time.sleep(1)


def print_timeline(since: float) -> None:
    """The runs of phase 2: which sensor asked, and when each was created, started and ended,
    in seconds after the first probe landed (where the time goes)."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
    records = instance.get_run_records(dg.RunsFilter(created_after=datetime.fromtimestamp(since)))
    print("phase 2 runs (s after the first probe landed): created / started / ended")
    for record in sorted(records, key=lambda r: r.create_timestamp):
        run = record.dagster_run
        origin = run.tags.get("dagster/sensor_name", run.job_name)
        created = record.create_timestamp.timestamp() - since
        start = (record.start_time or float("nan")) - since
        end = (record.end_time or float("nan")) - since
        print(f"  {origin:24s} {created:7.1f} {start:7.1f} {end:7.1f}  {run.status.value}")


def _ready(httpx, url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=5.0, help="mean seconds between files")
    parser.add_argument("--events-per-file", type=int, default=2_000)
    parser.add_argument("--probes", type=int, default=24, help="phase 2 files")
    parser.add_argument("--online-spacing", type=float, default=5.0)
    parser.add_argument(
        "--sweep", action="store_true", help="phase 2 again at 20, 30, 60 files/min while p95 holds"
    )
    parser.add_argument(
        "--baseline",
        nargs="?",
        const="default",
        choices=[k for k in LAUNCHERS if k != "celery"],
        help="phase 2 again with Dagster's default run launcher (a new process per run)",
    )
    parser.add_argument("--quick", action="store_true", help="5 files, 6 probes")
    parser.add_argument(
        "--load", type=int, default=0, help="busy processes beside the daemon in phase 1"
    )
    args = parser.parse_args()
    if args.quick:
        args.files, args.probes = 5, 6
    from analytics_assets.testing.servers import temporary_home

    home = temporary_home("freshness-")

    import dagster as dg

    from analytics_assets import settings
    from analytics_assets.producers import simulate
    from analytics_assets.producers.files import write_batch

    settings.ensure_dirs()
    interval = settings.sensor_interval_seconds()
    config = simulate.SimulationConfig(customers=2_000, days=30, start=datetime(2024, 1, 1))
    events = simulate.simulate_events(config)
    parts = list(simulate.batches(events, args.events_per_file, config))
    # --load: busy processes beside the daemon through phase 1 (the first run, which starts the
    # embedded worker, included): what run monitoring's start timeout must allow for
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    daemon = start_daemon(home / "daemon.log")
    try:
        instance = dg.DagsterInstance.get()
        warm_id, warm = parts[0]
        write_batch(warm, settings.landing_dir(), warm_id, "jsonl")
        wait_for(instance, {warm_id}, timeout=180)
        dropped = []
        # jittered gaps: a stream does not arrive in lockstep with the daemon's 5 s loop
        gaps = random.Random(0)
        for batch_id, part in parts[1 : args.files + 1]:
            write_batch(part, settings.landing_dir(), batch_id, "jsonl")
            dropped.append(batch_id)
            time.sleep(args.spacing * gaps.uniform(0.5, 1.5))
        wait_for(instance, set(dropped), timeout=300)
        stages = {}
        for run in instance.get_runs():
            if not batches_of(run):
                continue  # an analytics or automation run, not an ingest one
            record = instance.get_run_record_by_id(run.run_id)
            launched = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_STARTING)
            for batch_id in batches_of(run):
                stages[batch_id] = (
                    record.create_timestamp.timestamp(),
                    launched[0].timestamp if launched else float("nan"),
                    record.start_time,
                )
    finally:
        stop(daemon)
        for hog in hogs:
            stop(hog)
    with lakehouse.connect(read_only=True) as conn:
        ledger = conn.execute(
            "SELECT batch_id, epoch(landed_at), epoch(committed_at) FROM ingest_ledger"
        ).fetchall()
    rows = [(stages[b], landed, committed) for b, landed, committed in ledger if b in dropped]
    values = [committed - landed for _, landed, committed in rows]
    # launched -> started of the first run (it starts the embedded worker) and of the slowest
    first_start = stages[warm_id][2] - stages[warm_id][1]
    max_start = max(started - launched for _, launched, started in stages.values())
    print(f"launched -> started: first run {first_start:.2f}s, slowest {max_start:.2f}s")
    p50, p95 = statistics.median(values), percentile(values, 0.95)
    print(f"{len(values)} files of {args.events_per_file:,} events, one every ~{args.spacing}s;")
    launcher = dg.DagsterInstance.get().run_launcher.__class__.__name__
    print(f"sensor interval {interval}s, queued run coordinator, {launcher}")
    steps = {
        "landed -> run requested (sensor)": [c - landed for (c, _, _), landed, _ in rows],
        "requested -> launched (queue)": [la - c for (c, la, _), _, _ in rows],
        "launched -> run started (process)": [st - la for (_, la, st), _, _ in rows],
        "run started -> committed (step)": [done - st for (_, _, st), _, done in rows],
    }
    for label, stage in steps.items():
        print(f"  {label:36s} p50 {statistics.median(stage):6.2f}s  max {max(stage):6.2f}s")
    print(f"landed -> events committed: p50 {p50:.2f}s  p95 {p95:.2f}s  max {max(values):.2f}s")
    prepare_serving(home)
    online = online_phase(args, home, parts, args.online_spacing, first=0)
    rates = [online] if online["p95_online_s"] <= GOAL_P95_S else []
    for spacing in (3.0, 2.0, 1.0) if args.sweep else ():
        if not rates:
            break
        faster = online_phase(args, home, parts, spacing, first=len(rates) * 1000)
        if faster["p95_online_s"] > GOAL_P95_S:
            print(f"  at {faster['files_per_min']} files/min p95 is past {GOAL_P95_S}s")
            break
        rates.append(faster)
    baseline = {}
    if args.baseline:
        use_launcher(args.baseline)
        default = online_phase(args, home, parts, args.online_spacing, first=9000)
        use_launcher("celery")
        baseline = {
            f"{key}_{args.baseline}_launcher": default[key]
            for key in ("p50_online_s", "p95_online_s", "cpu_s_per_batch")
        }
    imports = import_cost()
    print(
        json.dumps(
            {
                "bench": "freshness",
                **online,
                "max_files_per_min": max((r["files_per_min"] for r in rates), default=None),
                **baseline,
                **imports,
                "files": len(values),
                "load_processes": args.load,
                "first_start_s": round(first_start, 2),
                "max_start_s": round(max_start, 2),
                "sensor_interval_s": interval,
                "p50_s": round(p50, 2),
                "p95_s": round(p95, 2),
                "max_s": round(max(values), 2),
                **{
                    f"p50_{key}_s": round(statistics.median(stage), 2)
                    for key, stage in zip(
                        ("sensor", "queue", "process", "step"), steps.values(), strict=True
                    )
                },
            }
        )
    )
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
