"""Content digests of model artifacts, recorded when a model is logged and checked before any
model is loaded (a model file is code: load only what we wrote)."""

from __future__ import annotations

import hashlib
from pathlib import Path

BENTO_MODEL_FOLDER = "mlflow_model"
"""Where a BentoML model of ours keeps the MLflow model folder it was promoted from."""

ADDED_ON_DOWNLOAD = frozenset({"registered_model_meta"})
"""Files MLflow writes into a registered model's folder when downloading it, not logged."""


class DigestMismatch(RuntimeError):
    """An artifact's content differs from the digest recorded when it was logged."""


def directory_sha256(path: Path) -> str:
    """SHA-256 over every file of a model folder: relative names and contents, in name order."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        if relative in ADDED_ON_DOWNLOAD:
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def verify(path: Path, expected: str | None, what: str) -> str:
    """Raise :class:`DigestMismatch` unless the folder's digest is ``expected``."""
    if not expected:
        raise DigestMismatch(f"{what}: no sha256 was recorded for it; refusing to load it")
    actual = directory_sha256(path)
    if actual != expected:
        raise DigestMismatch(f"{what}: sha256 {actual} differs from the recorded {expected}")
    return actual
