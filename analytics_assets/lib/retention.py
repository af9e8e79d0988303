"""What retention removes, decided without Dagster: day folders and files past their age,
model versions beyond the newest few. ``defs/maintenance`` applies it daily."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

_DAY = re.compile(r"^(?:date=)?(\d{4}-\d{2}-\d{2})$")


def old_day_folders(root: Path, keep_days: int, today: date) -> list[Path]:
    """Folders named ``YYYY-MM-DD`` or ``date=YYYY-MM-DD`` anywhere under ``root`` whose day is
    more than ``keep_days`` before ``today`` (none when ``keep_days`` is 0)."""
    if keep_days <= 0 or not root.is_dir():
        return []
    cutoff = today - timedelta(days=keep_days)
    found = []
    for path in root.rglob("*"):
        match = _DAY.match(path.name)
        if match and path.is_dir() and date.fromisoformat(match.group(1)) < cutoff:
            found.append(path)
    return sorted(found)


def old_files(root: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Files under ``root`` last modified more than ``keep_days`` ago."""
    if keep_days <= 0 or not root.is_dir():
        return []
    cutoff = (now or time.time()) - keep_days * 86_400
    return sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_mtime < cutoff)


def remove(paths: Iterable[Path]) -> int:
    """Delete files and folders; returns how many were removed (gone already: not counted)."""
    removed = 0
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        elif path.exists():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def versions_to_drop(versions: Iterable[str], keep_last: int, protected: set[str]) -> list[str]:
    """Model versions beyond the newest ``keep_last`` that are not ``protected`` (champion,
    challenger, the champion before), oldest first; none when ``keep_last`` is 0."""
    if keep_last <= 0:
        return []
    ordered = sorted(set(versions), key=lambda v: (len(v), v) if v.isdigit() else (0, v))
    newest = set(ordered[-keep_last:])
    return [v for v in ordered if v not in newest and v not in protected]
