"""A throwaway PostgreSQL cluster for tests: initdb into a temporary folder, listen on loopback.

PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` system user.
Tests that need it skip (with the reason) when PostgreSQL's binaries are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.doubles.ports import free_port as _free_port


def find_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh, empty database; stop and remove it afterwards."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    base = Path(tempfile.mkdtemp(prefix="ferry-pg-"))
    data, port = base / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        base.chmod(0o700)
    try:
        subprocess.run(_as_user([initdb, "-D", str(data), "-U", "ferry", "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=60)
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} -c fsync=off"
        subprocess.run(_as_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w",
                                 "-t", "30", "start"]), check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://ferry@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
