"""A real authoritative DNS server for tests: Knot DNS (Debian package ``knot``) on a loopback
port (or a lab namespace's address), serving one zone that accepts RFC 2136 updates signed with a
TSIG key. Started and stopped by the test; nothing outlives it (its own temp dir, its own pid).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
#: Longest the server may take to answer after start.
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class KnotServer:
    address: str
    port: int
    zone: str
    key_name: str
    secret: str
    folder: Path

    def key_file(self) -> Path:
        """The TSIG secret as ferry's ``dns.key_file`` (mode 600)."""
        path = self.folder / "ferry.key"
        path.write_text(self.secret + "\n")
        path.chmod(0o600)
        return path


def available() -> bool:
    return os.path.exists(KNOTD) and os.geteuid() == 0


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _config(folder: Path, address: str, port: int, zone: str, key: str, secret: str) -> str:
    return f"""server:
    rundir: "{folder}"
    listen: {address}@{port}
    user: root:root
log:
  - target: stderr
    any: warning
database:
    storage: "{folder}/db"
key:
  - id: {key}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: ferry-update
    key: {key}
    action: [update, transfer]
template:
  - id: default
    storage: "{folder}"
    zonefile-sync: -1
    journal-content: changes
zone:
  - domain: {zone}
    file: "{folder}/{zone}zone"
    acl: ferry-update
"""


@contextmanager
def knot_server(folder: Path, records: dict[str, tuple[str, int]], *, zone: str = "lab.test.",
                address: str = "127.0.0.1", netns: str | None = None) -> Iterator[KnotServer]:
    """Serve ``zone`` with ``records`` ({name: (ipv4, ttl)}) on ``address``; inside ``netns``
    when given. Yields once the server answers; stops it (SIGTERM, then SIGKILL) on exit."""
    (folder / "db").mkdir(parents=True, exist_ok=True)
    port = _free_port(address) if netns is None else 53
    secret = base64.b64encode(os.urandom(32)).decode()
    lines = [f"$ORIGIN {zone}", "$TTL 3600",
             f"@ SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 60", f"@ NS ns.{zone}",
             f"ns A {address}"] + [f"{name} {ttl} A {ip}" for name, (ip, ttl) in records.items()]
    (folder / f"{zone}zone").write_text("\n".join(lines) + "\n")
    (folder / "knot.conf").write_text(_config(folder, address, port, zone, "ferry", secret))
    argv = [KNOTD, "-c", str(folder / "knot.conf")]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(folder / "knotd.log", "wb"), start_new_session=True)
    server = KnotServer(address, port, zone, "ferry", secret, folder)
    try:
        _wait_ready(server, proc, netns)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: KnotServer, proc: subprocess.Popen, netns: str | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    probe = ["kdig", "+short", "+timeout=1", "+retry=0", "-p", str(server.port), f"@{server.address}",
             "SOA", server.zone]
    if netns:
        probe = ["ip", "netns", "exec", netns, *probe]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"knotd exited {proc.returncode}: "
                               f"{(server.folder / 'knotd.log').read_text()[-500:]}")
        if subprocess.run(probe, capture_output=True, text=True, timeout=5).stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"knotd did not answer within {START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
