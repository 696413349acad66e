"""Chaos across instances: three ``ferry serve`` processes on one PostgreSQL run one 100-container
evacuation and a rebalance at once, on one simulated world, while instances are killed (``kill -9``,
then started again) and frozen past their lease (``SIGSTOP``, then ``SIGCONT``) at random.

What must hold: both jobs succeed; every container exists exactly once, sound (the world audit);
no move is run by two instances (the journal shows each destructive action once, though frozen
instances wake up after another took their moves over); nothing lands on the evacuated node."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from adapters.sim.audit import audit_world
from fleet.model import Inventory
from planners import plan_evacuate, plan_rebalance
from service.config import load_config
from service.jobs import create_job, job_detail
from service.lifecycle import JOB_FINAL, JobState, MoveState
from service.runtime import Runtime
from tests.integration.concurrency.databases import fresh_database
from tests.integration.sim.test_api import free_port
from tests.integration.sim.test_chaos import DESTRUCTIVE
from tests.integration.sim.test_cli import FERRY, REPO

EVENTS = 20
INSTANCES = 3
LEASE_S = 2.0
#: Every wait in this test ends: a job that does not finish in this time fails the test.
FINISH_S = 150.0
#: Node a's bandwidth budget and the simulator's speed: a's ~400 GB take at least ~50 s of wall
#: time to leave it, however fast the machine, so the 20 events land while the jobs run.
BUDGET_MB_S, SPEEDUP = 625, 13


def chaos_fleet(path: Path, seed: int = 11) -> None:
    """Node a holds 100 small containers (evacuated); b holds big ones (rebalanced); c, d, e wait."""
    rng = random.Random(seed)
    nodes = [{"name": n, "cpus": 128, "memory_mb": 262144, "kernel": "6.8", "nic_mb_s": 1250,
              "storage": {"local": {"total_gb": 8000, "used_gb": 0}}} for n in "abcde"]
    containers = [{"id": str(1000 + i), "node": "a", "name": f"vps-{i}", "cpus": 1,
                   "memory_mb": rng.choice([1024, 2048]), "disk_gb": rng.choice([2, 4, 6]), "storage": "local",
                   "ips": [f"198.51.100.{i + 1}"], "dirty_mb_per_s": rng.choice([0.5, 2])} for i in range(100)]
    containers += [{"id": str(2000 + i), "node": "b", "name": f"big-{i}", "cpus": 2,
                    "memory_mb": rng.choice([6144, 8192]), "disk_gb": rng.choice([4, 8]), "storage": "local",
                    "ips": [f"203.0.113.{i + 1}"]} for i in range(24)]
    for node in nodes:
        node["storage"]["local"]["used_gb"] = sum(c["disk_gb"] for c in containers if c["node"] == node["name"])
    path.write_text(yaml.safe_dump({"version": 1, "nodes": nodes, "containers": containers}))


def write_config(tmp_path: Path, database: str) -> Path:
    fleet = tmp_path / "fleet.yaml"
    chaos_fleet(fleet)
    config = tmp_path / "ferry.toml"
    config.write_text("\n".join([
        "[ferry]", 'backend = "sim"', 'state_dir = "state"', f'database = "{database}"',
        "[engine]", f"lease_s = {LEASE_S}", "retry_initial_s = 0.01", "retry_max_s = 0.05",
        "[schedule]", "poll_s = 0.3",
        "[policy]", "max_parallel = 8", "max_outgoing_per_node = 3", "max_incoming_per_node = 3",
        f"bandwidth_budget_mb_s = {BUDGET_MB_S}",
        "[sim]", f'fleet_file = "{fleet}"', f"speedup = {SPEEDUP}",
    ]) + "\n")
    return config


def as_it_will_be(inv: Inventory, moves: dict[str, str], away: str) -> Inventory:
    """The fleet once the evacuation is done: its containers on their targets, ``away`` receiving
    nothing (what reservations give planners; here the test builds it)."""
    nodes = [n.model_copy(update={"maintenance": n.name == away}) for n in inv.nodes]
    containers = [c.model_copy(update={"node": moves.get(c.id, c.node)}) for c in inv.containers]
    return inv.model_copy(update={"nodes": nodes, "containers": containers})


class Instances:
    """The ``ferry serve`` processes, started, killed, frozen and thawed by the test."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config, self.logs = config, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "FERRY_API_TOKEN": "chaos-token-0123456789abcdef"}
        with (self.logs / f"serve-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen([FERRY, "--config", str(self.config), "serve", "--port", str(free_port())],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                    cwd=self.config.parent, start_new_session=True)
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        for proc in self.live():
            os.killpg(proc.pid, signal.SIGCONT)
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def instances(tmp_path: Path, postgres_url: str) -> Iterator[Instances]:
    config = write_config(tmp_path, fresh_database(postgres_url, f"chaos_{tmp_path.name}"))
    (tmp_path / "logs").mkdir()
    group = Instances(config, tmp_path / "logs")
    try:
        yield group
    finally:
        group.stop_all()


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def disrupt(group: Instances, rng: random.Random) -> str:
    """One event on a random live instance: kill -9 and start a new one, or freeze it past its
    lease and let it go on."""
    victim = rng.choice(group.live())
    if rng.random() < 0.5:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        group.start()
        return "kill"
    os.killpg(victim.pid, signal.SIGSTOP)
    time.sleep(LEASE_S * 1.25 + rng.uniform(0.0, 0.5))
    os.killpg(victim.pid, signal.SIGCONT)
    return "stop"


def test_three_instances_survive_kills_and_freezes(instances: Instances, tmp_path: Path) -> None:
    rt = Runtime(load_config(instances.config))
    inv = rt.backend.discover()  # creates the shared world before any instance starts
    policy = rt.config.policy
    evacuation = plan_evacuate(inv, ["a"], policy)
    evac_id = create_job(rt.sessions, evacuation, approved=True)
    future = as_it_will_be(inv, {m.ct: m.to for m in evacuation.moves}, "a")
    _, now = rt.cooldown_inputs()
    rebalance = plan_rebalance(future, policy.model_copy(update={"max_moves": 12}),
                               last_moved={m.ct: now for m in evacuation.moves}, now=now)
    assert len(evacuation.moves) == 100 and rebalance.moves, "the fleet gives both jobs work"
    rebalance_id = create_job(rt.sessions, rebalance, approved=True)
    for _ in range(INSTANCES):
        instances.start()
    rng = random.Random(int(os.environ.get("FERRY_CHAOS_SEED", "1111")))
    started = time.monotonic()

    def done() -> bool:
        return all(job_detail(rt.sessions, j)["state"] in JOB_FINAL for j in (evac_id, rebalance_id))

    assert wait_until(lambda: moves_in(rt, evac_id, MoveState.SUCCEEDED) >= 3, 60), "no instance started"
    events: Counter[str] = Counter()
    while sum(events.values()) < EVENTS and not done() and time.monotonic() - started < FINISH_S:
        events[disrupt(instances, rng)] += 1
        time.sleep(rng.uniform(0.2, 0.8))
    assert wait_until(done, FINISH_S), [job_detail(rt.sessions, j)["state"] for j in (evac_id, rebalance_id)]
    assert sum(events.values()) >= EVENTS, f"the jobs ended after {dict(events)}: too few events"
    details = [job_detail(rt.sessions, j) for j in (evac_id, rebalance_id)]
    assert [d["state"] for d in details] == [JobState.SUCCEEDED] * 2, [d["message"] for d in details]
    assert all(m["state"] == MoveState.SUCCEEDED for d in details for m in d["moves"])
    assert [m for d in details for m in d["moves"] if m["to"] == "a"] == []  # nothing onto the evacuated node
    world = str(tmp_path / "state" / "world.json")
    assert audit_world(world, forbidden_nodes=frozenset({"a"})) == []
    journal = [j for d in details for j in d["journal"]]
    destructive = Counter((j["ct"], j["host"], j["what"][0]) for j in journal
                          if j["kind"] == "command" and j["what"][0] in DESTRUCTIVE)
    assert {key: n for key, n in destructive.items() if n > 1} == {}, "a destructive action ran twice"
    taken_over = [j for j in journal if j["kind"] == "event" and "resuming" in str(j["what"])]
    print(f"chaos: {dict(events)} events, {len(taken_over)} moves taken over mid-step, "
          f"{time.monotonic() - started:.0f} s")


def moves_in(rt: Runtime, job_id: int, state: str) -> int:
    return sum(1 for m in job_detail(rt.sessions, job_id)["moves"] if m["state"] == state)
