"""Alerts: one JSON line each in ``<home>/alerts/run_failures.jsonl``, and a POST to a webhook
when one is configured (a Slack-style ``text`` plus the structured fields).

Run failures (``run_failure_sensor``) and problems a run finds without failing (a re-sent
batch name) are alerts. The file is append-only and survives torn lines (a crash mid-write): a
line that is not JSON is skipped, and the next alert starts on a line of its own. It is rotated
at ``MAX_BYTES`` (``run_failures.jsonl.1`` .. ``.3``).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from pathlib import Path

MAX_BYTES = 5 << 20
KEEP = 3

_log = logging.getLogger(__name__)


def _key(alert: dict) -> str:
    return str(alert.get("alert_id") or alert["run_id"])


def record(path: Path, alert: dict) -> bool:
    """Append one alert; idempotent per ``alert_id`` (default: the ``run_id``), so a
    re-delivered failure is not doubled. Returns whether it was new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _key(alert)
    if any(_key(seen) == key for seen in read(path) if "run_id" in seen or "alert_id" in seen):
        return False
    _rotate(path)
    with path.open("ab") as handle:
        if handle.tell() and not _ends_with_newline(path):
            handle.write(b"\n")  # a torn last line stays alone on its line
        handle.write(json.dumps(alert, default=str).encode() + b"\n")
    return True


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _rotate(path: Path) -> None:
    if not path.exists() or path.stat().st_size < MAX_BYTES:
        return
    for n in range(KEEP - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def read(path: Path) -> list[dict]:
    """The alerts of the current file, skipping lines that are not JSON objects."""
    if not path.exists():
        return []
    alerts = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            alert = json.loads(line)
        except ValueError:
            continue
        if isinstance(alert, dict):
            alerts.append(alert)
    return alerts


def text_of(alert: dict) -> str:
    if alert.get("kind") and alert["kind"] != "run_failure":
        return f"{alert['kind']}: {alert.get('message', '')}"
    return f"Dagster run {alert['run_id'][:8]} of {alert['job_name']} failed: {alert['message']}"


def post(url: str, alert: dict, timeout_s: float = 10.0) -> int:
    """POST the alert as JSON; returns the HTTP status (raises on a network error or a status
    of 400 and above)."""
    body = json.dumps({"text": text_of(alert), **alert}, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.status


def raise_alert(alert: dict) -> None:
    """Record ``alert`` and post it to the webhook when one is set, from inside a run: a webhook
    that cannot be reached is logged, never fails the run (the file has the alert)."""
    from analytics_assets import settings

    if not record(settings.alerts_path(), alert):
        return
    url = settings.alert_webhook_url()
    if url:
        try:
            post(url, alert)
        except Exception as exc:
            _log.warning("alert webhook %s failed: %s", url, exc)
