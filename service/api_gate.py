"""The gate in front of every route of ferry's REST API: what happens before and around a route.

    request --> ApiGate (this module, plain ASGI)
                  1. the bearer token, before anything reads the body (401 + WWW-Authenticate)
                  2. a body without a JSON content type (curl -d) is read as JSON
                  3. any exception a route lets escape -> 500 {"error": "internal error (ref <id>)"},
                     the traceback logged under that ref (logger ``ferry.api``)
            --> FastAPI (body parsing, validation, routes)

FastAPI parses a body before it runs a route's dependencies, so a token checked in a dependency
lets an anonymous caller learn how bodies are validated; checking here answers 401 first.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("ferry.api")

#: Paths anyone may read: liveness for probes, and the API's description (the same text as the
#: public source; /docs runs in a browser, which cannot add a bearer header when it fetches it).
OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

#: Content types read as JSON anyway: none given, or curl's default for ``-d``.
JSON_BY_DEFAULT = {b"", b"application/x-www-form-urlencoded"}

UNAUTHORIZED = "authorization: a valid bearer token is required"


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return b""


async def _answer(send: Send, code: int, line: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": line}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": code, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ApiGate:
    """Plain ASGI middleware (no body buffering): auth first, JSON bodies, no bare tracebacks."""

    def __init__(self, app: Asgi, token: str) -> None:
        self.app, self.expected = app, token.encode()

    def authorized(self, scope: Scope) -> bool:
        scheme, _, given = _header(scope, b"authorization").partition(b" ")
        given = given.strip() if scheme.lower() == b"bearer" else b""
        return hmac.compare_digest(given, self.expected)  # constant time: no length/prefix oracle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS and not self.authorized(scope):
            await _answer(send, 401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            return
        content_type = _header(scope, b"content-type").split(b";")[0].strip().lower()
        if content_type in JSON_BY_DEFAULT:
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            ref = secrets.token_hex(6)
            log.exception("internal error (ref %s) on %s %s", ref, scope.get("method"), scope["path"])
            if started:  # the answer is on its way: the server closes the connection
                raise
            await _answer(send, 500, f"internal error (ref {ref})")
