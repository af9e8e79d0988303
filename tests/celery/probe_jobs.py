"""A job that reports what its process looks like and then changes it (an environment
variable, the working directory, ``sys.path``): what one run must not pass on to the next in
the same Celery worker process."""

from __future__ import annotations

import json
import os
import sys

import dagster as dg

LEAK = "ANALYTICS_LEAK_PROBE"


@dg.op(config_schema={"out": str})
def probe(context) -> None:
    seen = {
        "run_id": context.run_id,
        "pid": os.getpid(),
        "leaked_env": os.environ.get(LEAK),
        "cwd": os.getcwd(),
        "leaked_path": "/leaked-by-a-run" in sys.path,
    }
    with open(context.op_config["out"], "a") as handle:
        handle.write(json.dumps(seen) + "\n")
    os.environ[LEAK] = context.run_id
    os.chdir("/")
    sys.path.append("/leaked-by-a-run")


@dg.job(executor_def=dg.in_process_executor)
def probe_job() -> None:
    probe()
