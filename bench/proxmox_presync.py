"""Downtime of a Proxmox restart-mode migration, plain against pre-seeded by replication.

Both paths run ferry's real proxmox adapter (HTTPS, proxmoxer, TLS verified) against the API
double of tests/doubles/pvedouble, one container on local ZFS moving pve1 -> pve2 per run:

    plain:    presync = false -> POST .../migrate {restart=1}: stop, send the whole volume, start
    presync:  presync = true  -> replication job, schedule_now, wait for the sync, then the same
              migrate: stop, send only what changed since the replicated snapshot, start

Downtime is read from the double's guest-state timeline, in its simulated time: from the moment
the container stops on pve1 to the moment it runs on pve2. What the double models (and what not)
is stated in BENCHMARKS.md, "## Proxmox presync". Run:
``.venv/bin/python -m bench.proxmox_presync`` (FERRY_BENCH_DIRTY_MB_S, FERRY_BENCH_SIZES_GB to vary).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from adapters.proxmox import create_backend
from fleet.model import Inventory
from service.lifecycle import MoveState
from tests.doubles.pvedouble.fixtures import settings_for
from tests.doubles.pvedouble.server import start_double
from tests.doubles.pvedouble.world import World
from tests.integration.conformance.harness import MoveOrder, SagaStore

#: Simulated seconds per real second: a 256 GB volume's full copy takes ~0.7 s of real time.
TIME_SCALE = 200.0
SECRET_ENV = "FERRY_TEST_PVE_SECRET"


@dataclass(frozen=True)
class Outcome:
    downtime_s: float
    move_s: float
    migrated_mib: int


def fleet(disk_gb: float, dirty_mb_s: float) -> Inventory:
    """Two nodes with local ZFS; one running container of ``disk_gb`` (half of it data)."""
    def node(name: str) -> dict:
        return {"name": name, "cpus": 32, "memory_mb": 131072, "version": "8.3.1",
                "storage": {"local-zfs": {"total_gb": 4000, "used_gb": 100, "shared": False}}}
    ct = {"id": "101", "node": "pve1", "name": "db-101", "cpus": 4, "memory_mb": 8192, "memory_used_mb": 4000,
          "disk_gb": disk_gb, "storage": "local-zfs", "ips": ["203.0.113.10"], "dirty_mb_per_s": dirty_mb_s}
    return Inventory.model_validate({"nodes": [node("pve1"), node("pve2")], "containers": [ct]})


def downtime(world: World, vmid: int, target: str) -> float:
    """Simulated seconds from the container's last stop to its first run on ``target``."""
    rows = [(t, node, status) for t, v, node, status in world.timeline if v == vmid]
    arrive = next(i for i, (_, node, status) in enumerate(rows) if node == target and status == "running")
    stopped = max(t for t, _, status in rows[:arrive] if status != "running")
    return rows[arrive][0] - stopped


def measure(disk_gb: float, dirty_mb_s: float, *, presync: bool, workdir: Path) -> Outcome:
    world = World.from_inventory(fleet(disk_gb, dirty_mb_s), time_scale=TIME_SCALE)
    double = start_double(world, workdir)
    os.environ[SECRET_ENV] = double.token_secret
    try:
        backend = create_backend(settings_for(double, presync=presync, task_timeout_s=120.0))
        store = SagaStore(workdir / "store")  # the engine's saga and job store, opened before the clock
        began = world.sim_time()
        run = store.run(backend, MoveOrder("101", "pve1", "pve2"))
        if run.state != MoveState.SUCCEEDED:
            raise RuntimeError(f"move failed: {run.message}")
        move_s = world.sim_time() - began
        copied = [t for t in world.tasks.values() if t.type == "vzmigrate"]
        mib = int(copied[-1].log[1].split()[1]) if copied else 0
        return Outcome(downtime(world, 101, "pve2"), move_s, mib)
    finally:
        double.stop()


def main() -> None:
    dirty = float(os.environ.get("FERRY_BENCH_DIRTY_MB_S", "5"))
    sizes = [float(s) for s in os.environ.get("FERRY_BENCH_SIZES_GB", "16,64,256").split(",")]
    print(f"container on local ZFS, pve1 -> pve2, migration link 1000 MiB/s, replication 800 MiB/s, "
          f"dirty {dirty:g} MiB/s; simulated seconds (time scale {TIME_SCALE:g}x)")
    print(f"{'disk':>7} | {'plain downtime':>14} | {'presync downtime':>16} | {'ratio':>6} | "
          f"{'sent at stop plain/presync':>26} | {'whole move plain/presync':>24}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        for n, size in enumerate(sizes):
            plain = measure(size, dirty, presync=False, workdir=Path(tmp) / f"p{n}")
            seeded = measure(size, dirty, presync=True, workdir=Path(tmp) / f"s{n}")
            print(f"{size:>5g}GB | {plain.downtime_s:>12.1f} s | {seeded.downtime_s:>14.1f} s | "
                  f"{seeded.downtime_s / plain.downtime_s:>6.3f} | "
                  f"{plain.migrated_mib:>11} / {seeded.migrated_mib:<7} MiB | "
                  f"{plain.move_s:>9.1f} / {seeded.move_s:<8.1f} s")
    print(f"baseline: plain restart-mode migration measured in the same run (ratio 1.000); "
          f"wall time {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
