"""The double's records: nodes, storages, containers, tasks, HA and replication state.

Plain mutable dataclasses guarded by the :class:`~tests.doubles.pvedouble.world.World` lock. Units are the
API's own (bytes, fractions, MiB in configs) so that the HTTP layer renders them without maths.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

GIB = 1 << 30
MIB = 1 << 20


class ApiError(Exception):
    """An API failure as pve-http-server sends it: the status line carries ``message``; a
    parameter failure also fills ``errors`` ({param: msg}) in the body."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


class TaskFailed(Exception):
    """Raised by a task's completion hook: the task ends with this text as its exit status."""


@dataclass
class StorageState:
    storage: str
    total: int
    used: int
    shared: bool
    plugintype: str
    content: str = "rootdir,images,backup"


@dataclass
class NodeState:
    name: str
    cpus: int
    memory: int
    cpu: float
    storages: dict[str, StorageState]
    online: bool = True
    maintenance: bool = False
    kernel: str | None = None
    version: str | None = None
    #: ``ha-manager crm-command node-maintenance enable`` asked for, the LRM not yet in it.
    maintenance_requested: bool = False


@dataclass
class Guest:
    """One LXC container. ``nets`` maps ``net0``.. to the property string of its config."""

    vmid: int
    node: str
    hostname: str | None
    status: str
    cores: float
    memory_mib: int
    mem_used: int
    cpu: float
    maxdisk: int
    storage: str
    nets: dict[str, str]
    tags: list[str]
    lock: str | None = None
    lock_until: float | None = None
    extra: dict = field(default_factory=dict)
    #: How fast the running CT changes its volume (bytes per simulated second); 0: not stated.
    dirty_bytes_s: float = 0.0

    @property
    def disk_used(self) -> int:
        """Bytes really written on the volume: what a copy transfers (half the size here)."""
        return self.maxdisk // 2

    def changed_since(self, sim_from: float, sim_to: float) -> int:
        """Bytes of the volume changed between two simulated instants, what an incremental ZFS
        send after a snapshot taken at ``sim_from`` carries. With no dirty rate stated, 2 % of
        the data (the double's fixed guess); never more than the data itself."""
        if not self.dirty_bytes_s:
            return self.disk_used // 50
        return min(self.disk_used, round(self.dirty_bytes_s * max(0.0, sim_to - sim_from)))

    def config(self) -> dict:
        conf: dict = {
            "arch": "amd64", "ostype": "debian", "cores": self.cores if self.cores % 1 else int(self.cores),
            "memory": self.memory_mib, "swap": 512,
            "rootfs": f"{self.storage}:subvol-{self.vmid}-disk-0,size={self.maxdisk // GIB}G"
            if self.maxdisk % GIB == 0 else f"{self.storage}:subvol-{self.vmid}-disk-0,size={self.maxdisk // MIB}M",
            "digest": hashlib.sha1(f"{self.vmid}{self.node}{self.tags}{self.nets}".encode()).hexdigest(),
        }
        if self.hostname:
            conf["hostname"] = self.hostname
        if self.tags:
            conf["tags"] = ";".join(self.tags)
        if self.lock:
            conf["lock"] = self.lock
        if "onboot" in self.extra:
            conf["onboot"] = self.extra["onboot"]
        conf.update(self.extra.get("restored", {}))  # keys a restore set (backups.py)
        conf.update(self.nets)
        return conf


def make_upid(node: str, kind: str, ident: str, user: str, seq: int) -> tuple[str, int, int, int]:
    """A UPID in pve-common's format (PVE::Tools::upid_encode):
    ``UPID:node:PID(8 hex):PSTART(8 hex):STARTTIME(8 hex):type:id:user:``."""
    pid = (os.getpid() * 7 + seq) & 0x3FFFFF
    pstart = 1000 + seq
    starttime = int(time.time())
    upid = f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{ident}:{user}:"
    return upid, pid, pstart, starttime


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str
    pid: int
    pstart: int
    starttime: int
    ends_at: float
    log: list[str] = field(default_factory=list)
    fail_with: str | None = None
    warnings: int = 0
    on_success: Callable[[], None] | None = None
    on_failure: Callable[[str], None] | None = None
    exitstatus: str | None = None
    endtime: int | None = None
    #: How long the task takes in cluster seconds (its copy at the task's bandwidth, and so on).
    sim_seconds: float = 0.0

    def status(self) -> dict:
        out = {"upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
               "starttime": self.starttime, "type": self.type, "id": self.id, "user": self.user,
               "status": "running" if self.exitstatus is None else "stopped"}
        if self.exitstatus is not None:
            out["exitstatus"] = self.exitstatus
        return out

    def listing(self) -> dict:
        """The /cluster/tasks row: finished tasks carry ``status`` (the exit status) and ``endtime``."""
        out = {k: v for k, v in self.status().items() if k not in ("status", "exitstatus")}
        if self.exitstatus is not None:
            out["status"] = self.exitstatus
            out["endtime"] = self.endtime
        return out

    def finish(self) -> None:
        """Run the completion hook and write the closing log line the way pve-common does
        (``TASK OK`` / ``TASK WARNINGS: n`` / ``TASK ERROR: text``)."""
        error = self.fail_with
        if error is None and self.on_success is not None:
            try:
                self.on_success()
            except TaskFailed as exc:
                error = str(exc)
        if error is not None:
            if self.on_failure is not None:
                self.on_failure(error)
            self.exitstatus = error
            self.log.append(f"TASK ERROR: {error}")
        elif self.warnings:
            self.exitstatus = f"WARNINGS: {self.warnings}"
            self.log.append(f"TASK WARNINGS: {self.warnings}")
        else:
            self.exitstatus = "OK"
            self.log.append("TASK OK")
        self.endtime = int(time.time())


@dataclass
class HaState:
    sid: str
    state: str = "started"
    current: str = "started"
    request: tuple[str, str, float] | None = None  # (kind, target, due at)
    #: When the CRM saw the service's node lost (monotonic); it recovers it World.ha_recovery_s later.
    lost_at: float | None = None


@dataclass
class ReplicationJob:
    id: str
    guest: int
    target: str
    source: str
    schedule: str = "*/15"
    rate: float | None = None
    comment: str | None = None
    last_sync: int = 0
    last_try: int = 0
    fail_count: int = 0
    error: str | None = None
    duration: float | None = None
    sync_due: float | None = None
    #: Simulated instant of the snapshot the last finished sync sent (what the target holds).
    synced_at_sim: float | None = None
    #: Simulated instant of the snapshot the running sync sends, and how long it takes.
    syncing_at_sim: float | None = None
    syncing_s: float = 0.0

    def config(self) -> dict:
        out = {"id": self.id, "type": "local", "guest": self.guest, "target": self.target,
               "source": self.source, "schedule": self.schedule, "jobnum": int(self.id.split("-")[1])}
        if self.rate is not None:
            out["rate"] = self.rate
        if self.comment:
            out["comment"] = self.comment
        return out

    def state(self) -> dict:
        out = self.config()
        out.update({"last_sync": self.last_sync, "last_try": self.last_try,
                    "fail_count": self.fail_count})
        if self.error:
            out["error"] = self.error
        if self.duration is not None:
            out["duration"] = self.duration
        return out


@dataclass
class Faults:
    """What a test may break. All one-shot or counted, so a test states exactly what happens."""

    http_errors: int = 0
    http_status: int = 503
    task_failures: dict[tuple[str, int], str] = field(default_factory=dict)
    task_warnings: dict[tuple[str, int], int] = field(default_factory=dict)
    slow: float = 1.0
