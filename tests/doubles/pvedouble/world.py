"""The double's cluster: built from a ferry snapshot, advanced in accelerated time.

    Inventory --World.from_inventory--> nodes/guests/HA/storages
         ^                                   |  (requests mutate; tasks end lazily in tick())
         +--------- World.snapshot() <-------+

No thread drives time: every request first calls :meth:`World.tick`, which ends the tasks whose
(scaled) duration has passed, in order, and lets the HA stack act on queued requests. A test that
waits on a task therefore sees exactly what a client polling Proxmox would see.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from fleet.model import Container, Inventory, Node, Storage
from tests.doubles.pvedouble import cluster
from tests.doubles.pvedouble.model import (
    GIB,
    MIB,
    ApiError,
    Faults,
    Guest,
    HaState,
    NodeState,
    ReplicationJob,
    StorageState,
    Task,
    make_upid,
)

SIM_SHUTDOWN_S = 4.0
SIM_START_S = 2.0
HA_CRM_DELAY_S = 10.0


def capped(bytes_s: float, bwlimit_kib: float | None) -> float:
    """The speed of a copy task given its ``bwlimit`` (KiB/s; absent or 0: no limit)."""
    return min(bytes_s, bwlimit_kib * 1024) if bwlimit_kib else bytes_s


def _plugintype(storage_id: str, shared: bool) -> str:
    if shared:
        return "nfs" if "backup" in storage_id or "nfs" in storage_id else "cephfs"
    return "zfspool" if "zfs" in storage_id else "dir"


class World:
    """Everything the double knows. ``time_scale`` simulated seconds pass per real second;
    ``link_bytes_s`` is the migration network's speed used to size copy tasks."""

    def __init__(self, *, time_scale: float = 2000.0, link_bytes_s: float = 1000 * MIB) -> None:
        self.lock = threading.RLock()
        self.time_scale = time_scale
        self.link_bytes_s = link_bytes_s
        self.nodes: dict[str, NodeState] = {}
        self.guests: dict[int, Guest] = {}
        self.ha: dict[str, HaState] = {}
        #: Simulated seconds from a node's loss to its HA services running elsewhere (its watchdog
        #: fences it after 60 s, then the CRM recovers them); a test may hold recovery back.
        self.ha_recovery_s: float = 60.0
        self.replication: dict[str, ReplicationJob] = {}
        self.backups: dict[str, list[dict]] = {}
        #: Storage id -> the directory its archives are files in (backups.py restores a foreign
        #: vzdump archive, e.g. an OpenVZ one copied there, from the file itself).
        self.archive_dirs: dict[str, Path] = {}
        self.tasks: dict[str, Task] = {}
        self.faults = Faults()
        #: The cluster's name and the node whose API this double stands for (``/cluster/status``
        #: marks it ``local``; a remote migration to this cluster lands there). None: the first.
        self.cluster_name = "pve"
        self.local_node: str | None = None
        self.requests: list[tuple[str, str, int]] = []
        #: The same requests with their raw parameters and the UPID a task-starting call returned.
        self.calls: list[dict] = []
        #: Every change of a container's (node, status): (simulated time, vmid, node, status).
        self.timeline: list[tuple[float, int, str, str]] = []
        self._seen: dict[int, tuple[str, str]] = {}
        self._t0 = time.monotonic()
        self._seq = 0

    # -- building and rendering -------------------------------------------------------------
    @classmethod
    def from_inventory(cls, inv: Inventory, **kwargs) -> World:
        world = cls(**kwargs)
        shared: dict[str, StorageState] = {}
        for node in inv.nodes:
            storages = {}
            for sid, st in node.storage.items():
                state = StorageState(sid, round(st.total_gb * GIB), round(st.used_gb * GIB), st.shared,
                                     _plugintype(sid, st.shared))
                storages[sid] = shared.setdefault(sid, state) if st.shared else state
            world.nodes[node.name] = NodeState(
                node.name, node.cpus, node.memory_mb * MIB, node.cpu_usage, storages, node.online,
                node.maintenance, node.kernel, node.version)
        for ct in inv.containers:
            nets = {f"net{i}": f"name=eth{i},bridge=vmbr0,hwaddr=BC:24:11:00:{int(ct.id) % 256:02X}:{i:02X},"
                               f"ip={ip}/24,type=veth" for i, ip in enumerate(ct.ips)}
            extra = dict(ct.model_extra or {})
            world.guests[int(ct.id)] = Guest(
                int(ct.id), ct.node, ct.name, ct.status, ct.cpus, ct.memory_mb, ct.memory_used_mb * MIB,
                ct.cpu_usage, round(ct.disk_gb * GIB), ct.storage or "local", nets, list(ct.tags),
                lock=extra.pop("lock", None), extra=extra, dirty_bytes_s=ct.dirty_mb_per_s * MIB)
            if ct.ha:
                world.ha[f"ct:{ct.id}"] = HaState(f"ct:{ct.id}", "started" if ct.status == "running" else "stopped",
                                                  "started" if ct.status == "running" else "stopped")
        world.note_states(world._t0)
        return world

    def snapshot(self) -> Inventory:
        """The double's fleet in ferry's snapshot format: what discover() must return."""
        with self.lock:
            self.tick()
            nodes = [Node(name=n.name, platform="proxmox", cpus=n.cpus, memory_mb=n.memory // MIB,
                          cpu_usage=n.cpu, online=n.online, maintenance=n.maintenance,
                          kernel=n.kernel, version=n.version,
                          storage={s.storage: Storage(total_gb=round(s.total / GIB, 3), used_gb=round(s.used / GIB, 3),
                                                      shared=s.shared) for s in n.storages.values()})
                     for n in self.nodes.values()]
            cts = []
            for g in sorted(self.guests.values(), key=lambda g: g.vmid):
                extra = {"lock": g.lock} if g.lock else {}
                cts.append(Container(
                    id=str(g.vmid), node=g.node, name=g.hostname, status=g.status, cpus=g.cores,
                    cpu_usage=g.cpu if g.status == "running" else 0.0, memory_mb=g.memory_mib,
                    memory_used_mb=round(g.mem_used / MIB) if g.status == "running" else 0,
                    disk_gb=round(g.maxdisk / GIB, 3), storage=g.storage, ips=self.ips_of(g), tags=g.tags,
                    ha=f"ct:{g.vmid}" in self.ha, **extra))
            return Inventory(nodes=nodes, containers=cts)

    @staticmethod
    def ips_of(guest: Guest) -> list[str]:
        ips = []
        for key in sorted(guest.nets):
            for part in guest.nets[key].split(","):
                if part.startswith("ip=") and part[3:] not in ("dhcp", "manual"):
                    ips.append(part[3:].split("/")[0])
        return ips

    def log_request(self, method: str, path: str, status: int, params: dict, data: object = None) -> None:
        """Record one served request (the log tests compare ferry's journal with)."""
        self.requests.append((method, path, status))
        upid = data if isinstance(data, str) and data.startswith("UPID:") else None
        self.calls.append({"method": method, "path": path, "status": status, "params": dict(params), "upid": upid})

    # -- lookups ----------------------------------------------------------------------------
    def node(self, name: str) -> NodeState:
        if name not in self.nodes:
            raise ApiError(500, f"hostname lookup '{name}' failed - failed to get address info for: "
                                f"{name}: Name or service not known")
        node = self.nodes[name]
        if not node.online:
            raise ApiError(595, f"Connection refused (node '{name}' is offline)")
        return node

    def guest_on(self, node: str, vmid: int) -> Guest:
        """The container ``vmid`` if its config lives on ``node`` (pmxcfs paths are per node)."""
        self.node(node)
        guest = self.guests.get(vmid)
        if guest is None or guest.node != node:
            raise ApiError(500, f"Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist")
        return guest

    def check_lock(self, guest: Guest) -> None:
        """PVE::AbstractConfig::check_lock: a locked guest refuses config-changing actions."""
        if guest.lock:
            raise ApiError(500, f"CT is locked ({guest.lock})")

    # -- time -------------------------------------------------------------------------------
    def sim_time(self, monotonic: float | None = None) -> float:
        """Simulated seconds since the world was built, at a ``time.monotonic()`` instant."""
        at = time.monotonic() if monotonic is None else monotonic
        return (at - self._t0) * self.time_scale / self.faults.slow

    def note_states(self, monotonic: float) -> None:
        """Append to ``timeline`` every container whose node or status changed since last seen."""
        for vmid, guest in self.guests.items():
            now = (guest.node, guest.status)
            if self._seen.get(vmid) != now:
                self._seen[vmid] = now
                self.timeline.append((self.sim_time(monotonic), vmid, guest.node, guest.status))

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.time_scale * self.faults.slow

    def start_task(self, node: str, kind: str, ident: str | int, sim_seconds: float, *,
                   user: str = "root@pam", log: list[str] | None = None,
                   on_success: Callable[[], None] | None = None,
                   on_failure: Callable[[str], None] | None = None) -> Task:
        self._seq += 1
        upid, pid, pstart, starttime = make_upid(node, kind, str(ident), user, self._seq)
        task = Task(upid, node, kind, str(ident), user, pid, pstart, starttime,
                    ends_at=time.monotonic() + self.real_seconds(sim_seconds), log=list(log or []),
                    on_success=on_success, on_failure=on_failure, sim_seconds=sim_seconds)
        key = (kind, int(ident)) if str(ident).isdigit() else None
        if key and key in self.faults.task_failures:
            task.fail_with = self.faults.task_failures.pop(key)
        if key and key in self.faults.task_warnings:
            task.warnings = self.faults.task_warnings.pop(key)
            task.log.append("WARN: injected warning")
        self.tasks[upid] = task
        return task

    def tick(self) -> None:
        """Advance the world to now: end due tasks in order, run due HA requests, syncs, locks."""
        with self.lock:
            now = time.monotonic()
            for guest in self.guests.values():
                if guest.lock_until is not None and now >= guest.lock_until:
                    guest.lock, guest.lock_until = None, None
            due = sorted((t for t in self.tasks.values() if t.exitstatus is None and t.ends_at <= now),
                         key=lambda t: t.ends_at)
            for task in due:
                task.finish()
                self.note_states(task.ends_at)
            cluster.run_due(self, now)

    def task(self, node: str, upid: str) -> Task:
        self.node(node)
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            raise ApiError(500, f"no such task '{upid}'" if task is None else "task is on another node")
        return task
