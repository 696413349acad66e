"""Chaos: ``kill -9`` ferry at random instants during an evacuation, resume, repeat; the world must
end sound and the journal must show no destructive action repeated."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import yaml

from adapters.sim.audit import audit_world
from tests.integration.sim.test_cli import FERRY, ferry

KILLS = 20
DESTRUCTIVE = ("sim-stop", "sim-freeze", "sim-destroy")


def chaos_fleet(path: Path, count: int = 40) -> None:
    rng = random.Random(11)
    storage = {"local": {"total_gb": 4000, "used_gb": 0}}
    nodes = [{"name": n, "cpus": 64, "memory_mb": 262144, "kernel": "6.8", "storage": storage, "nic_mb_s": 1250}
             for n in ("a", "b", "c", "d")]
    containers = [{"id": str(1000 + i), "node": "a", "name": f"vps-{i}", "cpus": 1,
                   "memory_mb": rng.choice([1024, 2048, 4096]), "disk_gb": rng.choice([5, 10, 20, 40]),
                   "storage": "local", "ips": [f"198.51.100.{i + 1}"], "dirty_mb_per_s": rng.choice([0.5, 2, 8])}
                  for i in range(count)]
    for node in nodes:
        node["storage"] = {"local": {"total_gb": 4000, "used_gb": sum(
            c["disk_gb"] for c in containers if c["node"] == node["name"])}}
    path.write_text(yaml.safe_dump({"version": 1, "nodes": nodes, "containers": containers}))


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([FERRY, "--config", str(config), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def world_version(world: Path) -> int:
    return world.stat().st_mtime_ns if world.exists() else 0


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def jobs(config: Path) -> list[dict]:
    return json.loads(ferry("jobs", "--format", "json", config=config).stdout)


def test_kill_minus_nine_at_random_instants_then_resume(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    chaos_fleet(fleet)
    config = tmp_path / "ferry.toml"
    config.write_text("\n".join([
        "[ferry]", 'backend = "sim"', 'state_dir = "state"', "[engine]", "retry_initial_s = 0.01", "retry_max_s = 0.05",
        "[sim]", f'fleet_file = "{fleet}"', "speedup = 40", "fault_rate = 0.03",
    ]) + "\n")
    rng = random.Random(int(os.environ.get("FERRY_CHAOS_SEED", "4242")))
    world = tmp_path / "state" / "world.json"
    kills = 0
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        existing = jobs(config)
        if existing and existing[0]["state"] not in ("approved", "running", "cancelling"):
            break
        before = world_version(world)
        proc = start(config, *(("jobs", "resume") if existing else ("evacuate", "a", "--yes", "--format", "json")))
        if kills < KILLS:
            # Kill at a random instant after this run has started to act on the world, so that
            # kills land mid-step however long the start-up takes on a loaded machine.
            wait_until(lambda before=before, proc=proc: world_version(world) != before or proc.poll() is not None,
                       60)
            time.sleep(rng.uniform(0.0, 0.8))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
            elif proc.returncode == 2:  # a run that ended by itself may have failed moves, never this
                raise AssertionError(f"ferry refused the run: {proc.stderr.read().decode()}")
            proc.wait(timeout=10)
        else:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err.decode()
    assert kills >= KILLS
    final = jobs(config)
    assert len(final) == 1 and final[0]["state"] == "succeeded", final
    assert audit_world(str(world), forbidden_nodes=frozenset({"a"})) == []
    detail = json.loads(ferry("job", "show", str(final[0]["id"]), "--format", "json", config=config).stdout)
    assert len(detail["moves"]) == 40 and all(m["state"] == "succeeded" for m in detail["moves"])
    journal = detail["journal"]
    resumed = [j for j in journal if j["kind"] == "event" and "resuming" in str(j["what"])]
    assert resumed, "no kill landed mid-step: the test proved nothing about resumption"
    destructive = Counter((j["ct"], j["host"], j["what"][0]) for j in journal
                          if j["kind"] == "command" and j["what"][0] in DESTRUCTIVE)
    repeated = {key: n for key, n in destructive.items() if n > 1}
    assert repeated == {}, f"destructive actions repeated: {repeated}"
    print(f"chaos: {kills} kills, {len(resumed)} mid-step resumptions, {len(journal)} journal entries")
