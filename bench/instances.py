"""Instances benchmark: the same evacuation run by 1, 2 and 3 ferry instances sharing one store.

Each instance is its own process (spawned) with its own store connection and its own view of one
simulated world, running the shared engine (``ferry serve``'s: it claims the job's ready moves),
started together at a barrier. Figures per run: the makespan in simulated seconds (first move
started to last move ended, on the world's clock), moves per wall second, and both as a ratio to
one instance, and how many moves each instance claimed (fair claims: service.participants).

Two fleets:
- *NIC-bound*: 48 containers of 4-12 GB; the evacuated node sends 4 moves at once (fleet-wide
  slots) within a bandwidth budget equal to its NIC (the bound: its bytes over its NIC). The budget makes each copy's rate its share
  of the node's budget whatever process runs it (the simulator shares a NIC only among one
  process's transfers), so the world's bandwidth is the same for every instance count. More
  instances cannot beat the node's NIC: the ratio shows what they cost.
- *engine-bound*: 150 empty-disk containers (configuration-only moves), 16 moves at once: the
  work is the engine's own (store writes, journal, sagas), which more processes share.

The store is a throwaway PostgreSQL cluster (tests/doubles/postgres_cluster.py) when PostgreSQL's
server binaries are installed, else SQLite (one file, serialised writers).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from fleet.policy import Policy
from planners import plan_evacuate
from service.config import Config, EngineSection, FerrySection
from service.engine import Engine
from service.jobs import create_job
from service.lifecycle import JobState
from service.runtime import Runtime

NIC_MB_S = 1250.0
WAIT_S = 600.0
FLEETS: dict[str, dict[str, Any]] = {
    "NIC-bound": {"count": 48, "disks": [4, 8, 12], "speedup": 20.0,
                  "policy": Policy(max_parallel=8, max_outgoing_per_node=4, max_incoming_per_node=2,
                                   bandwidth_budget_mb_s=NIC_MB_S)},
    "engine-bound": {"count": 150, "disks": [0], "speedup": 2000.0,
                     "policy": Policy(max_parallel=16, max_outgoing_per_node=16, max_incoming_per_node=4)},
}


def fleet_file(folder: Path, count: int, disks: list[int], seed: int = 3) -> Path:
    rng = random.Random(seed)
    containers = [{"id": str(10000 + i), "node": "src", "cpus": 1, "memory_mb": 512, "disk_gb": rng.choice(disks),
                   "storage": "local", "ips": [f"10.{i // 250}.{i % 250}.1"]} for i in range(count)]
    nodes = [{"name": name, "cpus": 4096, "memory_mb": 512 * count, "kernel": "6.8", "nic_mb_s": NIC_MB_S,
              "storage": {"local": {"total_gb": 10 * count, "used_gb": 0}}}
             for name in ("src", *(f"dst{i}" for i in range(6)))]
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "nodes": nodes, "containers": containers}))
    return path


@contextlib.contextmanager
def store() -> Iterator[tuple[str, Any]]:
    """(kind, a function (name, folder) -> database URL): PostgreSQL if its server is here, else SQLite."""
    from tests.doubles.postgres_cluster import find_bin, postgres_cluster
    from tests.integration.concurrency.databases import fresh_database

    if not (find_bin("initdb") and find_bin("pg_ctl")):
        yield "SQLite", lambda name, folder: f"sqlite:///{folder / 'ferry.db'}"
        return
    with postgres_cluster() as url:
        yield "PostgreSQL", lambda name, folder: fresh_database(url, name)


def _instance(config: dict[str, Any], job_id: int, name: str, start: Any, claimed: Any) -> None:
    """One instance: connect and load the world first, then run the job beside the others; put
    (name, moves it claimed) into ``claimed``."""
    rt = Runtime(Config.model_validate(config))
    engine = Engine(rt.sessions, rt.backend, rt.policy(), rt.config.engine, owner=name, shared=True)
    start.wait(WAIT_S)
    engine.run_job(job_id)
    claimed.put((name, engine.claimed))


def run_once(fleet: str, instances: int, database: Any) -> dict[str, Any]:
    spec = FLEETS[fleet]
    folder = Path(tempfile.mkdtemp(prefix="ferry-bench-instances-"))
    config = Config(ferry=FerrySection(backend="sim", state_dir=str(folder / "state"),
                                       database=database(f"bench_{fleet[:3]}_{instances}".replace("-", "_"), folder)),
                    policy=spec["policy"], engine=EngineSection(retry_initial_s=0.01, retry_max_s=0.05, lease_s=30),
                    sim={"fleet_file": str(fleet_file(folder, spec["count"], spec["disks"])),
                         "speedup": spec["speedup"], "world_file": str(folder / "state" / "world.json")})
    rt = Runtime(config)
    inv = rt.backend.discover()
    plan = plan_evacuate(inv, ["src"], spec["policy"])
    job_id = create_job(rt.sessions, plan, approved=True)
    context = multiprocessing.get_context("spawn")
    start, claimed = context.Barrier(instances + 1), context.Queue()
    procs = [context.Process(target=_instance, args=(config.model_dump(), job_id, f"i{n}", start, claimed))
             for n in range(instances)]
    for proc in procs:
        proc.start()
    start.wait(WAIT_S)
    wall = time.perf_counter()
    shares = dict(claimed.get(timeout=WAIT_S) for _ in procs)  # read before the joins: a child
    for proc in procs:                                            # exits once its put is read
        proc.join(WAIT_S)
    wall = time.perf_counter() - wall
    summary = Engine(rt.sessions, rt.backend, rt.policy(), config.engine).summary(job_id)
    assert summary.state == JobState.SUCCEEDED, summary
    return {"moves": len(plan.moves), "makespan_s": summary.makespan_s, "wall_s": wall,
            "moves_per_s": len(plan.moves) / wall, "bound_s": sum(c.disk_gb for c in inv.containers) * 1024 / NIC_MB_S,
            "spread": "/".join(str(shares[name]) for name in sorted(shares))}


def main() -> None:
    with store() as (kind, database):
        print(f"one evacuation, run by 1, 2 and 3 instances (processes) on one {kind} store")
        print(f"{'fleet':<14}{'instances':>10}{'moves':>7}{'makespan s':>12}{'bound s':>9}{'ratio':>7}{'wall s':>8}"
              f"{'moves/s':>9}{'ratio':>7}  claimed by each")
        for fleet in FLEETS:
            base: dict[str, Any] = {}
            for instances in (1, 2, 3):
                r = run_once(fleet, instances, database)
                base = base or r
                print(f"{fleet:<14}{instances:>10}{r['moves']:>7.0f}{r['makespan_s']:>12.0f}{r['bound_s']:>9.0f}"
                      f"{r['makespan_s'] / base['makespan_s']:>7.2f}{r['wall_s']:>8.1f}{r['moves_per_s']:>9.1f}"
                      f"{r['moves_per_s'] / base['moves_per_s']:>7.2f}  {r['spread']}", flush=True)


if __name__ == "__main__":
    main()
