"""Run failures: one JSON line each in ``<home>/alerts/run_failures.jsonl``, and a POST to a
webhook when one is configured (a Slack-style ``text`` plus the structured fields)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path


def record(path: Path, failure: dict) -> None:
    """Append one failure (idempotent per ``run_id``: a re-delivered failure is not doubled)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and any(
        json.loads(line).get("run_id") == failure["run_id"]
        for line in path.read_text().splitlines()
        if line.strip()
    ):
        return
    with path.open("a") as handle:
        handle.write(json.dumps(failure, default=str) + "\n")


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def post(url: str, failure: dict, timeout_s: float = 10.0) -> int:
    """POST the failure as JSON; returns the HTTP status (raises on a network error or a
    status of 400 and above)."""
    text = (
        f"Dagster run {failure['run_id'][:8]} of {failure['job_name']} failed: {failure['message']}"
    )
    body = json.dumps({"text": text, **failure}, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.status
