"""An ASGI guard in front of every API here (scoring and the read API), answering before
BentoML parses anything:

- **401** without a known API key, **403** with a key whose roles do not cover the route
  (:mod:`analytics_assets.lib.api_keys`: keys with roles in ``ANALYTICS_API_KEYS_FILE``, and
  ``SCORING_API_KEY`` as an admin key). With neither set, no key is asked for (the services
  then listen on localhost only). BentoML replaces the body of a 401 or 403 its own code
  raises with a generic one; these never reach BentoML, so the message says what is missing.
- Admin routes are recorded in the audit log (``ANALYTICS_ADMIN_AUDIT_LOG``): who, what, when,
  and the answer's status.
- **413** for a body over ``SCORING_MAX_BODY_BYTES``. Every POST body is read as JSON whatever
  its declared type (``curl -d`` declares form encoding), so no other parser (multipart,
  pickle) ever sees it.

Probes and metrics stay open; ``/readyz`` says, in its body, when the keys file did not parse
(the last good keys stay in force). Answers are in the services' one error shape
(:mod:`bentos.errors`)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

from analytics_assets import settings
from analytics_assets.lib.api_keys import KeyRing
from bentos import errors

OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})
KEY_SCOPE = "analytics.api_key"
"""Where the guard leaves the caller's key name in the ASGI scope, for a route to record."""
_log = logging.getLogger("bentos.guard")


class RequestGuard:
    def __init__(
        self,
        app,
        api_key: str | None = None,
        max_body_bytes: int | None = None,
        roles: dict[str, str] | None = None,
        keys: KeyRing | None = None,
        public: tuple[str, ...] = (),
    ) -> None:
        """``roles``: route -> the role it needs (routes not named need any known key);
        ``public``: GET routes that need no key (pages that hold no data themselves)."""
        self.app = app
        legacy = api_key if api_key is not None else settings.serving_api_key()
        self.keys = keys or KeyRing(settings.api_keys_path(), legacy=legacy or None)
        self.roles = roles or {}
        self.public = frozenset(public)
        self.max_body_bytes = max_body_bytes or settings.serving_max_body_bytes()
        self._said: str | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS:
            self.keys.refresh()
            self._say_key_error()
            if scope["path"] == "/readyz" and self.keys.error:
                await self.app(scope, receive, _with_detail(send, {"api_keys": self.keys.error}))
            else:
                await self.app(scope, receive, send)
            return
        if scope["path"] in self.public and scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        needed = self._needed(scope["path"])
        if self.keys.enabled:
            key = self.keys.find(_given(headers))
            self._say_key_error()
            if key is None:
                await _reply(send, 401, "missing or wrong API key (header X-API-Key)")
                return
            if needed and not key.may(needed):
                await _reply(
                    send,
                    403,
                    f"{scope['path']} needs the {needed} role; key {key.name!r} has "
                    f"{', '.join(key.roles)}",
                )
                return
            scope = {**scope, KEY_SCOPE: key.name}
            if needed == "admin":
                send = _audited(send, scope, key.name)
        elif needed == "admin":
            send = _audited(send, scope, None)
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope = {
            **scope,
            "headers": [
                *((k, v) for k, v in scope["headers"] if k.lower() != b"content-type"),
                (b"content-type", b"application/json"),
            ],
        }
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _reply(send, 413, f"the body is over {self.max_body_bytes} bytes")
            return
        body, more = bytearray(), True
        while more:  # read it here (chunked bodies declare no length) and replay it
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _reply(send, 413, f"the body is over {self.max_body_bytes} bytes")
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def _needed(self, path: str) -> str | None:
        """The role ``path`` needs: its own entry, or a mounted app's (``/report/...``)."""
        if path in self.roles:
            return self.roles[path]
        return next((r for p, r in self.roles.items() if path.startswith(p + "/")), None)

    def _say_key_error(self) -> None:
        if self.keys.error != self._said:
            self._said = self.keys.error
            if self.keys.error:
                _log.error(self.keys.error)
            else:
                _log.info("keys file reloaded")


def _given(headers: dict[str, bytes]) -> bytes:
    given = headers.get("x-api-key")
    if given is None:
        scheme, _, token = headers.get("authorization", b"").partition(b" ")
        given = token if scheme.lower() == b"bearer" else b""
    return given


def _audited(send, scope, who: str | None):
    """``send``, recording the admin request with its answer's status once it starts."""

    async def recording(message) -> None:
        if message["type"] == "http.response.start":
            record(
                who,
                f"{scope['method']} {scope['path']}",
                status=message["status"],
                client=(scope.get("client") or ("", 0))[0],
            )
        await send(message)

    return recording


def record(who: str | None, what: str, **detail) -> None:
    """One line of the admin audit log (appended whole: one ``write`` of one line)."""
    path = settings.admin_audit_log()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(
        {"at": datetime.now(UTC).isoformat(), "who": who or "(no keys configured)", "what": what}
        | detail
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _with_detail(send, detail: dict):
    """``send`` with the body replaced by JSON holding the upstream body and ``detail``."""
    state: dict = {}

    async def rewriting(message) -> None:
        if message["type"] == "http.response.start":
            state["start"] = message
            state["body"] = b""
            return
        state["body"] += message.get("body", b"")
        if message.get("more_body"):
            return
        body = json.dumps(
            {
                "ready": state["start"]["status"] == 200,
                "status": state["body"].decode(errors="replace"),
            }
            | {"detail": detail}
        ).encode()
        headers = [
            (k, v)
            for k, v in state["start"].get("headers", [])
            if k.lower() not in (b"content-length", b"content-type")
        ] + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({**state["start"], "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return rewriting


async def _reply(send, status: int, message: str) -> None:
    body = errors.body(status, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
