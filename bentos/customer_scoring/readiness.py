"""Readiness across the workers of one server. ``/readyz`` is answered by whichever worker
accepts the connection, so with several workers the first one loaded used to say "ready" while
the others were still importing and loading: the clients sent traffic to a server whose other
worker still took a core for seconds, and requests queued. Here a worker says ready only when
every worker of its server has loaded.

Each worker leaves a mark (a file named by its pid) in a folder named by its parent, the
process BentoML starts the workers from, once its models are loaded; readiness compares the
marks with that parent's live worker processes. A worker that dies and is restarted makes the
server not ready until the new one has loaded.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

WORKER_MODULE = "_bentoml_impl.worker.service"
"""What BentoML's worker processes run (``python -m``)."""


class Workers:
    def __init__(self, root: Path | None = None) -> None:
        self.parent = os.getppid()
        base = root or Path(tempfile.gettempdir())
        self.directory = base / f"customer-scoring-workers-{os.getuid()}-{self.parent}"

    def mark_loaded(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.directory / str(os.getpid())).touch()

    def workers(self) -> list[int]:
        """Pids of the worker processes of this server (this one included)."""
        import psutil

        try:
            children = psutil.Process(self.parent).children()
        except psutil.Error:
            return [os.getpid()]
        pids = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if WORKER_MODULE in child.cmdline():
                    pids.append(child.pid)
        return pids or [os.getpid()]

    def all_loaded(self) -> bool:
        try:
            marked = {p.name for p in self.directory.iterdir()}
        except FileNotFoundError:
            return False
        return all(str(pid) in marked for pid in self.workers())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            (self.directory / str(os.getpid())).unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # the last worker out
