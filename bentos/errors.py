"""One error model for every API here (scoring and the read API): each 4xx and 5xx answers

    {"error": {"code": "unknown_customer", "message": "customer 'x' is not known ...",
               "detail": null}}

``code`` is machine-readable and stable; ``message`` says what happened for a person;
``detail`` lists the fields at fault for a request that did not validate.

BentoML answers errors in three shapes of its own (a list ``[{"error": ...}]`` for a raised
4xx, ``{"error": ..., "detail": [...]}`` for a body that did not validate, plain text for an
unknown route) and replaces the message of a 401, 403 or 5xx with a generic one. So the
services raise :class:`ApiError` (a ``BentoMLException``, so BentoML sets the status), and
:class:`ErrorShape`, an ASGI middleware, writes every error response in the one shape: the
raised error's code and message where there is one (kept aside for this request, since
BentoML's body no longer has them), else a code for the status and BentoML's message. It also
puts the shape into the OpenAPI document (``/docs.json``) as ``ErrorResponse``.
"""

from __future__ import annotations

import contextvars
import json
from http import HTTPStatus

from bentoml.exceptions import BentoMLException

CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
    504: "timeout",
}
"""The code of an error that names none, by HTTP status."""

_raised: contextvars.ContextVar[list | None] = contextvars.ContextVar("api_error", default=None)


class ApiError(BentoMLException):
    """An answer the API gives instead of a result: a status, a code and a message."""

    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message, error_code=HTTPStatus(status))
        self.code = code
        self.message = message
        raised = _raised.get()
        if raised is not None:  # the request's slot (worker threads share the request's list)
            raised.append(self)


def body(status: int, message: str, code: str | None = None, detail=None) -> bytes:
    """The JSON of an error response."""
    error = {"code": code or CODES.get(status, f"http_{status}"), "message": message}
    return json.dumps({"error": {**error, "detail": detail}}).encode()


def _reshaped(status: int, raw: bytes, raised: list) -> bytes:
    """BentoML's (or Starlette's) error body in the one shape."""
    mine = next((e for e in reversed(raised) if int(e.error_code) == status), None)
    if mine is not None:
        return body(status, mine.message, mine.code)
    try:
        found = json.loads(raw)
    except ValueError:
        return body(status, raw.decode("utf-8", "replace").strip() or HTTPStatus(status).phrase)
    if isinstance(found, list) and len(found) == 1:  # BentoML's 4xx: [{"error": ...}]
        found = found[0]
    if isinstance(found, dict) and isinstance(found.get("error"), dict):
        return raw  # already in the shape (the guard's own answers)
    if isinstance(found, dict):
        message = found.get("error") or found.get("detail") or HTTPStatus(status).phrase
        detail = found.get("detail") if "error" in found else None
        return body(status, str(message), detail=detail)
    return body(status, HTTPStatus(status).phrase)


ERROR_SCHEMA = {
    "type": "object",
    "title": "ErrorResponse",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Machine-readable, stable: e.g. "
                    + ", ".join(sorted(set(CODES.values())))
                    + " or an endpoint's own.",
                },
                "message": {"type": "string", "description": "What happened, for a person."},
                "detail": {
                    "description": "For a request that did not validate: the fields at fault.",
                    "anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "null"}],
                },
            },
        }
    },
}
OPENAPI_ERRORS = {
    "400": "The request is not valid (``detail`` names the fields).",
    "401": "Missing or wrong API key.",
    "404": "Not found.",
    "413": "The body or the result is over its limit.",
    "500": "An unexpected error; see the server log.",
    "503": "Not ready yet (no model promoted, still loading).",
}


def openapi(document: dict) -> dict:
    """The OpenAPI document with ``ErrorResponse`` as every operation's error answer."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/ErrorResponse"}
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status in [s for s in responses if s[:1] in ("4", "5")]:
                del responses[status]
            for status, description in OPENAPI_ERRORS.items():
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": reference}},
                }
    return document


class ErrorShape:
    """ASGI middleware: every error response of the app in the one shape (see the module)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raised: list[ApiError] = []
        token = _raised.set(raised)
        openapi_document = scope["path"].endswith("/docs.json")
        held: dict | None = None
        chunks: list[bytes] = []

        async def shaping_send(message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if message["status"] < 400 and not openapi_document:
                    await send(message)
                    return
                held = message
                return
            if held is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            raw = b"".join(chunks)
            status = held["status"]
            if status >= 400:
                data = _reshaped(status, raw, raised)
            else:
                data = json.dumps(openapi(json.loads(raw))).encode()
            headers = [
                (k, v)
                for k, v in held["headers"]
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ]
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        try:
            await self.app(scope, receive, shaping_send)
        finally:
            _raised.reset(token)
