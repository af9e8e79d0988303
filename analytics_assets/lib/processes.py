"""Stopping the processes we start (servers, the daemon, ``dagster dev``), group and all."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress


def stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``. A process started with
    ``start_new_session=True`` is signalled with its whole group (dagster-daemon, ``dagster
    dev`` and ``bentoml serve`` have children)."""
    if proc.poll() is not None:
        return
    group = os.getpgid(proc.pid) == proc.pid

    def send(sig: int) -> None:
        with suppress(ProcessLookupError):  # it may have exited meanwhile
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
