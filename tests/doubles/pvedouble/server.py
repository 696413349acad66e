"""The HTTPS front of the double: pve-http-server's request handling, reduced.

    request -> auth (PVEAPIToken header) -> tick world -> injected 5xx? -> route + validate
            -> handler under the world lock -> {"data": ...} | error status line (+ "errors")
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.doubles.pvedouble import remote, routes
from tests.doubles.pvedouble.certs import make_certs
from tests.doubles.pvedouble.model import ApiError
from tests.doubles.pvedouble.params import validate
from tests.doubles.pvedouble.world import World

PREFIX = "/api2/json"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        return None

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in one segment; without NODELAY, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reply(self, status: int, reason: str, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status, reason.splitlines()[0] if reason else None)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        self._headers_buffer.append(b"\r\n" + raw)  # end_headers() flushes headers and body at once
        self.flush_headers()

    def _params(self, query: str) -> dict[str, Any]:
        params = dict(parse_qsl(query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                params.update({k: v for k, v in json.loads(body).items()})
            else:
                params.update(dict(parse_qsl(body, keep_blank_values=True)))
        return params

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        params = self._params(parts.query)
        world = self.server.world
        if not parts.path.startswith(PREFIX + "/"):
            return self._reply(501, "Not Implemented", {"data": None})
        path = unquote(parts.path[len(PREFIX):]).rstrip("/")
        if self.headers.get("Authorization") != self.server.auth_header:
            world.log_request(self.command, path, 401, params)
            return self._reply(401, "No ticket", {"data": None})
        with world.lock:
            world.tick()
            if world.faults.http_errors > 0:
                world.faults.http_errors -= 1
                world.log_request(self.command, path, world.faults.http_status, params)
                return self._reply(world.faults.http_status, "Service Unavailable (injected)", {"data": None})
            try:
                spec, handler, path_params = routes.find(self.command, path)
                data = handler(world, path_params, validate(spec, params), self.server.user)
                world.note_states(time.monotonic())
            except ApiError as exc:
                world.log_request(self.command, path, exc.status, params)
                body: dict[str, Any] = {"data": None}
                if exc.errors:
                    body["errors"] = exc.errors
                return self._reply(exc.status, exc.message, body)
            world.log_request(self.command, path, 200, params, data)
        self._reply(200, "OK", {"data": data})

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    world: World
    auth_header: str
    user: str


@dataclass
class PveDouble:
    """A running double: where it listens and how to authenticate against it."""

    world: World
    host: str
    port: int
    ca_file: Path
    token_id: str
    token_secret: str
    _server: _Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{PREFIX}"

    def stop(self) -> None:
        remote.SERVED.pop((self.host, self.port), None)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_double(world: World, workdir: Path, *, token_id: str = "ferry@pve!migrate",
                 token_secret: str = "5b0e1c7e-55c4-4c1f-9a4c-2f1e0d9d3a11") -> PveDouble:
    """Serve ``world`` over HTTPS on 127.0.0.1 (a free port) until ``stop()``."""
    ca, cert, key = make_certs(workdir)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.world = world
    server.auth_header = f"PVEAPIToken={token_id}={token_secret}"
    server.user = token_id
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    remote.SERVED[("127.0.0.1", server.server_address[1])] = world
    return PveDouble(world, "127.0.0.1", server.server_address[1], ca, token_id, token_secret, server, thread)
