"""A campaign run by a real ``ferry serve`` process on a loopback port: created with the CLI,
approved through the API, the operator's restore as each node's "done", a restart of the server in
the middle, and each step told to a local webhook receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.integration.sim.test_api import AUTH, TOKEN, free_port, wait_for
from tests.integration.sim.test_cli import FERRY, ferry, write_config
from tests.integration.sim.test_notify import receiver  # noqa: F401 - fixture
from tests.integration.sim.test_serve_logs import listening

#: Every wait ends: a step not reached in this time fails the test (a bound, not a speed: the
#: simulated drains take seconds on a quiet machine).
WAIT_S = 240.0


class Server:
    """``ferry serve`` in its own process, stopped with SIGTERM as an init system would."""

    def __init__(self, config: Path) -> None:
        for _ in range(3):  # a free port can be taken by another process before the server binds it
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
            argv = [FERRY, "--config", str(config), "serve", "--port", str(self.port)]
            self.proc = subprocess.Popen(argv, env={**os.environ, "FERRY_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO)},
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
            wait_for(lambda: listening(self.port) or self.proc.poll() is not None, timeout=120)
            if self.proc.poll() is None:
                return
            err = self.proc.communicate(timeout=10)[1]
            assert "address already in use" in err.lower(), err
        raise AssertionError("no free loopback port in 3 tries")

    def get(self, path: str) -> dict:
        return httpx.get(self.base + path, headers=AUTH, timeout=10).json()

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.post(self.base + path, headers=AUTH, json=body or {}, timeout=60)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        err = self.proc.communicate(timeout=60)[1]
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def started() -> Iterator[list[Server]]:
    """The servers a test starts: never one left behind a failed test."""
    servers: list[Server] = []
    yield servers
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)


def test_ferry_serve_runs_a_saved_campaign_across_a_restart(tmp_path: Path, receiver, started) -> None:  # noqa: F811
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "[schedule]\npoll_s = 0.1\n[maintenance]\ndone_timeout_s = 3600\n"
                      f'[notify]\nurls = ["json://127.0.0.1:{receiver.server_port}/ferry"]\n')
    homes = {c["id"]: c["node"] for c in json.loads(ferry("inventory", "--format", "json", config=config).stdout)
             ["containers"]}
    made = json.loads(ferry("maintenance", "create", "--nodes", "a,b", "--format", "json", config=config).stdout)
    campaign = f"/v1/maintenance/campaigns/{made['id']}"
    server = Server(config)
    started.append(server)
    assert server.post(campaign + "/approve").json()["state"] == "approved"
    wait_for(lambda: server.get(campaign)["steps"][0]["phase"] == "maintenance", timeout=WAIT_S)
    server.stop()  # the operator patches a while ferry is restarted
    server = Server(config)
    started.append(server)
    assert server.get(campaign)["state"] == "running"
    assert server.post("/v1/nodes/a/restore", {"approve": True}).status_code == 200  # the "done" for a
    wait_for(lambda: server.get(campaign)["steps"][1]["phase"] == "maintenance", timeout=WAIT_S)
    assert server.get(campaign)["steps"][0]["phase"] == "done"
    assert server.post("/v1/nodes/b/restore", {"approve": True}).status_code == 200
    wait_for(lambda: server.get(campaign)["state"] == "succeeded", timeout=WAIT_S)
    shown = server.get(campaign)
    server.stop()
    assert all(j["state"] == "succeeded" for s in shown["steps"] for j in s["drain"] + s["restore"])
    assert shown["actual_end"] and shown["predicted_end"]
    inventory = json.loads(ferry("inventory", "--format", "json", config=config).stdout)
    assert {c["id"]: c["node"] for c in inventory["containers"]} == homes
    told = [m["title"] for m in receiver.got]
    assert told.count(f"ferry: campaign {made['id']}: a maintained and back") == 1
    assert told.count(f"ferry: campaign {made['id']}: b maintained and back") == 1
    assert f"ferry: campaign {made['id']} succeeded" in told
