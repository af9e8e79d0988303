"""The embedded Celery broker: a Debian ``redis-server`` on a Unix socket, without persistence,
that lives as long as its owner, the Dagster daemon.

``redis-server`` cannot watch another process, so it runs under a small supervisor
(``python -m analytics_assets.lib.local_redis``) that stops it when it is itself stopped
(SIGTERM, or Ctrl-C, which reaches the whole process group) or when no owner has been alive for
a grace period. The owner's pid is read from a file at every look (:class:`Owner`): a daemon
restarted after a kill writes its own and adopts the broker, with the runs queued in it. A Unix
socket rather than a loopback port: no port to choose or collide on, one broker per Dagster home.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MISSING = "redis-server is not installed (Debian: apt-get install redis-server)"


def socket_path(key: str) -> Path:
    """The socket for ``key`` (a Dagster home): in the temporary folder, since a Unix socket's
    path holds at most 107 bytes and a home's path may be longer."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"analytics-redis-{digest}.sock"


def url(path: Path) -> str:
    """The Celery (kombu and result backend) URL of a socket."""
    return f"redis+socket://{path}"


def is_up(path: Path, timeout_s: float = 1.0) -> bool:
    import redis

    if not path.exists():
        return False
    try:
        client = redis.Redis(unix_socket_path=str(path), socket_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class Owner:
    """The process something started for lives as long as: the pid in ``file`` (rewritten by
    each new owner). :meth:`gone` is true once no pid read there has been alive for
    ``grace_s`` seconds."""

    def __init__(self, file: Path, grace_s: float = 30.0) -> None:
        self.file = file
        self.grace_s = grace_s
        self._missing_since: float | None = None

    @staticmethod
    def claim(file: Path) -> None:
        """Make this process the owner."""
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, file)

    def pid(self) -> int | None:
        try:
            return int(self.file.read_text().strip())
        except (OSError, ValueError):
            return None

    def gone(self) -> bool:
        pid = self.pid()
        if pid is not None and alive(pid):
            self._missing_since = None
            return False
        now = time.monotonic()
        if self._missing_since is None:
            self._missing_since = now
        return now - self._missing_since >= self.grace_s


def start(path: Path, owner_file: Path, workdir: Path, timeout_s: float = 10.0) -> int:
    """Start the supervised server on ``path``, owned by the pid in ``owner_file``, and wait
    until it answers; returns the supervisor's pid."""
    if shutil.which("redis-server") is None:
        raise RuntimeError(MISSING)
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "redis.log").open("a") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "analytics_assets.lib.local_redis",
                "--socket",
                str(path),
                "--owner-file",
                str(owner_file),
                "--dir",
                str(workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout_s
    while not is_up(path):
        if proc.poll() is not None:
            raise RuntimeError(
                f"the embedded redis-server exited with {proc.returncode}: {workdir / 'redis.log'}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"the embedded redis-server did not answer on {path}")
        time.sleep(0.05)
    return proc.pid


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: exists and is not a zombie (a child its parent has not reaped
    yet, as a worker the daemon started and that has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs: the kernel's answer above stands
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def supervise(path: Path, owner: Owner, workdir: Path) -> int:
    """Run ``redis-server`` on ``path`` until ``owner`` is gone or this process is told to stop;
    returns its exit status."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.stderr.write(MISSING + "\n")
        return 1
    path.unlink(missing_ok=True)  # left by a server that was killed
    server = subprocess.Popen(
        [
            binary,
            "--port",
            "0",  # no TCP listener at all
            "--unixsocket",
            str(path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdin=subprocess.DEVNULL,
    )

    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        while server.poll() is None and not owner.gone():
            time.sleep(1.0)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        path.unlink(missing_ok=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="The embedded Celery broker's supervisor.")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--owner-file", required=True, type=Path, help="holds the owner's pid")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds without an owner")
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args()
    sys.exit(supervise(args.socket, Owner(args.owner_file, args.grace), args.dir))


if __name__ == "__main__":
    main()
