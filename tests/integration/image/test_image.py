"""ferry's container image as an operator runs it: the repository's Dockerfile, unmodified, built
and run with podman; a mounted config (the simulated fleet, so no cluster is needed) and a state
volume; the API published on the host's loopback only.

What could break and is checked: serve not listening on all interfaces inside the container (the
host would get no answer through the published port), the config not found at /etc/ferry, state
written elsewhere than the volume or as root, a version that is not the package's, the healthcheck,
and a stop that needs SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doubles.image import podman_host

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
#: One tag per source tree, so that two checkouts testing at once do not replace each other's image.
TAG = f"localhost/ferry:test-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}"
STATE_UID = 999  # the Dockerfile's ferry user
STOP_TIMEOUT_S = 30
READY_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def ferry_image() -> str:
    reason = podman_host.unavailable_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    podman_host.prepare()
    prepared = time.monotonic()
    podman_host.build_image(REPO, TAG)
    print(f"\nbase images {prepared - started:.0f} s, ferry image build {time.monotonic() - prepared:.0f} s")
    return TAG


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


PACKAGES = ("fleet", "planners", "adapters", "service")
#: Digest of every .py file of ferry's packages under a root; the same code on both sides of the test.
SOURCE_DIGEST = ("import hashlib, pathlib, sys; root = pathlib.Path(sys.argv[1]); "
                 f"files = sorted(p for d in {PACKAGES!r} for p in (root / d).rglob('*.py')); "
                 "print(hashlib.sha256(b''.join(str(p.relative_to(root)).encode() + p.read_bytes() "
                 "for p in files)).hexdigest(), len(files))")


def container_state(name: str) -> dict:
    return json.loads(podman_host.podman("inspect", "--format", "{{json .State}}", name, timeout=60).stdout)


def wait_for_health(name: str, url: str) -> None:
    """Until /healthz answers from the host, bounded; a container that died fails at once with its logs."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not container_state(name).get("Running"):
            logs = podman_host.podman("logs", name, timeout=60, check=False)
            pytest.fail(f"the container stopped before answering: {logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        try:
            if http_get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/healthz did not answer 200 within {READY_TIMEOUT_S} s")


@pytest.fixture
def served(ferry_image: str, tmp_path: Path) -> Iterator[dict]:
    """ferry serve in the image: config mounted read-only at /etc/ferry, a fresh named volume."""
    config = tmp_path / "ferry.toml"
    config.write_text('[ferry]\nbackend = "sim"\n\n[sim]\nspeedup = 2000\n')
    config.chmod(0o644)
    name = f"ferry-image-test-{secrets.token_hex(4)}"
    port, token = free_loopback_port(), secrets.token_urlsafe(24)
    podman_host.podman("volume", "create", name, timeout=60)
    try:
        podman_host.podman(
            "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8080",
            "--volume", f"{config}:/etc/ferry/ferry.toml:ro", "--volume", f"{name}:/var/lib/ferry",
            "--env", f"FERRY_API_TOKEN={token}", ferry_image, timeout=120)
        yield {"name": name, "url": f"http://127.0.0.1:{port}", "token": token}
    finally:
        podman_host.podman("rm", "--force", "--time", "0", name, timeout=120, check=False)
        podman_host.podman("volume", "rm", "--force", name, timeout=60, check=False)


def assert_runs_this_tree(name: str) -> None:
    """``ferry --version`` is the package's, and the installed code is this tree's (a stale build
    cache would not be)."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    shown = podman_host.podman("exec", name, "ferry", "--version", timeout=120).stdout.strip()
    assert shown == f"ferry {version}"
    in_image = podman_host.podman("exec", name, "python", "-c", SOURCE_DIGEST,
                                  "/usr/local/lib/python3.11/site-packages", timeout=120).stdout.split()
    here = subprocess.run([sys.executable, "-c", SOURCE_DIGEST, str(REPO)], capture_output=True, text=True,
                          timeout=60, check=True).stdout.split()
    assert in_image == here and int(here[1]) > 0


def assert_state_in_volume(name: str) -> None:
    """The job store is in the named volume, owned by the image's non-root user."""
    mountpoint = Path(podman_host.podman("volume", "inspect", "--format", "{{.Mountpoint}}", name,
                                         timeout=60).stdout.strip())
    store = mountpoint / "ferry.db"
    assert store.is_file(), sorted(p.name for p in mountpoint.iterdir())
    assert (mountpoint.stat().st_uid, store.stat().st_uid) == (STATE_UID, STATE_UID)


def test_serve_in_the_image_answers_the_host_keeps_state_in_the_volume_and_stops_cleanly(served: dict) -> None:
    name, url = served["name"], served["url"]
    wait_for_health(name, f"{url}/healthz")
    status, body = http_get(f"{url}/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    # The mounted config chose the simulated fleet: the API serves its inventory with the token.
    status, body = http_get(f"{url}/v1/inventory", served["token"])
    assert status == 200 and json.loads(body)["nodes"], body[:300]
    assert http_get(f"{url}/v1/inventory")[0] == 401
    ports = podman_host.podman("port", name, timeout=60).stdout
    assert ports.strip().endswith(f"127.0.0.1:{url.rsplit(':', 1)[1]}"), ports

    assert_runs_this_tree(name)
    # Any other verb in the running container finds the same config and state by itself.
    jobs = podman_host.podman("exec", name, "ferry", "jobs", "--format", "json", timeout=120, check=False)
    assert jobs.returncode == 0, jobs.stderr
    assert podman_host.podman("healthcheck", "run", name, timeout=120, check=False).returncode == 0
    assert_state_in_volume(name)
    assert container_state(name)["Running"]

    started = time.monotonic()
    podman_host.podman("stop", "--time", str(STOP_TIMEOUT_S), name, timeout=STOP_TIMEOUT_S + 60)
    took = time.monotonic() - started
    state = container_state(name)
    # Exit 0 means ferry handled SIGTERM itself; podman's SIGKILL after the timeout would give 137.
    assert (state["Running"], state["ExitCode"]) == (False, 0), state
    assert took < STOP_TIMEOUT_S
    logs = podman_host.podman("logs", name, timeout=60)
    assert "ferry serve: stopped" in logs.stdout + logs.stderr
