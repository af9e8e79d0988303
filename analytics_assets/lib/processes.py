"""Stopping the processes we start (servers, the daemon, ``dagster dev``), group and all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress


def stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``. A process started with
    ``start_new_session=True`` is signalled with its whole group (dagster-daemon, ``dagster
    dev`` and ``bentoml serve`` have children), and stopped only once every member is."""
    if _is_group(proc):
        stop_group(proc.pid, timeout_s)  # the leader, once exited, waits as a zombie: not counted
        proc.wait()
        return
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _is_group(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` leads a process group of its own (started in a new session)."""
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:  # reaped already: its group may live on under its id
        return bool(group_members(proc.pid))


def stop_group(group: int, timeout_s: float = 20.0) -> None:
    """SIGTERM to process group ``group``, then SIGKILL to whatever of it still runs after
    ``timeout_s``."""
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in group_members(group):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def group_members(group: int) -> list[int]:
    """The processes of process group ``group`` still running. Zombies do not count: a member
    whose parent is gone waits for init to reap it, which may never come in a container."""
    import psutil

    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members
