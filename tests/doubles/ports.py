"""Loopback ports for the servers the tests start (ferry serve, PostgreSQL, SMTP, webhooks).

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same range every
outgoing connection's source port comes from: on a busy machine (the suite's parallel workers,
their database and HTTP clients) one of those can take the port between the test's pick and the
server's bind. So the pick is a random port *below* the ephemeral range that is free right now;
two picks collide only by chance (1 in ~10,000), and the servers that can report a failed bind
are started again on another port by their tests.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Ports below Linux's default ephemeral range (32768-60999) and above the registered services
#: a test machine is likely to run.
_LOW, _HIGH = 20000, 32767


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the ephemeral range when it can be."""
    high = min(_HIGH, _ephemeral_floor() - 1)
    for _ in range(200):
        port = random.randint(_LOW, high) if high > _LOW else 0
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free loopback port found")
