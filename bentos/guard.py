"""An ASGI guard in front of every API here (scoring and the read API), answering before
BentoML parses anything:
401 without the API key (when ``SCORING_API_KEY`` is set) and 413 for a body over
``SCORING_MAX_BODY_BYTES``. Every POST body is read as JSON whatever its declared type (``curl
-d`` declares form encoding), so no other parser (multipart, pickle) ever sees it. Probes and
metrics stay open. Its answers are in the services' one error shape (:mod:`bentos.errors`)."""

from __future__ import annotations

import hmac

from analytics_assets import settings
from bentos import errors

OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})


class RequestGuard:
    def __init__(self, app, api_key: str | None = None, max_body_bytes: int | None = None) -> None:
        self.app = app
        key = api_key if api_key is not None else settings.serving_api_key()
        self.api_key = key.encode() if key else None
        self.max_body_bytes = max_body_bytes or settings.serving_max_body_bytes()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        if self.api_key is not None and not self._authorized(headers):
            await _reply(send, 401, "missing or wrong API key (header X-API-Key)")
            return
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

    def _authorized(self, headers: dict[str, bytes]) -> bool:
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, token = headers.get("authorization", b"").partition(b" ")
            given = token if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(given, self.api_key)


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
