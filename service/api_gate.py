"""The gate in front of every route of ferry's REST API: what happens before and around a route.

    request --> ApiGate (this module, plain ASGI)
                  1. the bearer token, before anything reads the body (401 + WWW-Authenticate):
                     a user's token (service.users) or the configured shared token (an admin);
                     then the role the route needs (ROUTE_ROLES, 403); the identity is left in
                     ``request.state.identity`` for the route to record who did what
                  2. a body without a JSON content type (curl -d) is read as JSON
                  3. any exception a route lets escape -> 500 {"error": "internal error (ref <id>)"},
                     the traceback logged under that ref (logger ``ferry.api``)
            --> FastAPI (body parsing, validation, routes)

FastAPI parses a body before it runs a route's dependencies, so a token checked in a dependency
lets an anonymous caller learn how bodies are validated; checking here answers 401 first.
The console's pages (service.web) are not behind the bearer token: a browser cannot send one,
so they check their own session cookie and CSRF token.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from service.users import SHARED_TOKEN_USER, Identity, Role

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("ferry.api")

#: Paths anyone may read: liveness for probes, and the API's description (the same text as the
#: public source; /docs runs in a browser, which cannot add a bearer header when it fetches it).
OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

#: The console (service.web): its pages and assets check a session cookie, not a bearer token.
CONSOLE_PATHS = frozenset({"/", "/login", "/logout"})
CONSOLE_PREFIXES = ("/ui/", "/static/")

#: The role each route needs, first match wins: (method or "*", path prefix, role). Reading is a
#: viewer's; every POST (plan, approve, pause, resume, cancel, evacuate) an operator's; users an admin's.
ROUTE_ROLES: tuple[tuple[str, str, Role], ...] = (
    ("*", "/v1/users", Role.admin),
    ("GET", "/", Role.viewer),
    ("HEAD", "/", Role.viewer),
    ("*", "/", Role.operator),
)

#: Content types read as JSON anyway: none given, or curl's default for ``-d``.
JSON_BY_DEFAULT = {b"", b"application/x-www-form-urlencoded"}

UNAUTHORIZED = "authorization: a valid bearer token is required"


def needed_role(method: str, path: str) -> Role:
    for verb, prefix, role in ROUTE_ROLES:
        if verb in ("*", method) and path.startswith(prefix):
            return role
    return Role.admin


def is_public(path: str) -> bool:
    """Paths the gate lets through without a bearer token (see OPEN_PATHS and the console)."""
    return path in OPEN_PATHS or path in CONSOLE_PATHS or path.startswith(CONSOLE_PREFIXES)


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


Identify = Callable[[str], Identity | None]


class ApiGate:
    """Plain ASGI middleware (no body buffering): auth first, JSON bodies, no bare tracebacks.

    ``identify`` maps a bearer token to an identity (service.users.identify, which knows the shared
    token too); without one, only ``token`` itself is accepted, as an admin."""

    def __init__(self, app: Asgi, token: str, identify: Identify | None = None) -> None:
        self.app, self.expected, self.identify = app, token.encode(), identify

    def _shared(self, given: str) -> Identity | None:
        if hmac.compare_digest(given.encode(), self.expected):  # constant time: no length/prefix oracle
            return Identity(SHARED_TOKEN_USER, Role.admin)
        return None

    async def identity(self, scope: Scope) -> Identity | None:
        scheme, _, raw = _header(scope, b"authorization").partition(b" ")
        given = raw.strip().decode("latin-1") if scheme.lower() == b"bearer" else ""
        if not given:
            return None
        if self.identify is None:
            return self._shared(given)
        return await run_in_threadpool(self.identify, given)  # the store is blocking I/O

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not is_public(scope["path"]):
            who = await self.identity(scope)
            if who is None:
                await _answer(send, 401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
                return
            needed = needed_role(scope.get("method", "GET"), scope["path"])
            if not who.allows(needed):
                await _answer(send, 403, f"forbidden: {who.name} is a {who.role.value}; this needs {needed.value}")
                return
            scope.setdefault("state", {})["identity"] = who
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
