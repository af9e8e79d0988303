"""API keys with roles, for both services (:mod:`bentos.guard`).

The keys file (``ANALYTICS_API_KEYS_FILE``, JSON) holds, per key, a name, its roles and the
SHA-256 of the key, never the key: ``analytics api-key add NAME --role analyst`` prints a new
key once. Keys are 32 random bytes, so a fast hash is as safe as a slow one.

Roles: ``scorer`` (the scoring endpoints), ``analyst`` (the read API), ``admin`` (model
reload, erasure, key listing, and everything the others may do). The older single key,
``SCORING_API_KEY``, keeps working as an admin key named ``SCORING_API_KEY``.

:class:`KeyRing` is what a service holds: it looks at the file at most once a second and
reloads it when it changed; a file that does not parse leaves the last good keys in force and
says why (:attr:`KeyRing.error`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROLES = ("scorer", "analyst", "admin")
GRANTS = {"scorer": {"scorer"}, "analyst": {"analyst"}, "admin": set(ROLES)}
"""What each role may do: admin may do all."""
LEGACY_NAME = "SCORING_API_KEY"


class KeyFileError(ValueError):
    """The keys file cannot be read or changed as asked."""


@dataclass(frozen=True)
class Key:
    name: str
    sha256: str
    roles: tuple[str, ...]
    created_at: str = ""

    def may(self, role: str) -> bool:
        return any(role in GRANTS[r] for r in self.roles)

    def public(self) -> dict:
        return {"name": self.name, "roles": list(self.roles), "created_at": self.created_at}


def digest(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def load(path: Path) -> dict[str, Key]:
    """The file's keys by digest ({} when there is no file); :class:`KeyFileError` when it does
    not parse or a key is malformed."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        entries = data["keys"]
        keys = {}
        for entry in entries:
            key = Key(
                name=str(entry["name"]),
                sha256=str(entry["sha256"]).lower(),
                roles=tuple(entry["roles"]),
                created_at=str(entry.get("created_at", "")),
            )
            unknown = [r for r in key.roles if r not in ROLES]
            if unknown or not key.roles:
                raise KeyFileError(
                    f"key {key.name!r}: roles {list(key.roles)} (each one of {', '.join(ROLES)})"
                )
            if len(key.sha256) != 64 or any(c not in "0123456789abcdef" for c in key.sha256):
                raise KeyFileError(f"key {key.name!r}: sha256 is not a SHA-256 hex digest")
            keys[key.sha256] = key
        return keys
    except KeyFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a keys file: {type(exc).__name__}: {exc}") from exc


def _save(path: Path, keys: dict[str, Key]) -> None:
    from analytics_assets.lib.atomic_files import write_text

    entries = [asdict(k) | {"roles": list(k.roles)} for k in keys.values()]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({"keys": entries}, indent=1))
    os.chmod(path, 0o600)


def add(path: Path, name: str, roles: list[str]) -> str:
    """Add a key ``name`` with ``roles``; returns the new key (shown once)."""
    keys = load(path)
    if any(k.name == name for k in keys.values()):
        raise KeyFileError(f"a key named {name!r} exists: revoke it first")
    if not roles or any(r not in ROLES for r in roles):
        raise KeyFileError(f"roles must be among {', '.join(ROLES)}")
    secret = "ak_" + secrets.token_urlsafe(32)
    entry = Key(name, digest(secret), tuple(roles), datetime.now(UTC).isoformat())
    keys[entry.sha256] = entry
    _save(path, keys)
    return secret


def revoke(path: Path, name: str) -> None:
    keys = load(path)
    kept = {d: k for d, k in keys.items() if k.name != name}
    if len(kept) == len(keys):
        raise KeyFileError(f"no key named {name!r}")
    _save(path, kept)


@dataclass
class KeyRing:
    """The keys a service accepts: the file's (reloaded when it changes) and the legacy one."""

    path: Path
    legacy: str | None = None
    check_every_s: float = 1.0
    error: str | None = None
    _keys: dict[str, Key] = field(default_factory=dict)
    _seen: tuple | None = None
    _checked: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.refresh(force=True)

    @property
    def enabled(self) -> bool:
        """Whether any key is required: a keys file with keys, or the legacy key."""
        return bool(self._keys) or bool(self.legacy) or self.error is not None

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.check_every_s:
            return
        with self._lock:
            self._checked = now
            try:
                stat = self.path.stat()
                seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            except FileNotFoundError:
                seen = None
            if seen == self._seen and not force:
                return
            try:
                self._keys = load(self.path)
                self.error = None
            except KeyFileError as exc:  # the last good keys stay in force
                self.error = f"keys file not reloaded, the last good keys are in force: {exc}"
            self._seen = seen

    def find(self, given: bytes) -> Key | None:
        """The key ``given`` is, if any."""
        self.refresh()
        if self.legacy and hmac.compare_digest(given, self.legacy.encode()):
            return Key(LEGACY_NAME, digest(self.legacy), ("admin",))
        return self._keys.get(digest(given))

    def names(self) -> list[dict]:
        self.refresh()
        listed = [k.public() for k in self._keys.values()]
        if self.legacy:
            listed.append({"name": LEGACY_NAME, "roles": ["admin"], "created_at": ""})
        return listed
