"""Podman on a machine with no container registry and no Docker daemon, ready to build ferry's
unmodified Dockerfile (the recipe in the lab notes, "Building and running the Dockerfile with
podman").

Why each piece exists:

- a private containers.conf: crun fails on this kind of machine's hybrid cgroups (runc works), no
  systemd means cgroupfs and a file event log, and podman's default ulimits exceed the hard limits;
- ``localhost/debian:bookworm-slim`` made with mmdebstrap from the host's own Debian mirror, then
  ``localhost/python:3.11-slim`` built on it (python-slim.Containerfile), so that an unmodified
  ``FROM python:3.11-slim`` resolves locally; ``--pull`` is never passed;
- pip inside the build trusts the host's CA bundle (TLS is intercepted here) through a pip.conf and
  the bundle mounted at build time only, so nothing of it stays in the image.

Every step is idempotent and skipped when its image already exists, so only the first run on a
machine pays for the base images (minutes); a file lock keeps two runs from racing.
Run ``python -m tests.doubles.image.podman_host`` to prepare a machine ahead of the tests.
"""

from __future__ import annotations

import fcntl
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent
#: Kept between runs on one machine: containers.conf, the build-time pip.conf, the lock.
CACHE = Path(os.environ.get("FERRY_PODMAN_CACHE", "/var/tmp/ferry-podman"))
DEBIAN_BASE = "localhost/debian:bookworm-slim"
PYTHON_BASE = "localhost/python:3.11-slim"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TOOLS = ("podman", "runc", "mmdebstrap")
FALLBACK_SOURCES = ("deb http://deb.debian.org/debian bookworm main",
                    "deb http://deb.debian.org/debian bookworm-updates main",
                    "deb http://deb.debian.org/debian-security bookworm-security main")


def unavailable_reason() -> str | None:
    """Why podman cannot build images here (None when it can): the tests skip with this line."""
    if os.geteuid() != 0:
        return "building images with podman needs root here"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install podman runc mmdebstrap; make system-packages)"
    return None


def containers_conf() -> Path:
    """Write the private containers.conf (runc, cgroupfs, file events, ulimits within the hard ones)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 1048576)
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "containers.conf"
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n')
    return path


def podman(*args: str, timeout: float, check: bool = True, stdin: int | None = None,
           ) -> subprocess.CompletedProcess[str]:
    """Run podman with the private containers.conf; every call is bounded by ``timeout``."""
    env = {**os.environ, "CONTAINERS_CONF": str(CACHE / "containers.conf")}
    return subprocess.run(["podman", *args], env=env, stdin=stdin, capture_output=True, text=True,
                          timeout=timeout, check=check)


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, timeout=60, check=False).returncode == 0


def apt_source_lines() -> list[str]:
    """The host's Debian mirror as one-line ``deb`` entries (from deb822 ``*.sources`` files), so
    the base image comes from the same mirror apt already reaches on this machine."""
    lines: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith(("#", " ")))
            fields = {key.strip(): value.strip() for key, value in fields.items()}
            if "deb" not in fields.get("Types", "").split():
                continue
            for uri in fields.get("URIs", "").split():
                for suite in fields.get("Suites", "").split():
                    lines.append(f"deb {uri} {suite} {fields.get('Components', 'main')}")
    return [line for line in lines if "bookworm" in line] or list(FALLBACK_SOURCES)


def ensure_debian_base() -> None:
    """``localhost/debian:bookworm-slim``: a minbase Debian 12 imported into podman (~40 s-3 min)."""
    if image_exists(DEBIAN_BASE):
        return
    env = {**os.environ, "CONTAINERS_CONF": str(CACHE / "containers.conf")}
    debootstrap = subprocess.Popen(
        ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar", "--quiet",
         "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
         "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
         "bookworm", "-", *apt_source_lines()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        imported = subprocess.run(["podman", "import", "-", DEBIAN_BASE], stdin=debootstrap.stdout,
                                  env=env, capture_output=True, text=True, timeout=900)
        debootstrap.wait(timeout=60)
    finally:
        if debootstrap.poll() is None:
            debootstrap.kill()
            debootstrap.wait()
    if debootstrap.returncode != 0 or imported.returncode != 0:
        err = debootstrap.stderr.read().decode(errors="replace") if debootstrap.stderr else ""
        raise RuntimeError(f"base image failed: mmdebstrap {debootstrap.returncode}: {err[-2000:]}"
                           f" / podman import {imported.returncode}: {imported.stderr[-2000:]}")


def ensure_python_base() -> None:
    """``localhost/python:3.11-slim``: the official image's look-alike on the local Debian base."""
    if image_exists(PYTHON_BASE):
        return
    podman("build", "--file", str(HERE / "python-slim.Containerfile"), "--tag", PYTHON_BASE, str(HERE),
           timeout=900)


def prepare() -> None:
    """Everything an unmodified ``FROM python:3.11-slim`` build needs on this machine."""
    containers_conf()
    with machine_lock():
        ensure_debian_base()
        ensure_python_base()


def build_image(context: Path, tag: str, *, timeout: float = 1200) -> None:
    """``podman build`` of ``context``'s Dockerfile as it is, pip trusting the host CA at build
    time only. ``--format docker`` keeps HEALTHCHECK (the OCI format has no such field)."""
    pip_conf = CACHE / "build-pip.conf"
    pip_conf.write_text("[global]\ncert = /run/host-ca.crt\n")
    with machine_lock():  # builds are CPU-bound: one at a time
        previous = podman("image", "inspect", "--format", "{{.Id}}", tag, timeout=60, check=False).stdout.strip()
        podman("build", "--format", "docker", "--tag", tag,
               "--volume", f"{HOST_CA_BUNDLE}:/run/host-ca.crt:ro", "--volume", f"{pip_conf}:/etc/pip.conf:ro",
               str(context), timeout=timeout)
        current = podman("image", "inspect", "--format", "{{.Id}}", tag, timeout=60).stdout.strip()
    if previous and previous != current:
        # Drop the image this build replaced, so that runs after each change leave nothing untagged
        # behind (its dependency layer, ~350 MB, is its own once pyproject.toml changed); podman keeps
        # it while a container still uses it.
        podman("rmi", previous, timeout=120, check=False)


@contextmanager
def machine_lock() -> Iterator[None]:
    """One base-image preparation or build at a time on this machine (they share the base images)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main() -> None:
    reason = unavailable_reason()
    if reason:
        raise SystemExit(reason)
    started = time.monotonic()
    prepare()
    print(f"{DEBIAN_BASE} and {PYTHON_BASE} ready in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
