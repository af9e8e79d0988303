"""A run launcher that forks each run from a warm process instead of starting Python anew.

Open-source Dagster starts every run as a fresh ``dagster api execute_run`` process. Here that
process pays about 5 CPU-seconds before the first step: ``import dagster``, the code location,
Pandera (which imports pandas), polars, DuckDB and pyarrow. On two cores a stream of small
batches then spends its time importing, not ingesting (``BENCHMARKS.md``).

:class:`WarmRunLauncher` keeps one *fork server* per Dagster instance: a process that has
imported all of that once and waits on a Unix socket. Each launch sends it the run id; it forks,
and the child executes the run exactly as ``dagster api execute_run`` would (the same Dagster
function, so events, logs, failures and cancellation are Dagster's own). A fork costs
milliseconds and shares the imported modules copy-on-write.

Self-healing rather than clever: the server is started on first use, restarted when the code
under ``analytics_assets/`` changes (its fingerprint is checked at every launch) or when it has
died, exits when the process that started it (the daemon) is gone, cancelling the runs it forked
that are still going, and whenever it cannot take a run the launch falls back to Dagster's
default launcher (a gRPC-spawned process), which works as before.

Fork safety: the server forks holding no open connection (Dagster's SQLite and PostgreSQL
storages connect per operation) and before any polars, DuckDB or Arrow thread pool has started;
importing polars and pyarrow starts only jemalloc's and polars' clean-up helper threads.

Dagster's private execution entry point is used in this module only; ``pyproject.toml`` pins
Dagster below its next minor version for it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

PACKAGE = Path(__file__).resolve().parent
PID_TAG = "analytics/warm_run_pid"
PRELOAD = (
    "dagster",
    "dagster_duckdb",
    "duckdb",
    "polars",
    "pyarrow",
    "pyarrow.compute",
    "pandera.polars",
    "yaml",
    "analytics_assets.definitions",
)
"""Imported by the fork server before it takes runs: what every run of the streaming lane
imports. Heavier libraries (Feast, MLflow, scikit-learn) stay where they are used."""

_log = logging.getLogger(__name__)


def code_fingerprint(root: Path = PACKAGE) -> str:
    """Changes whenever a module of the code location changes (names, sizes, mtimes)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def server_address(instance_key: str) -> str:
    """An abstract Unix socket (Linux): no file to clean up, one per Dagster instance."""
    return "\0analytics-warm-runs-" + hashlib.sha256(instance_key.encode()).hexdigest()[:16]


def _request(address: str, message: dict, timeout: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(address)
        conn.sendall(json.dumps(message).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply or b"{}")


class WarmRunLauncher(dg.DefaultRunLauncher):
    """Forks runs from a warm process; falls back to the default (gRPC) launcher."""

    def __init__(
        self,
        inst_data=None,
        start_timeout_seconds: float = 60.0,
        log_dir: str | None = None,
    ) -> None:
        super().__init__(inst_data=inst_data)
        self._start_timeout = start_timeout_seconds
        self._log_dir = log_dir
        self._server: subprocess.Popen | None = None
        self._lock = threading.Lock()  # the daemon may launch from several threads

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {
            "start_timeout_seconds": dg.Field(float, is_required=False, default_value=60.0),
            "log_dir": dg.Field(str, is_required=False),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]) -> WarmRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    @property
    def _address(self) -> str:
        return server_address(self._instance.root_directory or repr(self._instance.get_ref()))

    def launch_run(self, context) -> None:
        run = context.dagster_run
        try:
            pid = self._fork(run)
        except Exception as exc:  # the default path always works: never lose a run to this
            self._instance.report_engine_event(
                f"Warm run launcher unavailable ({exc}); launching a new process instead.",
                run,
                cls=self.__class__,
            )
            super().launch_run(context)
            return
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid)})

    def _fork(self, run) -> int:
        if run.job_code_origin is None:
            raise RuntimeError("the run has no code origin")
        fingerprint = code_fingerprint()
        message = {
            "run_id": run.run_id,
            "origin": dg.serialize_value(run.job_code_origin),
            "instance_ref": dg.serialize_value(self._instance.get_ref()),
            "fingerprint": fingerprint,
        }
        with self._lock:
            try:
                reply = _request(self._address, message, timeout=10)
            except OSError:
                reply = {"error": "not running"}
            if reply.get("error"):
                # not running, or running older code: (re)start it and try once more
                self._start_server(fingerprint)
                reply = _request(self._address, message, timeout=10)
        if "pid" not in reply:
            raise RuntimeError(reply.get("error", "no answer from the fork server"))
        return int(reply["pid"])

    def _start_server(self, fingerprint: str) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            self._server.wait(10)
        log_dir = Path(self._log_dir or Path(self._instance.root_directory or ".") / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / "warm_runs.log").open("a") as log:
            self._server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "analytics_assets.warm_runs",
                    "--address",
                    self._address.removeprefix("\0"),
                    "--fingerprint",
                    fingerprint,
                    "--instance-ref",
                    dg.serialize_value(self._instance.get_ref()),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise RuntimeError(f"fork server exited with {self._server.returncode}")
            try:
                if _request(self._address, {"ping": True}, timeout=2).get("fingerprint"):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"fork server not ready in {self._start_timeout}s")

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or PID_TAG not in run.tags:
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[PID_TAG]), signal.SIGINT)  # Dagster's interrupt: cancel
        except ProcessLookupError:
            return False
        return True

    # Run monitoring (dagster.yaml ``run_monitoring``) asks the launcher whether a STARTED run's
    # process is still there; a run killed by SIGKILL or the OOM killer is then marked failed,
    # which frees its pools and lets run retries take it up.
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run):
        from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

        found = run_worker_pid(self._instance, run)
        if found is None:  # not said yet (or not ours to judge): leave it to the run timeout
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run process not reported yet")
        pid, reported_at = found
        if process_alive(pid, started_before=reported_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run process (pid {pid}) is gone: killed (SIGKILL, out of memory) or crashed "
            "without reporting",
            run_worker_id=str(pid),
        )

    def dispose(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
        super().dispose()


def run_worker_pid(instance, run) -> tuple[int, float] | None:
    """The pid of the process executing ``run`` and when it reported it: Dagster's own "Started
    process for run (pid: N)" engine event, written by every run process (forked here or
    started by the default launcher) before the run starts."""
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    for record in records:
        data = record.event_log_entry.dagster_event.engine_event_data
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value), record.event_log_entry.timestamp
    return None


def process_alive(pid: int, started_before: float | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this host, started no later than
    ``started_before`` (epoch seconds) when given, so that a reused pid does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:  # no procfs: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    fields = stat[stat.rindex(")") + 2 :].split()  # after "(comm)": state is field 3
    if fields[0] in ("Z", "X"):
        return False
    if started_before is None:
        return True
    ticks = os.sysconf("SC_CLK_TCK")
    boot = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    started_at = boot + int(fields[19]) / ticks
    return started_at <= started_before + 2.0  # btime has a one-second resolution


def _execute(run_id: str, origin: str, instance_ref: str, instance=None) -> None:
    """In the forked child: run it the way ``dagster api execute_run`` does; anything failing
    before Dagster takes over marks the run failed.

    With the server's own instance (the same ref) the child uses it instead of opening a new
    one, which would load Alembic's revision scripts again (a cost per run, BENCHMARKS.md): its
    storages connect per operation, so nothing open is shared across the fork.
    """
    from dagster._cli.api import _execute_run_command_body, execute_run_command
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._utils.interrupts import capture_interrupts

    ref = dg.deserialize_value(instance_ref)
    try:
        if instance is not None:
            with capture_interrupts():
                code = _execute_run_command_body(
                    run_id, instance, lambda event: None, set_exit_code_on_failure=False
                )
            if code:
                sys.exit(code)
            return
        job_origin = dg.deserialize_value(origin)
        args = ExecuteRunArgs(job_origin=job_origin, run_id=run_id, instance_ref=ref)
        execute_run_command.callback(
            input_json=dg.serialize_value(args), compressed_input_json=None
        )
    except SystemExit:
        raise
    except BaseException as exc:
        with dg.DagsterInstance.from_ref(ref) as fresh:
            run = fresh.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                fresh.report_run_failed(run, f"the forked run process failed: {exc!r}")
        raise


def serve(address: str, fingerprint: str, instance_ref: str | None = None) -> None:
    """The fork server: preload, then fork a child per run request until the parent is gone."""
    import importlib

    started = time.perf_counter()
    for module in PRELOAD:
        importlib.import_module(module)
    from analytics_assets.definitions import defs
    from analytics_assets.defs.ingest.schema import event_schema

    event_schema()
    defs.get_repository_def().get_all_jobs()
    instance = None
    if instance_ref:
        # kept for the children (see _execute); its storage checks and modules load here once
        instance = dg.DagsterInstance.from_ref(dg.deserialize_value(instance_ref))
        instance.get_runs(limit=1)
    parent = os.getppid()
    listener = _listen(address)
    _log.info(
        "warm run server %s ready in %.1fs (code %s, %s threads)",
        os.getpid(),
        time.perf_counter() - started,
        fingerprint,
        len(os.listdir("/proc/self/task")),
    )
    children: set[int] = set()  # forked and not yet reaped: their pids cannot be reused
    try:
        while os.getppid() == parent:
            _reap(children)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                message = json.loads(conn.makefile("rb").readline() or b"{}")
                if message.get("ping"):
                    reply = {"fingerprint": fingerprint}
                elif message.get("fingerprint") != fingerprint:
                    conn.sendall(json.dumps({"error": "stale code"}).encode() + b"\n")
                    break
                else:
                    pid = os.fork()
                    if pid == 0:
                        listener.close()
                        _child(
                            message, instance if message["instance_ref"] == instance_ref else None
                        )
                    children.add(pid)
                    reply = {"pid": pid}
                conn.sendall(json.dumps(reply).encode() + b"\n")
    finally:
        listener.close()
        # runs still going when the daemon is gone are cancelled (Dagster's interrupt), not
        # left running unsupervised
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        _log.info("warm run server %s exits", os.getpid())


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _listen(address: str) -> socket.socket:
    """Bind the abstract socket; a server that is replacing this one may still hold it for a
    moment, so retry briefly."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for attempt in range(50):
        try:
            listener.bind("\0" + address)
            break
        except OSError:
            if attempt == 49:
                raise
            time.sleep(0.1)
    listener.listen(64)
    listener.settimeout(1.0)
    return listener


def _child(message: dict, instance) -> None:
    """The forked run process: its own session (a Ctrl-C meant for the daemon does not reach it
    directly), the run executed, then exit without running the server's clean-up."""
    os.setsid()
    code = 0
    try:
        _execute(message["run_id"], message["origin"], message["instance_ref"], instance)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        _log.exception("run %s failed to execute", message["run_id"])
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description="The warm run launcher's fork server.")
    parser.add_argument("--address", required=True)
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--instance-ref", help="the serialized Dagster instance ref, to preload")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(args.address, args.fingerprint, args.instance_ref)


if __name__ == "__main__":
    main()
